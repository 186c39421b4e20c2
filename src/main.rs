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
    /// Format a data directory for a cluster id, or print a new id (like kafka-storage.sh).
    Storage {
        #[command(subcommand)]
        cmd: StorageCommand,
    },
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

#[derive(clap::Subcommand, Debug)]
enum StorageCommand {
    /// Print a new cluster id (kafka-storage.sh random-uuid).
    RandomUuid,
    /// Make an empty data directory belong to a cluster (kafka-storage.sh format); `serve`
    /// does it itself on a first start, so this is optional.
    Format(FormatArgs),
}

#[derive(clap::Args, Debug)]
struct FormatArgs {
    /// The cluster id (`tidelog storage random-uuid`).
    #[arg(long, short = 't')]
    cluster_id: String,
    /// The broker's config file, as for `serve` (its `log.dirs` is the directory).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// A Kafka-named setting, applied after the config file (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The data directory, over the config's `log.dirs`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// A directory formatted before is not an error (kafka-storage.sh's --ignore-formatted).
    #[arg(long, short = 'g')]
    ignore_formatted: bool,
    /// Accepted for kafka-storage.sh's command line: a single node is a standalone quorum.
    #[arg(long, short = 's')]
    standalone: bool,
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

/// The config file, then `--set`s, as `serve` and `storage format` read them.
fn file_and_sets(config: Option<&PathBuf>, sets: &[String]) -> Result<BrokerConfig, String> {
    let mut c = BrokerConfig::default();
    if let Some(path) = config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if path.extension().is_some_and(|e| e == "properties") {
            c.apply_properties(&text)?;
        } else {
            c.apply_toml(&text)?;
        }
    }
    for kv in sets {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--set wants KEY=VALUE, got {kv:?}"))?;
        c.set(k.trim(), v.trim())?;
    }
    Ok(c)
}

/// `tidelog storage format`: Kafka's messages and exit codes.
fn format_storage(args: &FormatArgs) -> Result<(), String> {
    let mut c = file_and_sets(args.config.as_ref(), &args.set)?;
    if let Some(d) = &args.data_dir {
        c.data_dir = d.clone();
    }
    c.resolve()?;
    let _ = args.standalone;
    let dir = c.data_dir.display();
    match tidelog::metadata::format(&c.data_dir, &args.cluster_id).map_err(|e| e.to_string())? {
        tidelog::metadata::Formatted::Now => {
            println!(
                "Formatting data directory {dir} with cluster id {}.",
                args.cluster_id
            );
            Ok(())
        }
        tidelog::metadata::Formatted::Already(_) if args.ignore_formatted => {
            println!("All of the log directories are already formatted.");
            Ok(())
        }
        tidelog::metadata::Formatted::Already(id) => Err(format!(
            "Log directory {dir} is already formatted (cluster id {id}). Use \
             --ignore-formatted to ignore this directory and format the others."
        )),
    }
}

fn build_config(args: &ServeArgs) -> Result<BrokerConfig, String> {
    let mut c = file_and_sets(args.config.as_ref(), &args.set)?;
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
        Command::Storage { cmd } => match cmd {
            StorageCommand::RandomUuid => {
                println!("{}", tidelog::metadata::random_cluster_id());
                ExitCode::SUCCESS
            }
            StorageCommand::Format(args) => match format_storage(&args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tidelog: {e}");
                    ExitCode::FAILURE
                }
            },
        },
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
