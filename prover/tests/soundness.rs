//! A dishonest witness through zkfarm's own prover: a compiled model's
//! circuit with one advice cell changed (the circuit's tamper hook) either
//! makes the prover refuse (a lookup input missing from its table) or yields
//! a proof halo2-axiom's verifier rejects. Cells are sampled across the
//! whole witness, so gates, lookups and copies are all exercised.

use std::path::PathBuf;
use std::sync::Arc;

use halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_proofs::plonk::verify_proof;
use halo2_proofs::poly::kzg::commitment::KZGCommitmentScheme;
use halo2_proofs::poly::kzg::multiopen::VerifierSHPLONK;
use halo2_proofs::poly::kzg::strategy::SingleStrategy;
use halo2_proofs::transcript::{Blake2bRead, Blake2bWrite, Challenge255, TranscriptReadBuffer, TranscriptWriterBuffer};
use rand::SeedableRng;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::input::read_input;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};
use zkfarm_plonk::{create_proof, ProveError, ProvingData};
use zkfarm_prover::commit::EngineParams;
use zkfarm_prover::prove::cpu_backend;
use zkfarm_prover::{KeyCache, Srs};

enum Outcome {
    Verified,
    Rejected,
    Refused(String),
}

#[test]
fn a_changed_advice_cell_is_refused_or_rejected() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let onnx = std::fs::read(dir.join("nonlinear.onnx")).unwrap();
    let input = read_input(&dir.join("nonlinear.input.json")).unwrap();
    let settings = Settings { input_scale: 5, param_scale: 5, lookup_bits: 9, ..Settings::default() };
    let model = CompiledModel::compile(&onnx, &settings).unwrap();
    let srs = Srs::generate_insecure_dev(model.k, rand_chacha::ChaCha20Rng::seed_from_u64(5)).unwrap();
    let key_dir = tempfile::tempdir().unwrap();
    let (keys, _) = KeyCache::new(key_dir.path().to_path_buf()).unwrap().get_or_create(&model, &srs).unwrap();
    let kzg = srs.for_k(model.k).unwrap();
    let params = EngineParams::cpu(kzg.clone());
    let backend = cpu_backend(&keys.pk, &params);
    let data = ProvingData::new(&backend, &keys.pk).unwrap();
    let witness = Arc::new(model.run(&input).unwrap());
    let inst: Vec<Fr> = instances(&model.program, &witness);

    let attempt = |tamper: Option<usize>| -> Outcome {
        let mut circuit = ModelCircuit::new(model.program.clone(), Some(witness.clone()));
        circuit.tamper = tamper;
        let mut transcript = Blake2bWrite::<_, G1Affine, Challenge255<_>>::init(vec![]);
        let rng = rand_chacha::ChaCha20Rng::seed_from_u64(9);
        match create_proof(&backend, &keys.pk, &data, &circuit, &[&inst], rng, &mut transcript) {
            Err(e @ ProveError::Lookup { .. }) => return Outcome::Refused(e.to_string()),
            Err(e) => panic!("tamper {tamper:?}: unexpected error {e}"),
            Ok(_) => {}
        }
        let proof = transcript.finalize();
        let mut reader = Blake2bRead::<_, G1Affine, Challenge255<_>>::init(&proof[..]);
        let ok = verify_proof::<KZGCommitmentScheme<Bn256>, VerifierSHPLONK<'_, Bn256>, _, _, _>(
            &*kzg,
            &keys.vk.vk,
            SingleStrategy::new(&*kzg),
            &[&[&inst]],
            &mut reader,
        )
        .is_ok();
        if ok {
            Outcome::Verified
        } else {
            Outcome::Rejected
        }
    };

    assert!(matches!(attempt(None), Outcome::Verified), "the honest witness must verify");
    let cells: usize = model.program.steps.iter().map(|(s, _)| s.advice_cells(model.program.settings.lanes)).sum();
    let samples = 16;
    // A changed lookup input that stays inside its table is caught by the
    // verifier like any other: the prover refuses only values the table
    // lacks.
    let (mut rejected, mut refused) = (0, 0);
    for i in 0..samples {
        let cell = i * (cells - 1) / (samples - 1);
        match attempt(Some(cell)) {
            Outcome::Verified => panic!("a proof with advice cell {cell} of {cells} changed verified"),
            Outcome::Rejected => rejected += 1,
            Outcome::Refused(why) => {
                assert!(why.starts_with("lookup "), "{why}");
                refused += 1;
            }
        }
    }
    assert_eq!(rejected + refused, samples);
}
