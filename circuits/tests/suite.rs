//! zkfarm's operator suite (`tests/suite/`, written by `make_suite.py` with
//! onnx's helpers): one or a few small models per supported operator and
//! small networks (MLP, CNN, causal attention, autoencoder, LSTM/GRU/RNN),
//! each with onnxruntime's output for a seeded input. Every model compiles,
//! its integer inference matches onnxruntime, MockProver accepts the
//! witness, and rejects it with any of four advice cells changed.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use halo2_proofs::dev::MockProver;
use serde_json::Value;
use zkfarm_circuits::circuit::instances;
use zkfarm_circuits::{CompiledModel, ModelCircuit, Settings};

/// The suite's folder; ZKFARM_SUITE_DIR checks another folder of models in
/// the same layout (`NAME.onnx` with `NAME.json`) instead.
fn suite_dir() -> PathBuf {
    match std::env::var_os("ZKFARM_SUITE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/suite"),
    }
}

/// The default scale with a table of 2^11 entries (inputs of table functions
/// within ±8), which keeps every circuit small; a case may override it.
fn settings(data: &Value) -> Result<Settings, String> {
    let base = Settings::default();
    match data.get("settings") {
        None => Ok(base),
        Some(s) => {
            let mut merged = serde_json::to_value(&base).map_err(|e| e.to_string())?;
            for (k, v) in s.as_object().ok_or("settings is not an object")? {
                merged[k] = v.clone();
            }
            serde_json::from_value(merged).map_err(|e| e.to_string())
        }
    }
}

fn floats(v: &Value, what: &str) -> Result<Vec<Vec<f64>>, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))
}

/// The allowed difference from onnxruntime: `tolerance` (default 0.04, five
/// quanta at the default scale) or 1% of the largest reference magnitude,
/// whichever is larger.
fn tolerance(data: &Value, reference: &[f64]) -> f64 {
    let abs = data.get("tolerance").and_then(Value::as_f64).unwrap_or(0.04);
    let largest = reference.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    abs.max(0.01 * largest)
}

/// Compiles, runs and mock-proves one suite model; the largest difference
/// from onnxruntime, or what went wrong.
fn check(dir: &Path, name: &str) -> Result<f64, String> {
    let onnx = std::fs::read(dir.join(format!("{name}.onnx"))).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(dir.join(format!("{name}.json"))).map_err(|e| e.to_string())?;
    let data: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let model = CompiledModel::compile(&onnx, &settings(&data)?).map_err(|e| format!("compile: {e:#}"))?;
    let inputs = floats(&data["input_data"], "input_data")?;
    let witness = model.run(&inputs).map_err(|e| format!("integer inference: {e:#}"))?;
    let ours = model.program.dequantize(&model.program.output_values(&witness));
    let reference = floats(&data["output_data"], "output_data")?;
    if ours.len() != reference.len() {
        return Err(format!("{} outputs, onnxruntime has {}", ours.len(), reference.len()));
    }
    let mut worst = 0.0f64;
    for (o, (got, want)) in ours.iter().zip(&reference).enumerate() {
        if got.len() != want.len() {
            return Err(format!("output {o} has {} values, onnxruntime's {}", got.len(), want.len()));
        }
        let tol = tolerance(&data, want);
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let d = (g - w).abs();
            worst = worst.max(d);
            if d > tol {
                return Err(format!("output {o}[{i}] is {g}, onnxruntime gives {w} (tolerance {tol})"));
            }
        }
        if data.get("classify").and_then(Value::as_bool) == Some(true) {
            check_argmax(got, want, tol).map_err(|e| format!("output {o}: {e}"))?;
        }
    }
    let inst = instances(&model.program, &witness);
    let witness = Arc::new(witness);
    let verify = |tamper: Option<usize>| {
        let mut circuit = ModelCircuit::new(model.program.clone(), Some(witness.clone()));
        circuit.tamper = tamper;
        let prover =
            MockProver::run(model.k, &circuit, vec![inst.clone()]).map_err(|e| format!("MockProver: {e:?}"))?;
        prover.verify_par().map_err(|e| format!("{} failures, first {:?}", e.len(), e.first()))
    };
    verify(None).map_err(|e| format!("MockProver rejects the witness: {e}"))?;
    // A prover who changes a value anywhere is caught: four advice cells
    // spread over the witness, each changed by one.
    let p = &model.program;
    let cells: usize = p.steps.iter().map(|(s, _)| s.advice_cells(p.settings.lanes)).sum();
    for i in 0..4 {
        let cell = (2 * i + 1) * cells / 8;
        // halo2-axiom's MockProver can panic while describing a failure
        // that reads an unassigned cell: that is a rejection too.
        let accepted = std::panic::catch_unwind(|| verify(Some(cell))).is_ok_and(|r| r.is_ok());
        if accepted {
            return Err(format!("a change to advice cell {cell} of {cells} is accepted"));
        }
    }
    Ok(worst)
}

/// The same class as onnxruntime's where its top two are apart by more
/// than twice the tolerance.
fn check_argmax(got: &[f64], want: &[f64], tol: f64) -> Result<(), String> {
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0);
    let mut sorted = want.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    if sorted.len() > 1 && sorted[0] - sorted[1] <= 2.0 * tol {
        return Ok(());
    }
    if argmax(got) != argmax(want) {
        return Err(format!("class {:?}, onnxruntime's {:?}", argmax(got), argmax(want)));
    }
    Ok(())
}

#[test]
fn every_suite_model_matches_onnxruntime_and_satisfies_the_circuit() {
    let dir = suite_dir();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".onnx").map(str::to_string))
        .collect();
    names.sort();
    if std::env::var_os("ZKFARM_SUITE_DIR").is_none() {
        assert!(names.len() >= 150, "the suite has {} models; run make_suite.py", names.len());
    }
    // ZKFARM_SUITE_ONLY=text runs only the models whose names contain it.
    if let Ok(only) = std::env::var("ZKFARM_SUITE_ONLY") {
        names.retain(|n| n.contains(&only));
    }
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(4);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while let Some(name) = names.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = std::panic::catch_unwind(|| check(&dir, name))
                        .unwrap_or_else(|_| Err("panicked (see the output above)".into()));
                    results.lock().unwrap().push((name.clone(), r));
                }
            });
        }
    });
    let results = results.into_inner().unwrap();
    let failures: Vec<String> =
        results.iter().filter_map(|(n, r)| r.as_ref().err().map(|e| format!("{n}: {e}"))).collect();
    let worst = results.iter().filter_map(|(n, r)| r.as_ref().ok().map(|w| (n, *w))).max_by(|a, b| a.1.total_cmp(&b.1));
    eprintln!(
        "{} of {} suite models pass; largest difference {worst:?}",
        results.len() - failures.len(),
        results.len()
    );
    assert!(failures.is_empty(), "{} of {} suite models fail:\n{}", failures.len(), results.len(), failures.join("\n"));
}
