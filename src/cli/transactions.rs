//! `tidelog transactions list|describe`, after `kafka-transactions.sh`: the same columns.

use crate::client::ClientError;

use super::ConnArgs;

/// Transaction subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum TransactionsCommand {
    /// Every transactional id: its coordinator, producer id and state.
    List {
        /// Only transactions in this state (Ongoing, CompleteCommit, ...); repeatable.
        #[arg(long)]
        state: Vec<String>,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// One transactional id's producer, state, timeout and open transaction's partitions.
    Describe {
        /// The transactional id.
        #[arg(long)]
        transactional_id: String,
        #[command(flatten)]
        conn: ConnArgs,
    },
}

/// Runs one transactions subcommand.
pub fn run(cmd: TransactionsCommand) -> Result<(), ClientError> {
    match cmd {
        TransactionsCommand::List { state, conn } => {
            let rows: Vec<Vec<String>> = conn
                .connect()?
                .list_transactions(&state)?
                .into_iter()
                .map(|t| {
                    vec![
                        t.transactional_id,
                        t.coordinator.to_string(),
                        t.producer_id.to_string(),
                        t.state,
                    ]
                })
                .collect();
            let header = [
                "TransactionalId",
                "Coordinator",
                "ProducerId",
                "TransactionState",
            ];
            print!("{}", super::group::table(&header, &rows));
            Ok(())
        }
        TransactionsCommand::Describe {
            transactional_id,
            conn,
        } => {
            let t = conn.connect()?.describe_transaction(&transactional_id)?;
            let now = crate::util::now_ms();
            let (start, duration) = match t.start_ms {
                s if s < 0 => ("None".to_owned(), "None".to_owned()),
                s => (s.to_string(), (now - s).max(0).to_string()),
            };
            let partitions: Vec<String> = t
                .partitions
                .iter()
                .map(|(topic, p)| format!("{topic}-{p}"))
                .collect();
            let header = [
                "CoordinatorId",
                "TransactionalId",
                "ProducerId",
                "ProducerEpoch",
                "TransactionState",
                "TransactionTimeoutMs",
                "CurrentTransactionStartTimeMs",
                "TransactionDurationMs",
                "TopicPartitions",
            ];
            let row = vec![
                t.coordinator.to_string(),
                t.transactional_id,
                t.producer_id.to_string(),
                t.producer_epoch.to_string(),
                t.state,
                t.timeout_ms.to_string(),
                start,
                duration,
                partitions.join(","),
            ];
            print!("{}", super::group::table(&header, &[row]));
            Ok(())
        }
    }
}
