//! The frames on a CONTROLLER listener: `len: u32`, then `kind: u8` and the body.
//!
//! Controllers exchange Raft messages ([`RAFT`], raft-rs's protobuf). A broker-only node
//! (KRaft's observer: it follows the metadata but does not vote) talks to every controller with
//! the other kinds: it says who it is and that it is alive ([`OBSERVE`], which renews its lease
//! on each controller, so the leader fences it when it goes quiet), proposes records
//! ([`PROPOSE`], tagged like a controller's own proposals), and receives the controller's
//! applied image ([`IMAGE`], on connecting and on every change) and the outcome of each of its
//! proposals ([`ANSWER`]). A controller's image is committed state, so a broker may follow any
//! controller; it keeps the newest it has seen.

use raft::eraftpb::Message;

/// The largest frame accepted (a snapshot of the image is the largest).
pub const FRAME_MAX_BYTES: usize = 64 << 20;

pub const RAFT: u8 = 0;
pub const OBSERVE: u8 = 1;
pub const PROPOSE: u8 = 2;
pub const IMAGE: u8 = 3;
pub const ANSWER: u8 = 4;

/// How a proposal ended, as a controller tells its observer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Refused(String),
    Lost,
    NotLeader,
}

/// One frame, decoded.
#[derive(Debug)]
pub enum Frame {
    Raft(Message),
    Observe {
        node: u64,
    },
    Propose {
        tag: Vec<u8>,
        batch: Vec<u8>,
    },
    Image {
        term: u64,
        leader: u64,
        applied_index: u64,
        image: Vec<u8>,
    },
    Answer {
        tag: Vec<u8>,
        outcome: Outcome,
    },
}

/// The frame's bytes, length prefix included.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut out = vec![0u8; 4];
    match frame {
        Frame::Raft(m) => {
            out.push(RAFT);
            // A message that does not encode is a bug in raft-rs's types; send nothing of it.
            if protobuf::Message::write_to_vec(m, &mut out).is_err() {
                out.truncate(5);
            }
        }
        Frame::Observe { node } => {
            out.push(OBSERVE);
            out.extend_from_slice(&node.to_be_bytes());
        }
        Frame::Propose { tag, batch } => {
            out.push(PROPOSE);
            put_bytes(&mut out, tag);
            out.extend_from_slice(batch);
        }
        Frame::Image {
            term,
            leader,
            applied_index,
            image,
        } => {
            out.push(IMAGE);
            for n in [term, leader, applied_index] {
                out.extend_from_slice(&n.to_be_bytes());
            }
            out.extend_from_slice(image);
        }
        Frame::Answer { tag, outcome } => {
            out.push(ANSWER);
            put_bytes(&mut out, tag);
            match outcome {
                Outcome::Applied => out.push(0),
                Outcome::Refused(why) => {
                    out.push(1);
                    out.extend_from_slice(why.as_bytes());
                }
                Outcome::Lost => out.push(2),
                Outcome::NotLeader => out.push(3),
            }
        }
    }
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

/// Decodes a frame's body (after the length prefix).
pub fn decode(body: &[u8]) -> Result<Frame, String> {
    let (&kind, rest) = body.split_first().ok_or("an empty frame")?;
    let mut r = rest;
    let frame = match kind {
        RAFT => Frame::Raft(
            <Message as protobuf::Message>::parse_from_bytes(rest)
                .map_err(|e| format!("not a raft message: {e}"))?,
        ),
        OBSERVE => Frame::Observe {
            node: u64_of(&mut r)?,
        },
        PROPOSE => {
            let tag = bytes_of(&mut r)?;
            Frame::Propose {
                tag,
                batch: r.to_vec(),
            }
        }
        IMAGE => Frame::Image {
            term: u64_of(&mut r)?,
            leader: u64_of(&mut r)?,
            applied_index: u64_of(&mut r)?,
            image: r.to_vec(),
        },
        ANSWER => {
            let tag = bytes_of(&mut r)?;
            let (&code, why) = r.split_first().ok_or("an answer without its outcome")?;
            let outcome = match code {
                0 => Outcome::Applied,
                1 => Outcome::Refused(String::from_utf8_lossy(why).into_owned()),
                2 => Outcome::Lost,
                3 => Outcome::NotLeader,
                other => return Err(format!("unknown outcome {other}")),
            };
            Frame::Answer { tag, outcome }
        }
        other => return Err(format!("unknown frame kind {other}")),
    };
    Ok(frame)
}

/// Reads one frame; `Ok(None)` at a clean end of the stream.
pub async fn read<R: futures_lite::AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, String> {
    use futures_lite::AsyncReadExt;
    let mut len = [0u8; 4];
    if r.read_exact(&mut len).await.is_err() {
        return Ok(None);
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_MAX_BYTES {
        return Err(format!("a frame of {len} bytes"));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)
        .await
        .map_err(|e| format!("a frame cut short: {e}"))?;
    decode(&body).map(Some)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

fn u64_of(r: &mut &[u8]) -> Result<u64, String> {
    if r.len() < 8 {
        return Err("a frame cut short".into());
    }
    let (n, rest) = r.split_at(8);
    *r = rest;
    Ok(u64::from_be_bytes(n.try_into().expect("8")))
}

fn bytes_of(r: &mut &[u8]) -> Result<Vec<u8>, String> {
    if r.len() < 4 {
        return Err("a frame cut short".into());
    }
    let (n, rest) = r.split_at(4);
    let n = u32::from_be_bytes(n.try_into().expect("4")) as usize;
    if rest.len() < n {
        return Err("a frame cut short".into());
    }
    let (b, rest) = rest.split_at(n);
    *r = rest;
    Ok(b.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_frame_round_trips_and_damage_is_refused() {
        let frames = [
            Frame::Observe { node: 7 },
            Frame::Propose {
                tag: vec![1, 2, 3],
                batch: vec![9; 10],
            },
            Frame::Image {
                term: 3,
                leader: 2,
                applied_index: 99,
                image: b"cluster_id = \"x\"".to_vec(),
            },
            Frame::Answer {
                tag: vec![4],
                outcome: Outcome::Refused("no".into()),
            },
            Frame::Answer {
                tag: vec![],
                outcome: Outcome::Lost,
            },
        ];
        for f in &frames {
            let bytes = encode(f);
            let again = decode(&bytes[4..]).unwrap();
            assert_eq!(format!("{again:?}"), format!("{f:?}"));
            // Cut anywhere inside the fixed fields: refused, never a panic.
            for cut in 5..bytes.len().min(13) {
                let _ = decode(&bytes[4..cut]);
            }
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[99]).is_err());
        assert!(decode(&[OBSERVE, 1, 2]).is_err());
        assert!(decode(&[ANSWER, 0, 0, 0, 9, 1]).is_err());
    }
}
