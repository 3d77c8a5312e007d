//! `zkfarm`: compile ONNX models to Halo2 circuits, prove inferences and
//! verify receipts.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use rand::{Rng, SeedableRng};
use serde_json::json;
use zkfarm_circuits::calibrate::calibrate;
use zkfarm_circuits::float::FloatModel;
use zkfarm_circuits::input::{parse_input, read_input};
use zkfarm_circuits::{CompiledModel, Settings};
use zkfarm_prover::engine::{Engine, EngineChoice};
use zkfarm_prover::keys::KeySource;
use zkfarm_prover::{home, prove, srs, verify, KeyCache, Keys, ProveOptions, Srs};

mod farm;
mod verify;

/// The bundled example that `zkfarm demo` proves.
const DEMO_MODEL: &[u8] = include_bytes!("../../examples/mlp.onnx");
const DEMO_INPUT: &str = include_str!("../../examples/mlp.input.json");

#[derive(Parser)]
#[command(name = "zkfarm", version, about = "Verifiable ML inference: ONNX models proven with Halo2 (KZG on BN254)")]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Compile an ONNX model into a circuit and write its description.
    Compile {
        #[command(flatten)]
        model: ModelArgs,
        /// Where to write the compiled circuit (JSON).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Pick scales and lookup range from sample inputs.
    Calibrate {
        #[command(flatten)]
        model: ModelArgs,
        /// Sample input files (EZKL `input_data` layout); random samples in [0, 1) when none.
        #[arg(long = "data")]
        data: Vec<PathBuf>,
        /// Number of random samples when no --data is given.
        #[arg(long, default_value_t = 8)]
        samples: usize,
        /// Largest circuit size accepted.
        #[arg(long, default_value_t = 20)]
        max_k: u32,
        /// Where to write the chosen settings.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Structured reference strings.
    Srs {
        #[command(subcommand)]
        command: SrsCommand,
    },
    /// Generate (or load from the cache) the proving and verifying keys.
    Setup {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Also write the verifying key to this file.
        #[arg(long)]
        vk_out: Option<PathBuf>,
    },
    /// Prove one inference and write its receipt.
    Prove {
        #[command(flatten)]
        model: ModelArgs,
        /// Input file: {"input_data": [[...flat floats...]]}.
        #[arg(long)]
        input: PathBuf,
        #[arg(short, long, default_value = "receipt.json")]
        output: PathBuf,
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Proving engine: auto (cuda when available, else cpu), cpu or cuda.
        #[arg(long, default_value = "auto", env = "ZKFARM_ENGINE")]
        engine: EngineChoice,
    },
    /// Verify a receipt of any tier; exits 0 only when it is valid.
    Verify {
        receipt: PathBuf,
        /// Verifying key file (zk); by default the key cache is searched by the receipt's vk_hash.
        #[arg(long)]
        vk: Option<PathBuf>,
        /// The SRS (zk); the default SRS otherwise.
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Registered worker keys (signed): JSON [{"worker_id": ..., "public_key": hex}, ...].
        #[arg(long)]
        worker_keys: Option<PathBuf>,
        /// Accept TEE receipts of the insecure dev provider.
        #[arg(long)]
        allow_insecure_tee: bool,
        #[command(flatten)]
        tee: farm::TeeArgs,
        /// Fetch the trust inputs (verifying key, worker keys, SRS) from this coordinator.
        #[arg(long = "coordinator", value_name = "URL")]
        from_coordinator: Option<String>,
        /// API key for --coordinator; read from the data directory when not given.
        #[arg(long, env = "ZKFARM_API_KEY", hide_env_values = true)]
        api_key: Option<String>,
        /// CA certificate (PEM) for an https:// coordinator.
        #[arg(long)]
        tls_ca: Option<PathBuf>,
    },
    /// Run a coordinator: the gRPC API, job store, scheduler and metrics.
    Coordinator(farm::CoordinatorArgs),
    /// Run a worker that proves tasks for a coordinator.
    Worker(farm::WorkerCmdArgs),
    /// Run a coordinator and N local workers in one process.
    Serve(farm::ServeArgs),
    /// Submit a batch of inference requests to a farm.
    Submit {
        /// {"model": "path.onnx", "settings": "optional.json", "requests": [{"input": {...}, "tier": "zk"}]}
        batch: PathBuf,
        /// Wait for the job to finish, with a progress bar.
        #[arg(long)]
        wait: bool,
        /// Write one receipt per request into this directory (with --wait).
        #[arg(long, requires = "wait")]
        out: Option<PathBuf>,
        #[arg(long, default_value_t = 0)]
        priority: i32,
        /// Submitting the same key twice returns the first job.
        #[arg(long)]
        idempotency_key: Option<String>,
        #[command(flatten)]
        client: farm::ClientArgs,
    },
    /// Inspect, follow or cancel jobs.
    Job {
        #[command(subcommand)]
        command: farm::JobCommand,
        #[command(flatten)]
        client: farm::ClientArgs,
    },
    /// How inferences spread across tiers, with latency percentiles.
    Stats {
        #[command(flatten)]
        client: farm::ClientArgs,
    },
    /// Manage the API keys of a farm's data directory.
    Apikey {
        #[command(subcommand)]
        command: ApikeyCommand,
    },
    /// Report the circuit's size: rows, columns, lookups, k and rows per op.
    Inspect {
        #[command(flatten)]
        model: ModelArgs,
    },
    /// Prove and verify the bundled MNIST-shaped MLP end to end.
    Demo {
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Proving engine: auto (cuda when available, else cpu), cpu or cuda.
        #[arg(long, default_value = "auto", env = "ZKFARM_ENGINE")]
        engine: EngineChoice,
    },
}

/// API keys take effect on a running coordinator within two seconds.
#[derive(Subcommand)]
enum ApikeyCommand {
    /// Create an API key for client NAME and print it.
    Create {
        name: String,
        /// The farm's data directory; default `$ZKFARM_HOME/farm`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// List the clients that hold API keys (names only; keys are stored hashed).
    List {
        /// The farm's data directory; default `$ZKFARM_HOME/farm`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Revoke every API key of client NAME.
    Revoke {
        name: String,
        /// The farm's data directory; default `$ZKFARM_HOME/farm`.
        #[arg(long)]
        data: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SrsCommand {
    /// Generate a local SRS. Only insecure development setups are supported.
    Gen {
        #[arg(long)]
        k: u32,
        /// Acknowledge that the SRS trapdoor is known locally: proofs against it
        /// can be forged by whoever ran this command.
        #[arg(long)]
        insecure_dev: bool,
        /// Where to write it; the default SRS under the data directory otherwise.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ModelArgs {
    /// The ONNX model.
    #[arg(long)]
    model: PathBuf,
    /// Settings file (JSON, as written by `zkfarm calibrate`).
    #[arg(long)]
    settings: Option<PathBuf>,
    /// Make the model input public.
    #[arg(long)]
    public_input: bool,
}

impl ModelArgs {
    fn settings(&self) -> Result<Settings> {
        let mut s = match &self.settings {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                serde_json::from_str(&text).with_context(|| format!("{} is not a settings file", p.display()))?
            }
            None => Settings::default(),
        };
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Long-running services log their progress; one-shot commands only warn.
    let default_level = if matches!(cli.command, Command::Coordinator(_) | Command::Worker(_) | Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZKFARM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!("{}", json!({ "ok": false, "error": format!("{e:#}") }));
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    let out = Output { json: cli.json };
    match &cli.command {
        Command::Compile { model, output } => cmd_compile(&out, model, output.as_deref()),
        Command::Calibrate { model, data, samples, max_k, output } => {
            cmd_calibrate(&out, model, data, *samples, *max_k, output.as_deref())
        }
        Command::Srs { command: SrsCommand::Gen { k, insecure_dev, output } } => {
            cmd_srs_gen(&out, *k, *insecure_dev, output.as_deref())
        }
        Command::Setup { model, srs, vk_out } => cmd_setup(&out, model, srs.as_deref(), vk_out.as_deref()),
        Command::Prove { model, input, output, srs, engine } => {
            cmd_prove(&out, model, input, output, srs.as_deref(), engine.resolve()?)
        }
        Command::Verify {
            receipt,
            vk,
            srs,
            worker_keys,
            allow_insecure_tee,
            tee,
            from_coordinator,
            api_key,
            tls_ca,
        } => {
            let remote = from_coordinator.as_ref().map(|url| farm::ClientArgs {
                coordinator: url.clone(),
                api_key: api_key.clone(),
                tls_ca: tls_ca.clone(),
            });
            let inputs = verify::Inputs {
                vk: vk.as_deref(),
                srs: srs.as_deref(),
                worker_keys: worker_keys.as_deref(),
                tee: tee.policy(*allow_insecure_tee)?,
                coordinator: remote.as_ref(),
            };
            verify::cmd_verify(&out, receipt, &inputs)
        }
        Command::Coordinator(a) => farm::cmd_coordinator(&out, a),
        Command::Worker(a) => farm::cmd_worker(a),
        Command::Serve(a) => farm::cmd_serve(&out, a),
        Command::Submit { batch, wait, out: dir, priority, idempotency_key, client } => farm::cmd_submit(
            &out,
            client,
            &farm::SubmitArgs {
                batch,
                wait: *wait,
                out_dir: dir.as_deref(),
                priority: *priority,
                idempotency_key: idempotency_key.as_deref(),
            },
        ),
        Command::Job { command, client } => farm::cmd_job(&out, client, command),
        Command::Stats { client } => farm::cmd_stats(&out, client),
        Command::Apikey { command } => match command {
            ApikeyCommand::Create { name, data } => farm::cmd_apikey_create(&out, name, data.as_deref()),
            ApikeyCommand::List { data } => farm::cmd_apikey_list(&out, data.as_deref()),
            ApikeyCommand::Revoke { name, data } => farm::cmd_apikey_revoke(&out, name, data.as_deref()),
        },
        Command::Inspect { model } => cmd_inspect(&out, model),
        Command::Demo { srs, engine } => cmd_demo(&out, srs.as_deref(), engine.resolve()?),
    }
}

/// Text or JSON output, and progress spinners that stay quiet under --json.
struct Output {
    json: bool,
}

impl Output {
    fn step<T>(&self, msg: &str, f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
        let bar = if self.json || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::hidden()
        } else {
            let b = ProgressBar::new_spinner();
            b.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
            b.enable_steady_tick(Duration::from_millis(100));
            b
        };
        bar.set_message(msg.to_string());
        let start = Instant::now();
        let r = f();
        bar.finish_and_clear();
        r.map(|v| (v, start.elapsed()))
    }

    fn emit(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{value}");
        } else {
            println!("{}", text());
        }
    }

    fn warn(&self, msg: &str) {
        eprintln!("warning: {msg}");
    }
}

fn cmd_compile(out: &Output, args: &ModelArgs, output: Option<&Path>) -> Result<()> {
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

fn cmd_calibrate(
    out: &Output,
    args: &ModelArgs,
    data: &[PathBuf],
    samples: usize,
    max_k: u32,
    output: Option<&Path>,
) -> Result<()> {
    let bytes = args.bytes()?;
    let graph = zkfarm_circuits::onnx::import_bytes(&bytes)?;
    let inputs: Vec<Vec<Vec<f64>>> = if data.is_empty() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0);
        (0..samples.max(1))
            .map(|_| {
                graph
                    .input_shapes()
                    .iter()
                    .map(|s| (0..s.iter().product::<usize>()).map(|_| rng.gen_range(0.0..1.0)).collect())
                    .collect()
            })
            .collect()
    } else {
        data.iter().map(|p| read_input(p)).collect::<Result<_>>()?
    };
    let base = args.settings()?;
    let (cal, _) = out.step("calibrating", || calibrate(&graph, &bytes, &inputs, &base, max_k))?;
    let text = serde_json::to_string_pretty(&cal.settings)?;
    if let Some(p) = output {
        std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?;
    }
    out.emit(json!({ "ok": true, "settings": cal.settings, "chosen": cal.chosen, "tried": cal.tried }), || {
        let mut s = String::from("scale  lookup_bits  k   max_abs_error\n");
        for c in &cal.tried {
            s += &format!("{:>5}  {:>11}  {:>2}  {:.6}\n", c.input_scale, c.lookup_bits, c.k, c.max_abs_error);
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

fn cmd_srs_gen(out: &Output, k: u32, insecure_dev: bool, output: Option<&Path>) -> Result<()> {
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

/// Loads the SRS and the model's keys, generating keys on a cache miss.
fn keys_for(out: &Output, model: &CompiledModel, srs: &Srs) -> Result<(Keys, KeySource, Duration)> {
    if srs.insecure {
        out.warn(&format!("using the INSECURE development SRS {}", srs.id));
    }
    let cache = KeyCache::open_default()?;
    let ((keys, source), took) = out.step("loading or generating keys", || cache.get_or_create(model, srs))?;
    Ok((keys, source, took))
}

fn cmd_setup(out: &Output, args: &ModelArgs, srs_path: Option<&Path>, vk_out: Option<&Path>) -> Result<()> {
    let model = args.compile()?;
    let srs = srs::resolve(srs_path)?;
    let (keys, source, took) = keys_for(out, &model, &srs)?;
    if let Some(p) = vk_out {
        std::fs::write(p, keys.vk.to_json()).with_context(|| format!("writing {}", p.display()))?;
    }
    let source = format!("{source:?}").to_lowercase();
    out.emit(
        json!({ "ok": true, "vk_hash": keys.vk.hash, "k": model.k, "source": source, "seconds": took.as_secs_f64() }),
        || format!("keys ready ({source}, {:.1}s): k = {}, vk {}", took.as_secs_f64(), model.k, keys.vk.hash),
    );
    Ok(())
}

fn cmd_prove(
    out: &Output,
    args: &ModelArgs,
    input: &Path,
    output: &Path,
    srs_path: Option<&Path>,
    engine: Engine,
) -> Result<()> {
    let model = args.compile()?;
    let inputs = read_input(input)?;
    let srs = srs::resolve(srs_path)?;
    let (keys, _, _) = keys_for(out, &model, &srs)?;
    let params = engine.params(&srs, model.k)?;
    let (receipt, took) =
        out.step("proving", || prove(&model, &keys, &params, &srs.id, &inputs, &ProveOptions::default()))?;
    receipt.save(output)?;
    out.emit(
        json!({ "ok": true, "receipt": output, "outputs": receipt.outputs, "seconds": took.as_secs_f64(),
                "engine": engine.name(), "engine_detail": engine.describe() }),
        || {
            format!(
                "proved in {:.1}s on {}; receipt written to {}\noutputs: {:?}",
                took.as_secs_f64(),
                engine.describe(),
                output.display(),
                receipt.outputs
            )
        },
    );
    Ok(())
}

fn cmd_inspect(out: &Output, args: &ModelArgs) -> Result<()> {
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
        s
    });
    Ok(())
}

/// The default SRS; on a machine that has none, an insecure development SRS
/// of 2^k points is made and saved as the default, with a warning.
fn default_srs_or_generate(out: &Output, k: u32) -> Result<Srs> {
    let default = srs::default_path();
    if default.exists() {
        return Srs::load(&default);
    }
    out.warn(&format!("no SRS found; generating an INSECURE development SRS with k = {k}"));
    let (s, _) = out.step("generating SRS", || Srs::generate_insecure_dev(k, rand::rngs::OsRng))?;
    home::subdir("srs")?;
    s.save(&default)?;
    Ok(s)
}

fn cmd_demo(out: &Output, srs_path: Option<&Path>, engine: Engine) -> Result<()> {
    let settings = Settings::default();
    let model = CompiledModel::compile(DEMO_MODEL, &settings)?;
    let inputs = parse_input(DEMO_INPUT)?;
    let srs = match srs_path {
        Some(p) => Srs::load(p)?,
        None => default_srs_or_generate(out, model.k)?,
    };
    let (keys, source, keygen) = keys_for(out, &model, &srs)?;
    let params = engine.params(&srs, model.k)?;
    let (receipt, prove_t) =
        out.step("proving", || prove(&model, &keys, &params, &srs.id, &inputs, &ProveOptions::default()))?;
    let (_, verify_t) = out.step("verifying", || verify(&receipt, &keys.vk, &srs))?;
    let path = home::data_dir().join("demo-receipt.json");
    receipt.save(&path)?;
    let float = FloatModel::load(DEMO_MODEL, &model.program.input_shapes)?.run(&inputs)?;
    let err = receipt.outputs[0].iter().zip(&float[0]).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    let argmax = |v: &[f64]| v.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|x| x.0).unwrap_or(0);
    let stats = model.stats();
    let proof_bytes = receipt.proof.len() / 2;
    out.emit(
        json!({ "ok": true, "model": "mlp (784-128-10)", "k": model.k, "rows": stats.rows,
                "keys": format!("{source:?}").to_lowercase(), "keygen_seconds": keygen.as_secs_f64(),
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

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
