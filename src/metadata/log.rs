//! The single node's metadata log: the [`MetadataRecord`]s of every change since the last
//! snapshot, appended and fsynced before the change is answered, and replayed over the
//! snapshot at start-up. Framing, the append that takes a partial write back, and the atomic
//! snapshot replacement are `crate::durable`'s.
//!
//! Files, in `<data_dir>/__cluster_metadata/`: `topics.toml`, the snapshot (an image and the
//! offset it has applied up to), and `records.log`, the records from that offset on. A frame
//! (`durable::push_frame`) holds one change: `offset: u64` of its first record, then the
//! change's records (`records::encode_batch`). One CRC over the whole change makes it atomic: a change cut
//! short by a crash or a full disk applies not at all, never in part. When the log passes
//! [`METADATA_LOG_SNAPSHOT_BYTES`], the image is written as a new snapshot and the log emptied; a crash between the two leaves records the snapshot
//! already holds, which replay skips by their offsets.
//!
//! A frame that is cut short or fails its CRC ends the log: it is the tail of an append that
//! never completed (an append is acknowledged only after its fsync), so recovery truncates the
//! file there. A whole frame whose record does not apply, or whose offset leaves a gap, is a
//! corrupt log and stops the start with the reason.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::records::{self, MetadataRecord};
use super::MetadataImage;
use crate::config::METADATA_LOG_SNAPSHOT_BYTES;
use crate::durable;
use crate::error::MetadataError;

fn log_file(data_dir: &Path) -> PathBuf {
    data_dir.join("__cluster_metadata").join("records.log")
}

fn storage(path: &Path, e: impl std::fmt::Display) -> MetadataError {
    MetadataError::Storage(format!("{}: {e}", path.display()))
}

/// Applies the records of `records.log` past `image.applied` to `image` (the snapshot just
/// loaded), and cuts a torn tail off the file.
pub fn recover(data_dir: &Path, image: &mut MetadataImage) -> Result<(), MetadataError> {
    let path = log_file(data_dir);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(mut f) => f.read_to_end(&mut bytes).map_err(|e| storage(&path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(storage(&path, e)),
    };
    let (frames, good_len) = durable::frames(&bytes);
    for payload in frames {
        let Some((first, batch)) = payload.split_first_chunk::<8>() else {
            return Err(storage(&path, "a frame without its offset"));
        };
        let first = u64::from_be_bytes(*first);
        let records = records::decode_batch(batch)
            .map_err(|e| storage(&path, format!("offset {first}: {e}")))?;
        for (i, record) in records.iter().enumerate() {
            let offset = first + i as u64;
            if offset < image.applied {
                continue; // already in the snapshot
            }
            if offset != image.applied {
                return Err(storage(
                    &path,
                    format!(
                        "record at offset {offset} follows offset {}: a gap",
                        image.applied
                    ),
                ));
            }
            records::apply(image, record)
                .map_err(|e| storage(&path, format!("offset {offset}: {e}")))?;
        }
    }
    if good_len < bytes.len() {
        tracing::warn!(
            file = %path.display(),
            kept = good_len,
            dropped = bytes.len() - good_len,
            "metadata log ends in a torn frame (an append cut short by a crash); truncating"
        );
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| storage(&path, e))?;
        f.set_len(good_len as u64)
            .and_then(|()| f.sync_all())
            .map_err(|e| storage(&path, e))?;
    }
    Ok(())
}

/// Makes a change durable: appends `records` (the first at offset `after.applied -
/// records.len()`) and fsyncs; then, if the log has grown past [`METADATA_LOG_SNAPSHOT_BYTES`],
/// writes `after` (the image with the records applied) as the snapshot and empties the log.
/// Blocking: run it off the executor.
pub fn commit(
    data_dir: &Path,
    records: &[MetadataRecord],
    after: &MetadataImage,
) -> Result<(), MetadataError> {
    commit_with(data_dir, records, after, METADATA_LOG_SNAPSHOT_BYTES)
}

fn commit_with(
    data_dir: &Path,
    records: &[MetadataRecord],
    after: &MetadataImage,
    snapshot_bytes: u64,
) -> Result<(), MetadataError> {
    let path = log_file(data_dir);
    let first = after.applied - records.len() as u64;
    let mut payload = first.to_be_bytes().to_vec();
    payload.extend_from_slice(&records::encode_batch(records));
    let mut buf = Vec::with_capacity(durable::FRAME_HEADER + payload.len());
    durable::push_frame(&mut buf, &payload);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| storage(dir, e))?;
    }
    let created = !path.exists();
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| storage(&path, e))?;
    let before = f.metadata().map_err(|e| storage(&path, e))?.len();
    durable::append_synced(&mut f, before, &buf).map_err(|e| storage(&path, e))?;
    if created {
        // The new file's directory entry must be durable too.
        let dir = path.parent().expect("log file has a parent");
        durable::sync_dir(dir).map_err(|e| storage(dir, e))?;
    }
    let len = f.metadata().map_err(|e| storage(&path, e))?.len();
    if len >= snapshot_bytes {
        super::store(data_dir, after)?;
        f.set_len(0)
            .and_then(|()| f.sync_all())
            .map_err(|e| storage(&path, e))?;
        tracing::info!(
            applied = after.applied,
            "metadata snapshot written; log emptied"
        );
    }
    Ok(())
}

#[cfg(test)]
#[path = "tests_log.rs"]
mod tests;
