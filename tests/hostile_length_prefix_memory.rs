//! A 4-byte length prefix costs the broker what actually arrives, not what it announces
//! (issue 9.7). Before, the broker allocated and zeroed the whole announced frame as soon as
//! it read the prefix: six connections that each sent "40 MiB follows" and a few bytes took
//! 240 MiB of resident memory from a client that sent 6 KiB.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::raw::Raw;
use common::serve::{command, data_dir, Serve};
use kafka_protocol::messages::ApiVersionsRequest;

const CONNECTIONS: usize = 6;
/// Announced per connection; six of them fit the shard's 256 MiB in-flight budget, so every
/// connection gets as far as reading its frame (none waits for a permit).
const ANNOUNCED_BYTES: u32 = 40 << 20;

/// The receive queue (bytes not yet read by the broker) of the broker's end of each of our
/// connections, from /proc/net/tcp: the proof that the broker has read what we sent.
fn unread_bytes(broker_port: u16, client_ports: &[u16]) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let mut total = 0;
    let mut found = 0;
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let port = |a: &str| u16::from_str_radix(a.rsplit(':').next()?, 16).ok();
        let (Some(local), Some(remote)) = (port(f[1]), port(f[2])) else {
            continue;
        };
        if local == broker_port && client_ports.contains(&remote) {
            let rx = f[4].split(':').nth(1)?;
            total += u64::from_str_radix(rx, 16).ok()?;
            found += 1;
        }
    }
    (found == client_ports.len()).then_some(total)
}

#[test]
fn six_announced_40_mib_frames_cost_what_arrived_not_what_was_announced() {
    let dir = data_dir();
    let max = ANNOUNCED_BYTES.to_string();
    let args = ["--shards", "1", "--set"];
    let set = format!("socket.request.max.bytes={max}");
    let mut cmd = command("127.0.0.1:0", dir.path(), &args, None);
    cmd.arg(&set);
    let mut serve = Serve::spawn(cmd);
    let addr = serve.wait_listening().expect("broker starts");
    let pid = serve.child.id();
    let before_kib = serve.vm_hwm_kib();

    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = TcpStream::connect(addr).unwrap();
        let mut bytes = ANNOUNCED_BYTES.to_be_bytes().to_vec();
        // A plausible start of a request header, then nothing more.
        bytes.extend_from_slice(&[0u8; 1020]);
        c.write_all(&bytes).unwrap();
        conns.push(c);
    }
    let ports: Vec<u16> = conns
        .iter()
        .map(|c| c.local_addr().unwrap().port())
        .collect();
    let drained = common::eventually(Duration::from_secs(20), || {
        (unread_bytes(addr.port(), &ports) == Some(0)).then_some(())
    });
    assert!(
        drained.is_some(),
        "the broker read every connection's bytes"
    );
    // One round trip on the same (single) shard, so that the tasks that read those bytes have
    // finished the poll in which they did (where the old code sized the buffer).
    let mut probe = Raw::connect(&addr.to_string());
    assert_eq!(probe.call(&ApiVersionsRequest::default(), 3).error_code, 0);

    let after_kib = serve.vm_hwm_kib();
    let grown_mib = after_kib.saturating_sub(before_kib) / 1024;
    eprintln!("VmHWM {before_kib} KiB -> {after_kib} KiB (pid {pid})");
    // The old code grew by 6 x 40 MiB = 240 MiB here; 32 MiB leaves room for allocator noise.
    assert!(
        grown_mib < 32,
        "peak memory grew by {grown_mib} MiB for {CONNECTIONS} connections that sent 1 KiB each"
    );
    drop(conns);
}
