//! Where the complete MCAP records end in the recorder's output, and how
//! many frames the chunks that reached it hold: what the recorder keeps
//! when a write fails (a full disk, a quota, a file size limit).
//!
//! The recorder writes its file front to back: the magic, then records
//! (an opcode byte, a 64-bit little-endian length, the body). [`Framing`]
//! follows that framing over the bytes as they are written, without
//! looking inside the bodies, so it always knows the end of the last
//! complete record: cut back there, the file is a clean prefix that every
//! streaming MCAP reader reads to its end. [`Ledger`] pairs the chunks
//! handed to the output with the frames written before each, so the
//! frames in the chunks that reached the file whole are known too.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Opcode of an MCAP chunk record.
const CHUNK: u8 = 0x06;
/// Opcode and length of a record.
const HEAD: usize = 9;
/// A chunk's body starts with its first and last message times (log
/// time, ns): the head kept of a chunk.
const CHUNK_HEAD: usize = HEAD + 16;

/// The record framing of an MCAP byte stream, fed in order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Framing {
    /// Bytes seen.
    seen: u64,
    /// End of the last complete record (or of the magic); 0 before the
    /// magic is whole.
    clean: u64,
    /// The current record's head: opcode, length, and for a chunk its
    /// two message times.
    head: [u8; CHUNK_HEAD],
    have: usize,
    need: usize,
    /// Body bytes of the current record still to come after its head.
    left: u64,
    /// Complete chunk records.
    chunks: u64,
    /// The last message time (log time, ns) of the last complete chunk.
    last_time: Option<u64>,
}

impl Framing {
    /// Follow `buf`, the next bytes of the stream. Returns how many chunk
    /// records it completed.
    pub(crate) fn feed(&mut self, mut buf: &[u8]) -> u64 {
        let magic = mcap::MAGIC.len() as u64;
        let before = self.chunks;
        while !buf.is_empty() {
            if self.seen < magic {
                let n = (magic - self.seen).min(buf.len() as u64);
                self.seen += n;
                buf = &buf[n as usize..];
                if self.seen == magic {
                    self.clean = magic;
                    self.need = HEAD;
                }
                continue;
            }
            if self.have < self.need {
                let n = (self.need - self.have).min(buf.len());
                self.head[self.have..self.have + n].copy_from_slice(&buf[..n]);
                self.have += n;
                self.seen += n as u64;
                buf = &buf[n..];
                if self.have == HEAD {
                    let len = u64::from_le_bytes(self.head[1..HEAD].try_into().unwrap_or_default());
                    if self.head[0] == CHUNK && len >= 16 {
                        self.need = CHUNK_HEAD;
                        self.left = len - 16;
                    } else {
                        self.left = len;
                    }
                }
            } else {
                let n = self.left.min(buf.len() as u64);
                self.left -= n;
                self.seen += n;
                buf = &buf[n as usize..];
            }
            if self.have == self.need && self.left == 0 {
                self.record_done();
            }
        }
        self.chunks - before
    }

    fn record_done(&mut self) {
        if self.need == CHUNK_HEAD {
            self.chunks += 1;
            self.last_time = Some(u64::from_le_bytes(
                self.head[HEAD + 8..CHUNK_HEAD]
                    .try_into()
                    .unwrap_or_default(),
            ));
        }
        self.clean = self.seen;
        self.have = 0;
        self.need = HEAD;
    }

    /// Bytes seen.
    pub(crate) fn seen(&self) -> u64 {
        self.seen
    }

    /// Where the last complete record ends: the stream cut there is a
    /// clean MCAP prefix (0 while not even the magic is whole).
    pub(crate) fn clean(&self) -> u64 {
        self.clean
    }

    /// The last message time (log time, ns) of the last complete chunk.
    pub(crate) fn last_time(&self) -> Option<u64> {
        self.last_time
    }
}

/// Frames per chunk, from the MCAP writer (handed) to the output
/// (written).
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Lossless frames handed to the MCAP writer before its current call:
    /// a chunk it emits during a call holds exactly those (the writer
    /// cuts a chunk before it adds the message that overflows it).
    handed: AtomicU64,
    chunks: Mutex<Chunks>,
}

/// The chunks of a [`Ledger`]. A chunk can reach the output before the
/// writer learns it handed it over (a large write passes through the
/// buffer at once): both sides count chunks in order, and a written
/// chunk's frames are known once both have seen it.
#[derive(Debug, Default)]
struct Chunks {
    /// Per chunk handed over and not yet known written: the frames
    /// handed before it was cut.
    pending: VecDeque<u64>,
    /// Chunks wholly written to the output, and of those the ones whose
    /// frames were taken from `pending`.
    written: u64,
    settled: u64,
    /// Frames in the chunks wholly written.
    frames: u64,
}

impl Chunks {
    fn settle(&mut self) {
        while self.settled < self.written {
            let Some(n) = self.pending.pop_front() else {
                break;
            };
            self.frames = n;
            self.settled += 1;
        }
    }
}

impl Ledger {
    /// `n` lossless frames were handed to the MCAP writer in all.
    pub(crate) fn handed(&self, n: u64) {
        self.handed.store(n, Ordering::Relaxed);
    }

    fn chunks(&self) -> std::sync::MutexGuard<'_, Chunks> {
        self.chunks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `chunks` chunk records were handed to the output.
    pub(crate) fn chunks_handed(&self, chunks: u64) {
        let n = self.handed.load(Ordering::Relaxed);
        let mut c = self.chunks();
        c.pending.extend(std::iter::repeat_n(n, chunks as usize));
        c.settle();
    }

    /// `chunks` chunk records reached the output whole.
    pub(crate) fn chunks_written(&self, chunks: u64) {
        let mut c = self.chunks();
        c.written += chunks;
        c.settle();
    }

    /// Frames in the chunks that reached the output whole.
    pub(crate) fn frames_written(&self) -> u64 {
        self.chunks().frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A recording written by the `mcap` crate as the recorder writes one
    /// (chunked, unseekable), with `frames` messages and small chunks.
    fn recording(frames: u64) -> Vec<u8> {
        let mut out = Vec::new();
        {
            struct Stream<'a>(&'a mut Vec<u8>);
            impl std::io::Write for Stream<'_> {
                fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                    self.0.extend_from_slice(buf);
                    Ok(buf.len())
                }
                fn flush(&mut self) -> std::io::Result<()> {
                    Ok(())
                }
            }
            impl std::io::Seek for Stream<'_> {
                fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
                    match to {
                        std::io::SeekFrom::Current(0) => Ok(self.0.len() as u64),
                        _ => Err(std::io::ErrorKind::Unsupported.into()),
                    }
                }
            }
            let mut w = mcap::WriteOptions::new()
                .compression(None)
                .chunk_size(Some(300))
                .disable_seeking(true)
                .create(Stream(&mut out))
                .unwrap();
            let ch = w
                .add_channel(0, "t", "postcard", &Default::default())
                .unwrap();
            for i in 0..frames {
                let header = mcap::records::MessageHeader {
                    channel_id: ch,
                    sequence: i as u32,
                    log_time: 1000 + i,
                    publish_time: 1000 + i,
                };
                w.write_to_known_channel(&header, &[7; 40]).unwrap();
            }
            w.finish().unwrap();
        }
        out
    }

    /// Messages a streaming reader reads from `bytes`, and whether it
    /// read them without an error.
    fn readable(bytes: &[u8]) -> (u64, bool) {
        let options = mcap::sans_io::LinearReaderOptions::default().with_skip_end_magic(true);
        let mut n = 0;
        for m in mcap::io::MessageReader::new_with_options(bytes, options) {
            match m {
                Ok(_) => n += 1,
                Err(_) => return (n, false),
            }
        }
        (n, true)
    }

    #[test]
    fn every_clean_cut_reads_whole_however_the_writes_split() {
        let file = recording(40);
        for step in [1usize, 5, 9, 25, 64, 4096] {
            let mut f = Framing::default();
            let mut chunks = 0;
            let mut cuts = 0;
            for piece in file.chunks(step) {
                chunks += f.feed(piece);
                let cut = f.clean() as usize;
                assert!(cut <= f.seen() as usize);
                if cut >= mcap::MAGIC.len() {
                    let (_, clean) = readable(&file[..cut]);
                    assert!(clean, "step {step}: a cut at {cut} does not read cleanly");
                    cuts += 1;
                }
            }
            assert!(chunks > 3, "step {step}: {chunks} chunks");
            assert!(cuts > 0);
            // Before the end magic: the footer is the last record.
            assert_eq!(f.clean() as usize, file.len() - mcap::MAGIC.len());
            assert_eq!(f.last_time(), Some(1039), "step {step}");
        }
        // Cut inside a record: the clean end is the record before it.
        let mut f = Framing::default();
        f.feed(&file[..file.len() / 2]);
        assert!((f.clean() as usize) < file.len() / 2);
        let (n, clean) = readable(&file[..f.clean() as usize]);
        assert!(clean && n > 0 && n < 40, "{n} {clean}");
    }

    #[test]
    fn the_ledger_counts_the_frames_of_the_chunks_written_whole() {
        let l = Ledger::default();
        l.handed(10);
        l.chunks_handed(1);
        l.handed(25);
        l.chunks_handed(1);
        assert_eq!(l.frames_written(), 0);
        l.chunks_written(1);
        assert_eq!(l.frames_written(), 10);
        l.chunks_written(1);
        assert_eq!(l.frames_written(), 25);
        // Written before the writer says it handed it over.
        l.chunks_written(1);
        assert_eq!(l.frames_written(), 25);
        l.handed(31);
        l.chunks_handed(1);
        assert_eq!(l.frames_written(), 31);
    }
}
