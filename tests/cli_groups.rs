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

/// Consumes with `--group g` until `n` records were printed (or 10 s pass without one).
fn consume_group(broker: &Broker, topic: &str, n: usize, extra: &[&str]) -> Vec<String> {
    let max = n.to_string();
    let mut args = vec![
        "consume",
        topic,
        "--group",
        "g",
        "--max-messages",
        &max,
        "--timeout-ms",
        "10000",
    ];
    args.extend_from_slice(extra);
    let out = broker.cli_ok(&args, b"");
    out.lines().map(str::to_owned).collect()
}

/// The console consumer's group life: read everything, resume after more is written with no
/// duplicates or gaps, show the right lag, re-read after a reset, delete once Empty.
#[test]
fn group_consumers_resume_from_commits_and_reset() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "events", "--partitions", "3"], b"");
    let first: Vec<String> = (0..30).map(|i| format!("k{}:v{i}", i % 7)).collect();
    broker.cli_ok(
        &["produce", "events", "--key-separator", ":"],
        (first.join("\n") + "\n").as_bytes(),
    );

    // Only part of it first: the commit must be exactly what was printed.
    let mut got = consume_group(&broker, "events", 12, &["--from-beginning"]);
    got.extend(consume_group(&broker, "events", 18, &["--from-beginning"]));
    let mut want: Vec<String> = first
        .iter()
        .map(|l| l[l.find(':').unwrap() + 1..].to_owned())
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "each record once: {got:?}");

    let second: Vec<String> = (30..40).map(|i| format!("k{}:v{i}", i % 7)).collect();
    broker.cli_ok(
        &["produce", "events", "--key-separator", ":"],
        (second.join("\n") + "\n").as_bytes(),
    );
    // No --from-beginning: the committed offsets decide, not the reset policy.
    let mut got = consume_group(&broker, "events", 10, &[]);
    got.sort();
    let mut want: Vec<String> = (30..40).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want);

    assert!(broker
        .cli_ok(&["group", "list"], b"")
        .lines()
        .any(|l| l == "g"));
    let describe = broker.cli_ok(&["group", "describe", "g"], b"");
    let table = rows(&describe);
    assert_eq!(table.len(), 3, "{describe}");
    let mut total = 0;
    for row in &table {
        assert_eq!(&row[..2], ["g", "events"], "{describe}");
        let (current, end): (i64, i64) = (row[3].parse().unwrap(), row[4].parse().unwrap());
        assert_eq!(current, end, "{describe}");
        assert_eq!(row[5], "0", "{describe}");
        total += end;
    }
    assert_eq!(total, 40, "{describe}");

    let reset = broker.cli_ok(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "events",
            "--to-earliest",
            "--execute",
        ],
        b"",
    );
    assert!(rows(&reset).iter().all(|r| r[3] == "0"), "{reset}");
    let again = consume_group(&broker, "events", 40, &[]);
    assert_eq!(again.len(), 40);
    let describe = broker.cli_ok(&["group", "describe", "g"], b"");
    assert!(rows(&describe).iter().all(|r| r[5] == "0"), "{describe}");

    broker.cli_ok(&["group", "delete", "g"], b"");
    assert!(!broker
        .cli_ok(&["group", "list"], b"")
        .lines()
        .any(|l| l == "g"));
}

/// A group with a live member cannot be deleted or reset; the errors are Kafka's.
#[test]
fn a_group_with_a_member_is_neither_deleted_nor_reset() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "busy"], b"");
    let mut member = broker.cli(&["consume", "busy", "--group", "g", "--timeout-ms", "20000"]);
    member
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut member = member.spawn().unwrap();
    let stable = common::eventually(std::time::Duration::from_secs(15), || {
        let list = broker.cli_ok(&["group", "list", "--state", "Stable"], b"");
        rows(&list).iter().any(|r| r[0] == "g").then_some(())
    });
    let delete = broker.run_cli(&["group", "delete", "g"], b"");
    let reset = broker.run_cli(
        &[
            "group",
            "reset-offsets",
            "g",
            "--topic",
            "busy",
            "--to-earliest",
            "--execute",
        ],
        b"",
    );
    let describe = broker.cli_ok(&["group", "describe", "g"], b"");
    let _ = member.kill();
    let _ = member.wait();
    assert!(stable.is_some(), "the member never made the group Stable");
    assert!(!delete.status.success());
    assert!(String::from_utf8_lossy(&delete.stderr).contains("NON_EMPTY_GROUP"));
    assert!(!reset.status.success());
    assert!(String::from_utf8_lossy(&reset.stderr).contains("current state is Stable"));
    let rows = rows(&describe);
    assert_eq!(rows.len(), 1, "{describe}");
    assert_eq!(rows[0][1..3], ["busy", "0"], "{describe}");
    assert_eq!(rows[0][8], "tidelog-cli", "{describe}");
}

/// Two members split the partitions: the first rejoins when the second arrives, and together
/// they print every record exactly once.
#[test]
fn two_members_share_the_partitions() {
    let broker = broker();
    broker.cli_ok(&["topic", "create", "shared", "--partitions", "2"], b"");
    let spawn = || {
        let mut cmd = broker.cli(&["consume", "shared", "--group", "g", "--timeout-ms", "10000"]);
        cmd.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null());
        cmd.spawn().unwrap()
    };
    let members_with_partitions = |n: usize| {
        common::eventually(std::time::Duration::from_secs(15), || {
            // The group does not exist until the first member joins.
            let out = broker.run_cli(&["group", "describe", "g"], b"");
            let describe = String::from_utf8_lossy(&out.stdout);
            let owners: std::collections::BTreeSet<String> = rows(&describe)
                .into_iter()
                .filter(|r| r[2] != "-")
                .map(|r| r[6].clone())
                .collect();
            (owners.len() == n && !owners.contains("-")).then_some(())
        })
    };
    let a = spawn();
    let first = members_with_partitions(1);
    let b = spawn();
    let both = members_with_partitions(2);
    let input: String = (0..20).map(|i| format!("k{i}:v{i}\n")).collect();
    broker.cli_ok(
        &["produce", "shared", "--key-separator", ":"],
        input.as_bytes(),
    );
    let mut got = Vec::new();
    for member in [a, b] {
        let out = member.wait_with_output().unwrap();
        assert!(out.status.success());
        got.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(str::to_owned),
        );
    }
    assert!(
        first.is_some() && both.is_some(),
        "no rebalance to two members"
    );
    got.sort();
    let mut want: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    want.sort();
    assert_eq!(got, want);
}
