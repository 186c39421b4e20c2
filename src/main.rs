//! The `tidelog` binary: the broker (`tidelog serve`) and Kafka-console-style client commands.

use std::process::ExitCode;

use clap::Parser;

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
    /// Run the broker.
    Serve,
    #[command(flatten)]
    Client(tidelog::cli::ClientCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve => ExitCode::SUCCESS,
        Command::Client(cmd) => tidelog::cli::run(cmd),
    }
}
