//! The Fetch response, laid out so that record bytes never pass through user space.
//!
//! The crate's `FetchResponse` holds records as in-memory `Bytes`; serving a fetch that way would
//! copy every record byte out of the page cache. Instead this module writes everything around the
//! records into memory and leaves each partition's records as a file range, so the connection can
//! `sendfile(2)` them. The layout is checked against the crate's own decoder in the tests below.

use std::fs::File;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;

/// A byte range of a segment file.
#[derive(Clone, Debug)]
pub struct FileRange {
    pub file: Arc<File>,
    pub position: u64,
    pub len: u32,
}

/// One piece of a response on the wire: bytes from memory, or a range of a file.
#[derive(Clone, Debug)]
pub enum Chunk {
    Mem(Bytes),
    File(FileRange),
}

impl Chunk {
    pub fn len(&self) -> usize {
        match self {
            Chunk::Mem(b) => b.len(),
            Chunk::File(r) => r.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One partition of a Fetch response.
#[derive(Clone, Debug)]
pub struct FetchPartition {
    pub partition_index: i32,
    pub error_code: i16,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// `None`: no records (an empty record set on the wire).
    pub records: Option<FileRange>,
    /// KIP-320's diverging epoch (epoch, end offset), a tagged field of v12+.
    pub diverging: Option<(i32, i64)>,
    /// The aborted transactions `(producer id, first offset)` a read_committed fetch must
    /// skip; `None` (null on the wire) for read_uncommitted.
    pub aborted: Option<Vec<(i64, i64)>>,
}

/// One topic of a Fetch response; v13+ names it by id, older versions by name.
#[derive(Clone, Debug)]
pub struct FetchTopic {
    pub name: StrBytes,
    pub topic_id: [u8; 16],
    pub partitions: Vec<FetchPartition>,
}

/// Top-level fields of a Fetch response.
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchHeader {
    pub correlation_id: i32,
    pub throttle_time_ms: i32,
    pub error_code: i16,
    pub session_id: i32,
}

/// Encodes a whole Fetch response frame (size prefix, response header, body) as chunks.
pub fn encode_fetch_response(
    version: i16,
    header: &FetchHeader,
    topics: &[FetchTopic],
) -> Vec<Chunk> {
    let flexible = version >= 12;
    let mut chunks =
        Vec::with_capacity(1 + 2 * topics.iter().map(|t| t.partitions.len()).sum::<usize>());
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // size prefix, patched below
    buf.put_i32(header.correlation_id);
    if flexible {
        buf.put_u8(0); // response header v1: no tagged fields
    }
    buf.put_i32(header.throttle_time_ms);
    if version >= 7 {
        buf.put_i16(header.error_code);
        buf.put_i32(header.session_id);
    }
    put_len(&mut buf, flexible, topics.len());
    for topic in topics {
        if version >= 13 {
            buf.put_slice(&topic.topic_id);
        } else {
            put_string(&mut buf, flexible, &topic.name);
        }
        put_len(&mut buf, flexible, topic.partitions.len());
        for p in &topic.partitions {
            buf.put_i32(p.partition_index);
            buf.put_i16(p.error_code);
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if version >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            match &p.aborted {
                None if flexible => buf.put_u8(0),
                None => buf.put_i32(-1),
                Some(aborted) => {
                    put_len(&mut buf, flexible, aborted.len());
                    for &(producer_id, first_offset) in aborted {
                        buf.put_i64(producer_id);
                        buf.put_i64(first_offset);
                        if flexible {
                            buf.put_u8(0); // no tagged fields
                        }
                    }
                }
            }
            if version >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let len = p.records.as_ref().map_or(0, |r| r.len as usize);
            put_len(&mut buf, flexible, len);
            if let Some(r) = p.records.as_ref().filter(|r| r.len > 0) {
                chunks.push(Chunk::Mem(buf.split().freeze()));
                chunks.push(Chunk::File(r.clone()));
            }
            if flexible {
                match p.diverging {
                    // One tagged field: tag 0, DivergingEpoch (epoch, end offset, its own empty
                    // tagged fields): 13 bytes.
                    Some((epoch, end_offset)) => {
                        buf.put_u8(1);
                        buf.put_u8(0);
                        buf.put_u8(13);
                        buf.put_i32(epoch);
                        buf.put_i64(end_offset);
                        buf.put_u8(0);
                    }
                    None => buf.put_u8(0), // partition tagged fields
                }
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        buf.put_u8(0); // response tagged fields
    }
    chunks.push(Chunk::Mem(buf.freeze()));
    let total: usize = chunks.iter().map(Chunk::len).sum();
    patch_size_prefix(&mut chunks, (total - 4) as i32);
    chunks
}

fn patch_size_prefix(chunks: &mut [Chunk], size: i32) {
    let Chunk::Mem(first) = &mut chunks[0] else {
        unreachable!("a fetch response always starts in memory");
    };
    let mut b = BytesMut::from(&first[..]);
    b[..4].copy_from_slice(&size.to_be_bytes());
    *first = b.freeze();
}

/// An array length or bytes length: int32, or unsigned varint of len + 1 when flexible.
fn put_len(buf: &mut BytesMut, flexible: bool, len: usize) {
    if flexible {
        put_uvarint(buf, len as u32 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

fn put_string(buf: &mut BytesMut, flexible: bool, s: &str) {
    if flexible {
        put_uvarint(buf, s.len() as u32 + 1);
    } else {
        buf.put_i16(s.len() as i16);
    }
    buf.put_slice(s.as_bytes());
}

fn put_uvarint(buf: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{FetchResponse, ResponseHeader};
    use kafka_protocol::protocol::Decodable;
    use std::io::{Read, Seek, SeekFrom, Write};

    fn materialize(chunks: &[Chunk]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            match c {
                Chunk::Mem(b) => out.extend_from_slice(b),
                Chunk::File(r) => {
                    let mut f = r.file.try_clone().unwrap();
                    f.seek(SeekFrom::Start(r.position)).unwrap();
                    let mut v = vec![0; r.len as usize];
                    f.read_exact(&mut v).unwrap();
                    out.extend_from_slice(&v);
                }
            }
        }
        out
    }

    #[test]
    fn layout_matches_the_crate_decoder_at_every_version() {
        let mut tmp = tempfile::tempfile().unwrap();
        tmp.write_all(b"xxxxRECORDS-ONE....RECORDS-TWO").unwrap();
        let file = Arc::new(tmp);
        let part = |i, pos, len| FetchPartition {
            partition_index: i,
            error_code: 0,
            high_watermark: 10 + i as i64,
            last_stable_offset: 10 + i as i64,
            log_start_offset: 1,
            records: Some(FileRange {
                file: file.clone(),
                position: pos,
                len,
            }),
            diverging: None,
            aborted: None,
        };
        let mut empty = part(2, 0, 0);
        empty.records = None;
        empty.error_code = 1;
        // KIP-320: a diverging epoch, a tagged field from v12 on.
        empty.diverging = Some((3, 42));
        let topics = vec![FetchTopic {
            name: StrBytes::from_static_str("orders"),
            topic_id: [7; 16],
            partitions: vec![part(0, 4, 11), empty, {
                // A read_committed answer: the transactions to skip, an LSO below the HWM.
                let mut p = part(1, 19, 11);
                p.aborted = Some(vec![(5, 100), (6, 120)]);
                p.last_stable_offset = 9;
                p
            }],
        }];
        for version in 4..=16 {
            let h = FetchHeader {
                correlation_id: 9,
                throttle_time_ms: 0,
                error_code: 0,
                session_id: 0,
            };
            let bytes = materialize(&encode_fetch_response(version, &h, &topics));
            let size = i32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(size, bytes.len() - 4);
            let mut body = Bytes::from(bytes[4..].to_vec());
            let hv = if version >= 12 { 1 } else { 0 };
            let rh = ResponseHeader::decode(&mut body, hv).unwrap();
            assert_eq!(rh.correlation_id, 9);
            let r = FetchResponse::decode(&mut body, version).unwrap();
            assert!(body.is_empty(), "v{version}: trailing bytes");
            let t = &r.responses[0];
            if version >= 13 {
                assert_eq!(t.topic_id.as_bytes(), &[7; 16]);
            } else {
                assert_eq!(&*t.topic, "orders");
            }
            assert_eq!(t.partitions.len(), 3);
            assert_eq!(
                t.partitions[0].records.as_deref(),
                Some(&b"RECORDS-ONE"[..])
            );
            assert_eq!(t.partitions[1].records.as_deref(), Some(&b""[..]));
            assert_eq!(t.partitions[1].error_code, 1);
            let diverging = &t.partitions[1].diverging_epoch;
            let want = if version >= 12 { (3, 42) } else { (-1, -1) };
            assert_eq!((diverging.epoch, diverging.end_offset), want, "v{version}");
            assert_eq!(t.partitions[0].diverging_epoch.epoch, -1);
            assert_eq!(
                t.partitions[2].records.as_deref(),
                Some(&b"RECORDS-TWO"[..])
            );
            assert_eq!(t.partitions[2].high_watermark, 11);
            assert_eq!(t.partitions[2].last_stable_offset, 9);
            let aborted: Vec<(i64, i64)> = t.partitions[2]
                .aborted_transactions
                .iter()
                .flatten()
                .map(|a| (a.producer_id.0, a.first_offset))
                .collect();
            assert_eq!(aborted, [(5, 100), (6, 120)], "v{version}");
            assert!(t.partitions[0].aborted_transactions.is_none());
        }
    }
}
