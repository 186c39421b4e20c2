//! The broker starts with every shard joined even when its cores are busy.
//!
//! Regression: with glommio's channel mesh, the join handshake lost a cross-thread wake-up
//! under CPU contention; one shard joined and the other stayed parked in io_uring forever, so
//! the broker never printed `listening on` (reproduced 2 of 2 times with three busy loops on
//! two cores). Cross-shard channels are now made before the executors start and waits are woken
//! by their sends. This starts brokers while busy loops hold every core, and checks that each
//! one comes up (the harness fails after `START_TIMEOUT`) and that every shard answers: topic
//! creation is applied on the metadata shard and broadcast to all shards, and a produce to every
//! partition reaches each owner shard.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{Broker, BrokerOptions};

/// Busy loops on every CPU until dropped.
struct BusyLoops {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl BusyLoops {
    fn start() -> BusyLoops {
        let stop = Arc::new(AtomicBool::new(false));
        let n = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        BusyLoops { stop, threads }
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[test]
fn every_shard_joins_while_the_cores_are_busy() {
    let _busy = BusyLoops::start();
    for (round, shards) in [2usize, 4, 2, 4].into_iter().enumerate() {
        let broker = Broker::start_with(BrokerOptions::default().shards(shards));
        let topic = format!("startup-{round}");
        broker.cli_ok(&["topic", "create", &topic, "--partitions", "8"], b"");
        let described = broker.cli_ok(&["topic", "describe", &topic], b"");
        assert_eq!(
            described.matches("Partition:").count(),
            8,
            "{shards} shards: {described}"
        );
        broker.cli_ok(&["produce", &topic], b"1\n2\n3\n4\n5\n6\n7\n8\n");
    }
}
