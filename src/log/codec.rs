//! Streaming codecs for RecordBatch v2 payloads: a reader that decompresses a batch's records a
//! buffer at a time, and a writer that compresses into an output capped at a byte limit.
//!
//! Sans-io: both work on byte slices and `Vec`s. Neither ever holds a whole expanded batch, so
//! the memory one batch costs depends on the codec's window and the cap, never on the batch's
//! compression ratio (issue 9: a 67 KB zstd batch that expanded to 2 GiB took the broker to
//! 2.16 GB when the codecs decompressed whole batches).

use std::io::{self, BufRead, BufReader, Read, Write};

/// Largest zstd window a produced batch may use: 2^24 = 16 MiB. zstd levels 1-19 never exceed
/// 2^23 and a frame whose content is smaller than its level's window declares the smaller size,
/// so only ultra levels (20-22) over more than 16 MiB are refused. The decoder's default (2^27)
/// would let one hostile frame reserve 128 MiB.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;

/// xerial snappy-java's stream header (Kafka's snappy framing): magic, version 1, compatible 1.
const SNAPPY_XERIAL_HEADER: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
/// snappy-java's block size, which Kafka's producers use: the unit of compression and the most
/// uncompressed bytes one block of our output holds.
const SNAPPY_BLOCK_BYTES: usize = 32 * 1024;

/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;
/// kafka-protocol's lz4 level, kept so recompressed batches look as they did before.
const LZ4_LEVEL: u32 = 4;

/// A reader over the uncompressed record stream of a batch payload compressed with `codec`
/// (1 gzip, 2 snappy, 3 lz4, 4 zstd). `block_bytes_max` bounds the one buffer a snappy block
/// needs (snappy cannot stream inside a block). Errors surface on read, as `io::Error`s.
pub(crate) fn decoder<'a>(
    codec: i16,
    payload: &'a [u8],
    block_bytes_max: usize,
) -> io::Result<Box<dyn BufRead + 'a>> {
    Ok(match codec {
        1 => Box::new(BufReader::new(flate2::bufread::MultiGzDecoder::new(
            payload,
        ))),
        2 => Box::new(BufReader::new(SnappyReader::new(payload, block_bytes_max))),
        3 => Box::new(BufReader::new(lz4::Decoder::new(payload)?)),
        4 => {
            let mut d = zstd::stream::read::Decoder::with_buffer(payload)?;
            d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
            Box::new(BufReader::new(d))
        }
        c => return Err(io::Error::other(format!("unknown compression codec {c}"))),
    })
}

/// Snappy as Kafka's producers write it: xerial framing (header, then `[u32 length][raw block]`
/// repeated) or, without the header, one raw snappy block (librdkafka), as snappy-java reads both.
struct SnappyReader<'a> {
    input: &'a [u8],
    block: Vec<u8>,
    at: usize,
    framed: Option<bool>,
    block_bytes_max: usize,
}

impl<'a> SnappyReader<'a> {
    fn new(input: &'a [u8], block_bytes_max: usize) -> Self {
        SnappyReader {
            input,
            block: Vec::new(),
            at: 0,
            framed: None,
            block_bytes_max,
        }
    }

    /// Decompresses the next block into `self.block`; false at the end of the input.
    fn next_block(&mut self) -> io::Result<bool> {
        let framed = *self.framed.get_or_insert_with(|| {
            self.input.len() >= SNAPPY_XERIAL_HEADER.len()
                && self.input[..SNAPPY_XERIAL_HEADER.len()] == SNAPPY_XERIAL_HEADER[..]
        });
        let raw = if framed {
            if let Some(rest) = self.input.strip_prefix(&SNAPPY_XERIAL_HEADER[..]) {
                self.input = rest;
            }
            if self.input.is_empty() {
                return Ok(false);
            }
            let len = self
                .input
                .get(..4)
                .map(|l| u32::from_be_bytes(l.try_into().expect("4 bytes")) as usize)
                .ok_or_else(|| corrupt("snappy block length cut short"))?;
            let raw = self
                .input
                .get(4..4 + len)
                .ok_or_else(|| corrupt("snappy block longer than the batch"))?;
            self.input = &self.input[4 + len..];
            raw
        } else {
            if self.input.is_empty() {
                return Ok(false);
            }
            std::mem::take(&mut self.input)
        };
        let n = snap::raw::decompress_len(raw).map_err(io::Error::other)?;
        // A snappy element expands at most ~21x (a 3-byte copy of 64 bytes): a longer claim is
        // a lie, refused before its buffer is allocated.
        if n > self.block_bytes_max || n > raw.len().saturating_mul(32) {
            return Err(corrupt("snappy block expands past the batch bound"));
        }
        self.block.clear();
        self.block.resize(n, 0);
        snap::raw::Decoder::new()
            .decompress(raw, &mut self.block)
            .map_err(io::Error::other)?;
        self.at = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.block.len() {
            if !self.next_block()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

fn corrupt(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

/// A `Vec` that refuses to grow past `max` bytes: the output of a recompression, which must fit
/// in `max.message.bytes` and so never costs more than that.
pub(crate) struct CappedVec {
    pub buf: Vec<u8>,
    max: usize,
}

impl CappedVec {
    pub fn new(prefix: &[u8], max: usize) -> Self {
        let mut buf = Vec::with_capacity(max.min(64 * 1024));
        buf.extend_from_slice(prefix);
        CappedVec { buf, max }
    }
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.max {
            // A kind of its own, so the caller can tell "too large" from a codec failure.
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "output exceeds max.message.bytes",
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A compressing writer for `codec` (0 none) into a [`CappedVec`].
pub(crate) enum Encoder {
    None(CappedVec),
    Gzip(flate2::write::GzEncoder<CappedVec>),
    Snappy(SnappyWriter),
    Lz4(lz4::Encoder<CappedVec>),
    Zstd(zstd::stream::write::Encoder<'static, CappedVec>),
}

impl Encoder {
    pub fn new(codec: i16, out: CappedVec) -> io::Result<Self> {
        Ok(match codec {
            0 => Encoder::None(out),
            1 => Encoder::Gzip(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::default(),
            )),
            2 => Encoder::Snappy(SnappyWriter::new(out)?),
            3 => Encoder::Lz4(
                lz4::EncoderBuilder::new()
                    .level(LZ4_LEVEL)
                    .block_mode(lz4::BlockMode::Independent)
                    .build(out)?,
            ),
            4 => Encoder::Zstd(zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?),
            c => return Err(io::Error::other(format!("unknown compression codec {c}"))),
        })
    }

    /// Flushes the codec and returns the output; `ErrorKind::FileTooLarge` when it outgrew its
    /// cap.
    pub fn finish(self) -> io::Result<CappedVec> {
        match self {
            Encoder::None(v) => Ok(v),
            Encoder::Gzip(e) => e.finish(),
            Encoder::Snappy(e) => e.finish(),
            Encoder::Lz4(e) => {
                let (v, r) = e.finish();
                r.map(|_| v)
            }
            Encoder::Zstd(e) => e.finish(),
        }
    }
}

impl Write for Encoder {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::None(v) => v.write(data),
            Encoder::Gzip(e) => e.write(data),
            Encoder::Snappy(e) => e.write(data),
            Encoder::Lz4(e) => e.write(data),
            Encoder::Zstd(e) => e.write(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// xerial-framed snappy output in 32 KiB blocks, as Kafka's Java producer writes it.
pub(crate) struct SnappyWriter {
    out: CappedVec,
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl SnappyWriter {
    fn new(mut out: CappedVec) -> io::Result<Self> {
        out.write_all(SNAPPY_XERIAL_HEADER)?;
        Ok(SnappyWriter {
            out,
            pending: Vec::with_capacity(SNAPPY_BLOCK_BYTES),
            scratch: vec![0; snap::raw::max_compress_len(SNAPPY_BLOCK_BYTES)],
        })
    }

    fn flush_block(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = snap::raw::Encoder::new()
            .compress(&self.pending, &mut self.scratch)
            .map_err(io::Error::other)?;
        self.out.write_all(&(n as u32).to_be_bytes())?;
        self.out.write_all(&self.scratch[..n])?;
        self.pending.clear();
        Ok(())
    }

    fn finish(mut self) -> io::Result<CappedVec> {
        self.flush_block()?;
        Ok(self.out)
    }
}

impl Write for SnappyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(SNAPPY_BLOCK_BYTES - self.pending.len());
        self.pending.extend_from_slice(&data[..n]);
        if self.pending.len() == SNAPPY_BLOCK_BYTES {
            self.flush_block()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
