//! `tidelog serve`: start one pinned executor per shard, serve until SIGINT/SIGTERM, then shut
//! down cleanly (stop accepting, drain in-flight requests, flush, write clean-shutdown markers).

use std::os::fd::{FromRawFd, IntoRawFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorBuilder, Placement};
use tracing::{error, info, warn};

use crate::cluster::{Cluster, QuorumStart};
use crate::config::{BrokerConfig, SHARD_CHANNEL_CAPACITY};
use crate::config::{
    IO_MEMORY_BYTES_DEFAULT, LISTEN_BACKLOG, LOG_CLEANER_BACKOFF_MS_MIN,
    LOG_RETENTION_CHECK_INTERVAL_MS_MIN, PORT_RELEASE_POLL_MS, PORT_RELEASE_WAIT_MS_MAX,
    SHARD_PREEMPT_TIMER_MS, SHUTDOWN_DRAIN_MS_MAX, SHUTDOWN_DRAIN_POLL_MS,
};
use crate::metadata::records::MetadataRecord;
use crate::metadata::{self, MetadataImage};
use crate::router::{self, Job, Router};
use crate::runtime::raise_memlock_limit;
use crate::shard::Shard;

/// Shutdown phases, sent from the main thread to every shard.
#[derive(Clone, Copy, Debug)]
enum Phase {
    /// In a cluster, hand this broker's leaderships over before anything stops (controlled
    /// shutdown; the metadata shard does it, the others only acknowledge).
    Handover,
    /// Stop accepting and wait for in-flight requests, on every shard, before any shard closes.
    Drain,
    /// Flush and close partitions, then end the executor.
    Close,
}

/// Runs the broker until a termination signal. Errors are one readable line for the operator.
pub fn run(mut config: BrokerConfig) -> Result<(), String> {
    let shards = config.shard_count().max(1);
    let memlock = raise_memlock_limit(shards, IO_MEMORY_BYTES_DEFAULT)?;
    let nofile = crate::runtime::raise_nofile_limit();
    restrict_file_modes();
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    let _lock = lock_data_dir(&config.data_dir)?;
    // Before any shard opens a partition: a crash in the middle of DeleteTopics leaves the
    // partition's directory renamed aside, and nothing else would ever remove it.
    crate::shard::remove_deleted_dirs(&config.data_dir);
    let mut image = Arc::new(metadata::load(
        &config.data_dir,
        config.cluster_id.as_deref(),
    )?);
    // A cluster's metadata is the quorum's log; the data directory's own metadata holds only
    // the cluster id it was formatted for. The shards start from that and receive the
    // quorum's images as it applies its log.
    let (cluster, mut quorum) = if config.is_cluster() {
        let (cluster, quorum) = crate::cluster::Cluster::open(&config, &image.cluster_id)?;
        image = Arc::new(MetadataImage {
            cluster_id: image.cluster_id.clone(),
            ..MetadataImage::default()
        });
        (Some(cluster), Some(quorum))
    } else {
        (None, None)
    };
    // Held until the process exits: while it is held no other tidelog can claim the address.
    // A controller-only node serves no clients and binds no client listener.
    let serves = config.serves_clients();
    let _port_guard = if serves {
        let (listen, guard) = claim_listen_address(config.listen)?;
        config.listen = listen;
        Some(guard)
    } else {
        None
    };
    config.fd_budget = crate::config::FdBudget::new(nofile, shards, config.max_connections);
    let partitions = crate::admin::partition_count(&image).max(0) as u64;
    if let Some(why) = config.fd_budget.refuse(partitions) {
        return Err(format!("cannot open the data dir's partitions: {why}"));
    }
    if config.fd_budget.connections_max < u64::from(config.max_connections) {
        info!(
            max_connections = config.max_connections,
            connections_max = config.fd_budget.connections_max,
            open_files_limit = nofile,
            "max.connections is more than RLIMIT_NOFILE leaves for connections; \
             accepting at most connections_max"
        );
    }
    let first = serves.then(|| bind_reuseport(config.listen)).transpose()?;
    let config = Arc::new(config);
    block_termination_signals();

    let (job_senders, mut job_receivers): (Vec<_>, Vec<_>) = (0..shards)
        .map(|_| flume::bounded::<Job<Shard>>(SHARD_CHANNEL_CAPACITY))
        .unzip();
    let cpus = allowed_cpus();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let mut first_fd = first.map(IntoRawFd::into_raw_fd);
    let mut controls = Vec::new();
    let mut handles = Vec::new();
    for i in 0..shards {
        let (tx, rx) = flume::unbounded::<(Phase, std::sync::mpsc::Sender<()>)>();
        controls.push(tx);
        let (config, image, mesh, ready) = (
            config.clone(),
            image.clone(),
            (job_senders.clone(), job_receivers.remove(0)),
            ready_tx.clone(),
        );
        let membership = Membership {
            cluster: cluster.clone(),
            quorum: quorum.take(),
        };
        let fd = first_fd.take();
        let placement = match cpus.get(i % cpus.len().max(1)) {
            Some(&cpu) if shards <= cpus.len() => Placement::Fixed(cpu),
            _ => Placement::Unbound,
        };
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("tidelog-shard-{i}"))
            .io_memory(memlock.io_memory)
            .preempt_timer(Duration::from_millis(SHARD_PREEMPT_TIMER_MS))
            .spawn(move || shard_main(i, config, image, membership, mesh, fd, rx, ready))
            .map_err(|e| format!("cannot start shard {i}: {e}"))?;
        handles.push(handle);
    }
    drop(ready_tx);
    for _ in 0..shards {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a shard exited during start-up".into()),
        }
    }
    info!(
        shards,
        io_memory_kib = memlock.io_memory / 1024,
        memlock_limit_kib = memlock.limit / 1024,
        cap_ipc_lock = memlock.cap_ipc_lock,
        open_files_limit = nofile,
        partitions_max = config.fd_budget.partitions_max,
        connections_max = config.fd_budget.connections_max,
        data_dir = %config.data_dir.display(),
        "broker started; each shard reserved its io_uring memory"
    );
    // The readiness line; a closed stdout (the starter stopped reading) must not end the broker.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let shown = match config.controller_listener() {
            Some(l) if !serves => format!("{}:{}", l.host, l.port),
            _ => config.listen.to_string(),
        };
        let _ = writeln!(out, "listening on {shown}").and_then(|()| out.flush());
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();

    let sig = wait_for_termination_signal();
    info!(signal = sig, "shutting down");
    for phase in [Phase::Handover, Phase::Drain, Phase::Close] {
        let (ack_tx, ack_rx) = std::sync::mpsc::channel();
        for c in &controls {
            let _ = c.send((phase, ack_tx.clone()));
        }
        drop(ack_tx);
        while ack_rx.recv().is_ok() {}
    }
    for h in handles {
        if let Err(e) = h.join() {
            error!("shard ended with an error: {e}");
        }
    }
    info!("shut down cleanly");
    Ok(())
}

/// A shard's part in a cluster: every shard holds the handle; the first one also runs the
/// quorum.
struct Membership {
    cluster: Option<Arc<Cluster>>,
    quorum: Option<QuorumStart>,
}

#[allow(clippy::too_many_arguments)]
async fn shard_main(
    id: usize,
    config: Arc<BrokerConfig>,
    image: Arc<MetadataImage>,
    membership: Membership,
    (senders, jobs): (Vec<flume::Sender<Job<Shard>>>, flume::Receiver<Job<Shard>>),
    listener_fd: Option<RawFd>,
    control: flume::Receiver<(Phase, std::sync::mpsc::Sender<()>)>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let mut shard = Shard::new(config.clone(), Router::new(id, senders), image.clone());
    shard.cluster = membership.cluster;
    let shard = Rc::new(shard);
    glommio::spawn_local(router::serve_jobs(shard.clone(), jobs)).detach();
    shard.apply_metadata(image).await;
    if let Some(quorum) = membership.quorum {
        start_quorum(shard.clone(), quorum);
    }
    if !config.serves_clients() {
        // A controller-only node: the quorum and nothing for clients.
        let _ = ready.send(Ok(()));
        while let Ok((phase, ack)) = control.recv_async().await {
            if let Phase::Close = phase {
                drop(ack);
                break;
            }
        }
        return;
    }
    let listener = match listener_fd {
        // SAFETY: the descriptor was bound by `run` and handed to this shard alone.
        Some(fd) => unsafe { TcpListener::from_raw_fd(fd) },
        // Bound like the first one, with SO_REUSEADDR as well as SO_REUSEPORT: the connections
        // it accepts inherit both, and the next start's probe (`claim_listen_address`) can only
        // bind past their TIME_WAIT remains when they carry SO_REUSEADDR.
        None => match bind_reuseport(config.listen) {
            // SAFETY: a descriptor just bound here and owned by nothing else.
            Ok(l) => unsafe { TcpListener::from_raw_fd(l.into_raw_fd()) },
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        },
    };
    let serving = shard.clone();
    let mut accept = Some(glommio::spawn_local(async move {
        serving.until_serving().await;
        crate::net::accept_loop(serving, listener).await
    }));
    glommio::spawn_local(retention_loop(shard.clone())).detach();
    glommio::spawn_local(cleaner_loop(shard.clone())).detach();
    glommio::spawn_local(client_error_log_loop(shard.clone())).detach();
    glommio::spawn_local(heal_loop(shard.clone())).detach();
    glommio::spawn_local(transaction_timeout_loop(shard.clone())).detach();
    if shard.cluster.is_some() {
        crate::fetcher::start(shard.clone());
    }
    let _ = ready.send(Ok(()));
    while let Ok((phase, ack)) = control.recv_async().await {
        match phase {
            Phase::Handover => {
                if shard.id() == crate::router::METADATA_SHARD {
                    controlled_shutdown(&shard).await;
                }
                drop(ack);
            }
            Phase::Drain => {
                shard.shutting_down.set(true);
                shard.groups.release_waiters();
                if let Some(a) = accept.take() {
                    a.cancel().await;
                }
                let mut waited = 0;
                while shard.intake.requests_in_flight() > 0 && waited < SHUTDOWN_DRAIN_MS_MAX {
                    glommio::timer::sleep(Duration::from_millis(SHUTDOWN_DRAIN_POLL_MS)).await;
                    waited += SHUTDOWN_DRAIN_POLL_MS;
                }
                let _ = ack.send(());
                glommio::timer::sleep(Duration::ZERO).await;
                continue;
            }
            Phase::Close => {
                shard.close_all().await;
                drop(ack);
                break;
            }
        }
    }
}

/// Runs the metadata quorum on this (the metadata) shard, installs every image it applies on
/// every shard, and registers this broker with the cluster.
fn start_quorum(shard: Rc<Shard>, quorum: QuorumStart) {
    let images = quorum.images.clone();
    glommio::spawn_local(async move {
        if let Err(e) = quorum.run().await {
            // Its log could not be written: what it promised may not be durable, so it takes no
            // further part (the other controllers carry on without it).
            error!("the metadata quorum stopped on this node: {e}");
        }
    })
    .detach();
    let installer = shard.clone();
    glommio::spawn_local(async move {
        while let Ok(mut image) = images.recv_async().await {
            while let Ok(newer) = images.try_recv() {
                image = newer;
            }
            crate::admin::install(&installer, image).await;
        }
    })
    .detach();
    if shard.config.serves_clients() {
        glommio::spawn_local(register_broker(shard)).detach();
    }
}

/// Kafka's controlled shutdown: tells the controller this broker is going (its leaderships
/// move to other in-sync replicas and it leaves every ISR) and waits until the image shows it
/// leading nothing, for at most [`CONTROLLED_SHUTDOWN_WAIT`]; so a rolling restart costs
/// clients only retriable errors. A single node, or a partition with no other in-sync
/// replica, has nobody to hand over to.
async fn controlled_shutdown(shard: &Rc<Shard>) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    if !shard.config.serves_clients() {
        return;
    }
    let me = shard.node_id();
    let deadline = std::time::Instant::now() + CONTROLLED_SHUTDOWN_WAIT;
    let proposed = futures_lite::future::or(
        async {
            Some(
                cluster
                    .propose(vec![MetadataRecord::ControlledShutdown { id: me }])
                    .await,
            )
        },
        async {
            glommio::timer::sleep(CONTROLLED_SHUTDOWN_WAIT).await;
            None
        },
    )
    .await;
    match proposed {
        Some(Ok(image)) => crate::admin::install(shard, image).await,
        Some(Err(e)) => {
            warn!("controlled shutdown: the controller did not take it ({e:?}); stopping anyway");
            return;
        }
        None => {
            warn!("controlled shutdown: no answer from the controller; stopping anyway");
            return;
        }
    }
    loop {
        let led = leaderships_movable(&shard.metadata(), me);
        if led == 0 {
            info!("controlled shutdown: this broker leads nothing that can move");
            return;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            warn!(
                partitions = led,
                "controlled shutdown: still leading partitions; stopping anyway"
            );
            return;
        }
        futures_lite::future::or(shard.next_image(), glommio::timer::sleep(left)).await;
    }
}

/// Partitions `me` leads that another live in-sync replica could take over.
fn leaderships_movable(image: &MetadataImage, me: i32) -> usize {
    image
        .topics
        .values()
        .flat_map(|t| t.states.iter())
        .filter(|s| s.leader == me && s.isr.iter().any(|&b| b != me && image.is_live(b)))
        .count()
}

/// How long a controlled shutdown waits for its leaderships to move.
const CONTROLLED_SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Registers this broker (its advertised client endpoint and rack) until the quorum has it.
async fn register_broker(shard: Rc<Shard>) {
    let Some(cluster) = shard.cluster.clone() else {
        return;
    };
    let (host, port) = crate::api::advertised(&shard);
    let record = crate::cluster::register_record(&shard.config, host, port);
    loop {
        if shard.shutting_down.get() || crate::cluster::registered(&shard.metadata(), &record) {
            return;
        }
        match cluster.propose(vec![record.clone()]).await {
            Ok(image) => {
                info!(node = shard.node_id(), "registered with the cluster");
                crate::admin::install(&shard, image).await;
                return;
            }
            Err(e) => {
                tracing::debug!("registering with the cluster: {e:?}; retrying");
                glommio::timer::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Applies retention on this shard's partitions every `log.retention.check.interval.ms`.
async fn retention_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(
        shard
            .config
            .log_retention_check_interval_ms
            .max(LOG_RETENTION_CHECK_INTERVAL_MS_MIN),
    );
    loop {
        glommio::timer::sleep(every).await;
        if shard.shutting_down.get() {
            return;
        }
        shard.enforce_retention().await;
    }
}

/// Reopens partitions that failed on a write error once their disk has room again.
async fn heal_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(crate::config::LOG_HEAL_INTERVAL_MS);
    loop {
        glommio::timer::sleep(every).await;
        if shard.shutting_down.get() {
            return;
        }
        shard.heal_failed_partitions().await;
    }
}

/// Aborts the transactions that outlived their timeout, and finishes those whose markers
/// failed, every `transaction.abort.timed.out.transaction.cleanup.interval.ms`. The first pass
/// comes within a second of start-up, so that a transaction found decided but without its
/// markers (a crash between the two) completes at once, as Kafka completes it on load.
async fn transaction_timeout_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(shard.config.transaction_abort_interval_ms);
    let mut next = every.min(Duration::from_secs(1));
    loop {
        glommio::timer::sleep(next).await;
        next = every;
        if shard.shutting_down.get() {
            return;
        }
        crate::api::txn_flow::sweep(&shard).await;
    }
}

/// Writes the per-client summaries of client-caused errors once their interval has ended.
async fn client_error_log_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(crate::config::CLIENT_ERROR_LOG_INTERVAL_MS);
    loop {
        glommio::timer::sleep(every).await;
        if shard.shutting_down.get() {
            return;
        }
        crate::net::client_errors::flush_due();
    }
}

/// Compacts this shard's compacted partitions every `log.cleaner.backoff.ms`. The key map is
/// owned by this task, so no borrow of it outlives an `.await` elsewhere.
async fn cleaner_loop(shard: Rc<Shard>) {
    let every = Duration::from_millis(
        shard
            .config
            .log_cleaner_backoff_ms
            .max(LOG_CLEANER_BACKOFF_MS_MIN),
    );
    let mut map = None;
    loop {
        glommio::timer::sleep(every).await;
        if shard.shutting_down.get() {
            return;
        }
        shard.compact_partitions(&mut map).await;
    }
}

/// Makes sure this broker alone listens on `addr`, and resolves port 0 to a free port.
///
/// Every shard binds with SO_REUSEPORT so that the kernel spreads connections over them, but
/// SO_REUSEPORT would equally let a second broker (or any process of the same user) join the
/// group and receive a share of new connections. Kafka fails with "Address already in use";
/// so do we, with two checks:
///
/// - An abstract unix socket named after the address is bound and held for the life of the
///   process. The name is exclusive in this network namespace (the scope of the TCP port too)
///   and the kernel releases it when the process dies, even by SIGKILL. It keeps two tidelogs
///   from racing each other through the window between the probe and the shard sockets.
/// - A probe socket *without* SO_REUSEPORT binds `addr`. The kernel refuses it while any
///   socket holds the port, reuseport or not (a plain listener, another program). SO_REUSEADDR
///   is set only so that TIME_WAIT connections of a previous run do not count. For port 0 the
///   probe's port is the one this broker then uses (and the guard is named after it).
///
/// A broker killed a moment ago leaves its listening sockets alive for a short while: they are
/// referenced by its io_uring rings, which the kernel tears down asynchronously. So once the
/// guard is ours (no live tidelog holds the address), a refused probe is retried for up to
/// [`PORT_RELEASE_WAIT_MS_MAX`] before the start fails.
///
/// What remains open: a process that is not tidelog, runs as the same user and binds with
/// SO_REUSEPORT after the probe is dropped can still join the group; only the kernel's
/// reuseport BPF hooks could prevent that, and such a process means to share the port.
fn claim_listen_address(
    addr: std::net::SocketAddr,
) -> Result<(std::net::SocketAddr, std::os::unix::net::UnixListener), String> {
    if addr.port() == 0 {
        let probe = probe_bind(addr)?;
        let resolved = probe
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| format!("cannot listen on {addr}: the bound address is unknown"))?;
        return Ok((resolved, address_guard(resolved)?));
    }
    let guard = address_guard(addr)?;
    let deadline = std::time::Instant::now() + Duration::from_millis(PORT_RELEASE_WAIT_MS_MAX);
    loop {
        match probe_bind(addr) {
            Ok(_probe) => return Ok((addr, guard)),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(PORT_RELEASE_POLL_MS)),
        }
    }
}

/// Binds `addr` without SO_REUSEPORT (see [`claim_listen_address`]); never listens.
fn probe_bind(addr: std::net::SocketAddr) -> Result<socket2::Socket, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let probe =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    probe.set_reuse_address(true).map_err(err)?;
    probe.bind(&addr.into()).map_err(err)?;
    Ok(probe)
}

/// Binds the abstract unix socket that marks `addr` as this tidelog's.
fn address_guard(addr: std::net::SocketAddr) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::linux::net::SocketAddrExt;
    let err = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let name = std::os::unix::net::SocketAddr::from_abstract_name(format!("tidelog-listen-{addr}"))
        .map_err(err)?;
    std::os::unix::net::UnixListener::bind_addr(&name).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!("cannot listen on {addr}: {e} (by another tidelog broker)")
        } else {
            err(e)
        }
    })
}

/// Binds the first listener here; the other shards bind the same (already resolved) address.
fn bind_reuseport(addr: std::net::SocketAddr) -> Result<std::net::TcpListener, String> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = |e: std::io::Error| format!("cannot listen on {addr}: {e}");
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(LISTEN_BACKLOG).map_err(err)?;
    Ok(s.into())
}

/// Data files are created 0640 and directories 0750: records are the clients' data, readable
/// by the broker's user and the operator's group, not by every local user. A process-wide
/// umask covers every file the broker creates (segments, indexes, snapshots, metadata) without
/// each creation site having to remember a mode; `tidelog serve` creates nothing else.
fn restrict_file_modes() {
    // SAFETY: umask only changes this process's file-creation mask.
    unsafe { libc::umask(0o027) };
}

/// Refuses to share a data directory with another running broker.
fn lock_data_dir(dir: &std::path::Path) -> Result<std::fs::File, String> {
    use std::os::fd::AsRawFd;
    let path = dir.join(".lock");
    let f = std::fs::File::create(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(format!(
            "data dir {} is in use by another tidelog process",
            dir.display()
        ));
    }
    Ok(f)
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set we own.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

fn termination_sigset() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a value we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks SIGINT/SIGTERM in this thread and every thread it spawns, so that only
/// [`wait_for_termination_signal`] sees them.
fn block_termination_signals() {
    let set = termination_sigset();
    // SAFETY: changes this thread's signal mask only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

fn wait_for_termination_signal() -> i32 {
    let set = termination_sigset();
    let mut sig = 0;
    // SAFETY: sigwait on the set blocked above.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}
