//! `zkfarm`: compile ONNX models to Halo2 circuits, prove inferences and
//! verify receipts.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use serde_json::json;
use zkfarm_prover::EngineChoice;

use crate::local::ModelArgs;
use crate::output::Output;

mod farm;
mod jobs;
mod local;
mod output;
mod verify;

pub use zkfarm_client::DEFAULT_URL;

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
        /// Largest output error accepted: the smallest circuit within it is
        /// chosen (by default, the most accurate setting that fits max_k).
        #[arg(long)]
        tolerance: Option<f64>,
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
        #[command(flatten)]
        auth: jobs::AuthArgs,
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
        /// Fail at once the requests of a tier no live worker offers, instead
        /// of queueing them (with a warning) until one does.
        #[arg(long)]
        fail_unservable: bool,
        #[command(flatten)]
        client: jobs::ClientArgs,
    },
    /// Inspect, follow or cancel jobs.
    Job {
        #[command(subcommand)]
        command: jobs::JobCommand,
        #[command(flatten)]
        client: jobs::ClientArgs,
    },
    /// How inferences spread across tiers, with latency percentiles.
    Stats {
        #[command(flatten)]
        client: jobs::ClientArgs,
    },
    /// Manage the API keys of a farm's job store.
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
        #[command(flatten)]
        store: farm::StoreArgs,
    },
    /// List the clients that hold API keys (names only; keys are stored hashed).
    List {
        #[command(flatten)]
        store: farm::StoreArgs,
    },
    /// Revoke every API key of client NAME.
    Revoke {
        name: String,
        #[command(flatten)]
        store: farm::StoreArgs,
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
    /// Import a ceremony's KZG parameters (halo2 `ParamsKZG` file, e.g. kzg17.srs)
    /// after checking them, into the data directory.
    Import {
        file: PathBuf,
        /// The name to store it under (`$ZKFARM_HOME/srs/NAME.srs`); its id otherwise.
        #[arg(long)]
        name: Option<String>,
        /// Also make it the default SRS.
        #[arg(long)]
        default: bool,
    },
    /// List the SRSs under the data directory: ids, k, and the k's whose
    /// cut-down parameters are cached.
    List,
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
        Command::Compile { model, output } => local::cmd_compile(&out, model, output.as_deref()),
        Command::Calibrate { model, data, samples, max_k, tolerance, output } => {
            local::cmd_calibrate(&out, model, data, *samples, *max_k, *tolerance, output.as_deref())
        }
        Command::Srs { command: SrsCommand::Gen { k, insecure_dev, output } } => {
            local::cmd_srs_gen(&out, *k, *insecure_dev, output.as_deref())
        }
        Command::Srs { command: SrsCommand::List } => local::cmd_srs_list(&out),
        Command::Srs { command: SrsCommand::Import { file, name, default } } => {
            local::cmd_srs_import(&out, file, name.as_deref(), *default)
        }
        Command::Setup { model, srs, vk_out } => local::cmd_setup(&out, model, srs.as_deref(), vk_out.as_deref()),
        Command::Prove { model, input, output, srs, engine } => {
            local::cmd_prove(&out, model, input, output, srs.as_deref(), engine.resolve()?)
        }
        Command::Verify { receipt, vk, srs, worker_keys, allow_insecure_tee, tee, from_coordinator, auth } => {
            let remote = from_coordinator.as_deref().map(|url| auth.config(url)).transpose()?;
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
        Command::Submit { batch, wait, out: dir, priority, idempotency_key, fail_unservable, client } => {
            jobs::cmd_submit(
                &out,
                client,
                &jobs::SubmitArgs {
                    batch,
                    wait: *wait,
                    out_dir: dir.as_deref(),
                    priority: *priority,
                    idempotency_key: idempotency_key.as_deref(),
                    fail_unservable: *fail_unservable,
                },
            )
        }
        Command::Job { command, client } => jobs::cmd_job(&out, client, command),
        Command::Stats { client } => jobs::cmd_stats(&out, client),
        Command::Apikey { command } => match command {
            ApikeyCommand::Create { name, store } => farm::cmd_apikey_create(&out, name, store),
            ApikeyCommand::List { store } => farm::cmd_apikey_list(&out, store),
            ApikeyCommand::Revoke { name, store } => farm::cmd_apikey_revoke(&out, name, store),
        },
        Command::Inspect { model } => local::cmd_inspect(&out, model),
        Command::Demo { srs, engine } => local::cmd_demo(&out, srs.as_deref(), engine.resolve()?),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
