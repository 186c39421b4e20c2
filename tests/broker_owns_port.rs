//! The broker owns its listening address (issue 9.4): its shards share the port through
//! SO_REUSEPORT, but a second broker, or any process already holding the port, makes
//! `tidelog serve` exit non-zero with "Address already in use", as Kafka does. Before, the
//! second broker started and the kernel split new connections between the two.

mod common;

use common::raw::Raw;
use common::serve::{command, data_dir, Serve};
use common::{Broker, BrokerOptions};
use kafka_protocol::messages::ApiVersionsRequest;

/// Runs `tidelog serve` on `listen` and expects it to refuse to start.
fn assert_refused(listen: &str) {
    let dir = data_dir();
    let mut serve = Serve::spawn(command(listen, dir.path(), &["--shards", "2"], None));
    let status = serve.wait_exit(common::START_TIMEOUT);
    let Some(status) = status else {
        panic!("a second `tidelog serve` on {listen} kept running instead of failing");
    };
    let stderr = serve.stderr_after_exit();
    assert!(!status.success(), "exit status {status}");
    assert!(
        stderr.contains("Address already in use") && stderr.contains(listen),
        "stderr names the address and the reason: {stderr}"
    );
}

#[test]
fn a_second_broker_on_the_same_address_exits_address_already_in_use() {
    let broker = Broker::start_with(BrokerOptions::default().shards(2));
    assert_refused(&broker.addr());
    // The first broker is untouched and still answers on every new connection.
    for _ in 0..4 {
        let mut c = Raw::connect(&broker.addr());
        let r = c.call(&ApiVersionsRequest::default(), 3);
        assert_eq!(r.error_code, 0);
    }
}

#[test]
fn a_plain_listener_holding_the_port_makes_serve_exit_address_already_in_use() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap().to_string();
    assert_refused(&addr);
    drop(holder);
}

/// The guard is released with the process: a broker killed with SIGKILL (no clean-up code
/// runs) can be started again on its port at once.
#[test]
fn a_killed_broker_can_be_restarted_on_its_port() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    broker.kill_and_restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

/// Connections the broker accepted and closed leave TIME_WAIT remains on its port; the next
/// start's probe must bind past them (every shard's listener carries SO_REUSEADDR, which its
/// accepted connections inherit).
#[test]
fn a_cleanly_stopped_broker_with_closed_connections_restarts_on_its_port() {
    let mut broker = Broker::start_with(BrokerOptions::default().shards(2));
    for _ in 0..8 {
        let mut c = Raw::connect(&broker.addr());
        assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
    }
    broker.restart();
    let mut c = Raw::connect(&broker.addr());
    assert_eq!(c.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}
