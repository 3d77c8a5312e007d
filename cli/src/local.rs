//! The commands that work on one machine without a farm: `compile`,
//! `calibrate`, `srs gen`, `setup`, `prove`, `inspect` and `demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use rand::{Rng, SeedableRng};
use serde_json::json;
use zkfarm_circuits::calibrate::calibrate;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::graph::Elem;
use zkfarm_circuits::input::{parse_input, read_input};
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::{home, infer, srs, Engine, KeyCache, KeySource, Keys, ProveOptions, Prover, Srs, Step, Tier};

use crate::output::Output;

/// The bundled example that `zkfarm demo` proves.
const DEMO_MODEL: &[u8] = include_bytes!("../../examples/mlp.onnx");
const DEMO_INPUT: &str = include_str!("../../examples/mlp.input.json");

#[derive(Args)]
pub struct ModelArgs {
    /// The ONNX model.
    #[arg(long)]
    pub model: PathBuf,
    /// Settings file (JSON, as written by `zkfarm calibrate`).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Make the model input public.
    #[arg(long)]
    public_input: bool,
}

impl ModelArgs {
    fn settings(&self) -> Result<Settings> {
        let text = match &self.settings {
            Some(p) => std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
            None => String::new(),
        };
        let mut s = Settings::from_json(&text).with_context(|| match &self.settings {
            Some(p) => format!("{} is not a settings file", p.display()),
            None => "the default settings".into(),
        })?;
        s.public_input |= self.public_input;
        Ok(s)
    }

    fn bytes(&self) -> Result<Vec<u8>> {
        std::fs::read(&self.model).with_context(|| format!("reading {}", self.model.display()))
    }

    fn compile(&self) -> Result<CompiledModel> {
        let bytes = self.bytes()?;
        CompiledModel::compile(&bytes, &self.settings()?).with_context(|| format!("compiling {}", self.model.display()))
    }
}

pub fn cmd_compile(out: &Output, args: &ModelArgs, output: Option<&Path>) -> Result<()> {
    let model = args.compile()?;
    if let Some(path) = output {
        let text = serde_json::to_string(&*model.program)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    out.emit(
        json!({ "ok": true, "model_hash": model.model_hash, "circuit_hash": model.circuit_hash, "k": model.k,
                "rows": model.program.step_rows() }),
        || {
            format!(
                "compiled {}: k = {}, {} rows, circuit {}",
                args.model.display(),
                model.k,
                model.program.step_rows(),
                &model.circuit_hash[..16]
            )
        },
    );
    Ok(())
}

pub fn cmd_calibrate(
    out: &Output,
    args: &ModelArgs,
    data: &[PathBuf],
    samples: usize,
    max_k: u32,
    tolerance: Option<f64>,
    output: Option<&Path>,
) -> Result<()> {
    let bytes = args.bytes()?;
    let graph = zkfarm_circuits::onnx::import_bytes(&bytes)?;
    let inputs: Vec<Vec<Vec<f64>>> = if data.is_empty() {
        // Floats in [0, 1), booleans 0 or 1, and integers 0, which every
        // index and token id admits.
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        (0..samples.max(1))
            .map(|_| {
                graph
                    .input_shapes()
                    .iter()
                    .enumerate()
                    .map(|(i, s)| {
                        let n = s.iter().product::<usize>();
                        match graph.input_elem(i) {
                            Elem::Float => (0..n).map(|_| rng.gen_range(0.0..1.0)).collect(),
                            Elem::Bool => (0..n).map(|_| f64::from(rng.gen_range(0..2u8))).collect(),
                            Elem::Int => vec![0.0; n],
                        }
                    })
                    .collect()
            })
            .collect()
    } else {
        data.iter().map(|p| read_input(p)).collect::<Result<_>>()?
    };
    let base = args.settings()?;
    let (cal, _) = out.step("calibrating", || calibrate(&graph, &bytes, &inputs, &base, max_k, tolerance))?;
    let text = serde_json::to_string_pretty(&cal.settings)?;
    if let Some(p) = output {
        std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    out.emit(json!({ "ok": true, "settings": cal.settings, "chosen": cal.chosen, "tried": cal.tried }), || {
        let mut s = String::from("scale  lookup_bits  k   max_abs_error  wide nodes\n");
        for c in &cal.tried {
            s += &format!(
                "{:>5}  {:>11}  {:>2}  {:>13.6}  {}\n",
                c.input_scale,
                c.lookup_bits,
                c.k,
                c.max_abs_error,
                c.wide_nodes.len()
            );
        }
        s + &format!(
            "chosen: scale {} (param {}), lookup_bits {}, k {}, max error {:.6}\n{text}",
            cal.chosen.input_scale,
            cal.chosen.param_scale,
            cal.chosen.lookup_bits,
            cal.chosen.k,
            cal.chosen.max_abs_error
        )
    });
    Ok(())
}

pub fn cmd_srs_gen(out: &Output, k: u32, insecure_dev: bool, output: Option<&Path>) -> Result<()> {
    if !insecure_dev {
        bail!(
            "zkfarm generates only insecure development SRSs (the trapdoor is known locally); \
             pass --insecure-dev to acknowledge, or use --srs with an SRS from a public ceremony"
        );
    }
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => {
            home::subdir("srs")?;
            srs::default_path()
        }
    };
    let (srs, took) = out.step(&format!("generating an insecure dev SRS with 2^{k} points"), || {
        Srs::generate_insecure_dev(k, rand::rngs::OsRng)
    })?;
    srs.save(&path)?;
    out.warn("this SRS is INSECURE: its trapdoor was sampled on this machine; use it for development only");
    out.emit(json!({ "ok": true, "srs_id": srs.id, "k": k, "path": path, "seconds": took.as_secs_f64() }), || {
        format!("wrote {} (k = {k}, id {}) in {:.1}s", path.display(), srs.id, took.as_secs_f64())
    });
    Ok(())
}

pub fn cmd_srs_import(out: &Output, file: &Path, name: Option<&str>, default: bool) -> Result<()> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let (srs, took) = out.step("checking the parameters", || {
        Srs::import(&bytes).with_context(|| format!("{} is refused", file.display()))
    })?;
    let name = name.map(str::to_string).unwrap_or_else(|| srs.id.replace(':', "-"));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("an SRS name takes letters, digits, '-', '_' and '.': {name:?}");
    }
    let dir = home::subdir("srs")?;
    let path = dir.join(format!("{name}.srs"));
    srs.save(&path)?;
    if default {
        srs.save(&srs::default_path())?;
    }
    out.emit(
        json!({ "ok": true, "srs_id": srs.id, "k": srs.k(), "path": path, "default": default,
                "check_seconds": took.as_secs_f64() }),
        || {
            format!(
                "imported {} as {} (k = {}, id {}){}; checks passed in {:.1}s",
                file.display(),
                path.display(),
                srs.k(),
                srs.id,
                if default { ", now the default SRS" } else { "" },
                took.as_secs_f64()
            )
        },
    );
    Ok(())
}

pub fn cmd_srs_list(out: &Output) -> Result<()> {
    let dir = home::data_dir().join("srs");
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.extension().is_some_and(|x| x == "srs")) {
            match srs::peek(&path) {
                Ok(info) => {
                    let cached = srs::cached_ks(&srs::default_cache_dir(), &info.id);
                    rows.push((path, info, cached));
                }
                Err(e) => out.warn(&format!("{}: {e:#}", path.display())),
            }
        }
    }
    let json_rows: Vec<_> = rows
        .iter()
        .map(|(path, i, cached)| {
            json!({ "path": path, "id": i.id, "k": i.k, "insecure": i.insecure, "cached_k": cached,
                    "default": path.file_name().is_some_and(|n| n == "default.srs") })
        })
        .collect();
    out.emit(json!({ "ok": true, "srs": json_rows }), || {
        if rows.is_empty() {
            return format!("no SRS under {}", dir.display());
        }
        let mut text = format!("{:<20} {:<30} {:>3}  {}\n", "file", "id", "k", "per-k parameters cached");
        for (path, i, cached) in &rows {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let cached = if cached.is_empty() {
                "none".to_string()
            } else {
                cached.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
            };
            text += &format!("{name:<20} {:<30} {:>3}  {cached}\n", i.id, i.k);
        }
        text.trim_end().to_string()
    });
    Ok(())
}

/// The prover for one-shot commands: the key cache under the data
/// directory, with a warning when the SRS is a development one.
fn prover(out: &Output, srs: Srs, engine: Engine) -> Result<Prover> {
    if srs.insecure {
        out.warn(&format!("using the INSECURE development SRS {}", srs.id));
    }
    Ok(Prover::new(Arc::new(srs), Arc::new(KeyCache::open_default()?), engine))
}

/// The model's keys from the cache, generated on a miss.
fn keys_for(out: &Output, prover: &Prover, model: &CompiledModel) -> Result<(Keys, KeySource, Duration)> {
    let ((keys, source), took) = out.step("loading or generating keys", || prover.keys_for(model, None))?;
    Ok((keys, source, took))
}

pub fn cmd_setup(out: &Output, args: &ModelArgs, srs_path: Option<&Path>, vk_out: Option<&Path>) -> Result<()> {
    let model = args.compile()?;
    // Key generation runs on the host whatever the engine.
    let prover = prover(out, srs::resolve(srs_path)?, Engine::cpu())?;
    let (keys, source, took) = keys_for(out, &prover, &model)?;
    if let Some(p) = vk_out {
        std::fs::write(p, keys.vk.to_json()).with_context(|| format!("writing {}", p.display()))?;
    }
    let source = source.name();
    out.emit(
        json!({ "ok": true, "vk_hash": keys.vk.hash, "k": model.k, "source": source, "seconds": took.as_secs_f64() }),
        || format!("keys ready ({source}, {:.1}s): k = {}, vk {}", took.as_secs_f64(), model.k, keys.vk.hash),
    );
    Ok(())
}

pub fn cmd_prove(
    out: &Output,
    args: &ModelArgs,
    input: &Path,
    output: &Path,
    srs_path: Option<&Path>,
    engine: Engine,
) -> Result<()> {
    let model = args.compile()?;
    let inputs = read_input(input)?;
    // The fixed costs before proving are timed apart from it: the SRS and
    // its parameters at the circuit's k, the keys, the witness.
    let (prover, load_srs) = out.step("loading the SRS", || {
        let prover = prover(out, srs::resolve(srs_path)?, engine)?;
        prover.engine.params(&prover.srs, model.k)?;
        Ok(prover)
    })?;
    let (keys, source, load_keys) = keys_for(out, &prover, &model)?;
    let (inference, witness) = out.step("computing the witness", || infer(&model, &inputs, Tier::Zk))?;
    let ((receipt, timings), took) =
        out.step("proving", || prover.prove_timed(&model, &keys, inference, &ProveOptions::default()))?;
    let engine = &prover.engine;
    receipt.save(output)?;
    // The prover's own steps; their sum falls short of `seconds` by the
    // first proof of a key's preparation and the transcript's hashing.
    let steps: serde_json::Map<String, serde_json::Value> =
        Step::ALL.iter().map(|s| (s.name().replace(' ', "_"), json!(timings.get(*s).as_secs_f64()))).collect();
    out.emit(
        json!({ "ok": true, "receipt": output, "outputs": receipt.outputs, "seconds": took.as_secs_f64(),
                "engine": engine.name(), "engine_detail": engine.describe(), "keys": source.name(),
                "fixed_seconds": { "load_srs": load_srs.as_secs_f64(), "load_keys": load_keys.as_secs_f64(),
                                   "witness": witness.as_secs_f64() },
                "steps_seconds": steps }),
        || {
            format!(
                "proved in {:.1}s on {} (before that: SRS {:.2}s, keys {:.2}s ({}), witness {:.2}s); \
                 receipt written to {}\noutputs: {:?}",
                took.as_secs_f64(),
                engine.describe(),
                load_srs.as_secs_f64(),
                load_keys.as_secs_f64(),
                source.name(),
                witness.as_secs_f64(),
                output.display(),
                receipt.outputs
            )
        },
    );
    Ok(())
}

pub fn cmd_inspect(out: &Output, args: &ModelArgs) -> Result<()> {
    let model = args.compile()?;
    let stats = model.stats();
    out.emit(serde_json::to_value(&stats)?, || {
        let mut s = format!(
            "model            {}\ncircuit          {}\nk                {}\nrows             {} (+ {} table rows)\n\
             advice columns   {}\nfixed columns    {}\npublic values    {}\nlookup arguments {} ({} tables)\n\
             lookups          {}\nrows by op:\n",
            args.model.display(),
            model.circuit_hash,
            stats.k,
            stats.rows,
            stats.table_rows,
            stats.advice_columns,
            stats.fixed_columns,
            stats.instance_values,
            stats.lookup_arguments,
            stats.lookup_tables,
            stats.lookups
        );
        for (op, rows) in &stats.rows_by_op {
            s += &format!("  {op:<18} {rows:>8}  {:>5.1}%\n", 100.0 * *rows as f64 / stats.rows.max(1) as f64);
        }
        if !stats.settings.wide_nodes.is_empty() {
            s += &format!("wide table nodes {}\n", stats.settings.wide_nodes.join(", "));
        }
        for note in &stats.precision_notes {
            s += &format!("precision: {note}\n");
        }
        s
    });
    Ok(())
}

/// The default SRS; on a machine that has none, an insecure development SRS
/// of 2^k points is made and saved as the default, with a warning.
pub fn default_srs_or_generate(out: &Output, k: u32) -> Result<Srs> {
    let default = srs::default_path();
    if default.exists() {
        return srs::open(&default);
    }
    out.warn(&format!("no SRS found; generating an INSECURE development SRS with k = {k}"));
    let (s, _) = out.step("generating SRS", || Srs::generate_insecure_dev(k, rand::rngs::OsRng))?;
    home::subdir("srs")?;
    s.save(&default)?;
    Ok(s.with_cache(srs::default_cache_dir()))
}

pub fn cmd_demo(out: &Output, srs_path: Option<&Path>, engine: Engine) -> Result<()> {
    let settings = Settings::default();
    let model = CompiledModel::compile(DEMO_MODEL, &settings)?;
    let inputs = parse_input(DEMO_INPUT)?;
    let srs = match srs_path {
        Some(p) => srs::open(p)?,
        None => default_srs_or_generate(out, model.k)?,
    };
    let prover = prover(out, srs, engine)?;
    let (keys, source, keygen) = keys_for(out, &prover, &model)?;
    let (receipt, prove_t) = out.step("proving", || prover.prove(&model, &keys, &inputs, &ProveOptions::default()))?;
    let (_, verify_t) = out.step("verifying", || prover.verify(&receipt, &keys.vk))?;
    let (engine, srs) = (&prover.engine, &prover.srs);
    let path = home::data_dir().join("demo-receipt.json");
    receipt.save(&path)?;
    let float = FloatModel::load(DEMO_MODEL, &model.program.input_shapes)?.run(&inputs)?;
    let err = receipt.outputs[0].iter().zip(&float[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0).unwrap_or(0);
    let stats = model.stats();
    let proof_bytes = receipt.proof.len() / 2;
    out.emit(
        json!({ "ok": true, "model": "mlp (784-128-10)", "k": model.k, "rows": stats.rows,
                "keys": source.name(), "keygen_seconds": keygen.as_secs_f64(),
                "prove_seconds": prove_t.as_secs_f64(), "engine": engine.name(), "engine_detail": engine.describe(), "verify_seconds": verify_t.as_secs_f64(),
                "proof_bytes": proof_bytes, "max_abs_error_vs_float": err, "receipt": path,
                "class": argmax(&receipt.outputs[0]), "float_class": argmax(&float[0]) }),
        || {
            format!(
                "zkfarm demo: MNIST-shaped MLP 784-128-10\n  circuit      k = {}, {} rows, {} lookups\n  \
                 keys         {:?} in {:.2}s\n  prove        {:.2}s on {}\n  verify       {:.0} ms\n  \
                 proof        {} bytes\n  outputs      class {} (float model: class {}), max |error| {:.4}\n  \
                 receipt      {} (valid)\n  srs          {}",
                model.k,
                stats.rows,
                stats.lookups,
                source,
                keygen.as_secs_f64(),
                prove_t.as_secs_f64(),
                engine.describe(),
                verify_t.as_secs_f64() * 1e3,
                proof_bytes,
                argmax(&receipt.outputs[0]),
                argmax(&float[0]),
                err,
                path.display(),
                srs.id
            )
        },
    );
    Ok(())
}
