//! DescribeLogDirs: the one log directory (`log.dirs`), its volume's size (v4), and the size of
//! every partition in it, asked of each owner shard (`PartitionLog::size_bytes`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Outcome, Session};
use crate::protocol::request::{Request, RequestError};
use crate::shard::Shard;
use crate::util::join_all;

/// Partition sizes by topic, then partition.
type Sizes = BTreeMap<Arc<str>, BTreeMap<i32, u64>>;

pub async fn handle(
    shard: &Rc<Shard>,
    req: &Request,
    _session: &Session,
) -> Result<Outcome, RequestError> {
    let body: DescribeLogDirsRequest = req.decode_body()?;
    let calls = (0..shard.count()).map(|target| {
        shard.router.invoke_on(shard, target, |s| async move {
            s.owned_partitions()
                .into_iter()
                .map(|((t, i), p)| (t, i, p.log.size_bytes()))
                .collect::<Vec<_>>()
        })
    });
    let mut sizes = Sizes::new();
    for (topic, index, size) in join_all(calls.collect()).await.into_iter().flatten() {
        sizes.entry(topic).or_default().insert(index, size);
    }
    if let Some(wanted) = &body.topics {
        sizes.retain(|t, parts| {
            let Some(w) = wanted.iter().find(|w| w.topic.0.as_str() == &**t) else {
                return false;
            };
            parts.retain(|i, _| w.partitions.contains(i));
            !parts.is_empty()
        });
    }
    let topics = sizes
        .into_iter()
        .map(|(t, parts)| {
            let partitions = parts
                .into_iter()
                .map(|(i, size)| {
                    DescribeLogDirsPartition::default()
                        .with_partition_index(i)
                        .with_partition_size(size as i64)
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(t.to_string())))
                .with_partitions(partitions)
        })
        .collect();
    let dir = std::fs::canonicalize(&shard.config.data_dir)
        .unwrap_or_else(|_| shard.config.data_dir.clone());
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir.display().to_string()))
        .with_topics(topics);
    if req.version() >= 4 {
        let (total, usable) = volume_bytes(&dir).unwrap_or((-1, -1));
        result = result.with_total_bytes(total).with_usable_bytes(usable);
    }
    respond(
        req,
        &DescribeLogDirsResponse::default().with_results(vec![result]),
    )
}

/// The total and available bytes of the volume holding `dir`.
fn volume_bytes(dir: &std::path::Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `st` is a valid out-pointer for statvfs(3).
    let rc = unsafe { libc::statvfs(path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded, so it filled `st`.
    let st = unsafe { st.assume_init() };
    let frsize = st.f_frsize as i64;
    Some((st.f_blocks as i64 * frsize, st.f_bavail as i64 * frsize))
}
