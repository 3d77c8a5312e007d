//! Real KZG proofs of the bundled examples, verified by halo2-axiom's verifier,
//! and tampered receipts rejected.

use std::path::PathBuf;
use std::sync::OnceLock;

use rand::SeedableRng;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::engine::Engine;
use zkfarm_prover::keys::KeySource;
use zkfarm_prover::{prove, verify, KeyCache, ProveOptions, Receipt, Srs, VerifierKey};

fn srs() -> &'static Srs {
    static SRS: OnceLock<Srs> = OnceLock::new();
    SRS.get_or_init(|| Srs::generate_insecure_dev(15, rand_chacha::ChaCha20Rng::seed_from_u64(7)).unwrap())
}

fn example(name: &str) -> (CompiledModel, Vec<Vec<f64>>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
    let input = read_input(&dir.join(format!("{name}.input.json"))).unwrap();
    (CompiledModel::compile(&onnx, &Settings::default()).unwrap(), input)
}

fn prove_example(name: &str, cache: &KeyCache) -> (Receipt, VerifierKey) {
    let (model, input) = example(name);
    let (keys, _) = cache.get_or_create(&model, srs()).unwrap();
    let params = Engine::cpu().params(srs(), model.k).unwrap();
    let receipt = prove(&model, &keys, &params, &srs().id, &input, &ProveOptions::default()).unwrap();
    (receipt, keys.vk)
}

#[test]
fn examples_prove_and_verify_and_tampering_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cache = KeyCache::new(dir.path().to_path_buf()).unwrap();
    let mut keys = Vec::new();
    for name in ["mlp", "lenet", "nonlinear", "lstm", "forest"] {
        let (receipt, vk) = prove_example(name, &cache);
        verify(&receipt, &vk, srs()).unwrap_or_else(|e| panic!("{name}: {e:#}"));

        // An output changed.
        let mut bad = receipt.clone();
        bad.outputs[0][0] += 1.0;
        assert!(verify(&bad, &vk, srs()).is_err(), "{name}: changed output accepted");
        // The output and its instance changed together: the proof no longer verifies.
        let mut bad = receipt.clone();
        bad.outputs[0][0] += 1.0 / 128.0;
        let q: i64 = (bad.outputs[0][0] * 128.0).round() as i64;
        bad.instances[0] = instance_hex(q);
        let err = verify(&bad, &vk, srs()).unwrap_err();
        assert!(format!("{err:#}").contains("does not verify"), "{name}: {err:#}");
        // A proof byte flipped.
        let mut bad = receipt.clone();
        let mut proof = hex::decode(&bad.proof).unwrap();
        let mid = proof.len() / 2;
        proof[mid] ^= 1;
        bad.proof = hex::encode(proof);
        assert!(verify(&bad, &vk, srs()).is_err(), "{name}: flipped proof accepted");
        // Bytes appended to a valid proof.
        let mut bad = receipt.clone();
        bad.proof.push_str("00");
        assert!(verify(&bad, &vk, srs()).is_err(), "{name}: proof with trailing bytes accepted");
        keys.push((receipt, vk));
    }
    // Another model's verifying key, with the receipt relabelled to match it.
    let (mlp_receipt, _) = &keys[0];
    let (_, lenet_vk) = &keys[1];
    assert!(verify(mlp_receipt, lenet_vk, srs()).is_err());
    let mut relabelled = mlp_receipt.clone();
    relabelled.vk_hash = lenet_vk.hash.clone();
    relabelled.model_hash = lenet_vk.meta.model_hash.clone();
    relabelled.circuit_hash = lenet_vk.meta.circuit_hash.clone();
    relabelled.k = lenet_vk.meta.k;
    assert!(verify(&relabelled, lenet_vk, srs()).is_err());

    // A larger SRS of the same τ (same id) verifies the same receipts, from
    // g[0], g2 and s·g2 alone, and still rejects a changed proof.
    let larger = Srs::generate_insecure_dev(16, rand_chacha::ChaCha20Rng::seed_from_u64(7)).unwrap();
    assert_eq!(larger.id, srs().id);
    verify(mlp_receipt, &keys[0].1, &larger).unwrap();
    let mut bad = mlp_receipt.clone();
    let mut proof = hex::decode(&bad.proof).unwrap();
    proof[100] ^= 1;
    bad.proof = hex::encode(proof);
    assert!(verify(&bad, &keys[0].1, &larger).is_err());

    // The cache serves the second request from disk, and the key is found by hash.
    let (model, _) = example("mlp");
    let (_, source) = cache.get_or_create(&model, srs()).unwrap();
    assert_eq!(source, KeySource::Disk);
    assert!(cache.find_vk(&keys[0].1.hash).unwrap().is_some());
}

fn instance_hex(q: i64) -> String {
    use halo2_proofs::halo2curves::ff::PrimeField;
    let f = zkfarm_circuits::circuit::fe(q as i128);
    let mut b = f.to_repr().as_ref().to_vec();
    b.reverse();
    format!("0x{}", hex::encode(b))
}
