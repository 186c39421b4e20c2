//! Kafka-console-style client commands (`tidelog topic|produce|consume`).

/// The client subcommands of the `tidelog` binary.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {}

/// Runs one client command to completion.
pub fn run(cmd: ClientCommand) -> std::process::ExitCode {
    match cmd {}
}
