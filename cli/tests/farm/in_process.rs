//! A farm started inside the test process through the libraries — the
//! coordinator crate's `Coordinator`, the worker crate's `LocalWorkers` and
//! the client crate's `FarmClient` — as benchmarks and embedders start one.

use std::sync::Arc;

use zkfarm_attest::{TeePolicy, Trust, WorkerKey};
use zkfarm_client::{ClientConfig, FarmClient};
use zkfarm_coordinator::{Coordinator, FarmConfig, StartOptions};
use zkfarm_proto::v1::{InferenceRequest, SubmitJobRequest};
use zkfarm_proto::{JobState, Tier};
use zkfarm_prover::{Engine, KeyCache, Prover, Receipt, Srs, VerifierKey};
use zkfarm_worker::{LocalSpec, LocalWorkers};

use crate::harness::{examples, serial, srs};

#[test]
fn a_farm_started_through_the_libraries_serves_every_tier() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let srs = Arc::new(Srs::load(srs()).unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut config = FarmConfig::new(home.path().join("farm"));
        config.tee = TeePolicy { allow_insecure: true, ..TeePolicy::default() };
        let opts = StartOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            config,
            tls: None,
            worker_token: None,
            api_keys_file: None,
        };
        let coordinator = Coordinator::start(opts, srs.clone()).await.unwrap();
        let url = coordinator.url().unwrap();
        let api_key = std::fs::read_to_string(coordinator.api_key_path()).unwrap().trim().to_string();
        let spec = LocalSpec {
            coordinator: url.clone(),
            tls_ca: None,
            token: coordinator.worker_token.clone(),
            prover: Arc::new(Prover::new(
                srs.clone(),
                Arc::new(KeyCache::new(home.path().join("keys")).unwrap()),
                Engine::cpu(),
            )),
            identity_dir: home.path().to_path_buf(),
            tee: Some("dev".into()),
            allow_insecure_tee: true,
            cheap_lanes: 1,
            drain_timeout: std::time::Duration::from_secs(5),
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(coordinator.serve(async move {
            let _ = stopped.await;
        }));
        let workers = LocalWorkers::spawn(1, &spec).unwrap();

        let mut client = FarmClient::connect(&ClientConfig { coordinator: url, api_key, tls_ca: None }).await.unwrap();
        let onnx = std::fs::read(examples().join("mlp.onnx")).unwrap();
        let model = client.register_model(onnx, String::new(), "mlp.onnx".into()).await.unwrap();
        let input = std::fs::read_to_string(examples().join("mlp.input.json")).unwrap();
        let tiers = [Tier::Signed, Tier::Tee, Tier::Zk];
        let requests = tiers.iter().map(|&t| InferenceRequest { input_json: input.clone(), tier: t as i32 }).collect();
        let req = SubmitJobRequest {
            model_id: model.model_id,
            requests,
            priority: 0,
            idempotency_key: String::new(),
            ..Default::default()
        };
        let job = client.submit(req).await.unwrap();
        let done = client.follow(&job.job_id, |_| {}).await.unwrap();
        assert_eq!(done.state, JobState::Done as i32, "{done:?}");

        // Every receipt verifies offline against the trust inputs the
        // coordinator hands out, and each is of the tier its request asked.
        let dir = home.path().join("receipts");
        assert_eq!(client.write_receipts(&job.job_id, &dir).await.unwrap(), 3);
        let trust_in = client.trust(vec![model.vk_hash.clone()], 0).await.unwrap();
        let mut trust = Trust {
            srs: Some(srs.clone()),
            tee: TeePolicy { allow_insecure: true, ..TeePolicy::default() },
            ..Trust::default()
        };
        trust.add_vk(VerifierKey::from_json(&trust_in.vk_json[0]).unwrap());
        trust.add_worker_keys(
            trust_in
                .worker_keys
                .iter()
                .map(|k| WorkerKey { worker_id: k.worker_id.clone(), public_key: hex::encode(&k.public_key) }),
        );
        for (i, tier) in tiers.iter().enumerate() {
            let r = Receipt::load(&dir.join(format!("request-{i:05}.json"))).unwrap();
            assert_eq!(r.tier.as_str(), tier.name());
            let verdict = trust.verify(&r).unwrap();
            // The dev SRS and the dev TEE provider are reported as insecure.
            assert_eq!(verdict.insecure.is_empty(), *tier == Tier::Signed, "{:?}", verdict.insecure);
            let mut forged = r.clone();
            forged.outputs[0][0] += 0.25;
            assert!(trust.verify(&forged).is_err(), "a changed {} output is caught", r.tier);
        }

        drop(workers);
        let _ = stop.send(());
        served.await.unwrap().unwrap();
    });
}
