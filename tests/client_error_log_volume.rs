//! Client-caused errors do not flood the broker's log (issue 9.7). Before, every malformed
//! request and every per-partition error wrote a WARN line (9.4 MB of log for 34,000 bad
//! requests). Now each is logged at debug level, and per client and interval there is one WARN
//! line at its first error and one summary of the rest.

mod common;

use common::raw::{batch, topic, Raw};
use common::serve::{command, data_dir, Serve};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::ProduceRequest;

const BAD_REQUESTS: usize = 500;

#[test]
fn a_thousand_bad_requests_write_a_bounded_number_of_warn_lines() {
    let dir = data_dir();
    let mut cmd = command(
        "127.0.0.1:0",
        dir.path(),
        &["--shards", "1", "--set", "auto.create.topics.enable=false"],
        None,
    );
    cmd.env("RUST_LOG", "info");
    let mut serve = Serve::spawn(cmd);
    let addr = serve.wait_listening().expect("broker starts").to_string();

    // Per-partition client errors: produce to a topic that does not exist.
    let mut c = Raw::connect(&addr);
    for _ in 0..BAD_REQUESTS {
        let req = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic("no-such-topic"))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(&["v"], None, 1)))])]);
        let r = c.call(&req, 9);
        let code = r.responses[0].partition_responses[0].error_code;
        assert_ne!(code, 0, "the produce is refused");
    }
    // Malformed requests: a valid size prefix around bytes that are no request header.
    for _ in 0..BAD_REQUESTS {
        let mut bad = Raw::connect(&addr);
        let mut frame = 16i32.to_be_bytes().to_vec();
        frame.extend_from_slice(&[0xff; 16]);
        bad.send_bytes(&frame);
        assert!(
            bad.closed(),
            "the broker closes a malformed request's connection"
        );
    }
    let status = serve.stop();
    assert!(status.success(), "clean shutdown: {status}");
    let stderr = serve.stderr_after_exit();
    let warns: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    // Two clients (the raw-test client id and the anonymous connections from 127.0.0.1), each
    // at most one first-error line and one summary; shutdown inside the interval leaves the
    // summaries unwritten, which is why the bound is not exact.
    assert!(
        warns.len() <= 4,
        "{} WARN lines for {} bad requests:\n{}",
        warns.len(),
        2 * BAD_REQUESTS,
        warns.join("\n")
    );
    assert!(
        warns.iter().any(|l| l.contains("raw-test"))
            && warns.iter().any(|l| l.contains("127.0.0.1")),
        "each misbehaving client is still named at WARN:\n{}",
        warns.join("\n")
    );
}
