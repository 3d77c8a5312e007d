#!/usr/bin/env python3
"""Writes the PyTorch part of zkfarm's operator suite: small networks of the
kinds people prove (MLP, CNN, ResNet and depthwise blocks, a DCGAN-style
generator, a VAE, LSTM/GRU/RNN sequence models, multi-head attention, a
nanoGPT-style transformer with token ids), each exported by both of
PyTorch's ONNX exporters (`torch_NAME_ts` by TorchScript, `torch_NAME_dy` by
dynamo), with onnxruntime's output for a seeded input (`NAME.onnx`,
`NAME.json`), which `circuits/tests/suite.rs` checks like the rest of the
suite.  Running this again gives the same outputs.
Needs `pip install torch onnx onnxruntime onnxscript`.  Usage: python3 make_torch_suite.py
"""
import json
import os
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
GRID = 128.0
warnings.filterwarnings("ignore")
torch.manual_seed(2026)
gen = torch.Generator().manual_seed(7)


def grid(lo, hi, *shape):
    x = torch.rand(*shape, generator=gen) * (hi - lo) + lo
    return torch.round(x * GRID) / GRID


def snap(module):
    """Weights on the grid of 1/128, so the default scale holds them exactly."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.round(p * GRID) / GRID)
        for name, b in module.named_buffers():
            if b.dtype.is_floating_point:
                b.copy_(torch.round(b * GRID) / GRID)
    return module.eval()


def bn_stats(module):
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) * 0.4 - 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    return module


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(16, 24), nn.ReLU(), nn.Linear(24, 12), nn.Tanh(), nn.Linear(12, 4))

    def forward(self, x):
        return torch.softmax(self.net(x), dim=-1)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
        )
        self.head = nn.Linear(24, 5)

    def forward(self, x):
        return self.head(torch.flatten(self.features(x), 1))


class ResBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)
        self.c2, self.b2 = nn.Conv2d(3, 3, 3, padding=1, bias=False), nn.BatchNorm2d(3)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(x + self.b2(self.c2(y)))


class Depthwise(nn.Module):
    """A MobileNet-style block: depthwise, pointwise, ReLU6 and HardSwish."""

    def __init__(self):
        super().__init__()
        self.dw = nn.Conv2d(4, 4, 3, padding=1, groups=4)
        self.pw = nn.Conv2d(4, 6, 1)
        self.act = nn.Hardswish()

    def forward(self, x):
        return self.act(self.pw(nn.functional.relu6(self.dw(x))))


class Generator(nn.Module):
    """A DCGAN-style generator: a latent vector to a 1x8x8 image."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 4 * 2 * 2)
        self.up = nn.Sequential(
            nn.ConvTranspose2d(4, 3, 4, stride=2, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
            nn.ConvTranspose2d(3, 1, 4, stride=2, padding=1), nn.Tanh(),
        )

    def forward(self, z):
        return self.up(self.fc(z).view(-1, 4, 2, 2))


class VAE(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(12, 8)
        self.mu, self.logvar = nn.Linear(8, 3), nn.Linear(8, 3)
        self.dec = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 12), nn.Sigmoid())
        self.register_buffer("eps", torch.tensor([[0.5, -0.25, 0.125]]))

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        z = mu + self.eps * torch.exp(0.5 * logvar)
        return self.dec(z), mu, logvar


class Recurrent(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(input_size=3, hidden_size=6, batch_first=True)
        self.head = nn.Linear(6, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.att = nn.MultiheadAttention(16, 2, batch_first=True)
        self.register_buffer("mask", torch.triu(torch.ones(6, 6, dtype=torch.bool), 1))

    def forward(self, x):
        y, _ = self.att(x, x, x, attn_mask=self.mask, need_weights=False)
        return y


class TinyGPT(nn.Module):
    """One nanoGPT block: token and position embeddings, causal attention,
    a GELU MLP and the language-model head."""

    def __init__(self, vocab=20, seq=8, width=16, heads=2):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, width), nn.Embedding(seq, width)
        self.ln1, self.ln2, self.lnf = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.head = nn.Linear(width, vocab, bias=False)
        self.heads, self.width = heads, width
        self.register_buffer("causal", torch.tril(torch.ones(seq, seq)).view(1, 1, seq, seq))

    def forward(self, idx):
        b, t = idx.shape
        x = self.tok(idx) + self.pos(torch.arange(t))
        q, k, v = self.qkv(self.ln1(x)).split(self.width, dim=2)
        hs = self.width // self.heads
        q, k, v = (z.view(b, t, self.heads, hs).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / hs**0.5)
        att = att.masked_fill(self.causal[:, :, :t, :t] == 0, float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(b, t, self.width)
        x = x + self.proj(y)
        x = x + self.mlp(self.ln2(x))
        return self.head(self.lnf(x))


MODELS = [
    ("mlp", MLP(), (grid(-1, 1, 1, 16),), {"classify": True}),
    ("cnn", bn_stats(CNN()), (grid(0, 1, 1, 1, 8, 8),), {"classify": True}),
    ("resblock", bn_stats(ResBlock()), (grid(-1, 1, 1, 3, 5, 5),), {}),
    ("depthwise", Depthwise(), (grid(-1, 1, 1, 4, 5, 5),), {}),
    ("generator", bn_stats(Generator()), (grid(-1, 1, 1, 6),), {}),
    ("vae", VAE(), (grid(0, 1, 1, 12),), {}),
    ("lstm", Recurrent(nn.LSTM), (grid(-1, 1, 1, 5, 3),), {}),
    ("gru", Recurrent(nn.GRU), (grid(-1, 1, 1, 5, 3),), {}),
    ("rnn", Recurrent(nn.RNN), (grid(-1, 1, 1, 5, 3),), {}),
    ("attention", Attention(), (grid(-1, 1, 1, 6, 16),), {}),
    ("tiny_gpt", TinyGPT(), (torch.randint(0, 20, (1, 8), generator=gen),), {}),
]


def export(module, args, path, dynamo):
    if dynamo:
        torch.onnx.export(module, args, path, dynamo=True, opset_version=18, external_data=False)
    else:
        torch.onnx.export(module, args, path, dynamo=False, opset_version=17)


def write(name, module, args, extra, dynamo):
    path = os.path.join(HERE, f"torch_{name}_{'dy' if dynamo else 'ts'}.onnx")
    export(module, args, path, dynamo)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args)}
    outs = sess.run(None, feeds)
    data = {
        "input_data": [[float(v) for v in a.numpy().astype(np.float64).flatten()] for a in args],
        "output_data": [[float(v) for v in np.asarray(o, dtype=np.float64).flatten()] for o in outs],
        "tolerance": 0.1,
    }
    data.update(extra)
    with open(path[: -len(".onnx")] + ".json", "w") as f:
        json.dump(data, f)


if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.startswith("torch_") and old.endswith((".onnx", ".json", ".data")):
            os.remove(os.path.join(HERE, old))
    n = 0
    for name, module, args, extra in MODELS:
        snap(module)
        for dynamo in (False, True):
            write(name, module, args, extra, dynamo)
            n += 1
    print(f"wrote {n} PyTorch exports to {HERE}")
