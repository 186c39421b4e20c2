//! Metadata as records: every change to the cluster's metadata is a [`MetadataRecord`], and an
//! image is what applying them in order gives.
//!
//! This is KRaft's shape (issue 12): a change is decided once (on the controller, validated
//! against the image it sees), written as records, and every reader rebuilds the same image by
//! applying the same records in the same order with [`apply`], which decides nothing: it only
//! checks that a record fits the image it lands on (a record that does not is a corrupt log,
//! not a client error). A single node writes the records to its own metadata log
//! (`metadata::log`); a cluster will carry the same records in its Raft log.
//!
//! Each record carries its offset (the position in the log, from 0); an image remembers the
//! offset it has applied up to ([`MetadataImage::applied`]), so replaying a log over a snapshot
//! skips what the snapshot already holds.
//!
//! The encoding is ours, versioned by its type byte: `type: u8`, then fields as big-endian
//! integers and `u32`-length-prefixed UTF-8 strings.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{BrokerMeta, MetadataImage, PartitionState, TopicMeta};

/// One metadata change.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataRecord {
    /// A topic is created with its partitions and topic-level configs (Kafka's TopicRecord,
    /// its PartitionRecords and ConfigRecords in one).
    Topic {
        name: String,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
    },
    /// A topic is deleted (RemoveTopicRecord).
    RemoveTopic { id: Uuid },
    /// A topic's partition count rises to `partitions` (CreatePartitions).
    Partitions { id: Uuid, partitions: i32 },
    /// A topic's configs are replaced by `configs` (ConfigRecords of one topic resource).
    TopicConfigs {
        id: Uuid,
        configs: BTreeMap<String, String>,
    },
    /// The dynamic configs of a broker resource (`""`: the cluster-wide defaults) are replaced
    /// by `configs`; empty removes the resource.
    BrokerConfigs {
        resource: String,
        configs: BTreeMap<String, String>,
    },
    /// Partition `index` of a cluster topic is created with `state` (Kafka's PartitionRecord);
    /// written in the same batch as the Topic or Partitions record that made it, for each
    /// partition in order. A topic without states (a single node's) has every partition on
    /// the one broker.
    Partition {
        id: Uuid,
        index: i32,
        state: PartitionState,
    },
    /// The active controller changes a partition's leader, ISR or replicas (Kafka's
    /// PartitionChangeRecord, carried whole). It fits only the state it was decided from: its
    /// partition epoch is one more than the current one (`PartitionState::check_change`).
    PartitionChange {
        id: Uuid,
        index: i32,
        state: PartitionState,
    },
    /// A broker registers its client endpoint and rack (Kafka's RegisterBrokerRecord); it
    /// keeps its fenced state if it was registered before, and starts unfenced otherwise.
    RegisterBroker {
        id: i32,
        host: String,
        port: i32,
        rack: Option<String>,
    },
    /// The active controller fences a broker that lost its lease, or unfences one that is
    /// back (Kafka's FenceBrokerRecord / UnfenceBrokerRecord). A fenced broker leads nothing.
    BrokerFenced { id: i32, fenced: bool },
    /// A broker begins a controlled shutdown (Kafka's BrokerRegistrationChangeRecord with
    /// `inControlledShutdown`): its leaderships move and it leaves every ISR, in the same
    /// entry; its next registration ends it.
    ControlledShutdown { id: i32 },
    /// A block of producer ids `start..start + len` is handed to `broker` (Kafka's
    /// ProducerIdsRecord). It fits only where the previous block ended, so two controllers
    /// deciding at once cannot hand out the same ids.
    ProducerIds { broker: i32, start: i64, len: i64 },
}

const TOPIC: u8 = 1;
const REMOVE_TOPIC: u8 = 2;
const PARTITIONS: u8 = 3;
const TOPIC_CONFIGS: u8 = 4;
const BROKER_CONFIGS: u8 = 5;
const REGISTER_BROKER: u8 = 7;
const BROKER_FENCED: u8 = 8;
const PRODUCER_IDS: u8 = 9;
// 6 was an earlier development build's replica placement, replaced by these two.
const PARTITION: u8 = 10;
const PARTITION_CHANGE: u8 = 11;
const CONTROLLED_SHUTDOWN: u8 = 12;

/// Applies one record to `image` and counts it in `image.applied`. Deterministic: the same
/// records in the same order give the same image on every node. `Err` means the record does not
/// fit the image (a corrupt or misordered log); `image` is unchanged then.
pub fn apply(image: &mut MetadataImage, record: &MetadataRecord) -> Result<(), String> {
    apply_change(image, record)?;
    image.applied += 1;
    Ok(())
}

fn apply_change(image: &mut MetadataImage, record: &MetadataRecord) -> Result<(), String> {
    match record {
        MetadataRecord::Topic {
            name,
            id,
            partitions,
            configs,
        } => {
            if image.topics.contains_key(name.as_str()) {
                return Err(format!("topic {name} exists already"));
            }
            if image.topic_by_id(*id).is_some() {
                return Err(format!("topic id {id} exists already"));
            }
            let name: Arc<str> = name.as_str().into();
            image.topics.insert(
                name.clone(),
                Arc::new(TopicMeta {
                    name,
                    id: *id,
                    partitions: *partitions,
                    configs: configs.clone(),
                    states: Vec::new(),
                }),
            );
        }
        MetadataRecord::RemoveTopic { id } => {
            let name = topic_name(image, *id)?;
            image.topics.remove(&name);
        }
        MetadataRecord::Partitions { id, partitions } => {
            let name = topic_name(image, *id)?;
            let meta = &image.topics[&name];
            if *partitions <= meta.partitions {
                return Err(format!(
                    "topic {name} has {} partitions, the record says {partitions}",
                    meta.partitions
                ));
            }
            let meta = TopicMeta {
                partitions: *partitions,
                ..(**meta).clone()
            };
            image.topics.insert(name, Arc::new(meta));
        }
        MetadataRecord::TopicConfigs { id, configs } => {
            let name = topic_name(image, *id)?;
            let meta = TopicMeta {
                configs: configs.clone(),
                ..(*image.topics[&name]).clone()
            };
            image.topics.insert(name, Arc::new(meta));
        }
        MetadataRecord::BrokerConfigs { resource, configs } => {
            if configs.is_empty() {
                image.broker_configs.remove(resource);
            } else {
                image
                    .broker_configs
                    .insert(resource.clone(), configs.clone());
            }
        }
        MetadataRecord::Partition { id, index, state } => {
            let name = topic_name(image, *id)?;
            let meta = &image.topics[&name];
            if *index as usize != meta.states.len() || *index >= meta.partitions {
                return Err(format!(
                    "partition {name}-{index}: the topic has {} partitions, {} with a state",
                    meta.partitions,
                    meta.states.len()
                ));
            }
            state
                .check()
                .map_err(|e| format!("partition {name}-{index}: {e}"))?;
            let mut meta = (**meta).clone();
            meta.states.push(state.clone());
            image.topics.insert(name, Arc::new(meta));
        }
        MetadataRecord::PartitionChange { id, index, state } => {
            let name = topic_name(image, *id)?;
            let meta = &image.topics[&name];
            let current = meta
                .state(*index)
                .ok_or_else(|| format!("partition {name}-{index} has no state"))?;
            current
                .check_change(state)
                .map_err(|e| format!("partition {name}-{index}: {e}"))?;
            let mut meta = (**meta).clone();
            meta.states[*index as usize] = state.clone();
            image.topics.insert(name, Arc::new(meta));
        }
        MetadataRecord::RegisterBroker {
            id,
            host,
            port,
            rack,
        } => {
            let fenced = image.brokers.get(id).is_some_and(|b| b.fenced);
            image.brokers.insert(
                *id,
                BrokerMeta {
                    id: *id,
                    host: host.clone(),
                    port: *port,
                    rack: rack.clone(),
                    fenced,
                    shutting_down: false,
                },
            );
        }
        MetadataRecord::BrokerFenced { id, fenced } => {
            let b = image
                .brokers
                .get_mut(id)
                .ok_or_else(|| format!("broker {id} is not registered"))?;
            b.fenced = *fenced;
        }
        MetadataRecord::ControlledShutdown { id } => {
            image
                .brokers
                .get_mut(id)
                .ok_or_else(|| format!("broker {id} is not registered"))?
                .shutting_down = true;
        }
        MetadataRecord::ProducerIds {
            broker: _,
            start,
            len,
        } => {
            if *start != image.producer_ids_next || *len <= 0 {
                return Err(format!(
                    "producer ids {start}+{len}: the next block starts at {}",
                    image.producer_ids_next
                ));
            }
            image.producer_ids_next = start + len;
        }
    }
    Ok(())
}

fn topic_name(image: &MetadataImage, id: Uuid) -> Result<Arc<str>, String> {
    image
        .topic_by_id(id)
        .map(|t| t.name.clone())
        .ok_or_else(|| format!("no topic with id {id}"))
}

/// The records of one change as one unit (a metadata log frame, a Raft entry): `count: u32`,
/// then each record as `len: u32` and its bytes. One unit is applied whole or not at all.
pub fn encode_batch(records: &[MetadataRecord]) -> Vec<u8> {
    let mut out = (records.len() as u32).to_be_bytes().to_vec();
    for r in records {
        let b = r.encode();
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(&b);
    }
    out
}

/// Decodes what [`encode_batch`] wrote; every byte must be used.
pub fn decode_batch(bytes: &[u8]) -> Result<Vec<MetadataRecord>, String> {
    let mut r = Reader { bytes, pos: 0 };
    let count = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let len = r.u32()? as usize;
        out.push(MetadataRecord::decode(r.take(len)?)?);
    }
    if r.pos != bytes.len() {
        return Err("bytes after a batch of metadata records".into());
    }
    Ok(out)
}

impl MetadataRecord {
    /// The record's bytes (without the log's framing).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        match self {
            MetadataRecord::Topic {
                name,
                id,
                partitions,
                configs,
            } => {
                out.push(TOPIC);
                put_str(&mut out, name);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&partitions.to_be_bytes());
                put_map(&mut out, configs);
            }
            MetadataRecord::RemoveTopic { id } => {
                out.push(REMOVE_TOPIC);
                out.extend_from_slice(id.as_bytes());
            }
            MetadataRecord::Partitions { id, partitions } => {
                out.push(PARTITIONS);
                out.extend_from_slice(id.as_bytes());
                out.extend_from_slice(&partitions.to_be_bytes());
            }
            MetadataRecord::TopicConfigs { id, configs } => {
                out.push(TOPIC_CONFIGS);
                out.extend_from_slice(id.as_bytes());
                put_map(&mut out, configs);
            }
            MetadataRecord::BrokerConfigs { resource, configs } => {
                out.push(BROKER_CONFIGS);
                put_str(&mut out, resource);
                put_map(&mut out, configs);
            }
            MetadataRecord::Partition { id, index, state } => {
                out.push(PARTITION);
                put_partition(&mut out, id, *index, state);
            }
            MetadataRecord::PartitionChange { id, index, state } => {
                out.push(PARTITION_CHANGE);
                put_partition(&mut out, id, *index, state);
            }
            MetadataRecord::RegisterBroker {
                id,
                host,
                port,
                rack,
            } => {
                out.push(REGISTER_BROKER);
                out.extend_from_slice(&id.to_be_bytes());
                put_str(&mut out, host);
                out.extend_from_slice(&port.to_be_bytes());
                out.push(u8::from(rack.is_some()));
                put_str(&mut out, rack.as_deref().unwrap_or(""));
            }
            MetadataRecord::BrokerFenced { id, fenced } => {
                out.push(BROKER_FENCED);
                out.extend_from_slice(&id.to_be_bytes());
                out.push(u8::from(*fenced));
            }
            MetadataRecord::ControlledShutdown { id } => {
                out.push(CONTROLLED_SHUTDOWN);
                out.extend_from_slice(&id.to_be_bytes());
            }
            MetadataRecord::ProducerIds { broker, start, len } => {
                out.push(PRODUCER_IDS);
                out.extend_from_slice(&broker.to_be_bytes());
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        out
    }

    /// Decodes what [`MetadataRecord::encode`] wrote; every byte must be used.
    pub fn decode(bytes: &[u8]) -> Result<MetadataRecord, String> {
        let mut r = Reader { bytes, pos: 0 };
        let record = match r.u8()? {
            TOPIC => MetadataRecord::Topic {
                name: r.string()?,
                id: r.uuid()?,
                partitions: r.i32()?,
                configs: r.map()?,
            },
            REMOVE_TOPIC => MetadataRecord::RemoveTopic { id: r.uuid()? },
            PARTITIONS => MetadataRecord::Partitions {
                id: r.uuid()?,
                partitions: r.i32()?,
            },
            TOPIC_CONFIGS => MetadataRecord::TopicConfigs {
                id: r.uuid()?,
                configs: r.map()?,
            },
            BROKER_CONFIGS => MetadataRecord::BrokerConfigs {
                resource: r.string()?,
                configs: r.map()?,
            },
            PARTITION => {
                let (id, index, state) = r.partition()?;
                MetadataRecord::Partition { id, index, state }
            }
            PARTITION_CHANGE => {
                let (id, index, state) = r.partition()?;
                MetadataRecord::PartitionChange { id, index, state }
            }
            REGISTER_BROKER => {
                let id = r.i32()?;
                let host = r.string()?;
                let port = r.i32()?;
                let has_rack = r.u8()? != 0;
                let rack = r.string()?;
                MetadataRecord::RegisterBroker {
                    id,
                    host,
                    port,
                    rack: has_rack.then_some(rack),
                }
            }
            BROKER_FENCED => MetadataRecord::BrokerFenced {
                id: r.i32()?,
                fenced: r.u8()? != 0,
            },
            CONTROLLED_SHUTDOWN => MetadataRecord::ControlledShutdown { id: r.i32()? },
            PRODUCER_IDS => MetadataRecord::ProducerIds {
                broker: r.i32()?,
                start: r.i64()?,
                len: r.i64()?,
            },
            other => return Err(format!("unknown metadata record type {other}")),
        };
        if r.pos != bytes.len() {
            return Err(format!(
                "{} bytes after a metadata record",
                bytes.len() - r.pos
            ));
        }
        Ok(record)
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_ids(out: &mut Vec<u8>, ids: &[i32]) {
    out.extend_from_slice(&(ids.len() as u32).to_be_bytes());
    for b in ids {
        out.extend_from_slice(&b.to_be_bytes());
    }
}

fn put_partition(out: &mut Vec<u8>, id: &Uuid, index: i32, s: &PartitionState) {
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&index.to_be_bytes());
    put_ids(out, &s.replicas);
    put_ids(out, &s.isr);
    for n in [s.leader, s.leader_epoch, s.partition_epoch] {
        out.extend_from_slice(&n.to_be_bytes());
    }
    // A reassignment's lists end the record only when there is one, so that a state without
    // one reads the same as before reassignments existed.
    if s.is_reassigning() {
        put_ids(out, &s.adding);
        put_ids(out, &s.removing);
    }
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    out.extend_from_slice(&(map.len() as u32).to_be_bytes());
    for (k, v) in map {
        put_str(out, k);
        put_str(out, v);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("metadata record ends early")?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn check_left(&self, n: usize) -> Result<(), String> {
        if self.bytes.len() - self.pos < n {
            return Err("metadata record ends early".into());
        }
        Ok(())
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    fn uuid(&mut self) -> Result<Uuid, String> {
        Ok(Uuid::from_bytes(self.take(16)?.try_into().expect("16")))
    }

    fn string(&mut self) -> Result<String, String> {
        let len = self.u32()? as usize;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|e| e.to_string())
    }

    /// A list of node ids; its count is checked against the bytes left before anything is
    /// allocated for it (hostile or corrupt bytes).
    fn ids(&mut self) -> Result<Vec<i32>, String> {
        let n = self.u32()? as usize;
        self.check_left(n.saturating_mul(4))?;
        (0..n).map(|_| self.i32()).collect()
    }

    fn partition(&mut self) -> Result<(Uuid, i32, PartitionState), String> {
        let id = self.uuid()?;
        let index = self.i32()?;
        let state = PartitionState {
            replicas: self.ids()?,
            isr: self.ids()?,
            leader: self.i32()?,
            leader_epoch: self.i32()?,
            partition_epoch: self.i32()?,
            ..PartitionState::default()
        };
        let state = match self.pos < self.bytes.len() {
            true => PartitionState {
                adding: self.ids()?,
                removing: self.ids()?,
                ..state
            },
            false => state,
        };
        Ok((id, index, state))
    }

    fn map(&mut self) -> Result<BTreeMap<String, String>, String> {
        let n = self.u32()?;
        let mut m = BTreeMap::new();
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            m.insert(k, v);
        }
        Ok(m)
    }
}
