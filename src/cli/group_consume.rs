//! `tidelog consume TOPIC --group G`: kafka-console-consumer.sh as a member of a consumer group.
//!
//! It joins with the classic protocol and the range assignor, starts each assigned partition at
//! the group's committed offset (or, with none, where `--from-beginning` says, as Kafka's
//! `auto.offset.reset` does), heartbeats between fetches, commits what it has printed every
//! `auto.commit.interval.ms` and on exit, and leaves the group on exit so its partitions move at
//! once. A rebalance (REBALANCE_IN_PROGRESS, ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID) is joined
//! again.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use crate::client::admin::TopicInfo;
use crate::client::groups::Committed;
use crate::client::membership::{rejoin_needed, MemberTimeouts, Membership, REBALANCE_IN_PROGRESS};
use crate::client::{Client, ClientError, OffsetSpec};

use super::consume::{format_record, next_wait, stdout_closed, ConsumeArgs, TOPIC_WAIT};

/// Kafka consumer's `heartbeat.interval.ms` default.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(3000);
/// Kafka consumer's `auto.commit.interval.ms` default.
const AUTO_COMMIT_INTERVAL: Duration = Duration::from_millis(5000);
/// Kafka consumer's `session.timeout.ms` and `max.poll.interval.ms` defaults.
const TIMEOUTS: MemberTimeouts = MemberTimeouts {
    session_timeout_ms: 45_000,
    rebalance_timeout_ms: 300_000,
};

/// Runs `tidelog consume --group` until `--max-messages`, `--timeout-ms` of silence, or a
/// signal; commits and leaves the group on the way out, also after an error.
pub fn run(args: &ConsumeArgs, group: &str) -> Result<(), ClientError> {
    let timeout = args.timeout_ms.map(Duration::from_millis);
    let mut client = args.conn.connect()?;
    let topic = client.topic(&args.topic, false, timeout.unwrap_or(TOPIC_WAIT))?;
    let topics = [args.topic.clone()];
    let membership = client.join(group, &topics, "", TIMEOUTS)?;
    let mut consumer = GroupConsumer {
        client,
        topic,
        membership,
        reset: if args.from_beginning {
            OffsetSpec::Earliest
        } else {
            OffsetSpec::Latest
        },
        positions: BTreeMap::new(),
        committed: BTreeMap::new(),
        printed: 0,
        heartbeat_last: Instant::now(),
        commit_last: Instant::now(),
    };
    let result = consumer
        .assign(false)
        .and_then(|()| consumer.poll_loop(args, timeout));
    let closed = consumer.close();
    eprintln!("Processed a total of {} messages", consumer.printed);
    result.and(closed)
}

/// One group member's state: its membership and where each assigned partition is read up to.
struct GroupConsumer {
    client: Client,
    topic: TopicInfo,
    membership: Membership,
    /// Where to start a partition without a committed offset (`auto.offset.reset`).
    reset: OffsetSpec,
    /// The offset after the last printed record, per assigned partition.
    positions: BTreeMap<i32, i64>,
    /// What this member last committed (or found committed), so idle periods commit nothing.
    committed: BTreeMap<i32, i64>,
    printed: u64,
    heartbeat_last: Instant,
    commit_last: Instant,
}

impl GroupConsumer {
    fn poll_loop(
        &mut self,
        args: &ConsumeArgs,
        timeout: Option<Duration>,
    ) -> Result<(), ClientError> {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        let mut last_record = Instant::now();
        loop {
            let Some(wait) = next_wait(args, self.printed, timeout, last_record) else {
                return Ok(());
            };
            self.maintain()?;
            match self.poll_once(args, &mut out, wait) {
                Ok(true) => last_record = Instant::now(),
                Ok(false) => {}
                Err(PollError::StdoutClosed) => return Ok(()),
                Err(PollError::Client(e)) => return Err(e),
            }
        }
    }

    /// One fetch of the assigned partitions; prints what it returns, up to `--max-messages`.
    /// Returns whether anything was printed.
    fn poll_once(
        &mut self,
        args: &ConsumeArgs,
        out: &mut impl Write,
        wait: Duration,
    ) -> Result<bool, PollError> {
        if self.positions.is_empty() {
            // More members than partitions: this one idles, heartbeating, until a rebalance.
            std::thread::sleep(wait);
            return Ok(false);
        }
        let positions: Vec<(i32, i64)> = self.positions.iter().map(|(p, o)| (*p, *o)).collect();
        let fetched = self.client.fetch(&self.topic, &positions, wait)?;
        let mut any = false;
        for part in fetched {
            if part.error_code != 0 {
                self.recover(part.partition, part.error_code)?;
                continue;
            }
            let mut all = true;
            for record in &part.records {
                if args.max_messages.is_some_and(|max| self.printed >= max) {
                    all = false;
                    break;
                }
                let line = format_record(args, part.partition, record);
                out.write_all(&line).map_err(PollError::stdout)?;
                self.printed += 1;
                self.positions.insert(part.partition, record.offset + 1);
                any = true;
            }
            // Past the last record lie only control batches or compacted-away offsets.
            if all {
                self.positions.insert(part.partition, part.next_offset);
            }
        }
        out.flush().map_err(PollError::stdout)?;
        Ok(any)
    }

    /// Heartbeats and commits when they are due; joins again when the group rebalances.
    fn maintain(&mut self) -> Result<(), ClientError> {
        if self.heartbeat_last.elapsed() >= HEARTBEAT_INTERVAL {
            self.heartbeat_last = Instant::now();
            if let Err(e) = self.client.heartbeat(&self.membership) {
                return self.rejoin_after(e);
            }
        }
        if self.commit_last.elapsed() >= AUTO_COMMIT_INTERVAL {
            if let Err(e) = self.commit() {
                return self.rejoin_after(e);
            }
        }
        Ok(())
    }

    /// Joins again after `e` if it says the membership is out of date; any other error stands.
    ///
    /// Positions survive a plain REBALANCE_IN_PROGRESS for the partitions this member keeps:
    /// its generation was still current, so no other member read them in between, and the
    /// coordinator refuses commits mid-rebalance, so the committed offsets may be behind.
    fn rejoin_after(&mut self, e: ClientError) -> Result<(), ClientError> {
        let Some(code) = e.kafka_code().filter(|c| rejoin_needed(*c)) else {
            return Err(e);
        };
        let member_id = self.membership.member_id.clone();
        let topics = [self.topic.name.clone()];
        self.membership =
            self.client
                .join(&self.membership.group, &topics, &member_id, TIMEOUTS)?;
        self.topic = self.client.topic(&self.topic.name, false, TOPIC_WAIT)?;
        self.assign(code == REBALANCE_IN_PROGRESS)?;
        self.heartbeat_last = Instant::now();
        Ok(())
    }

    /// Sets the positions for the current assignment: kept ones (when `keep`), else committed
    /// offsets, else `reset`.
    fn assign(&mut self, keep: bool) -> Result<(), ClientError> {
        let mine: Vec<i32> = self
            .membership
            .assignment
            .iter()
            .filter(|(t, _)| *t == self.topic.name)
            .map(|(_, p)| *p)
            .collect();
        let group = self.membership.group.clone();
        let committed: Committed = self
            .client
            .committed_offsets(&group, Some(&self.topic.name))?;
        let old = std::mem::take(&mut self.positions);
        self.committed.clear();
        let mut missing = Vec::new();
        for p in mine {
            if let Some(c) = committed.get(&(self.topic.name.clone(), p)) {
                self.committed.insert(p, *c);
            }
            match (keep.then(|| old.get(&p)).flatten(), self.committed.get(&p)) {
                (Some(o), _) | (None, Some(o)) => self.positions.insert(p, *o),
                (None, None) => {
                    missing.push(p);
                    None
                }
            };
        }
        if !missing.is_empty() {
            let resolved = self
                .client
                .resolve_offsets(&self.topic, &missing, self.reset)?;
            self.positions.extend(resolved);
        }
        Ok(())
    }

    /// Commits the positions that moved since the last commit, under the current generation.
    fn commit(&mut self) -> Result<(), ClientError> {
        self.commit_last = Instant::now();
        let moved: BTreeMap<i32, i64> = self
            .positions
            .iter()
            .filter(|(p, o)| self.committed.get(p) != Some(o))
            .map(|(p, o)| (*p, *o))
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        let offsets: Committed = moved
            .iter()
            .map(|(p, o)| ((self.topic.name.clone(), *p), *o))
            .collect();
        let m = &self.membership;
        self.client
            .commit_offsets(&m.group, m.generation, &m.member_id, &offsets)?;
        self.committed.extend(moved);
        Ok(())
    }

    /// Commits what was printed and leaves the group; both are tried even if one fails.
    fn close(&mut self) -> Result<(), ClientError> {
        let committed = self.commit();
        if let Err(e) = &committed {
            eprintln!("tidelog: {e}");
        }
        self.client.leave_group(&self.membership)?;
        committed
    }

    /// Handles a partition-level fetch error as the plain consumer does.
    fn recover(&mut self, partition: i32, code: i16) -> Result<(), ClientError> {
        super::consume::recover_partition(
            &mut self.client,
            &mut self.topic,
            &mut self.positions,
            self.reset,
            partition,
            code,
        )
    }
}

/// Why one poll stopped: a closed stdout ends the command quietly, a client error does not.
enum PollError {
    StdoutClosed,
    Client(ClientError),
}

impl PollError {
    fn stdout(e: std::io::Error) -> PollError {
        match stdout_closed(e) {
            Ok(()) => PollError::StdoutClosed,
            Err(e) => PollError::Client(e),
        }
    }
}

impl From<ClientError> for PollError {
    fn from(e: ClientError) -> Self {
        PollError::Client(e)
    }
}
