//! The `zkfarm` binary end to end: srs gen, prove, verify, inspect, calibrate,
//! and one-line errors with a non-zero exit on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn zkfarm(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zkfarm")).args(args).env("ZKFARM_HOME", home).output().expect("zkfarm runs")
}

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prove_then_verify_and_reject_tampering() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = examples().join("nonlinear.onnx");
    let input = examples().join("nonlinear.input.json");
    let receipt = h.join("receipt.json");
    let (model, input, receipt_s) = (model.to_str().unwrap(), input.to_str().unwrap(), receipt.to_str().unwrap());

    // Without an SRS, proving says how to get one.
    let o = zkfarm(h, &["prove", "--model", model, "--input", input, "-o", receipt_s]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("zkfarm srs gen"), "{}", stderr(&o));

    assert!(!zkfarm(h, &["srs", "gen", "--k", "15"]).status.success(), "srs gen needs --insecure-dev");
    let o = zkfarm(h, &["srs", "gen", "--k", "15", "--insecure-dev"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("INSECURE"));

    let o = zkfarm(h, &["--json", "prove", "--model", model, "--input", input, "-o", receipt_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The fixed costs before proving are reported apart from it.
    let p: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for cost in ["load_srs", "load_keys", "witness"] {
        assert!(p["fixed_seconds"][cost].as_f64().is_some_and(|s| s >= 0.0), "{p}");
    }
    // And the prover's steps, which account for most of the proof's time.
    let steps = p["steps_seconds"].as_object().expect("steps_seconds");
    assert_eq!(steps.len(), 8, "{p}");
    let sum: f64 = steps.values().map(|v| v.as_f64().unwrap()).sum();
    assert!(sum > 0.0 && sum <= p["seconds"].as_f64().unwrap(), "{p}");
    assert_eq!(p["keys"], "generated");
    let o = zkfarm(h, &["--json", "verify", receipt_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["valid"], true);

    // Change one output: verify must exit non-zero with one error line.
    let mut r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&receipt).unwrap()).unwrap();
    r["outputs"][0][1] = serde_json::json!(0.99);
    let bad = h.join("bad.json");
    std::fs::write(&bad, r.to_string()).unwrap();
    let o = zkfarm(h, &["verify", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).lines().any(|l| l.starts_with("error: ") && l.contains("output 1")), "{}", stderr(&o));

    // Inspect reports the circuit's size.
    let o = zkfarm(h, &["--json", "inspect", "--model", model]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["k"], 15);
    assert!(v["rows_by_op"]["Softmax"].as_u64().unwrap() > 0);
}

#[test]
fn bad_inputs_exit_non_zero_with_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let mlp = examples().join("mlp.onnx");
    let garbage = h.join("garbage.onnx");
    std::fs::write(&garbage, b"not an onnx file").unwrap();
    let short = h.join("short.json");
    std::fs::write(&short, r#"{"input_data": [[1, 2, 3]]}"#).unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["inspect", "--model", garbage.to_str().unwrap()], "not a valid ONNX model"),
        (&["inspect", "--model", "/nonexistent/model.onnx"], "No such file"),
        (&["verify", "/nonexistent/receipt.json"], "No such file"),
        (&["calibrate", "--model", mlp.to_str().unwrap(), "--data", short.to_str().unwrap()], "expects shape"),
    ];
    for (args, want) in cases {
        let o = zkfarm(h, args);
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

#[test]
fn calibrate_writes_settings_that_compile() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = examples().join("nonlinear.onnx");
    let input = examples().join("nonlinear.input.json");
    let settings = h.join("settings.json");
    let o = zkfarm(
        h,
        &[
            "calibrate",
            "--model",
            model.to_str().unwrap(),
            "--data",
            input.to_str().unwrap(),
            "--max-k",
            "14",
            "-o",
            settings.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o =
        zkfarm(h, &["--json", "inspect", "--model", model.to_str().unwrap(), "--settings", settings.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["k"].as_u64().unwrap() <= 14);
}

/// `wide_nodes` in the settings widens table functions: inspect names them,
/// counts their rows and lists any precision they lose; a name that is not a
/// node is one clear error.
#[test]
fn inspect_reports_wide_table_nodes() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = examples().join("nonlinear.onnx");
    let inspect = |settings: &str| {
        let path = h.join("settings.json");
        std::fs::write(&path, settings).unwrap();
        zkfarm(h, &["--json", "inspect", "--model", model.to_str().unwrap(), "--settings", path.to_str().unwrap()])
    };
    let rows = |o: &Output| {
        assert!(o.status.success(), "{}", stderr(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v["rows"].as_u64().unwrap(), v)
    };
    let (narrow, _) = rows(&inspect("{}"));
    let (wide, v) = rows(&inspect(r#"{"wide_nodes": ["*"]}"#));
    assert!(wide > narrow, "{wide} rows widened against {narrow}");
    assert_eq!(v["settings"]["wide_nodes"], serde_json::json!(["*"]));
    assert!(v["precision_notes"].is_array(), "{v}");
    let o = inspect(r#"{"wide_nodes": ["no_such_node"]}"#);
    assert!(!o.status.success());
    let said = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(said.contains("`no_such_node`, which is not a node"), "{said}");
}

/// With a tolerance, calibrate picks the smallest circuit within it: the
/// forest, whose rows are few, gets a table (and k) far below the default's,
/// and its chosen error is within the tolerance; without one, the most
/// accurate setting.
#[test]
fn calibrate_with_a_tolerance_picks_the_smallest_circuit_within_it() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = examples().join("forest.onnx");
    let input = examples().join("forest.input.json");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args =
            vec!["--json", "calibrate", "--model", model.to_str().unwrap(), "--data", input.to_str().unwrap()];
        args.extend(extra);
        let o = zkfarm(h, &args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let tolerant = run(&["--tolerance", "0.01"]);
    let best = run(&[]);
    let (k_tolerant, k_best) = (tolerant["chosen"]["k"].as_u64().unwrap(), best["chosen"]["k"].as_u64().unwrap());
    assert!(tolerant["chosen"]["max_abs_error"].as_f64().unwrap() <= 0.01, "{tolerant}");
    assert!(k_tolerant < k_best && k_tolerant <= 12, "{k_tolerant} against {k_best}");
    let tried = tolerant["tried"].as_array().unwrap();
    let smallest_within =
        tried.iter().filter(|c| c["max_abs_error"].as_f64().unwrap() <= 0.01).map(|c| c["k"].as_u64().unwrap()).min();
    assert_eq!(Some(k_tolerant), smallest_within);
}

#[test]
fn srs_import_takes_checked_ceremony_parameters_and_refuses_a_cut_file() {
    use halo2_proofs::halo2curves::bn256::Bn256;
    use halo2_proofs::poly::commitment::Params;
    use halo2_proofs::poly::kzg::commitment::ParamsKZG;
    use rand::SeedableRng;

    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // A ceremony's file as halo2-axiom writes it.
    let params = ParamsKZG::<Bn256>::setup(6, rand_chacha::ChaCha20Rng::seed_from_u64(5));
    let mut bytes = Vec::new();
    params.write(&mut bytes).unwrap();
    let file = h.join("kzg6.srs");
    std::fs::write(&file, &bytes).unwrap();

    let o = zkfarm(h, &["--json", "srs", "import", file.to_str().unwrap(), "--name", "ceremony", "--default"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["srs_id"].as_str().unwrap().starts_with("kzg:"), "{v}");
    assert_eq!(v["k"], 6);
    assert!(h.join("srs/ceremony.srs").exists() && h.join("srs/default.srs").exists());
    assert!(!stderr(&o).contains("INSECURE"), "an imported SRS is not a development one");

    let o = zkfarm(h, &["--json", "srs", "list"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = listed["srs"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![v["srs_id"].as_str().unwrap(); 2], "ceremony.srs and default.srs: {listed}");

    let cut = h.join("cut.srs");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
    let o = zkfarm(h, &["srs", "import", cut.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("truncated or corrupt KZG parameters"), "{}", stderr(&o));
    let o = zkfarm(h, &["srs", "import", file.to_str().unwrap(), "--name", "../escape"]);
    assert!(!o.status.success() && stderr(&o).contains("an SRS name takes"), "{}", stderr(&o));
}
