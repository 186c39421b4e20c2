//! A three-node cluster on one machine for the cluster and replication tests: nodes 1, 2 and 3
//! on 127.0.0.1, .2 and .3, each `process.roles=broker,controller`, started with the exact
//! command line of issue 12 (same client port and controller port on every address), with
//! optional proxies between the controllers to cut any node off the quorum.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DescribeClusterRequest, MetadataRequest, MetadataResponse,
};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::netns::Isolation;
use super::raw::{topic, Raw};
use super::serve::Serve;
use super::{eventually, tidelog_bin};

pub const CLUSTER_ID: &str = "MkU3OEVBNTcwNTJENDM2Qk";
pub const WAIT: Duration = Duration::from_secs(30);

/// A port free on 127.0.0.1, .2 and .3 alike, below the kernel's ephemeral range (32768 and
/// up): a node restarted by a test binds its ports again, and a port from the ephemeral range
/// may meanwhile be the source port of some outgoing connection, which makes the bind fail.
pub fn port_free_on_all() -> u16 {
    use std::sync::atomic::AtomicU64;
    static STATE: AtomicU64 = AtomicU64::new(0);
    let seed = u64::from(std::process::id()) << 32
        | u64::from(std::time::UNIX_EPOCH.elapsed().unwrap().subsec_nanos());
    let _ = STATE.compare_exchange(0, seed | 1, Ordering::SeqCst, Ordering::SeqCst);
    loop {
        // xorshift: a different port for each call, each process and each run.
        let mut x = STATE.load(Ordering::SeqCst);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        STATE.store(x, Ordering::SeqCst);
        let port = 20_000 + (x % 12_000) as u16;
        if (1..=3).all(|i| std::net::TcpListener::bind(format!("127.0.0.{i}:{port}")).is_ok()) {
            return port;
        }
    }
}

/// A TCP proxy that can drop everything: a network fault between two controllers.
pub struct Proxy {
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    pub fn start(listen: &str, target: String) -> Proxy {
        let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("{listen}: {e}"));
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (c, k) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    continue; // dropped: the dialer sees its connection closed
                }
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let mut kept = k.lock().unwrap();
                for s in [&client, &server] {
                    kept.push(s.try_clone().unwrap());
                }
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Both);
                    });
                }
            }
        });
        Proxy { cut, conns }
    }

    pub fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

pub struct Node {
    pub id: u32,
    pub dir: tempfile::TempDir,
    pub serve: Option<Serve>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub client_port: u16,
    pub controller_port: u16,
    /// With proxies, node i reaches node j's controller listener at 127.0.i.j (a proxy to
    /// 127.0.0.j), so that the test can cut any node off the quorum.
    pub proxies: Option<BTreeMap<(u32, u32), Proxy>>,
    /// With isolation, each node runs in a network namespace of its own (`netns`), at its own
    /// address there, and [`Cluster::isolate`] cuts it off the network.
    pub isolation: Option<Isolation>,
}

impl Cluster {
    pub fn start() -> Cluster {
        Cluster::start_with(false)
    }

    /// A cluster whose nodes each run in a network namespace, or `None` where namespaces
    /// cannot be made (not root).
    pub fn start_isolated() -> Option<Cluster> {
        let isolation = Isolation::create(3)?;
        Some(Cluster::start_inner(false, Some(isolation)))
    }

    pub fn start_with(proxied: bool) -> Cluster {
        Cluster::start_inner(proxied, None)
    }

    fn start_inner(proxied: bool, isolation: Option<Isolation>) -> Cluster {
        let client_port = port_free_on_all();
        let mut controller_port = port_free_on_all();
        while controller_port == client_port {
            controller_port = port_free_on_all();
        }
        let proxies = proxied.then(|| {
            let mut proxies = BTreeMap::new();
            for i in 1..=3 {
                for j in (1..=3).filter(|&j| j != i) {
                    let listen = format!("127.0.{i}.{j}:{controller_port}");
                    let target = format!("127.0.0.{j}:{controller_port}");
                    proxies.insert((i, j), Proxy::start(&listen, target));
                }
            }
            proxies
        });
        let mut cluster = Cluster {
            proxies,
            isolation,
            nodes: (1..=3)
                .map(|id| Node {
                    id,
                    dir: super::serve::data_dir(),
                    serve: None,
                })
                .collect(),
            client_port,
            controller_port,
        };
        for i in 1..=3 {
            cluster.start_node(i);
        }
        cluster
    }

    /// Node `i`'s command line, exactly as the issue gives it (but for the voters' addresses,
    /// with proxies).
    pub fn command(&self, i: u32, dir: &Path) -> Command {
        let (p, c) = (self.client_port, self.controller_port);
        let voters = match self.proxies {
            None => (1..=3)
                .map(|j| format!("{j}@{}:{c}", self.host(j)))
                .collect::<Vec<_>>()
                .join(","),
            Some(_) => (1..=3)
                .map(|j| match j == i {
                    true => format!("{j}@127.0.0.{j}:{c}"),
                    false => format!("{j}@127.0.{i}.{j}:{c}"),
                })
                .collect::<Vec<_>>()
                .join(","),
        };
        let mut cmd = Command::new(tidelog_bin());
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(dir)
            .args(["--set", &format!("node.id={i}")])
            .args(["--set", "process.roles=broker,controller"])
            .args(["--set", &format!("cluster.id={CLUSTER_ID}")])
            .args(["--set", &format!("controller.quorum.voters={voters}")])
            .args([
                "--set",
                &format!(
                    "listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
                    h = self.host(i)
                ),
            ])
            .args(["--set", "controller.listener.names=CONTROLLER"])
            .args(["--shards", "2"]);
        match &self.isolation {
            Some(iso) => iso.wrap(i, &cmd),
            None => cmd,
        }
    }

    /// Node `i`'s address: 127.0.0.i, or its namespace's.
    pub fn host(&self, i: u32) -> String {
        match &self.isolation {
            Some(iso) => iso.address(i),
            None => format!("127.0.0.{i}"),
        }
    }

    /// Cuts node `i` of an isolated cluster off the network (clients, replication, quorum),
    /// or heals it.
    pub fn isolate(&self, i: u32, cut: bool) {
        self.isolation
            .as_ref()
            .expect("an isolated cluster")
            .cut(i, cut);
    }

    pub fn start_node(&mut self, i: u32) {
        let cmd = self.command(i, self.nodes[i as usize - 1].dir.path());
        let mut serve = Serve::spawn(cmd);
        if serve.wait_listening().is_none() {
            // What holds the node's ports, if a bind failed (see its stderr above).
            let port = format!(":{}", self.controller_port);
            if let Ok(ss) = Command::new("ss").args(["-tanp"]).output() {
                let out = String::from_utf8_lossy(&ss.stdout);
                for l in out.lines().filter(|l| l.contains(&port)) {
                    eprintln!("ss: {l}");
                }
            }
            panic!("node {i} starts");
        }
        self.nodes[i as usize - 1].serve = Some(serve);
    }

    /// Cuts node `i` off the other controllers (`cut`), or heals it: every proxy to or from
    /// it drops its connections and refuses new ones.
    pub fn cut(&self, i: u32, cut: bool) {
        for ((from, to), proxy) in self.proxies.as_ref().expect("a proxied cluster") {
            if *from == i || *to == i {
                proxy.set_cut(cut);
            }
        }
    }

    pub fn kill(&mut self, i: u32) {
        let mut serve = self.nodes[i as usize - 1].serve.take().expect("running");
        serve.child.kill().unwrap();
        serve.child.wait().unwrap();
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to node `i`.
    pub fn signal(&self, i: u32, signal: i32) {
        let serve = self.nodes[i as usize - 1].serve.as_ref().expect("running");
        // SAFETY: kill(2) on our own unreaped child.
        unsafe { libc::kill(serve.child.id() as libc::pid_t, signal) };
    }

    /// The bytes of every segment file of `partition` of `topic` on node `i`, in order.
    pub fn segment_bytes(&self, i: u32, topic: &str, partition: i32) -> Vec<u8> {
        let dir = self.nodes[i as usize - 1]
            .dir
            .path()
            .join(format!("{topic}-{partition}"));
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|f: &std::path::PathBuf| f.extension().is_some_and(|x| x == "log"));
        files.sort();
        files
            .iter()
            .flat_map(|f| std::fs::read(f).unwrap_or_default())
            .collect()
    }

    /// SIGTERM node `i` and wait for it to exit cleanly; its stderr.
    pub fn stop(&mut self, i: u32) -> String {
        let mut serve = self.nodes[i as usize - 1].serve.take().expect("running");
        assert!(serve.stop().success(), "node {i} exits cleanly");
        serve.stderr_after_exit()
    }

    pub fn addr(&self, i: u32) -> String {
        format!("{}:{}", self.host(i), self.client_port)
    }

    pub fn running(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .filter(|n| n.serve.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// Creates a 3-partition topic through node `via`, retrying for up to 20 s (the issue's
    /// bound after a controller's loss), and prints how long it took since `after`.
    pub fn create_within_20_s(&self, via: u32, name: &str, after: &str) {
        let start = Instant::now();
        eventually(Duration::from_secs(20), || {
            (create(self, via, name, 3) == 0).then_some(())
        })
        .unwrap_or_else(|| panic!("topic {name} created through node {via} within 20 s"));
        eprintln!(
            "topic {name} created through node {via} {} ms after {after}",
            start.elapsed().as_millis()
        );
    }

    /// Waits until every node lists the three brokers (they have registered).
    pub fn wait_for_three_brokers(&self) {
        for i in 1..=3 {
            eventually(WAIT, || {
                (broker_ids(&self.metadata(i)) == BTreeSet::from([1, 2, 3])).then_some(())
            })
            .unwrap_or_else(|| panic!("node {i} lists three brokers"));
        }
    }

    /// The one value `f` gives for every node, once they agree on one that is a node id.
    pub fn agreed(&self, what: &str, f: impl Fn(u32) -> i32) -> u32 {
        eventually(WAIT, || {
            let seen: BTreeSet<i32> = (1..=3).map(&f).collect();
            match seen.into_iter().collect::<Vec<_>>().as_slice() {
                [id] if *id > 0 => Some(*id as u32),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("every node agrees on {what}"))
    }

    pub fn metadata(&self, i: u32) -> MetadataResponse {
        Raw::connect(&self.addr(i)).call(&MetadataRequest::default().with_topics(None), 12)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut s) = n.serve.take() {
                let _ = s.child.kill();
                let _ = s.child.wait();
            }
        }
    }
}

pub fn broker_ids(md: &MetadataResponse) -> BTreeSet<i32> {
    md.brokers.iter().map(|b| b.node_id.0).collect()
}

/// Partition -> leader of `name` in `md`.
pub fn leaders(md: &MetadataResponse, name: &str) -> BTreeMap<i32, i32> {
    md.topics
        .iter()
        .filter(|t| t.name.as_ref().is_some_and(|n| n.as_str() == name))
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.leader_id.0))
        .collect()
}

/// CreateTopics of an RF=1 topic through node `via`: the error code.
pub fn create(cluster: &Cluster, via: u32, name: &str, partitions: i32) -> i16 {
    create_rf(cluster, via, name, partitions, 1)
}

/// CreateTopics through node `via` with replication factor `rf`: the error code.
pub fn create_rf(cluster: &Cluster, via: u32, name: &str, partitions: i32, rf: i16) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    Raw::connect(&cluster.addr(via)).call(&req, 7).topics[0].error_code
}

pub fn controller(cluster: &Cluster, via: u32) -> i32 {
    Raw::connect(&cluster.addr(via))
        .call(&DescribeClusterRequest::default(), 1)
        .controller_id
        .0
}

pub fn produce(bootstrap: &str, name: &str, n: usize) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer");
    for i in 0..n {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        p.send(BaseRecord::to(name).key(&key).payload(&value))
            .expect("queued");
        p.poll(Duration::ZERO);
    }
    p.flush(WAIT).expect("every record acknowledged");
}

/// Reads every partition of `name` from the start through `bootstrap` until `n` records.
pub fn consume_all(bootstrap: &str, name: &str, partitions: i32, n: usize) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    read_from_start(bootstrap, name, partitions, |v| {
        seen.insert(v);
        seen.len() < n
    });
    seen
}

/// Every record of `name` read from the start through `bootstrap`, duplicates included, until
/// `n` have come (or [`WAIT`] passes).
pub fn consume_list(bootstrap: &str, name: &str, partitions: i32, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    read_from_start(bootstrap, name, partitions, |v| {
        seen.push(v);
        seen.len() < n
    });
    seen
}

/// Reads every partition of `name` from the start, handing each payload to `more` until it
/// says stop or [`WAIT`] passes.
fn read_from_start(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    mut more: impl FnMut(String) -> bool,
) {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "cluster-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(name, p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let v = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
            if !more(v) {
                return;
            }
        }
    }
}

/// Reads `n` records of `topic` as a member of `group` through `bootstrap`, then commits its
/// positions synchronously and leaves; how many it read.
pub fn consume_and_commit(bootstrap: &str, group: &str, topic: &str, n: usize) -> usize {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).unwrap();
    let mut got = 0;
    let deadline = Instant::now() + WAIT;
    while got < n && Instant::now() < deadline {
        if let Some(Ok(_)) = c.poll(Duration::from_millis(200)) {
            got += 1;
        }
    }
    c.commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("commit");
    c.unsubscribe();
    got
}
