//! `tidelog-loadgen` against the real broker for a couple of seconds: it produces and consumes,
//! its `--json` object carries the figures scripts rely on, and its errors say what to do.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Broker, BrokerOptions};

/// The loadgen binary of this build profile, built on first use.
///
/// It belongs to another package of the workspace, so Cargo does not hand this test its path
/// (`CARGO_BIN_EXE_*` covers the package's own binaries only); it sits next to `tidelog`.
fn loadgen_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = PathBuf::from(common::tidelog_bin())
            .parent()
            .expect("binary directory")
            .to_owned();
        let release = dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args([
            "build",
            "-q",
            "-p",
            "tidelog-loadgen",
            "--bin",
            "tidelog-loadgen",
        ]);
        if release {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build");
        assert!(status.success(), "building tidelog-loadgen failed");
        dir.join("tidelog-loadgen")
    })
}

fn loadgen(broker: &Broker, args: &[&str]) -> Output {
    Command::new(loadgen_bin())
        .arg("--bootstrap-server")
        .arg(broker.addr())
        .args(args)
        .output()
        .expect("run tidelog-loadgen")
}

#[test]
fn produces_and_consumes_and_reports_json() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    let out = loadgen(
        &broker,
        &[
            "--topic",
            "smoke",
            "--create-topic",
            "--partitions",
            "4",
            "--consumers",
            "2",
            "--record-size",
            "200",
            "--rate",
            "20000",
            "--duration",
            "2s",
            "--cpus",
            "0",
            "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "loadgen failed: {stderr}\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    let num = |k: &str| {
        v[k].as_f64()
            .unwrap_or_else(|| panic!("{k} missing in {v}"))
    };
    // 20,000 msgs/s for 2 s: allow for a slow, shared test machine.
    assert!(num("produce_msgs_per_sec") > 5_000.0, "{v}");
    assert!(num("consume_msgs_per_sec") > 5_000.0, "{v}");
    assert!(
        (num("produce_bytes_per_sec") / num("produce_msgs_per_sec") - 200.0).abs() < 1.0,
        "{v}"
    );
    assert_eq!(v["records_rejected"], 0, "{v}");
    assert_eq!(v["records_acked"], v["records_consumed"], "{v}");
    for h in ["produce_latency_us", "e2e_latency_us"] {
        for k in ["p50", "p99", "p999", "max"] {
            assert!(v[h][k].as_u64().is_some_and(|x| x > 0), "{h}.{k} in {v}");
        }
        assert!(v[h]["p50"].as_u64() <= v[h]["p99"].as_u64(), "{v}");
    }
    // Progress lines went to stderr, leaving stdout to the JSON.
    assert!(stderr.contains("records/sec"), "{stderr}");
}

#[test]
fn errors_say_what_to_do() {
    let broker = Broker::start();
    let out = loadgen(&broker, &["--topic", "absent", "--duration", "1s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--create-topic"), "{err}");

    let out = Command::new(loadgen_bin())
        .args(["--bootstrap-server", "127.0.0.1:1", "--duration", "1s"])
        .output()
        .expect("run tidelog-loadgen");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot connect to broker 127.0.0.1:1"),
        "{err}"
    );
}
