//! One consumer as a member of `--group`: it finds the coordinator, joins (the leader runs the
//! range assignor), starts its partitions at the committed offsets, runs the ordinary fetch
//! loop ([`consumer::consume`]) for them, one task per leader broker, and meanwhile heartbeats
//! and commits on its own connection. A rebalance revokes the fetch loops, commits, and joins
//! again; the end of the run commits and leaves the group.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};

use crate::conn::{self, Reader, Writer};
use crate::consumer::{self, Link};
use crate::producer::CLIENT_ID;
use crate::stats::{Local, Shared};
use crate::Plan;
use tidelog::protocol::consumer_group::{self as group, Assignment, Member};

/// How long JoinGroup may wait for the other members.
const REBALANCE_TIMEOUT_MS: i32 = 60_000;
/// How often the member looks at the clock, the stop flag and its fetch loops.
const TICK: Duration = Duration::from_millis(20);
/// How long a member that has made its last commit waits for the others before leaving: a
/// leave starts a rebalance, and a coordinator may refuse commits during one.
const LEAVE_WAIT: Duration = Duration::from_secs(5);
/// Pause before retrying when the coordinator is not ready.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// A request/response connection to the coordinator (one request at a time).
struct Rpc {
    writer: Writer,
    reader: Reader,
    correlation_id: i32,
}

impl Rpc {
    async fn connect(addr: &str) -> Result<Rpc, String> {
        let (writer, reader) = conn::connect(addr).await?;
        Ok(Rpc {
            writer,
            reader,
            correlation_id: 0,
        })
    }

    async fn call<R: Request>(&mut self, req: &R, version: i16) -> Result<R::Response, String> {
        self.correlation_id += 1;
        let frame = tidelog::client::conn::encode_request(
            req,
            version,
            self.correlation_id,
            &StrBytes::from_static_str(CLIENT_ID),
        )
        .map_err(|e| e.to_string())?;
        self.writer.write_all(&frame).await?;
        let flexible = R::Response::header_version(version) >= 1;
        let mut body = self.reader.response(self.correlation_id, flexible).await?;
        R::Response::decode(&mut body, version).map_err(|e| {
            format!(
                "broker {}: {} response: {e}",
                self.reader.addr,
                tidelog::client::conn::api_name(R::KEY)
            )
        })
    }
}

fn kafka_error(what: &str, code: i16) -> String {
    format!(
        "--group: {what} failed: {}",
        tidelog::client::error::error_name(code)
    )
}

/// Runs one member until the run ends.
pub async fn run(plan: Arc<Plan>, shared: Arc<Shared>, local: Rc<RefCell<Local>>) {
    if let Err(e) = member(&plan, &shared, &local).await {
        shared.fail(e);
    }
    shared.consumers_caught_up.fetch_add(1, Ordering::Relaxed);
}

/// What ended a generation.
enum End {
    Rejoin,
    Done,
}

/// This member's state in the group.
struct State<'a> {
    plan: &'a Plan,
    rpc: Rpc,
    group: &'a str,
    member_id: String,
    generation: i32,
    /// `(topic, partition)` to target index.
    target_of: HashMap<(String, i32), usize>,
}

impl State<'_> {
    fn member(&self) -> Member<'_> {
        Member {
            group: self.group,
            member_id: &self.member_id,
            generation: self.generation,
        }
    }

    /// One JoinGroup + SyncGroup round: the assigned targets, or `None` to try again.
    async fn join(&mut self) -> Result<Option<Vec<usize>>, String> {
        let plan = self.plan;
        let v = plan.cluster.group_versions.expect("set with --group");
        let topics = plan.args.topic_names();
        let req = group::join_group(
            self.group,
            &self.member_id,
            &topics,
            plan.args.session_timeout_ms,
            REBALANCE_TIMEOUT_MS,
            v.join,
        )?;
        let resp = self.rpc.call(&req, v.join).await?;
        match resp.error_code {
            0 => {}
            group::MEMBER_ID_REQUIRED => {
                self.member_id = resp.member_id.as_str().to_owned();
                return Ok(None);
            }
            group::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(None);
            }
            c if group::retriable(c) || c == group::REBALANCE_IN_PROGRESS => {
                glommio::timer::sleep(RETRY_PAUSE).await;
                return Ok(None);
            }
            c => return Err(kafka_error("JoinGroup", c)),
        }
        self.member_id = resp.member_id.as_str().to_owned();
        self.generation = resp.generation_id;
        let assignments = if resp.leader == resp.member_id {
            let mut members = BTreeMap::new();
            for m in &resp.members {
                let topics = group::decode_subscription(m.metadata.clone())?;
                members.insert(m.member_id.as_str().to_owned(), topics);
            }
            let partitions: BTreeMap<String, Vec<i32>> = plan
                .cluster
                .topics
                .iter()
                .map(|t| (t.name.clone(), (0..t.partitions.len() as i32).collect()))
                .collect();
            group::range_assign(&members, &partitions)
        } else {
            BTreeMap::new()
        };
        let req = group::sync_group(&self.member(), &assignments, v.sync)?;
        let resp = self.rpc.call(&req, v.sync).await?;
        match resp.error_code {
            0 => {}
            group::UNKNOWN_MEMBER_ID => {
                self.member_id.clear();
                return Ok(None);
            }
            c if group::rejoin_needed(c) || group::retriable(c) => return Ok(None),
            c => return Err(kafka_error("SyncGroup", c)),
        }
        let assignment = group::decode_assignment(resp.assignment)?;
        let mut targets = Vec::new();
        for (topic, parts) in &assignment {
            for &p in parts {
                // Partitions of topics this run does not know are not read.
                if let Some(&t) = self.target_of.get(&(topic.clone(), p)) {
                    targets.push(t);
                }
            }
        }
        Ok(Some(targets))
    }

    /// The committed offset of each target (`None` where the group has none).
    async fn committed(&mut self, targets: &[usize]) -> Result<Vec<Option<i64>>, String> {
        let cluster = &self.plan.cluster;
        let v = cluster.group_versions.expect("set with --group");
        let mut assignment = Assignment::new();
        for &t in targets {
            let target = &cluster.targets[t];
            assignment
                .entry(cluster.topics[target.topic].name.clone())
                .or_default()
                .push(target.partition);
        }
        let resp = self
            .rpc
            .call(
                &group::offset_fetch(self.group, &assignment),
                v.offset_fetch,
            )
            .await?;
        if resp.error_code != 0 {
            return Err(kafka_error("OffsetFetch", resp.error_code));
        }
        let mut found: HashMap<(String, i32), i64> = HashMap::new();
        for t in resp.topics {
            for p in t.partitions {
                if p.error_code != 0 {
                    return Err(kafka_error("OffsetFetch", p.error_code));
                }
                if p.committed_offset >= 0 {
                    found.insert(
                        (t.name.0.as_str().to_owned(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        Ok(targets
            .iter()
            .map(|&t| {
                let target = &cluster.targets[t];
                let name = cluster.topics[target.topic].name.clone();
                found.get(&(name, target.partition)).copied()
            })
            .collect())
    }

    /// Commits the targets' positions: the first partition error code, 0 when all succeeded.
    async fn commit(&mut self, targets: &[usize], positions: &[i64]) -> Result<i16, String> {
        if targets.is_empty() {
            return Ok(0);
        }
        let cluster = &self.plan.cluster;
        let v = cluster.group_versions.expect("set with --group");
        let offsets: Vec<(&str, i32, i64)> = targets
            .iter()
            .map(|&t| {
                let target = &cluster.targets[t];
                (
                    cluster.topics[target.topic].name.as_str(),
                    target.partition,
                    positions[t],
                )
            })
            .collect();
        let req = group::offset_commit(&self.member(), &offsets);
        let resp = self.rpc.call(&req, v.offset_commit).await?;
        Ok(resp
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .map(|p| p.error_code)
            .find(|&c| c != 0)
            .unwrap_or(0))
    }

    async fn heartbeat(&mut self) -> Result<i16, String> {
        let v = self.plan.cluster.group_versions.expect("set with --group");
        let resp = self
            .rpc
            .call(&group::heartbeat(&self.member()), v.heartbeat)
            .await?;
        Ok(resp.error_code)
    }

    async fn leave(&mut self) -> Result<(), String> {
        if self.member_id.is_empty() {
            return Ok(());
        }
        let v = self.plan.cluster.group_versions.expect("set with --group");
        let resp = self
            .rpc
            .call(&group::leave_group(&self.member(), v.leave), v.leave)
            .await?;
        // A member the coordinator already dropped has nothing to leave.
        match resp.error_code {
            0 | group::UNKNOWN_MEMBER_ID => Ok(()),
            c => Err(kafka_error("LeaveGroup", c)),
        }
    }
}

/// The address of the group's coordinator.
async fn find_coordinator(plan: &Plan, group: &str) -> Result<String, String> {
    let v = plan.cluster.group_versions.expect("set with --group");
    let mut rpc = Rpc::connect(&plan.args.bootstrap_server).await?;
    loop {
        let resp = rpc
            .call(&group::find_coordinator(group), v.find_coordinator)
            .await?;
        match resp.error_code {
            0 => {
                // Known leaders are reached as setup resolved them (one broker: bootstrap).
                return Ok(plan
                    .cluster
                    .nodes
                    .get(&resp.node_id.0)
                    .cloned()
                    .unwrap_or_else(|| format!("{}:{}", resp.host.as_str(), resp.port)));
            }
            c if group::retriable(c) => glommio::timer::sleep(RETRY_PAUSE).await,
            c => return Err(kafka_error("FindCoordinator", c)),
        }
    }
}

async fn member(
    plan: &Arc<Plan>,
    shared: &Arc<Shared>,
    local: &Rc<RefCell<Local>>,
) -> Result<(), String> {
    let args = &plan.args;
    let cluster = &plan.cluster;
    let group = args.group.as_deref().expect("member without --group");
    let addr = find_coordinator(plan, group).await?;
    let mut st = State {
        plan,
        rpc: Rpc::connect(&addr).await?,
        group,
        member_id: String::new(),
        generation: -1,
        target_of: cluster
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| ((cluster.topics[t.topic].name.clone(), t.partition), i))
            .collect(),
    };
    let stop_at_end = args.producers == 0;
    let heartbeat_every = Duration::from_millis((args.session_timeout_ms as u64 / 10).max(1));
    let commit_every = Duration::from_millis(args.commit_interval_ms);
    loop {
        if shared.stop_consumers.load(Ordering::Relaxed) {
            shared.members_committed.fetch_add(1, Ordering::Relaxed);
            return st.leave().await;
        }
        let Some(targets) = st.join().await? else {
            continue;
        };
        let committed = st.committed(&targets).await?;
        let positions = Rc::new(RefCell::new(vec![-1; cluster.targets.len()]));
        for (&t, c) in targets.iter().zip(&committed) {
            positions.borrow_mut()[t] = c.unwrap_or(cluster.start_offsets[t]);
        }
        let revoked = Rc::new(Cell::new(false));
        let running = Rc::new(Cell::new(0usize));
        let mut by_node: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        for &t in &targets {
            by_node
                .entry(cluster.targets[t].leader)
                .or_default()
                .push(t);
        }
        let mut fetchers = Vec::new();
        for (node, mine) in by_node {
            let link = Link {
                start: mine.iter().map(|&t| positions.borrow()[t]).collect(),
                positions: positions.clone(),
                revoked: revoked.clone(),
            };
            let job = consumer::Job {
                addr: cluster.nodes[&node].clone(),
                targets: mine,
            };
            let (plan, shared, local, running) =
                (plan.clone(), shared.clone(), local.clone(), running.clone());
            running.set(running.get() + 1);
            fetchers.push(glommio::spawn_local(async move {
                if let Err(e) = consumer::consume(&plan, &job, &shared, &local, Some(&link)).await {
                    shared.fail(e);
                }
                running.set(running.get() - 1);
            }));
        }
        let mut next_heartbeat = Instant::now() + heartbeat_every;
        let mut next_commit = Instant::now() + commit_every;
        let end = loop {
            glommio::timer::sleep(TICK).await;
            if shared.stop_consumers.load(Ordering::Relaxed) || (stop_at_end && running.get() == 0)
            {
                break End::Done;
            }
            let now = Instant::now();
            if now >= next_commit {
                next_commit = now + commit_every;
                let snapshot = positions.borrow().clone();
                match st.commit(&targets, &snapshot).await? {
                    0 => {}
                    c if group::rejoin_needed(c) => break End::Rejoin,
                    c => return Err(kafka_error("OffsetCommit", c)),
                }
            }
            if now >= next_heartbeat {
                next_heartbeat = now + heartbeat_every;
                match st.heartbeat().await? {
                    0 => {}
                    c if group::rejoin_needed(c) => break End::Rejoin,
                    c => return Err(kafka_error("Heartbeat", c)),
                }
            }
        };
        revoked.set(true);
        for f in fetchers {
            f.await;
        }
        // Commit what was read before the partitions move on; a generation already over
        // refuses (its next owner then rereads from the last commit, at least once).
        let snapshot = positions.borrow().clone();
        match st.commit(&targets, &snapshot).await? {
            0 => {}
            c if group::rejoin_needed(c) => {
                if c == group::UNKNOWN_MEMBER_ID {
                    st.member_id.clear();
                }
            }
            c => return Err(kafka_error("OffsetCommit", c)),
        }
        if let End::Done = end {
            shared.members_committed.fetch_add(1, Ordering::Relaxed);
            let deadline = Instant::now() + LEAVE_WAIT;
            while shared.members_committed.load(Ordering::Relaxed) < args.consumers
                && Instant::now() < deadline
            {
                glommio::timer::sleep(TICK).await;
            }
            return st.leave().await;
        }
    }
}
