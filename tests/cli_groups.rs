//! Consumer groups end to end through our own CLI against the real broker binary: `consume
//! --group` resumes from its commits, and `group list|describe|reset-offsets|delete` act as
//! kafka-consumer-groups.sh does.

mod common;

use common::{Broker, BrokerOptions};

/// A broker whose first rebalance completes at once instead of after Kafka's 3 s delay.
fn broker() -> Broker {
    Broker::start_with(BrokerOptions::default().set("group.initial.rebalance.delay.ms", "0"))
}

/// The data rows of a `group describe` or `reset-offsets` table, split into columns.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .skip_while(|l| !l.starts_with("GROUP "))
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .collect()
}

/// Without a live member, offsets reset by a standalone commit show in `describe`, and the group
/// can then be listed and deleted.
#[test]
fn offsets_reset_describe_list_and_delete_without_members() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "t", "--partitions", "2"], b"");
    broker.cli_ok(&["produce", "t", "--partition", "0"], b"a\nb\nc\n");
    broker.cli_ok(&["produce", "t", "--partition", "1"], b"d\n");

    let plan = broker.cli_ok(
        &["group", "reset-offsets", "g", "--topic", "t", "--to-latest"],
        b"",
    );
    assert_eq!(rows(&plan), [["g", "t", "0", "3"], ["g", "t", "1", "1"]]);
    // A dry run commits nothing, so the group does not exist yet.
    assert!(!broker
        .cli_ok(&["group", "list"], b"")
        .lines()
        .any(|l| l == "g"));

    broker.cli_ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "t:0",
            "--to-offset",
            "1",
            "--execute",
        ],
        b"",
    );
    let list = broker.cli_ok(&["group", "list"], b"");
    assert!(list.lines().any(|l| l == "g"), "{list}");
    let list = broker.cli_ok(&["group", "list", "--state", "Empty"], b"");
    assert_eq!(rows(&list), [["g", "Empty"]], "{list}");
    let list = broker.cli_ok(&["group", "list", "--state", "Stable"], b"");
    assert!(rows(&list).is_empty(), "{list}");

    let describe = broker.cli_ok(&["group", "describe", "g"], b"");
    assert!(describe.contains("has no active members"), "{describe}");
    assert!(describe.contains("CURRENT-OFFSET"), "{describe}");
    assert_eq!(
        rows(&describe),
        [["g", "t", "0", "1", "3", "2", "-", "-", "-"]],
        "{describe}"
    );

    let out = broker.cli_ok(&["group", "delete", "g"], b"");
    assert!(out.contains("'g'") && out.contains("successful"), "{out}");
    assert!(!broker
        .cli_ok(&["group", "list"], b"")
        .lines()
        .any(|l| l == "g"));
    let missing = broker.run_cli(&["group", "describe", "g"], b"");
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
}
