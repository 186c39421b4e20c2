//! The `tidelog` binary: the broker (`tidelog serve`) and Kafka-console-style client commands.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tidelog::config::BrokerConfig;

/// See `tidelog::alloc`: a hostile array count must not abort the broker.
#[global_allocator]
static ALLOCATOR: tidelog::alloc::BrokerAllocator = tidelog::alloc::BrokerAllocator;

#[derive(Parser, Debug)]
#[command(
    name = "tidelog",
    version,
    about = "A thread-per-core, Kafka-compatible broker"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand, Debug)]
enum Command {
    /// Run the broker (defaults: ./tidelog-data, 127.0.0.1:9092, one shard per core).
    Serve(ServeArgs),
    /// Compare this host's OS settings with tuning.md's recommendations (changes nothing).
    Tune(TuneArgs),
    /// Print every broker setting and topic config, from the config schema.
    Configs(ConfigsArgs),
    #[command(flatten)]
    Client(tidelog::cli::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address every shard listens on for clients (port 0 picks a free port, printed at start):
    /// the address of the client listener of `listeners`, whose other listeners (a KRaft
    /// `CONTROLLER`) stay as configured.
    #[arg(long)]
    listen: Option<String>,
    /// Data directory.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Number of shards (pinned executors); default one per available core.
    #[arg(long)]
    shards: Option<usize>,
    /// Config file with Kafka-named settings: a Java properties file (`*.properties`, e.g.
    /// Kafka's own `server.properties`) or TOML (`num.partitions = 3`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A Kafka-named setting, applied after the config file (repeatable): `--set num.partitions=3`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

#[derive(clap::Args, Debug)]
struct TuneArgs {
    /// Read the settings and print what to change; the only mode, since tidelog never changes
    /// the host itself.
    #[arg(long, required = true)]
    check: bool,
}

#[derive(clap::Args, Debug)]
struct ConfigsArgs {
    /// Print them as README.md's two Markdown tables; the only format for now.
    #[arg(long, required = true)]
    markdown: bool,
}

fn build_config(args: &ServeArgs) -> Result<BrokerConfig, String> {
    let mut c = BrokerConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if path.extension().is_some_and(|e| e == "properties") {
            c.apply_properties(&text)?;
        } else {
            c.apply_toml(&text)?;
        }
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set wants KEY=VALUE, got {kv:?}"))?;
        c.set(k.trim(), v.trim())?;
    }
    if let Some(l) = &args.listen {
        c.override_client_listener(l)?;
    }
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    if let Some(n) = args.shards {
        c.shards = Some(n);
    }
    c.resolve()?;
    Ok(c)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // Colour codes only on a terminal, not in log files and pipes.
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                // A closed stderr (the operator's pipe went away) must not end the broker:
                // tracing-subscriber reports a failed write with eprintln!, which panics then.
                .log_internal_errors(false)
                .init();
            match build_config(&args).and_then(tidelog::server::run) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tidelog: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Tune(_) => tidelog::tune::run_check(),
        Command::Configs(_) => {
            use tidelog::config::docs;
            print!(
                "## Broker configs\n\n{}\n## Topic configs\n\n{}",
                docs::markdown_broker_table(),
                docs::markdown_topic_table()
            );
            ExitCode::SUCCESS
        }
        Command::Client(cmd) => tidelog::cli::run(cmd),
    }
}
