//! The gRPC API directly: statuses and messages for bad requests, results
//! from a dishonest worker, cancellation and concurrent clients.

use std::time::Duration;

use tonic::Code;
use zkfarm_attest::Identity;
use zkfarm_circuits::input::parse_input;
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_proto::net::{self, AuthChannel, Bearer};
use zkfarm_proto::v1::prover_farm_client::ProverFarmClient;
use zkfarm_proto::v1::worker_link_client::WorkerLinkClient;
use zkfarm_proto::v1::*;
use zkfarm_proto::Tier;

use crate::harness::*;

type Client = ProverFarmClient<AuthChannel>;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap()
}

async fn client(c: &Coordinator, key: &str) -> Client {
    let ch = net::connect(&c.url(), None).await.unwrap();
    ProverFarmClient::with_interceptor(ch, Bearer::new(key).unwrap()).max_encoding_message_size(64 << 20)
}

fn mlp() -> Vec<u8> {
    std::fs::read(examples().join("mlp.onnx")).unwrap()
}

fn mlp_input() -> String {
    std::fs::read_to_string(examples().join("mlp.input.json")).unwrap()
}

async fn register(farm: &mut Client) -> String {
    let r = farm
        .register_model(RegisterModelRequest { onnx: mlp(), settings_json: String::new(), name: "mlp".into() })
        .await
        .unwrap();
    r.into_inner().model_id
}

fn request(input: &str, tier: Tier) -> InferenceRequest {
    InferenceRequest { input_json: input.to_string(), tier: tier as i32 }
}

async fn submit(
    farm: &mut Client,
    model_id: &str,
    reqs: Vec<InferenceRequest>,
    key: &str,
) -> Result<String, tonic::Status> {
    let r = SubmitJobRequest {
        model_id: model_id.into(),
        requests: reqs,
        priority: 0,
        idempotency_key: key.into(),
        ..Default::default()
    };
    farm.submit_job(r).await.map(|r| r.into_inner().job_id)
}

fn expect(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, needle: &str) {
    let e = r.expect_err("the request must be refused");
    assert_eq!(e.code(), code, "{e:?}");
    assert!(e.message().contains(needle), "{:?} should mention {needle:?}", e.message());
}

async fn wait_done(farm: &mut Client, job_id: &str) -> Job {
    for _ in 0..1200 {
        let job =
            farm.get_job(GetJobRequest { job_id: job_id.into(), include_tasks: true }).await.unwrap().into_inner();
        if job.state != JobState::Running as i32 {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("job {job_id} did not finish");
}

/// The first answer to `list_jobs` for which `done` holds, or the last one
/// after 10 s.
async fn list_until(
    farm: &mut Client,
    done: impl Fn(&Result<tonic::Response<ListJobsResponse>, tonic::Status>) -> bool,
) -> Result<tonic::Response<ListJobsResponse>, tonic::Status> {
    for _ in 0..50 {
        let r = farm.list_jobs(ListJobsRequest { limit: 1 }).await;
        if done(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    farm.list_jobs(ListJobsRequest { limit: 1 }).await
}

/// `zkfarm apikey create` and `revoke` reach a coordinator that is serving.
async fn api_keys_made_and_revoked_while_serving(c: &Coordinator) {
    let data = c.data.to_str().unwrap();
    let made = c.cli_json(&["apikey", "create", "bob", "--data", data]);
    let mut bob = client(c, made["api_key"].as_str().unwrap()).await;
    let accepted = list_until(&mut bob, |r| r.is_ok()).await;
    assert!(accepted.is_ok(), "a key made while serving was not accepted within 10 s");
    let listed = c.cli_json(&["apikey", "list", "--data", data]);
    assert!(listed["clients"].as_array().unwrap().iter().any(|k| k["name"] == "bob"), "{listed}");

    assert_eq!(c.cli_json(&["apikey", "revoke", "bob", "--data", data])["revoked"], 1);
    let e = list_until(&mut bob, |r| r.is_err()).await.expect_err("a revoked key was still accepted after 10 s");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    let again = c.cli(&["apikey", "revoke", "bob", "--data", data]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no API key belongs to client `bob`"));
}

#[test]
fn bad_requests_get_the_right_status_and_a_clear_message() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let c = Coordinator::start(
        home.path(),
        "coordinator",
        &["--max-input-bytes", "100000", "--max-model-bytes", "1000000", "--max-batch", "50"],
    );
    rt().block_on(async {
        let mut bad = client(&c, "zkf_not_a_key").await;
        expect(bad.list_jobs(ListJobsRequest { limit: 1 }).await, Code::Unauthenticated, "invalid API key");
        api_keys_made_and_revoked_while_serving(&c).await;
        let mut farm = client(&c, &c.api_key()).await;
        let model_id = register(&mut farm).await;
        let input = mlp_input();

        expect(
            submit(&mut farm, "no-such-model", vec![request(&input, Tier::Signed)], "").await,
            Code::NotFound,
            "unknown model",
        );
        expect(
            submit(&mut farm, &model_id, vec![request(r#"{"input_data": [[1, 2, 3]]}"#, Tier::Signed)], "").await,
            Code::InvalidArgument,
            "expects shape",
        );
        let nan = input.replacen("0.", "NaN, 0.", 1);
        expect(
            submit(&mut farm, &model_id, vec![request(&nan, Tier::Signed)], "").await,
            Code::InvalidArgument,
            "not valid JSON",
        );
        let nan_str = r#"{"input_data": [["NaN"]]}"#;
        expect(
            submit(&mut farm, &model_id, vec![request(nan_str, Tier::Zk)], "").await,
            Code::InvalidArgument,
            "not a number",
        );
        let huge = format!(r#"{{"input_data": [[{}0]]}}"#, "0, ".repeat(40_000));
        expect(
            submit(&mut farm, &model_id, vec![request(&huge, Tier::Signed)], "").await,
            Code::ResourceExhausted,
            "100000 bytes",
        );
        let many = (0..51).map(|_| request(&input, Tier::Signed)).collect();
        expect(submit(&mut farm, &model_id, many, "").await, Code::ResourceExhausted, "up to 50");
        expect(
            submit(&mut farm, &model_id, vec![request(&input, Tier::Unspecified)], "").await,
            Code::InvalidArgument,
            "tier",
        );
        expect(submit(&mut farm, &model_id, vec![], "").await, Code::InvalidArgument, "no requests");

        let big = RegisterModelRequest { onnx: vec![7u8; 2_000_000], settings_json: String::new(), name: "big".into() };
        expect(farm.register_model(big).await, Code::ResourceExhausted, "up to 1000000 bytes");
        let junk =
            RegisterModelRequest { onnx: b"not onnx".to_vec(), settings_json: String::new(), name: "junk".into() };
        expect(farm.register_model(junk).await, Code::InvalidArgument, "does not compile");
        let settings =
            RegisterModelRequest { onnx: mlp(), settings_json: "{\"lanes\": \"x\"}".into(), name: "s".into() };
        expect(farm.register_model(settings).await, Code::InvalidArgument, "settings");
        expect(
            farm.get_job(GetJobRequest { job_id: "j-nope".into(), include_tasks: false }).await,
            Code::NotFound,
            "unknown job",
        );

        let ch = net::connect(&c.url(), None).await.unwrap();
        let mut worker = WorkerLinkClient::with_interceptor(ch, Bearer::new("zkw_wrong").unwrap());
        let reg = RegisterWorkerRequest {
            name: "x".into(),
            capabilities: None,
            public_key: vec![0; 32],
            worker_id: String::new(),
        };
        expect(worker.register(reg).await, Code::Unauthenticated, "worker token");
    });
}

#[test]
fn a_dishonest_worker_is_caught_and_a_finished_task_keeps_its_first_receipt() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let c = Coordinator::start(home.path(), "coordinator", &[]);
    let model = CompiledModel::compile(&mlp(), &Settings::default()).unwrap();
    rt().block_on(async {
        let mut farm = client(&c, &c.api_key()).await;
        let model_id = register(&mut farm).await;
        let input = mlp_input();
        let job_id = submit(&mut farm, &model_id, vec![request(&input, Tier::Signed), request(&input, Tier::Zk)], "")
            .await
            .unwrap();

        let ch = net::connect(&c.url(), None).await.unwrap();
        let mut link = WorkerLinkClient::with_interceptor(ch, Bearer::new(&c.worker_token()).unwrap());
        let me = Identity::ephemeral();
        let caps = Capabilities {
            engine: "cpu".into(),
            tiers: vec![Tier::Zk as i32, Tier::Signed as i32],
            ..Default::default()
        };
        let reg = RegisterWorkerRequest {
            name: "liar".into(),
            capabilities: Some(caps),
            public_key: me.public_key().to_vec(),
            worker_id: String::new(),
        };
        let worker_id = link.register(reg).await.unwrap().into_inner().worker_id;
        let poller = link.clone();
        let poll = || {
            let mut l = poller.clone();
            let w = worker_id.clone();
            async move {
                l.poll_task(PollTaskRequest { worker_id: w, wait_ms: 2000, tiers: vec![] })
                    .await
                    .unwrap()
                    .into_inner()
                    .task
                    .unwrap()
            }
        };
        let honest = |t: &TaskAssignment| {
            let tier = Tier::try_from(t.tier).unwrap().name().parse().unwrap();
            let mut r = zkfarm_prover::infer(&model, &parse_input(&t.input_json).unwrap(), tier).unwrap().receipt;
            r.job_id = Some(t.job_id.clone());
            r.task_id = Some(t.task_id.clone());
            r.timestamp_ms = Some(1);
            r
        };
        let report = |t: &TaskAssignment, r: &zkfarm_prover::Receipt| ReportResultRequest {
            worker_id: worker_id.clone(),
            task_id: t.task_id.clone(),
            attempt: t.attempt,
            receipt_json: r.to_json(),
            duration_ms: 1,
        };

        // Signed by a key that is not the worker's registered key.
        let t = poll().await;
        assert_eq!(t.tier, Tier::Signed as i32);
        let mut r = honest(&t);
        Identity::ephemeral().sign(&mut r, &worker_id);
        let resp = link.report_result(report(&t, &r)).await.unwrap().into_inner();
        assert!(!resp.accepted && resp.reason.contains("registered key"), "{}", resp.reason);

        // Properly signed, but claiming another task.
        let t = poll().await;
        assert_eq!(t.attempt, 2);
        let mut r = honest(&t);
        r.task_id = Some(format!("{job_id}-00001"));
        me.sign(&mut r, &worker_id);
        let resp = link.report_result(report(&t, &r)).await.unwrap().into_inner();
        assert!(!resp.accepted && resp.reason.contains("another job or task"), "{}", resp.reason);

        // Honest at last: accepted once, and a second report changes nothing.
        let t = poll().await;
        let mut r = honest(&t);
        me.sign(&mut r, &worker_id);
        assert!(link.report_result(report(&t, &r)).await.unwrap().into_inner().accepted);
        let mut other = honest(&t);
        other.timestamp_ms = Some(2);
        me.sign(&mut other, &worker_id);
        let resp = link.report_result(report(&t, &other)).await.unwrap().into_inner();
        assert!(!resp.accepted && resp.reason.contains("already done"), "{}", resp.reason);

        // A zk receipt whose outputs are not the model's, then a forged proof.
        let t = poll().await;
        assert_eq!(t.tier, Tier::Zk as i32);
        let mut r = honest(&t);
        r.outputs[0][3] += 1.0;
        r.vk_hash = t.vk_hash.clone();
        r.proof = "00".repeat(800);
        let resp = link.report_result(report(&t, &r)).await.unwrap().into_inner();
        assert!(!resp.accepted && resp.reason.contains("not the model's outputs"), "{}", resp.reason);
        let t = poll().await;
        let mut r = honest(&t);
        r.vk_hash = t.vk_hash.clone();
        r.srs_id = zkfarm_prover::Srs::load(srs()).unwrap().id;
        r.instances = vec![format!("0x{}", "00".repeat(32)); 10];
        r.proof = "00".repeat(800);
        let resp = link.report_result(report(&t, &r)).await.unwrap().into_inner();
        assert!(!resp.accepted, "a forged proof is refused");

        let job =
            farm.get_job(GetJobRequest { job_id: job_id.clone(), include_tasks: true }).await.unwrap().into_inner();
        assert_eq!(job.done, 1);
        assert_eq!(job.tasks[1].retries, 2, "rejected receipts spend the retry budget");
        let receipts = farm.get_receipts(GetReceiptsRequest { job_id: job_id.clone() }).await.unwrap().into_inner();
        assert_eq!(receipts.receipts.len(), 1);
        let kept = zkfarm_prover::Receipt::from_json(&receipts.receipts[0].receipt_json).unwrap();
        assert_eq!(kept.timestamp_ms, Some(1), "the first receipt is kept");

        // Cancelling the job ends it; the worker's lease is dropped.
        let cancelled = farm.cancel_job(CancelJobRequest { job_id: job_id.clone() }).await.unwrap().into_inner();
        assert_eq!(cancelled.state, JobState::Cancelled as i32);
        assert_eq!(cancelled.cancelled, 1);
    });
    assert!(metric(&c.metrics(), "zkfarm_receipts_rejected_total", &[]) >= 4.0);
}

#[test]
fn several_clients_at_once() {
    let _g = serial();
    let home = tempfile::tempdir().unwrap();
    let c = Coordinator::start(
        home.path(),
        "serve",
        &["--workers", "2", "--engine", "cpu", "--tee", "dev", "--allow-insecure-tee"],
    );
    rt().block_on(async {
        let mut farm = client(&c, &c.api_key()).await;
        let model_id = register(&mut farm).await;
        let input = mlp_input();
        let mut handles = Vec::new();
        for i in 0..8 {
            let (mut f, m, inp) = (farm.clone(), model_id.clone(), input.clone());
            // Clients 6 and 7 send the same idempotency key: one job between them.
            let key = if i >= 6 { "shared".to_string() } else { format!("client-{i}") };
            handles.push(tokio::spawn(async move {
                let reqs = vec![request(&inp, Tier::Signed), request(&inp, Tier::Tee), request(&inp, Tier::Signed)];
                let job_id = submit(&mut f, &m, reqs, &key).await.unwrap();
                let job = wait_done(&mut f, &job_id).await;
                (job_id, job)
            }));
        }
        let mut ids = Vec::new();
        for h in handles {
            let (id, job) = h.await.unwrap();
            assert_eq!(job.state, JobState::Done as i32);
            assert_eq!(job.done, 3);
            ids.push(id);
        }
        assert_eq!(ids[6], ids[7]);
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7);
        let stats = farm.get_stats(GetStatsRequest {}).await.unwrap().into_inner();
        let signed = stats.tiers.iter().find(|t| t.tier == Tier::Signed as i32).unwrap();
        assert_eq!(signed.done, 14);
        assert!(signed.p95_ms >= signed.p50_ms);
    });
}
