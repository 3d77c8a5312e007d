//! The transformer example end to end: the nanoGPT-class decoder
//! (examples/tiny_gpt.onnx, int64 token ids in, logits out) compiles under its
//! calibrated settings, proves with our prover, verifies with halo2-axiom's
//! verifier, tracks tract's float logits and picks the same next token at
//! every position; a changed logit is rejected.

use std::path::PathBuf;

use rand::SeedableRng;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::engine::Engine;
use zkfarm_prover::{prove, verify, KeyCache, ProveOptions, Srs};

const VOCAB: usize = 65;

fn argmax(v: &[f64]) -> usize {
    v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0)
}

#[test]
fn tiny_gpt_proves_verifies_and_tracks_tract() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join("tiny_gpt.onnx")).unwrap();
    let input = read_input(&dir.join("tiny_gpt.input.json")).unwrap();
    let settings = Settings::from_json(&std::fs::read_to_string(dir.join("tiny_gpt.settings.json")).unwrap()).unwrap();
    let model = CompiledModel::compile(&onnx, &settings).unwrap();

    let srs = Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(11)).unwrap();
    let keydir = tempfile::tempdir().unwrap();
    let cache = KeyCache::new(keydir.path().to_path_buf()).unwrap();
    let (keys, _) = cache.get_or_create(&model, &srs).unwrap();
    let params = Engine::cpu().params(&srs, model.k).unwrap();
    let receipt = prove(&model, &keys, &params, &srs.id, &input, &ProveOptions::default()).unwrap();
    verify(&receipt, &keys.vk, &srs).unwrap();

    let float = FloatModel::load(&onnx, &model.program.input_shapes).unwrap().run(&input).unwrap();
    let (ours, want) = (&receipt.outputs[0], &float[0]);
    assert_eq!(ours.len(), want.len());
    let worst = ours.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst <= 0.1, "logits off by {worst}");
    for (pos, (a, b)) in ours.chunks(VOCAB).zip(want.chunks(VOCAB)).enumerate() {
        assert_eq!(argmax(a), argmax(b), "next token at position {pos}");
    }

    let mut bad = receipt.clone();
    bad.outputs[0][VOCAB + 3] += 0.5;
    assert!(verify(&bad, &keys.vk, &srs).is_err(), "a changed logit was accepted");
}
