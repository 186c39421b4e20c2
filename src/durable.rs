//! Small durable-file primitives shared by the broker's own files (the metadata log and its
//! snapshot, the producer-id block, the metadata quorum's Raft log): CRC-framed append logs and
//! atomically replaced files. The partition logs have their own format (Kafka's record
//! batches) and do not use these.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Bytes before a frame's payload: `len: u32` of the payload, then `crc32c: u32` of it.
pub const FRAME_HEADER: usize = 8;

/// Appends one frame holding `payload` to `out`.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    out.extend_from_slice(payload);
}

/// The payloads of the whole frames at the start of `bytes`, and how many bytes they take. A
/// frame cut short or failing its CRC ends the list: it is the tail of a write that never
/// completed.
pub fn frames(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= FRAME_HEADER {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().expect("4")) as usize;
        let crc = u32::from_be_bytes(bytes[pos + 4..pos + 8].try_into().expect("4"));
        let Some(end) = (pos + FRAME_HEADER)
            .checked_add(len)
            .filter(|&e| e <= bytes.len())
        else {
            break;
        };
        let payload = &bytes[pos + FRAME_HEADER..end];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        out.push(payload);
        pos = end;
    }
    (out, pos)
}

/// Appends `bytes` to `f` (opened for append, `len` bytes long) and syncs its data. A write cut
/// short (ENOSPC) is taken back, so that the next append starts where this one did: left in
/// place, its partial frame would end the log for recovery and hide every later frame.
pub fn append_synced(f: &mut File, len: u64, bytes: &[u8]) -> io::Result<()> {
    if let Err(e) = f.write_all(bytes).and_then(|()| f.sync_data()) {
        return Err(match f.set_len(len).and_then(|()| f.sync_data()) {
            Ok(()) => io::Error::new(e.kind(), format!("{e} (the partial write was taken back)")),
            Err(u) => io::Error::new(
                e.kind(),
                format!("{e}; taking the partial write back failed too: {u}"),
            ),
        });
    }
    Ok(())
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old contents or the new, never
/// a mix: a temporary file written and synced, renamed over it, the directory synced.
pub fn replace_file(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

/// Syncs directory `dir`, making a file just created in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_end_at_the_first_cut_or_damaged_one() {
        let mut log = Vec::new();
        push_frame(&mut log, b"one");
        push_frame(&mut log, b"");
        push_frame(&mut log, b"three");
        let (all, len) = frames(&log);
        assert_eq!(all, [&b"one"[..], b"", b"three"]);
        assert_eq!(len, log.len());
        for cut in log.len() - 12..log.len() {
            let (got, len) = frames(&log[..cut]);
            assert_eq!(got.len(), 2, "cut at {cut}");
            assert_eq!(len, log.len() - 13);
        }
        let mut damaged = log.clone();
        *damaged.last_mut().unwrap() ^= 1;
        assert_eq!(frames(&damaged).0.len(), 2);
    }
}
