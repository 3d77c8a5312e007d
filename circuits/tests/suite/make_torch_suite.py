#!/usr/bin/env python3
"""Writes the PyTorch part of zkfarm's operator suite: small networks of the
kinds people prove (MLP, CNN, ResNet and depthwise blocks, a DCGAN-style
generator, a VAE, LSTM/GRU/RNN sequence models, multi-head attention, a
nanoGPT-style transformer with token ids) and some 70 single layers and
tensor operations as PyTorch spells them (`op_*`), each exported by both of
PyTorch's ONNX exporters (`torch_NAME_ts` by TorchScript, `torch_NAME_dy` by
dynamo), with onnxruntime's output for a seeded input (`NAME.onnx`,
`NAME.json`), which `circuits/tests/suite.rs` checks like the rest of the
suite.  Running this again gives the same outputs.
Needs `pip install torch onnx onnxruntime onnxscript`.  Usage: python3 make_torch_suite.py
"""
import json
import os
import sys
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


class Lambda(nn.Module):
    """A one-line model over some sub-modules."""

    def __init__(self, f, *mods):
        super().__init__()
        self.f, self.mods = f, nn.ModuleList(mods)

    def forward(self, *x):
        return self.f(self.mods, *x)


def r(*shape):
    return grid(-1, 1, *shape)


F = nn.functional
# Single operations and layers as PyTorch writes them: the exporters' own
# spellings (Shape/Gather/Concat chains, decompositions) are what is tested.
OPS = {
    "transformer_encoder": (nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True), (r(1, 6, 16),)),
    "conv3d": (nn.Conv3d(2, 3, 3, padding=1), (r(1, 2, 4, 4, 4),)),
    "upsample_bilinear": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), (r(1, 2, 3, 3),)),
    "upsample_bilinear_corners": (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), (r(1, 2, 3, 3),)),
    "pixel_shuffle": (nn.PixelShuffle(2), (r(1, 8, 3, 3),)),
    "groupnorm": (nn.GroupNorm(2, 4), (r(1, 4, 3, 3),)),
    "instancenorm": (nn.InstanceNorm2d(3, affine=True), (r(1, 3, 4, 4),)),
    "prelu": (nn.PReLU(3), (r(1, 3, 4),)),
    "silu": (nn.SiLU(), (r(2, 5),)),
    "cumsum": (Lambda(lambda m, x: torch.cumsum(x, dim=1)), (r(2, 5),)),
    "flip": (Lambda(lambda m, x: torch.flip(x, [1])), (r(2, 5),)),
    "var": (Lambda(lambda m, x: x.var(dim=1, keepdim=True)), (r(2, 5),)),
    "std": (Lambda(lambda m, x: x.std(dim=-1)), (r(3, 5),)),
    "max_dim": (Lambda(lambda m, x: torch.max(x, dim=1)[0] + torch.max(x, dim=1)[1].float()), (r(3, 5),)),
    "topk": (Lambda(lambda m, x: torch.topk(x, 2, dim=1)[0]), (r(3, 5),)),
    "sort": (Lambda(lambda m, x: torch.sort(x, dim=1)[0]), (r(3, 5),)),
    "argmax": (Lambda(lambda m, x: torch.argmax(x, dim=-1)), (r(3, 5),)),
    "normalize": (Lambda(lambda m, x: F.normalize(x, dim=1)), (r(3, 5),)),
    "interpolate_bilinear": (Lambda(lambda m, x: F.interpolate(x, size=(5, 7), mode="bilinear")), (r(1, 2, 3, 4),)),
    "interpolate_bicubic": (Lambda(lambda m, x: F.interpolate(x, scale_factor=2, mode="bicubic")), (r(1, 1, 3, 3),)),
    "adaptive_avg_uneven": (nn.AdaptiveAvgPool2d((2, 3)), (r(1, 2, 5, 7),)),
    "adaptive_max": (nn.AdaptiveMaxPool2d((2, 2)), (r(1, 2, 4, 4),)),
    "avgpool_ceil": (nn.AvgPool2d(3, stride=2, ceil_mode=True), (r(1, 1, 6, 6),)),
    "maxpool_ceil": (nn.MaxPool2d(3, stride=2, ceil_mode=True), (r(1, 1, 6, 6),)),
    "einsum3": (Lambda(lambda m, a, b, c: torch.einsum("ij,jk,kl->il", a, b, c)), (r(2, 3), r(3, 4), r(4, 2))),
    "bmm": (Lambda(lambda m, a, b: torch.bmm(a, b)), (r(2, 3, 4), r(2, 4, 2))),
    "matmul_4d": (Lambda(lambda m, a, b: a @ b), (r(1, 2, 3, 4), r(1, 2, 4, 3))),
    "rsqrt": (Lambda(lambda m, x: torch.rsqrt(x.abs() + 0.5)), (r(2, 5),)),
    "pow_runtime": (Lambda(lambda m, x: torch.pow(x.abs() + 0.5, x)), (r(2, 5),)),
    "clamp": (Lambda(lambda m, x: torch.clamp(x, -0.3, 0.4)), (r(2, 5),)),
    "minimum": (Lambda(lambda m, a, b: torch.minimum(a, b)), (r(2, 5), r(2, 5))),
    "embedding_gru": (Lambda(lambda m, i: m[1](m[0](i))[0], nn.Embedding(10, 4), nn.GRU(4, 5, batch_first=True)), (torch.tensor([[1, 4, 2, 9]]),)),
    "lstm_two_layers": (Lambda(lambda m, x: m[0](x)[0], nn.LSTM(3, 4, num_layers=2, batch_first=True)), (r(1, 5, 3),)),
    "lstm_bidirectional": (Lambda(lambda m, x: m[0](x)[0], nn.LSTM(3, 4, bidirectional=True, batch_first=True)), (r(1, 5, 3),)),
    "conv1d_stack": (nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU(), nn.MaxPool1d(2), nn.Conv1d(4, 2, 3)), (r(1, 2, 10),)),
    "hardtanh": (nn.Hardtanh(), (r(2, 5) * 3,)),
    "logsigmoid": (nn.LogSigmoid(), (r(2, 5),)),
    "tanhshrink": (nn.Tanhshrink(), (r(2, 5),)),
    "softmin": (nn.Softmin(dim=1), (r(2, 5),)),
    "glu": (nn.GLU(), (r(2, 6),)),
    "celu": (nn.CELU(), (r(2, 5),)),
    "gelu_tanh": (nn.GELU(approximate="tanh"), (r(3, 5),)),
    "chunk_cat": (Lambda(lambda m, x: torch.cat(torch.chunk(x, 2, dim=1)[::-1], dim=1)), (r(2, 6),)),
    "masked_fill": (Lambda(lambda m, x: x.masked_fill(x > 0.3, 0.0)), (r(2, 5),)),
    "where_scalar": (Lambda(lambda m, x: torch.where(x > 0, x, x * 0.1)), (r(3, 5),)),
    "layer_norm_plain": (Lambda(lambda m, x: F.layer_norm(x, (5,))), (r(3, 5),)),
    "mean_spatial": (Lambda(lambda m, x: x.mean(dim=(2, 3))), (r(1, 2, 3, 3),)),
    "zero_pad": (nn.ZeroPad2d((1, 2, 0, 1)), (r(1, 1, 3, 3),)),
    "reflection_pad": (nn.ReflectionPad2d(1), (r(1, 1, 3, 3),)),
    "replication_pad": (nn.ReplicationPad2d(1), (r(1, 1, 3, 3),)),
    "view_transpose": (Lambda(lambda m, x: x.view(1, -1).t()), (r(2, 3),)),
    "expand_as": (Lambda(lambda m, a, b: a.expand_as(b) * b), (r(1, 5), r(3, 5))),
    "repeat": (Lambda(lambda m, x: x.repeat(2, 3)), (r(2, 2),)),
    "index_select": (Lambda(lambda m, x: x[:, [2, 0]]), (r(3, 4),)),
    "bool_index": (Lambda(lambda m, x: x[:, torch.tensor([True, False, True, False])]), (r(3, 4),)),
    "scatter_add": (Lambda(lambda m, x: torch.zeros(3, 4).scatter_add(1, torch.tensor([[0, 1, 0, 1]] * 3), x)), (r(3, 4),)),
    "triu": (Lambda(lambda m, x: torch.triu(x)), (r(4, 4),)),
    "arange_add": (Lambda(lambda m, x: x + torch.arange(x.shape[1]).float()), (r(2, 5),)),
    "roll": (Lambda(lambda m, x: torch.roll(x, 1, 1)), (r(2, 5),)),
    "cast_round_trip": (Lambda(lambda m, x: (x * 4).long().float() / 4), (r(2, 5),)),
    "floor_divide": (Lambda(lambda m, x: torch.div(x * 8, 3, rounding_mode="floor")), (r(2, 5),)),
    "remainder": (Lambda(lambda m, x: torch.remainder(x, 0.3)), (r(2, 5),)),
    "sign_sqrt": (Lambda(lambda m, x: torch.sign(x) * x.abs().sqrt()), (r(2, 5),)),
    "logsumexp": (Lambda(lambda m, x: torch.logsumexp(x, dim=1)), (r(2, 5),)),
    "cosine_similarity": (Lambda(lambda m, a, b: F.cosine_similarity(a, b, dim=1)), (r(2, 5), r(2, 5))),
    "mse": (Lambda(lambda m, a, b: F.mse_loss(a, b)), (r(2, 5), r(2, 5))),
    "cdist": (Lambda(lambda m, a, b: torch.cdist(a, b)), (r(1, 3, 4), r(1, 2, 4))),
}


class PostNormAttention(nn.Module):
    """Multi-head self-attention with a LayerNorm after its projection, two
    layers and a mean-pooled head, as transformer examples write it."""

    def __init__(self, width=32, heads=4, layers=2):
        super().__init__()
        self.qkv = nn.ModuleList(nn.Linear(width, 3 * width) for _ in range(layers))
        self.proj = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))
        self.norm = nn.ModuleList(nn.LayerNorm(width) for _ in range(layers))
        self.head = nn.Linear(width, 1)
        self.heads, self.width = heads, width

    def forward(self, x):
        b, t, _ = x.shape
        hs = self.width // self.heads
        for qkv, proj, norm in zip(self.qkv, self.proj, self.norm):
            q, k, v = (z.view(b, t, self.heads, hs).transpose(1, 2) for z in qkv(x).split(self.width, dim=2))
            att = torch.softmax(q @ k.transpose(2, 3) / hs**0.5, dim=-1)
            x = norm(proj((att @ v).transpose(1, 2).contiguous().view(b, t, self.width)))
        return self.head(x.mean(dim=1))


# Models added later (built after OPS, so that earlier ones keep their
# weights). `ts_opset` exports with TorchScript only, at that opset: before
# 17, LayerNorm is spelled out op by op.
LATER = [
    ("attention_ln_opset11", PostNormAttention(), (0.1 * torch.rand(1, 8, 32, generator=gen),), {"ts_opset": 11}),
]


def export(module, args, path, dynamo, opset=17):
    if dynamo:
        torch.onnx.export(module, args, path, dynamo=True, opset_version=18, external_data=False)
    else:
        torch.onnx.export(module, args, path, dynamo=False, opset_version=opset)


def write(name, module, args, extra, dynamo):
    path = os.path.join(HERE, f"torch_{name}_{'dy' if dynamo else 'ts'}.onnx")
    extra = dict(extra)
    export(module, args, path, dynamo, extra.pop("ts_opset", 17))
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
    # With names, only those models are (re)written; without, all of them.
    only = set(sys.argv[1:])
    if not only:
        for old in os.listdir(HERE):
            if old.startswith("torch_") and old.endswith((".onnx", ".json", ".data")):
                os.remove(os.path.join(HERE, old))
    n = 0
    models = MODELS + [(f"op_{name}", module, args, {}) for name, (module, args) in OPS.items()] + LATER
    for name, module, args, extra in models:
        if only and name not in only:
            continue
        snap(module)
        for dynamo in (False, True) if "ts_opset" not in extra else (False,):
            try:
                write(name, module, args, extra, dynamo)
                n += 1
            except Exception as e:  # the exporter's own limits
                print(f"not exported: {name} ({'dynamo' if dynamo else 'TorchScript'}): {str(e).splitlines()[0][:120]}")
                for ext in (".onnx", ".json"):
                    path = os.path.join(HERE, f"torch_{name}_{'dy' if dynamo else 'ts'}{ext}")
                    if os.path.exists(path):
                        os.remove(path)
    print(f"wrote {n} PyTorch exports to {HERE}")
