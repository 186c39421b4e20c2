//! The image as text: the `topics.toml` snapshot a single node keeps beside its metadata log,
//! and the bytes of a cluster's Raft snapshot. TOML so that an operator can read it.

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use super::{BrokerMeta, MetadataImage, PartitionState, TopicMeta};

pub(super) fn encode(image: &MetadataImage) -> String {
    let mut root = toml::Table::new();
    root.insert("cluster_id".into(), image.cluster_id.clone().into());
    root.insert("applied".into(), (image.applied as i64).into());
    let mut topics = toml::Table::new();
    for t in image.topics.values() {
        let mut e = toml::Table::new();
        e.insert("id".into(), t.id.to_string().into());
        e.insert("partitions".into(), i64::from(t.partitions).into());
        let configs: toml::Table = t
            .configs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        e.insert("configs".into(), configs.into());
        if !t.states.is_empty() {
            let states: toml::value::Array = t.states.iter().map(encode_state).collect();
            e.insert("states".into(), states.into());
        }
        topics.insert(t.name.to_string(), e.into());
    }
    root.insert("topics".into(), topics.into());
    let brokers: toml::Table = image
        .broker_configs
        .iter()
        .map(|(name, configs)| {
            let c: toml::Table = configs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            (name.clone(), c.into())
        })
        .collect();
    root.insert("broker_configs".into(), brokers.into());
    if !image.brokers.is_empty() {
        let registered: toml::Table = image
            .brokers
            .values()
            .map(|b| {
                let mut e = toml::Table::new();
                e.insert("host".into(), b.host.clone().into());
                e.insert("port".into(), i64::from(b.port).into());
                if let Some(rack) = &b.rack {
                    e.insert("rack".into(), rack.clone().into());
                }
                e.insert("fenced".into(), b.fenced.into());
                if b.shutting_down {
                    e.insert("shutting_down".into(), true.into());
                }
                (b.id.to_string(), e.into())
            })
            .collect();
        root.insert("brokers".into(), registered.into());
    }
    if image.producer_ids_next != 0 {
        root.insert("producer_ids_next".into(), image.producer_ids_next.into());
    }
    root.to_string()
}

pub(super) fn decode(text: &str) -> Result<MetadataImage, String> {
    let root: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let cluster_id = root
        .get("cluster_id")
        .and_then(|v| v.as_str())
        .ok_or("missing cluster_id")?
        .to_string();
    // Absent in snapshots written before the metadata log existed: nothing applied from it.
    let applied = root
        .get("applied")
        .map(|v| {
            v.as_integer()
                .filter(|n| *n >= 0)
                .ok_or("applied is not a count")
        })
        .transpose()?
        .unwrap_or(0) as u64;
    let mut topics = BTreeMap::new();
    if let Some(t) = root.get("topics").and_then(|v| v.as_table()) {
        for (name, e) in t {
            let id = e
                .get("id")
                .and_then(|v| v.as_str())
                .ok_or("topic without id")?;
            let id = Uuid::parse_str(id).map_err(|e| e.to_string())?;
            let partitions = e
                .get("partitions")
                .and_then(|v| v.as_integer())
                .ok_or("topic without partitions")? as i32;
            let configs = e
                .get("configs")
                .and_then(|v| v.as_table())
                .map(|c| {
                    c.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            // Absent for a single node's topics.
            let states = match e.get("states") {
                None => Vec::new(),
                Some(s) => s
                    .as_array()
                    .ok_or("states is not a list")?
                    .iter()
                    .map(decode_state)
                    .collect::<Result<Vec<_>, _>>()?,
            };
            let name: Arc<str> = name.as_str().into();
            topics.insert(
                name.clone(),
                Arc::new(TopicMeta {
                    name,
                    id,
                    partitions,
                    configs,
                    states,
                }),
            );
        }
    }
    let string_table = |v: &toml::Value| -> BTreeMap<String, String> {
        v.as_table()
            .map(|c| {
                c.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Absent in files written before dynamic broker configs existed.
    let broker_configs = root
        .get("broker_configs")
        .and_then(|v| v.as_table())
        .map(|t| {
            t.iter()
                .map(|(name, c)| (name.clone(), string_table(c)))
                .collect()
        })
        .unwrap_or_default();
    let mut brokers = BTreeMap::new();
    if let Some(t) = root.get("brokers").and_then(|v| v.as_table()) {
        for (id, e) in t {
            let id: i32 = id.parse().map_err(|_| format!("broker id {id:?}"))?;
            let field = |k: &str| e.get(k).ok_or(format!("broker {id} without {k}"));
            brokers.insert(
                id,
                BrokerMeta {
                    id,
                    host: field("host")?.as_str().ok_or("host")?.to_string(),
                    port: field("port")?.as_integer().ok_or("port")? as i32,
                    rack: e.get("rack").and_then(|v| v.as_str()).map(str::to_string),
                    fenced: field("fenced")?.as_bool().ok_or("fenced")?,
                    shutting_down: e
                        .get("shutting_down")
                        .and_then(|v| v.as_bool())
                        .unwrap_or(false),
                },
            );
        }
    }
    let producer_ids_next = root
        .get("producer_ids_next")
        .and_then(|v| v.as_integer())
        .unwrap_or(0);
    Ok(MetadataImage {
        cluster_id,
        applied,
        topics,
        broker_configs,
        brokers,
        producer_ids_next,
    })
}

fn ids(list: &[i32]) -> toml::Value {
    list.iter()
        .map(|&b| toml::Value::from(i64::from(b)))
        .collect::<toml::value::Array>()
        .into()
}

fn encode_state(s: &PartitionState) -> toml::Value {
    let mut e = toml::Table::new();
    e.insert("replicas".into(), ids(&s.replicas));
    e.insert("isr".into(), ids(&s.isr));
    e.insert("leader".into(), i64::from(s.leader).into());
    e.insert("leader_epoch".into(), i64::from(s.leader_epoch).into());
    e.insert(
        "partition_epoch".into(),
        i64::from(s.partition_epoch).into(),
    );
    if s.is_reassigning() {
        e.insert("adding".into(), ids(&s.adding));
        e.insert("removing".into(), ids(&s.removing));
    }
    e.into()
}

fn decode_state(v: &toml::Value) -> Result<PartitionState, String> {
    let field = |k: &str| v.get(k).ok_or(format!("partition state without {k}"));
    let list = |k: &str| -> Result<Vec<i32>, String> {
        field(k)?
            .as_array()
            .ok_or(format!("{k} is not a list"))?
            .iter()
            .map(|b| {
                b.as_integer()
                    .map(|b| b as i32)
                    .ok_or(format!("{k}: not a node id"))
            })
            .collect()
    };
    let int = |k: &str| -> Result<i32, String> {
        Ok(field(k)?
            .as_integer()
            .ok_or(format!("{k} is not a number"))? as i32)
    };
    let state = PartitionState {
        replicas: list("replicas")?,
        isr: list("isr")?,
        leader: int("leader")?,
        leader_epoch: int("leader_epoch")?,
        partition_epoch: int("partition_epoch")?,
        // Written only while a reassignment is in progress.
        adding: v.get("adding").map_or(Ok(Vec::new()), |_| list("adding"))?,
        removing: v
            .get("removing")
            .map_or(Ok(Vec::new()), |_| list("removing"))?,
    };
    state.check()?;
    Ok(state)
}
