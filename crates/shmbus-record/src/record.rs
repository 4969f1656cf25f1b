//! `shmbus record`: every frame of the chosen topics into an MCAP file.
//!
//! ## Threads
//! One reader thread per topic blocks on the topic's futex
//! ([`RawSubscriber::wait_until`]), drains every frame that is there into a
//! batch (one buffer, no allocation per frame) and sends the batch to the
//! writer (the calling thread), which owns the MCAP writer. After a drain
//! the reader pauses for an eighth of the ring's fill time (see `Pace`),
//! so it wakes once per several frames: that halves the recorder's CPU
//! time at 1 kHz (docs/RECORDING.md has the numbers). A futex per
//! topic is the only way to sleep until *any* of several topics has a frame;
//! polling instead would either burn the one core or add latency and risk
//! losing frames on fast topics with short rings.
//!
//! ## Memory
//! The recorder's memory is bounded whatever a segment says: readers hand
//! their batches to the writer through a queue of [`QUEUE`] batches (a
//! reader waits when it is full, and loses frames to the ring, which it
//! reports as missed, rather than the recorder growing); a batch holds at
//! most [`MAX_BATCH`] entries and [`MAX_BATCH_BYTES`] of frames (or one
//! frame); one drain makes at most [`MAX_BATCH`] reads; consecutive
//! missed-frame reports are merged into one. A topic whose in-order cursor
//! does not advance past a "missed" report (a corrupt or forged header
//! generation) stops being recorded, with a warning that names its key.
//! Frame buffers grow with the frames actually read, never to a capacity a
//! header claims.
//!
//! ## Crash safety
//! Chunks are buffered in memory and written whole (`disable_seeking`), and
//! the writer cuts a chunk and flushes the file at least once a second
//! ([`FLUSH_EVERY`]). A recorder killed by SIGKILL leaves every complete
//! chunk readable by a streaming reader; at most the last second is lost.
//! Ctrl-C / SIGTERM / `--duration` finish the file with its summary.
//!
//! ## A full disk
//! The output's writers follow the MCAP record framing of the bytes they
//! pass on (`framing`), so the recorder knows where the last complete
//! record in the file ends and how many frames the chunks before it hold.
//! A write that fails (ENOSPC, EDQUOT, EFBIG: SIGXFSZ is ignored) ends the
//! recording at once: a regular file is cut back to that record, nothing
//! more is written, and the error says what the file keeps.

use shmbus_core::plural::count;
use shmbus_toolbox::printable::printable;
use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, IsTerminal};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mcap::records::MessageHeader;
use serde_json::json;
use shmbus_codec::Codec;
use shmbus_config::names::{self, NameError, NameRule};
use shmbus_core::segment::MAX_SANE_GENERATION;
use shmbus_core::{OpenError, ReadError, Segment, SlotMeta, WaitError, sys, sysvipc};
use shmbus_sub::{RawNext, RawSubscriber};

use crate::cli::RecordArgs;
use crate::format::{self, TopicMeta, role};
use crate::framing::{Framing, Ledger};
use shmbus_toolbox::repeats::Repeats;
use shmbus_toolbox::topic::{self, Selector};
use shmbus_toolbox::units::bytes as human_bytes;

use crate::{Exit, stop};

/// The longest time between two chunk cuts (and file flushes).
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often the machine is scanned for new topics.
const RESCAN_EVERY: Duration = Duration::from_secs(1);
/// Target uncompressed chunk size.
const CHUNK_SIZE: u64 = 256 * 1024;
/// How long the writer waits for every topic's backlog before it writes
/// them merged in publish order (`--backlog`; `Recorder::merge_backlogs`).
/// A reader sends its backlog at once, or after at most one 200 ms wait
/// for an empty ring.
const BACKLOG_WAIT: Duration = Duration::from_secs(5);

/// At most this many bytes of backlog frames are held to be merged.
const BACKLOG_HOLD_BYTES: usize = 64 << 20;

/// A reader sends its batch when it holds this many entries, even if more
/// frames are waiting; one drain reads at most this many times.
pub const MAX_BATCH: usize = 256;
/// A reader sends its batch when it holds this many bytes of frames (a
/// single larger frame is sent alone).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// Batches in flight between the readers and the writer.
pub const QUEUE: usize = 16;
/// How long a write to the output may stay blocked once the recording is
/// to end (Ctrl-C, SIGTERM, `--duration`) before the recorder gives up on
/// it: a FIFO or pipe whose reader stopped reading.
pub const STALL_LIMIT: Duration = Duration::from_secs(5);

type McapWriter = mcap::Writer<Position<BufWriter<Watched>>>;

/// The output file, with when the write in progress started (monotonic
/// ns; 0 while none is), for the stall watchdog ([`watch_stalls`]), and
/// where the last complete record written to it ends (`framing`): a
/// write that fails (a full disk) leaves the file cut back there.
struct Watched {
    file: File,
    busy_since: Arc<AtomicU64>,
    framing: Framing,
    ledger: Arc<Ledger>,
}

impl std::io::Write for Watched {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.busy_since
            .store(sys::monotonic_ns().max(1), Ordering::Relaxed);
        let r = self.file.write(buf);
        self.busy_since.store(0, Ordering::Relaxed);
        if let Ok(n) = r {
            let chunks = self.framing.feed(&buf[..n.min(buf.len())]);
            if chunks > 0 {
                self.ledger.chunks_written(chunks);
            }
        }
        r
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Open the output for writing without blocking: a FIFO with no reader
/// yet is waited for (saying so once) while checking for a stop and the
/// end of `--duration`, so `record -o FIFO` never hangs in `open()`.
/// Once open, the file is blocking again (the writer waits for a slow
/// reader; [`watch_stalls`] bounds that wait after the end). Returns the
/// file and whether it had to wait.
fn open_output(path: &std::path::Path, deadline: Option<Instant>) -> Result<(File, bool), Exit> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let shown = path.display();
    let mut waited = false;
    loop {
        let opened = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            // Emptied below, once it is known that no other recorder is
            // writing it.
            .truncate(false)
            .custom_flags(OFlag::O_NONBLOCK.bits())
            .open(path);
        let e = match opened {
            Ok(file) => {
                let blocking = fcntl(&file, FcntlArg::F_GETFL)
                    .map(|fl| OFlag::from_bits_truncate(fl) & !OFlag::O_NONBLOCK)
                    .and_then(|fl| fcntl(&file, FcntlArg::F_SETFL(fl)));
                if let Err(e) = blocking {
                    return Err(Exit::error(format!(
                        "cannot make {shown} blocking for writing: {e}"
                    )));
                }
                return Ok((claim_output(file, path)?, waited));
            }
            Err(e) => e,
        };
        let fifo = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo());
        if e.raw_os_error() != Some(nix::libc::ENXIO) || !fifo {
            return Err(Exit::error(cannot_create(path, &e)));
        }
        // ENXIO on a FIFO: nobody has it open for reading yet.
        if !waited {
            waited = true;
            shmbus_toolbox::say!(
                "waiting for a reader on FIFO {shown} (start the program that reads it); Ctrl-C stops"
            );
        }
        if stop::requested() || deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(Exit::error(format!(
                "nothing recorded: no program opened the FIFO {shown} for reading before the recording was to end; start its reader first (e.g. `cat {shown} > run.mcap`)"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Why the output could not be opened, with the fix for that cause: a
/// directory, a directory that does not exist, a file where a directory
/// should be, a full file system, a quota, a name too long, a read-only
/// file system, no permission. Was one fix for all ("check that the
/// directory exists and is writable"), wrong for `-o DIR`, for a full
/// disk (no inode left for the new file: the 3 a.m. case, the last
/// recording filled it) and for a too long name; and a file in the way of
/// a directory was told to `mkdir -p` it, which fails.
fn cannot_create(path: &std::path::Path, e: &std::io::Error) -> String {
    use nix::libc::{EACCES, EDQUOT, EISDIR, ENAMETOOLONG, ENOENT, ENOSPC, ENOTDIR, EPERM, EROFS};
    let shown = path.display();
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.display().to_string(),
        _ => ".".to_string(),
    };
    let missing = || {
        format!(
            "the directory {dir} does not exist; create it first (`mkdir -p {dir}`), or give another -o"
        )
    };
    let fix = match e.raw_os_error() {
        Some(EISDIR) => format!(
            "it is a directory; name a file in it, e.g. -o {}",
            path.join("run.mcap").display()
        ),
        Some(ENOENT) => missing(),
        // A component of the path is a file: the first one that exists
        // and is not a directory (`mkdir -p` of it would fail).
        Some(ENOTDIR) => path
            .ancestors()
            .skip(1)
            .filter(|p| !p.as_os_str().is_empty())
            .find(|p| std::fs::metadata(p).is_ok_and(|m| !m.is_dir()))
            .map_or_else(missing, |file| {
                format!(
                    "{} is a file, not a directory; name a file in a directory with -o",
                    file.display()
                )
            }),
        Some(ENOSPC) => format!(
            "its file system is full (no space, or no inode left for a new file: `df -h {dir}`, `df -i {dir}`); free space on it, or record to another one with -o"
        ),
        Some(EDQUOT) => "the disk quota is exceeded (`quota -s`); free space within the quota, or record to another file system with -o".to_string(),
        Some(ENAMETOOLONG) => "the name is too long for its file system (255 bytes per name, 4096 per path); give a shorter -o".to_string(),
        Some(EROFS) => {
            "its file system is mounted read-only; record to another one with -o".to_string()
        }
        Some(EACCES) | Some(EPERM) => format!(
            "this user may not write it, or create files in {dir}; give a file in a directory you may write with -o"
        ),
        _ => "check that the directory exists and is writable".to_string(),
    };
    format!("cannot create {shown}: {e}; {fix}")
}

/// A regular file: take its lock (`flock`, exclusive) for as long as the
/// file is open, then empty it. A file another recorder holds is left as
/// it is, with an error: emptying it under that recorder (as `O_TRUNC`
/// did) destroyed its recording, and both then wrote into one file. A
/// file system without `flock` is written unlocked, as before. FIFOs and
/// devices are neither locked nor emptied.
fn claim_output(file: File, path: &std::path::Path) -> Result<File, Exit> {
    use nix::errno::Errno;
    use nix::fcntl::FlockArg;
    use std::os::fd::AsRawFd;
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(file);
    }
    // `flock` on the descriptor, not nix's `Flock` guard: the lock is to
    // last as long as the file stays open (the guard would own the file).
    #[allow(deprecated)]
    let locked = nix::fcntl::flock(file.as_raw_fd(), FlockArg::LockExclusiveNonblock);
    if locked == Err(Errno::EWOULDBLOCK) {
        return Err(Exit::error(format!(
            "{} is being written by another `shmbus record` (it was left as it is); give this recording another -o FILE",
            path.display()
        )));
    }
    file.set_len(0)
        .map_err(|e| Exit::error(format!("cannot empty {} for writing: {e}", path.display())))?;
    Ok(file)
}

/// Watch the writer from a thread of its own: once the recording is to
/// end (a stop signal, or `deadline`), a write to the output that has not
/// returned for [`STALL_LIMIT`] (a FIFO or pipe whose reader stopped
/// reading: `write()` blocks, and no signal ends it) ends the command,
/// exit 2, "output stalled". Without its thread (a process limit) the
/// recorder runs unwatched, as before.
fn watch_stalls(busy_since: Arc<AtomicU64>, deadline: Option<Instant>, output: String) {
    let watch = move || {
        let mut ended: Option<u64> = None;
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = sys::monotonic_ns();
            if ended.is_none()
                && (stop::requested() || deadline.is_some_and(|d| Instant::now() >= d))
            {
                ended = Some(now);
            }
            let (Some(end), since) = (ended, busy_since.load(Ordering::Relaxed)) else {
                continue;
            };
            if since == 0 {
                continue;
            }
            let blocked = now.saturating_sub(since.max(end));
            if blocked >= STALL_LIMIT.as_nanos() as u64 {
                shmbus_toolbox::say!(
                    "shmbus: output stalled: a write to {output} has not returned for {} s after the recording was to end (the program reading it stopped reading?); giving up, the recording is incomplete",
                    STALL_LIMIT.as_secs()
                );
                std::process::exit(2);
            }
        }
    };
    if let Err(e) = std::thread::Builder::new()
        .name("rec-stall".into())
        .spawn(watch)
    {
        shmbus_toolbox::say!(
            "shmbus: warning: cannot start the output watchdog ({e}); a stalled output is not noticed"
        );
    }
}

/// The output with its write position counted here: the MCAP writer asks
/// for the position (never seeks elsewhere with `disable_seeking`), so a
/// pipe or FIFO works as an output too (`-o /dev/stdout`). It also
/// follows the records handed on (`framing`), so the [`Ledger`] learns
/// how many frames each chunk holds.
struct Position<W> {
    inner: W,
    pos: u64,
    framing: Framing,
    ledger: Arc<Ledger>,
}

impl<W: std::io::Write> std::io::Write for Position<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pos += n as u64;
        let chunks = self.framing.feed(&buf[..n.min(buf.len())]);
        if chunks > 0 {
            self.ledger.chunks_handed(chunks);
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<W> std::io::Seek for Position<W> {
    fn seek(&mut self, to: std::io::SeekFrom) -> std::io::Result<u64> {
        match to {
            std::io::SeekFrom::Current(0) => Ok(self.pos),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "the recording is written as a stream",
            )),
        }
    }
}

/// One entry of a batch.
enum Item {
    /// A frame: metadata and its bytes at `start..end` of the batch buffer.
    Frame(SlotMeta, usize, usize),
    /// `n` frames were overwritten before they were read; the next frame
    /// read has generation `at`.
    Missed(u64, u64),
}

/// What a reader thread sends.
struct Batch {
    topic: usize,
    items: Vec<Item>,
    bytes: Vec<u8>,
    /// The reader stopped for good (segment removed, or an error).
    ended: Option<String>,
    /// A frame of this generation could not be read (corrupt slot).
    corrupt: Option<u64>,
    /// The frame lost to a publish left mid-write over it, by a publisher
    /// that died or one stopped there (`RawSubscriber::skip_lost`). Counted
    /// as missed.
    torn: Option<shmbus_sub::LostFrame>,
    /// The topic's publisher was found not running (`Some(false)`, once
    /// until it runs again) or running again (`Some(true)`): said on
    /// stderr, so that a recording whose sensor crashed does not only
    /// read as a rate that went to zero.
    publisher: Option<bool>,
    /// The last batch of the backlog this reader found at the start
    /// (`--backlog`): sent even if empty, so the writer knows when it
    /// holds every topic's backlog ([`Recorder::merge_backlogs`]).
    backlog_done: bool,
}

/// The writer's view of one recorded topic.
struct Recorded {
    meta: TopicMeta,
    /// The JSON view's codec (`None` without `--json` or for a schema
    /// JSON cannot show).
    codec: Option<Codec>,
    lossless: u16,
    view: Option<u16>,
    frames: u64,
    missed: u64,
    undecodable: u64,
    thread: Option<JoinHandle<()>>,
}

/// Totals shown in the progress line and the final summary.
#[derive(Default)]
struct Totals {
    frames: u64,
    /// Message bytes written (lossless + JSON).
    bytes: u64,
    missed: u64,
}

/// Whether `path` names this process's standard output: `-`, or one of
/// the names the system gives it.
fn is_stdout(path: &std::path::Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|s| path.as_os_str() == *s)
}

/// Run `shmbus record`.
pub fn run(mut a: RecordArgs) -> Result<(), Exit> {
    // `-o -`, as most tools take it: standard output. It was a file named
    // "-". Never a terminal: a recording is binary.
    // Before anything is recorded (or even looked for): a closed stdout
    // as the output recorded into nothing and exited 0.
    if is_stdout(&a.output) && crate::stdout_closed() {
        return Err(crate::stdout_closed_error(
            "the recording would go nowhere, so nothing is recorded",
        ));
    }
    if a.output.as_os_str() == "-" {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            return Err(Exit::error(
                "-o -: standard output is a terminal, and a recording is binary: give a file (`-o run.mcap`) or pipe it (`-o - | ssh host 'cat > run.mcap'`)",
            ));
        }
        a.output = std::path::PathBuf::from("/dev/stdout");
    }
    stop::install().map_err(Exit::error)?;
    ignore_file_size_signal();
    let clock = CpuClock::start();
    let deadline = a.duration.map(|d| Instant::now() + d);
    let mut scan = Scan::new(&a)?;
    // Each topic is recorded from where it stood when it was found, not
    // from when its reader starts: opening the output comes in between (a
    // FIFO waits for its reader, a file is locked), and a frame published
    // meanwhile was neither recorded nor counted as missed. Now it is
    // recorded if still in the ring, counted as missed if overwritten.
    let stood = |segs: Vec<Segment>| -> Vec<(Segment, u64)> {
        segs.into_iter()
            .map(|s| {
                let g = s.generation().min(MAX_SANE_GENERATION);
                (s, g)
            })
            .collect()
    };
    let mut found = stood(scan.next());
    if found.is_empty() {
        return Err(scan.nothing_found());
    }
    scan.warn();
    let (file, waited) = open_output(&a.output, deadline)?;
    if waited {
        // Topics that appeared while waiting for a reader: recorded from
        // when they were found, as the ones found before.
        found.extend(stood(scan.next()));
        scan.warn();
    }
    // A second descriptor of a regular output, to notice it deleted while
    // recording (its link count drops to 0). Not on a file system that
    // shows no links to begin with: it could not tell.
    let watched = file
        .metadata()
        .is_ok_and(|m| m.is_file() && std::os::unix::fs::MetadataExt::nlink(&m) > 0)
        .then(|| file.try_clone().ok())
        .flatten();
    let busy_since = Arc::new(AtomicU64::new(0));
    watch_stalls(
        busy_since.clone(),
        deadline,
        printable(&a.output.display().to_string()).into_owned(),
    );
    let ledger = Arc::new(Ledger::default());
    let file = Watched {
        file,
        busy_since,
        framing: Framing::default(),
        ledger: ledger.clone(),
    };
    let options = mcap::WriteOptions::new()
        .compression(None)
        .chunk_size(Some(CHUNK_SIZE))
        .disable_seeking(true)
        .library(concat!("shmbus-record ", env!("CARGO_PKG_VERSION")));
    let mut rec = Recorder {
        w: options
            .create(Position {
                inner: BufWriter::with_capacity(64 * 1024, file),
                pos: 0,
                framing: Framing::default(),
                ledger: ledger.clone(),
            })
            .map_err(|e| mcap_err(&a, e))?,
        topics: Vec::new(),
        missed_channel: 0,
        json: !a.no_json,
        quit: Arc::new(AtomicBool::new(false)),
        backlog: a.backlog,
        totals: Totals::default(),
        scratch: Vec::new(),
        notes: Repeats::new("shmbus: warning: "),
        ledger,
        output: watched,
        deleted: false,
    };
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    rec.missed_channel = rec.add_missed_channel().map_err(|e| mcap_err(&a, e))?;
    for (seg, before) in found {
        let start = if rec.backlog {
            Start::Backlog
        } else {
            Start::Found { before }
        };
        rec.add(seg, &tx, start).map_err(|e| mcap_err(&a, e))?;
    }
    let names: Vec<&str> = rec
        .topics
        .iter()
        .filter(|t| t.thread.is_some())
        .map(|t| t.meta.name.as_str())
        .collect();
    shmbus_toolbox::say!(
        "recording {} topic{} ({}) to {}; Ctrl-C stops",
        names.len(),
        if names.len() == 1 { "" } else { "s" },
        names.join(", "),
        printable(&a.output.display().to_string())
    );
    let mut result = rec.run(deadline, &mut scan, &tx, &rx);
    rec.quit.store(true, Ordering::Relaxed);
    drop(tx);
    // Keep taking batches until every reader has stopped (each stops within
    // one wait of `quit`): a reader blocked on the full queue is released,
    // and the frames published just before the stop are kept.
    for b in rx.iter() {
        if result.is_ok() {
            result = rec.write_batch(b);
        }
    }
    let mut unrecorded = 0;
    for t in &mut rec.topics {
        match t.thread.take() {
            Some(h) => {
                let _ = h.join();
            }
            None => unrecorded += 1,
        }
    }
    let mut w = rec.w;
    if result.is_ok() {
        result = w.finish().map(drop);
    }
    // The summary and footer are still in the buffer: written now, so a
    // disk that fills at the very end is an error too (the buffer's drop
    // would ignore it). After a failed write nothing more is written: the
    // buffer's rest is dropped and the file cut back to its last complete
    // record.
    let mut buffered = w.into_inner().inner;
    if result.is_ok() {
        result = std::io::Write::flush(&mut buffered).map_err(mcap::McapError::from);
    }
    let (out, _unwritten) = buffered.into_parts();
    if let Err(e) = result {
        return Err(write_failed(&a, e, out, rec.totals.frames));
    }
    rec.notes.flush();
    if rec.deleted || rec.output.as_ref().is_some_and(unlinked) {
        return Err(Exit::error(format!(
            "{} was deleted while it was being recorded (`rm`, a cleaner of its directory, or another file moved over it): the {} recorded went with it, nothing of this recording is kept; the recording {}; record again to a file nothing removes",
            a.output.display(),
            count(rec.totals.frames, "frame"),
            if rec.deleted {
                "stopped when that was noticed"
            } else {
                "had ended"
            }
        )));
    }
    let now_at = moved_to(&out.file, &a.output);
    // A regular file's size; a pipe, FIFO or device has none of its own
    // (its inode says 0 B): what was written to it.
    let size = match out.file.metadata() {
        Ok(m) if m.is_file() => m.len(),
        _ => out.framing.seen(),
    };
    drop(out);
    summary(&a, clock, &rec.totals, &rec.topics, size, now_at);
    if unrecorded > 0 {
        return Err(Exit::error(format!(
            "{unrecorded} of {} {} not recorded (no reader thread could be started; see above); the file holds the others",
            count(rec.topics.len(), "topic"),
            if unrecorded == 1 { "was" } else { "were" }
        )));
    }
    Ok(())
}

/// A write to the output failed (`e`): cut a regular file back to the end
/// of its last complete record, so every MCAP reader reads it to its end
/// cleanly, and say what it keeps. A full disk, an exceeded quota and the
/// file size limit (`ulimit -f`, 4 GiB on FAT32) are named as such, with
/// their fix. `recorded`: the frames read from the topics in all.
fn write_failed(a: &RecordArgs, e: mcap::McapError, out: Watched, recorded: u64) -> Exit {
    use nix::libc::{EDQUOT, EFBIG, ENOSPC};
    let shown = a.output.display();
    let mcap::McapError::Io(io) = e else {
        return mcap_err(a, e);
    };
    let (what, fix) = match io.raw_os_error() {
        Some(ENOSPC) => (
            "the disk is full",
            "free space on its file system (`df -h`), or record to another one with -o",
        ),
        Some(EDQUOT) => (
            "the disk quota is exceeded",
            "free space within the quota (`quota -s`), or record to another file system with -o",
        ),
        Some(EFBIG) => (
            "the file reached the largest size allowed",
            "the limit is `ulimit -f` or the file system's (4 GiB on FAT32): record shorter files (--duration), or to another file system with -o",
        ),
        _ => return mcap_err(a, mcap::McapError::Io(io)),
    };
    let regular = out.file.metadata().is_ok_and(|m| m.is_file());
    let clean = out.framing.clean();
    let cut = if regular {
        out.file.set_len(clean).map(|()| clean)
    } else {
        Ok(out.framing.seen())
    };
    let kept = out.ledger.frames_written();
    let until = out
        .framing
        .last_time()
        .filter(|_| kept > 0)
        .map(|t| format!(" up to {}", shmbus_toolbox::units::iso8601(t)))
        .unwrap_or_default();
    let holds = match (regular, cut) {
        (true, Ok(0)) => format!("nothing was recorded in {shown} (it is empty)"),
        (true, Ok(len)) if kept == 0 => format!(
            "{shown} holds no frame ({}, cut back to its last complete record)",
            human_bytes(len)
        ),
        (true, Ok(len)) => format!(
            "{shown} keeps {kept} of the {} recorded{until} ({}), readable up to there: it was cut back to its last complete record (`shmbus cat {shown}`)",
            count(recorded, "frame"),
            human_bytes(len)
        ),
        (true, Err(e)) => format!(
            "{shown} keeps {kept} of the {} recorded{until}, readable up to its last complete chunk (it could not be cut back to its last complete record: {e})",
            count(recorded, "frame")
        ),
        (false, Ok(0)) | (false, Err(_)) => format!("nothing of the recording reached {shown}"),
        (false, Ok(len)) => format!(
            "{} reached {shown}, with {kept} of the {} recorded{until} in whole chunks (a reader reads up to there)",
            human_bytes(len),
            count(recorded, "frame")
        ),
    };
    Exit::error(format!(
        "recording stopped: {what} ({io}) writing {shown}; {holds}; {fix}"
    ))
}

/// Ignore SIGXFSZ: a write past the file size limit (`ulimit -f`) then
/// fails with EFBIG, which the recorder reports with what the file keeps
/// ([`write_failed`]), instead of killing it mid-record. Without it the
/// signal's default is to die (and dump core).
fn ignore_file_size_signal() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN runs no code in the process; nothing else in the
    // recorder handles SIGXFSZ.
    if let Err(e) = unsafe { signal(Signal::SIGXFSZ, SigHandler::SigIgn) } {
        shmbus_toolbox::say!(
            "shmbus: warning: cannot ignore SIGXFSZ ({e}): the file size limit (`ulimit -f`) kills the recorder"
        );
    }
}

fn mcap_err(a: &RecordArgs, e: mcap::McapError) -> Exit {
    let out = a.output.display();
    match e {
        mcap::McapError::Io(io) => {
            let fix = match io.kind() {
                std::io::ErrorKind::StorageFull => "; free space on its file system",
                std::io::ErrorKind::BrokenPipe => {
                    "; the program reading the output exited before the recording ended"
                }
                _ => "",
            };
            Exit::error(format!("writing {out} failed: {io}{fix}"))
        }
        e => Exit::error(format!("writing {out} failed: {e}")),
    }
}

/// Finds the segments to record: every shmbus segment, or the topics the
/// user named (names, keys, shmids: `shmbus_toolbox::topic`, as every
/// `shmbus` command takes them). Each shmid is looked at once (a foreign
/// segment is attached once, not every scan).
struct Scan {
    /// shmids recorded.
    taken: HashSet<i32>,
    /// shmids that cannot be recorded, and why.
    failed: std::collections::HashMap<i32, Why>,
    /// The topics named on the command line (none: everything).
    named: Vec<Named>,
    denied: usize,
    me: u32,
    /// Named topics (indexes) to warn about: each once, by [`Scan::warn`].
    unwarned: Vec<usize>,
    /// With topics named: the generation of every readable segment there
    /// when the recording started, by shmid. A segment that could not be
    /// recorded then (an ambiguous name, say) and is found later was
    /// published up to this generation before the recording: those frames
    /// are not missed.
    at_start: std::collections::HashMap<i32, u64>,
}

/// One topic named on the command line (a TOPIC or a `--key`).
struct Named {
    /// How messages call it: `topic 'imu'`, `key 0x5312abcd`, `shmid 7`.
    label: String,
    want: Want,
    /// Its one warning was printed.
    warned: bool,
    /// Found and recorded (or being recorded).
    used: bool,
    /// Why it could not be used at the last scan.
    why: Option<Why>,
}

enum Want {
    Name(NameRule),
    Key(i32),
    Shmid(i32),
}

/// Why a named topic is not recorded.
#[derive(Debug, Clone)]
enum Why {
    /// Not there (yet): a name or key is recorded once it appears.
    NotFound(String),
    /// There, but not a topic this recorder can read.
    Unusable(String),
}

impl Scan {
    fn new(a: &RecordArgs) -> Result<Scan, Exit> {
        let mut named = Vec::new();
        let segments = sysvipc::segments().unwrap_or_default();
        for t in &a.topics {
            let (label, want) = match Selector::parse(t).map_err(Exit::error)? {
                Selector::Name(n) => {
                    let (rule, note) = NameRule::for_name(&n, None);
                    if let Some(n) = note {
                        shmbus_toolbox::say!("shmbus: warning: {n}");
                    }
                    (format!("topic '{n}'"), Want::Name(rule))
                }
                Selector::Key(k) => (format!("key 0x{:08x}", k as u32), Want::Key(k)),
                Selector::Shmid(id) => (format!("shmid {id}"), Want::Shmid(id)),
                Selector::Number(n) => {
                    let segs = segments
                        .iter()
                        .map(|e| (e.key(), e.id(), e.mode() & sys::SHM_DEST != 0));
                    match topic::number(n, segs).map_err(Exit::error)? {
                        Some(Selector::Shmid(id)) => (format!("shmid {id}"), Want::Shmid(id)),
                        Some(Selector::Key(k)) => (format!("key {n}"), Want::Key(k)),
                        // Neither yet: a key, recorded if it appears.
                        _ => match topic::number_as_key(n) {
                            Some(k) => (format!("key or shmid {n}"), Want::Key(k)),
                            None => (format!("shmid {n}"), Want::Shmid(-1)),
                        },
                    }
                }
            };
            named.push(Named::new(label, want));
        }
        for k in &a.keys {
            named.push(Named::new(
                format!("key 0x{:08x}", *k as u32),
                Want::Key(*k),
            ));
        }
        // Without names every readable topic is recorded from the start, so
        // only named recordings need to know where the others stood.
        let mut at_start = std::collections::HashMap::new();
        if !named.is_empty() {
            for e in segments.iter().filter(|e| e.key() != 0) {
                if let Ok(seg) = Segment::attach_shmid(e.id(), e.key()) {
                    at_start.insert(e.id(), seg.generation().min(MAX_SANE_GENERATION));
                }
            }
        }
        Ok(Scan {
            taken: HashSet::new(),
            failed: Default::default(),
            named,
            denied: 0,
            me: nix::unistd::geteuid().as_raw(),
            unwarned: Vec::new(),
            at_start,
        })
    }

    /// How many frames segment `shmid` had when the recording started (0 if
    /// it was not there, or not readable then).
    fn published_at_start(&self, shmid: i32) -> u64 {
        self.at_start.get(&shmid).copied().unwrap_or(0)
    }

    fn all(&self) -> bool {
        self.named.is_empty()
    }

    /// Attach `shmid`: `Ok(Some)` the first time it is a readable topic,
    /// `Ok(None)` when it is recorded already, else why not (remembered,
    /// so a segment is attached once).
    fn take(&mut self, shmid: i32, key: i32) -> Result<Option<Segment>, Why> {
        if self.taken.contains(&shmid) {
            return Ok(None);
        }
        if let Some(why) = self.failed.get(&shmid) {
            return Err(why.clone());
        }
        let why = match Segment::attach_shmid(shmid, key) {
            // A schema that does not decode (a damaged segment whose
            // fingerprint still matches, or a newer shmbus's) is a topic
            // this recorder cannot read: said as such, so a recording of
            // nothing but it fails (it was "recording 0 topics", exit 0).
            Ok(seg) => match shmbus_core::schema::decode_schema(&seg.info().schema) {
                Ok(_) => {
                    self.taken.insert(shmid);
                    return Ok(Some(seg));
                }
                Err(e) => Why::Unusable(format!(
                    "its schema does not decode ({e}): the segment is damaged, or was made by a newer shmbus"
                )),
            },
            // Being created: look again next time.
            Err(e) if e.is_being_created() => {
                return Err(Why::NotFound("it is still being created".into()));
            }
            // Its creator died before the header: nothing is being created
            // (say so, and how to fix it), but a publisher started again
            // finishes it in place, so it is not remembered as failed.
            Err(e @ OpenError::NotReady { .. }) => return Err(Why::Unusable(e.to_string())),
            Err(OpenError::Removed { .. } | OpenError::NotFound { .. }) => {
                return Err(Why::NotFound("it was removed".into()));
            }
            Err(OpenError::PermissionDenied { .. }) => {
                self.denied += 1;
                Why::Unusable("permission denied: run as the topic's user or group".into())
            }
            Err(
                OpenError::NotShmbus { .. }
                | OpenError::Corrupt {
                    what: "segment smaller than the 256-byte header",
                    ..
                },
            ) => Why::Unusable("not a shmbus topic (another program's segment)".into()),
            Err(e) => Why::Unusable(format!("corrupt or unusable: {e}")),
        };
        self.failed.insert(shmid, why.clone());
        Err(why)
    }

    /// Segments not seen before that are to be recorded: each named
    /// topic's (a name resolved as every shmbus tool resolves names: never
    /// another user's segment at another key), or with none named every
    /// readable topic (the others skipped quietly). A named topic that
    /// cannot be recorded is warned about once, with why.
    fn next(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        let segments = sysvipc::segments().unwrap_or_default();
        if self.all() {
            for e in &segments {
                let (key, shmid) = (e.key(), e.id());
                // Key 0: IPC_PRIVATE or already removed; never a topic.
                if key != 0 {
                    out.extend(self.take(shmid, key).ok().flatten());
                }
            }
            return out;
        }
        // One listing of the segments for every named topic of this scan,
        // each segment attached at most once: a lookup per name attached
        // every segment on the machine, names x segments per rescan.
        let mut dir: Option<names::Directory> = None;
        for i in 0..self.named.len() {
            let result = match &self.named[i].want {
                Want::Name(rule) => {
                    let rule = rule.clone();
                    let dir = dir.get_or_insert_with(names::Directory::read);
                    match dir.resolve(&rule, self.me) {
                        Ok(f) => self.take(f.shmid, f.key).map(|s| vec![s]),
                        Err(e) => Err(name_error(&rule, e)),
                    }
                }
                Want::Key(k) => {
                    let k = *k;
                    let at: Vec<i32> = segments
                        .iter()
                        .filter(|e| k != 0 && e.key() == k)
                        .map(|e| e.id())
                        .collect();
                    if at.is_empty() {
                        Err(Why::NotFound("no segment at that key".into()))
                    } else {
                        // Usable if any segment at the key is.
                        let mut got = Vec::new();
                        let mut why = None;
                        for id in at {
                            match self.take(id, k) {
                                Ok(s) => got.push(s),
                                Err(w) => why = Some(w),
                            }
                        }
                        match why {
                            Some(w) if got.is_empty() => Err(w),
                            _ => Ok(got),
                        }
                    }
                }
                Want::Shmid(id) => {
                    let id = *id;
                    match segments.iter().find(|e| e.id() == id) {
                        Some(e) => self.take(id, e.key()).map(|s| vec![s]),
                        None => Err(Why::NotFound("no segment with that shmid".into())),
                    }
                }
            };
            let n = &mut self.named[i];
            match result {
                Ok(segs) => {
                    n.used = true;
                    n.why = None;
                    out.extend(segs.into_iter().flatten());
                }
                Err(why) => {
                    if !n.used && !n.warned {
                        n.warned = true;
                        self.unwarned.push(i);
                    }
                    n.why = Some(why);
                }
            }
        }
        out
    }

    /// One warning for each named topic the last scans could not use, with
    /// why; `waiting`: the recording runs, so a name or key not there yet is
    /// recorded once it appears.
    fn warn(&mut self) {
        self.warn_as(true);
    }

    fn warn_as(&mut self, waiting: bool) {
        for i in std::mem::take(&mut self.unwarned) {
            let n = &self.named[i];
            let Some(why) = &n.why else { continue };
            let (Why::NotFound(w) | Why::Unusable(w)) = why;
            let not_found = if matches!(why, Why::NotFound(_)) {
                "not found: "
            } else {
                ""
            };
            let then = match (why, &n.want, waiting) {
                (_, _, false) => "",
                (Why::NotFound(_), Want::Name(_) | Want::Key(_), true) => {
                    "; it is recorded once it appears"
                }
                _ => "; not recorded",
            };
            shmbus_toolbox::say!("shmbus: warning: {}: {not_found}{w}{then}", n.label);
        }
    }

    /// Why nothing can be recorded: exit 1 if no topic was there at all,
    /// else 2 (each named topic was warned about, with why).
    fn nothing_found(&mut self) -> Exit {
        self.warn_as(false);
        if self.all() {
            let mut m = "no shmbus topics on this machine; start a publisher first (`shmbus list` shows topics)"
                .to_string();
            if self.denied > 0 {
                m.push_str(&format!(
                    " ({} segment{} could not be read: permission denied; run as the topics' user or group)",
                    self.denied,
                    if self.denied == 1 { "" } else { "s" }
                ));
            }
            return Exit::not_found(m);
        }
        let what: Vec<&str> = self.named.iter().map(|n| n.label.as_str()).collect();
        let what = what.join(", ");
        if self
            .named
            .iter()
            .all(|n| matches!(n.why, Some(Why::NotFound(_))))
        {
            Exit::not_found(format!(
                "no {what} on this machine; check the name with `shmbus list`, or start its publisher first"
            ))
        } else {
            Exit::error(format!(
                "none of the named topics can be recorded ({what}; see the warnings above)"
            ))
        }
    }
}

impl Named {
    fn new(label: String, want: Want) -> Named {
        Named {
            label,
            want,
            warned: false,
            used: false,
            why: None,
        }
    }
}

/// Why a name resolves to no segment this recorder takes.
fn name_error(rule: &NameRule, e: NameError) -> Why {
    match e {
        // Not a topic at the name's key: no publisher can make one there,
        // so it is not "recorded once it appears".
        NameError::NotFound {
            others,
            foreign: Some(f),
        } if others.is_empty() => Why::Unusable(format!(
            "no topic at its key ({}): {}",
            rule.source,
            shmbus_config::names::foreign_text(&f)
        )),
        NameError::NotFound { others, .. } if others.is_empty() => Why::NotFound(format!(
            "no segment carries the name at its key ({})",
            rule.source
        )),
        NameError::NotFound { others, .. } => {
            let o = &others[0];
            // No trusted segment of that name (yet): not found, as for
            // every shmbus tool; the other user's is named.
            Why::NotFound(format!(
                "not recording the segment at key 0x{:08x} named '{}': it was created by {} and belongs to {}, another user, away from the name's key ({}); record it by key if you trust it: --key 0x{:08x}",
                o.key as u32,
                rule.name,
                shmbus_toolbox::units::user(o.cuid),
                shmbus_toolbox::units::user(o.uid),
                rule.source,
                o.key as u32
            ))
        }
        NameError::Squatted {
            key,
            uid,
            cuid,
            expected,
        } => Why::Unusable(shmbus_config::names::squatted_text(
            rule, key, uid, cuid, expected,
        )),
        // The name's key holds a shmbus segment that cannot be read: its
        // own reason and fix, not "not found".
        NameError::Unusable { error, .. } if error.is_being_created() => {
            Why::NotFound("it is still being created".into())
        }
        NameError::Unusable { error, .. } => Why::Unusable(error.to_string()),
        NameError::Ambiguous { keys } => {
            let keys: Vec<String> = keys
                .iter()
                .map(|k| format!("0x{:08x}", *k as u32))
                .collect();
            Why::Unusable(format!(
                "{} topics carry the name (keys {}); record the one you mean by key",
                keys.len(),
                keys.join(", ")
            ))
        }
    }
}

struct Recorder {
    w: McapWriter,
    topics: Vec<Recorded>,
    missed_channel: u16,
    json: bool,
    quit: Arc<AtomicBool>,
    backlog: bool,
    totals: Totals,
    scratch: Vec<u8>,
    /// Problems that repeat (corrupt frames), printed once then counted.
    notes: Repeats,
    /// How many frames the chunks written to the output hold.
    ledger: Arc<Ledger>,
    /// The output, if a regular file: checked at each flush for having
    /// been deleted.
    output: Option<File>,
    /// The output was deleted while recording: the recording stopped.
    deleted: bool,
}

/// True if `file` (a regular file) has no name left: deleted, or another
/// file renamed over it. Whatever is written to it is lost when it is
/// closed.
fn unlinked(file: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata().is_ok_and(|m| m.is_file() && m.nlink() == 0)
}

/// Where a regular output is now, if `path` no longer names it but it
/// still has a name (renamed while recording: `mv run.mcap old.mcap`, a
/// log rotation); `None` if it is still at `path`, or for a FIFO or device.
fn moved_to(file: &File, path: &std::path::Path) -> Option<std::path::PathBuf> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let m = file.metadata().ok().filter(|m| m.is_file())?;
    let here = std::fs::metadata(path).is_ok_and(|p| p.dev() == m.dev() && p.ino() == m.ino());
    if here {
        return None;
    }
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

impl Recorder {
    fn add_missed_channel(&mut self) -> Result<u16, mcap::McapError> {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "shmbus.Missed",
            "type": "object",
            "properties": {
                "topic": { "type": "string" },
                "missed": { "type": "integer", "minimum": 1 },
                "at_generation": { "type": "integer", "minimum": 1 },
            },
            "required": ["topic", "missed", "at_generation"],
        });
        let sid = self.w.add_schema(
            "shmbus.Missed",
            format::SCHEMA_JSON,
            schema.to_string().as_bytes(),
        )?;
        let mut m = BTreeMap::new();
        m.insert(format::key::ROLE.to_string(), role::MISSED.to_string());
        m.insert(format::key::PUBLISH_TIME.into(), format::MONOTONIC.into());
        self.w
            .add_channel(sid, format::MISSED_TOPIC, format::MESSAGE_JSON, &m)
    }

    /// Add the channels of a newly found topic and start its reader, from
    /// where `start` says.
    fn add(
        &mut self,
        seg: Segment,
        tx: &SyncSender<Batch>,
        start: Start,
    ) -> Result<(), mcap::McapError> {
        let info = seg.info().clone();
        let schema = match shmbus_core::schema::decode_schema(&info.schema) {
            Ok(s) => s,
            Err(_) => {
                shmbus_toolbox::say!(
                    "shmbus: warning: topic '{}' carries a schema this build cannot decode (a damaged segment, or a newer shmbus's); not recorded",
                    info.name
                );
                return Ok(());
            }
        };
        let meta = TopicMeta::from_header(&info, seg.key());
        let fp = info.schema_fingerprint;
        // Who owns the segment: two topics of one name (another user's
        // segment at another key) are told apart in the file.
        let owner = seg.stat().ok().map(|st| (st.uid, st.cuid));
        let mut sub = RawSubscriber::from_segment(seg);
        let mut overwritten = None;
        match start {
            Start::Backlog => sub.seek_oldest(),
            Start::Found { before } => {
                // Generations `before`+1 .. first-1 were published while
                // recording and are no longer in the ring: overwritten
                // before the rescan found the topic. Reported as missed, so
                // frames recorded + missed = frames published since the
                // start. (A forged generation above 2^62 is not a count of
                // frames: its reader ends the topic.)
                sub.seek_oldest();
                let first = sub.cursor();
                let lost = (first - 1).saturating_sub(before);
                if lost > 0 && sub.generation() <= MAX_SANE_GENERATION {
                    overwritten = Some(Item::Missed(lost, first));
                }
                // Frames 1 ..= `before` were published before the
                // recording started: recorded if still in the ring with
                // --backlog, else left out; never missed.
                if !self.backlog {
                    sub.seek_after(before);
                }
            }
        }
        // Every frame of these channels has a generation at or above the
        // cursor: with the low 32 bits in each message's `sequence`, a
        // reader recovers the full 64-bit generation (docs/RECORDING.md).
        let start_generation = sub.cursor();
        let metadata = |role: &str| {
            let mut m = meta.to_metadata(role, fp);
            if let Some((uid, cuid)) = owner {
                m.insert(format::key::OWNER_UID.into(), uid.to_string());
                m.insert(format::key::CREATOR_UID.into(), cuid.to_string());
                for (k, id) in [
                    (format::key::OWNER_USER, uid),
                    (format::key::CREATOR_USER, cuid),
                ] {
                    let name = shmbus_toolbox::units::user_name(id);
                    if name != id.to_string() {
                        m.insert(k.into(), name);
                    }
                }
            }
            m.insert(
                format::key::START_GENERATION.into(),
                start_generation.to_string(),
            );
            m.insert(format::key::PUBLISH_TIME.into(), format::MONOTONIC.into());
            m
        };
        let sid = self
            .w
            .add_schema(&schema.name, format::SCHEMA_POSTCARD, &info.schema)?;
        let lossless = self.w.add_channel(
            sid,
            &format!("{}{}", meta.name, format::LOSSLESS_SUFFIX),
            format::MESSAGE_POSTCARD,
            &metadata(role::LOSSLESS),
        )?;
        let codec = if self.json {
            match Codec::new(schema.clone()) {
                Ok(c) => Some(c),
                Err(e) => {
                    shmbus_toolbox::say!(
                        "shmbus: warning: topic '{}' has a type JSON cannot show ({e}); recorded lossless only",
                        meta.name
                    );
                    None
                }
            }
        } else {
            None
        };
        let view = match &codec {
            Some(c) => {
                let js = c.viewer_schema().to_string();
                let vid = self
                    .w
                    .add_schema(&schema.name, format::SCHEMA_JSON, js.as_bytes())?;
                let mut m = metadata(role::VIEW);
                m.insert(format::key::WRAPPED.into(), c.wraps().to_string());
                Some(
                    self.w
                        .add_channel(vid, &meta.name, format::MESSAGE_JSON, &m)?,
                )
            }
            None => None,
        };
        let idx = self.topics.len();
        let backlog = start == Start::Backlog;
        let tx = tx.clone();
        let quit = self.quit.clone();
        let thread = match std::thread::Builder::new()
            .name(format!("rec-{}", meta.name))
            .spawn(move || read_topic(idx, sub, overwritten, backlog, &tx, &quit))
        {
            Ok(t) => Some(t),
            Err(e) => {
                // One thread per topic: RLIMIT_NPROC (`ulimit -u`) or the
                // address space (a 32-bit board) bounds how many. Printed
                // once, then counted; the end says how many were lost.
                let name = meta.name.clone();
                self.notes
                    .note("no-thread", "topics without a reader thread", || {
                        format!(
                            "cannot start a thread for topic '{name}' ({e}); it is not recorded: raise the process limit (`ulimit -u`) or name fewer topics"
                        )
                    });
                None
            }
        };
        self.topics.push(Recorded {
            meta,
            codec,
            lossless,
            view,
            frames: 0,
            missed: 0,
            undecodable: 0,
            thread,
        });
        Ok(())
    }

    /// Record until the deadline, a stop signal or the end of every
    /// reader. The progress line on a terminal is cleared however the
    /// loop ends: a write error left it open, and its message was printed
    /// after the progress on the same line.
    fn run(
        &mut self,
        deadline: Option<Instant>,
        scan: &mut Scan,
        tx: &SyncSender<Batch>,
        rx: &Receiver<Batch>,
    ) -> Result<(), mcap::McapError> {
        let tty = std::io::stderr().is_terminal();
        let r = self.record_loop(deadline, scan, tx, rx, tty);
        if tty {
            shmbus_toolbox::say_part!("\r\x1b[K");
        }
        r
    }

    fn record_loop(
        &mut self,
        deadline: Option<Instant>,
        scan: &mut Scan,
        tx: &SyncSender<Batch>,
        rx: &Receiver<Batch>,
        tty: bool,
    ) -> Result<(), mcap::McapError> {
        let start = Instant::now();
        let progress_every = if tty {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        let (mut last_flush, mut last_scan, mut last_progress) = (start, start, start);
        let mut last_frames = 0;
        if self.backlog {
            self.merge_backlogs(rx)?;
        }
        loop {
            if stop::requested() || deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(b) => self.write_batch(b)?,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            if now - last_flush >= FLUSH_EVERY {
                self.w.flush()?;
                last_flush = now;
                // Deleted under the recorder: every frame from now on (and
                // every one before) goes with it. Stop, and say so.
                if self.output.as_ref().is_some_and(unlinked) {
                    self.deleted = true;
                    break;
                }
            }
            if now - last_scan >= RESCAN_EVERY {
                last_scan = now;
                for seg in scan.next() {
                    let name = seg.info().name.clone();
                    let before = scan.published_at_start(seg.shmid());
                    // A topic that appeared (or was recreated) while
                    // recording: from its first frame still in the ring
                    // (found up to a second after it appeared; "from now"
                    // would lose the frames of that second without a
                    // word), the ones overwritten before it reported as
                    // missed.
                    self.add(seg, tx, Start::Found { before })?;
                    shmbus_toolbox::say!(
                        "{}recording new topic '{name}'",
                        if tty { "\r\x1b[K" } else { "" },
                    );
                }
                scan.warn();
            }
            if now - last_progress >= progress_every {
                let dt = (now - last_progress).as_secs_f64();
                let rate = (self.totals.frames - last_frames) as f64 / dt;
                last_progress = now;
                last_frames = self.totals.frames;
                let n = self.topics.len();
                let line = format!(
                    "{}: {}, {} of messages, {:.0} frames/s, {} missed",
                    count(n, "topic"),
                    count(self.totals.frames, "frame"),
                    human_bytes(self.totals.bytes),
                    rate,
                    self.totals.missed
                );
                if tty {
                    shmbus_toolbox::say_part!("\r\x1b[K{line}");
                } else {
                    shmbus_toolbox::say!("{line}");
                }
            }
        }
        Ok(())
    }

    /// With `--backlog`: take every topic's backlog before writing any of
    /// it, and write their frames merged in publish order (`CLOCK_MONOTONIC`
    /// stamps). Each reader sends its topic's backlog as one batch or a few,
    /// so written as they came, one topic's whole backlog (up to the ring's
    /// span: a minute of a 1 Hz topic) went into the file before another's,
    /// and replay, which publishes in file order, sent the older frames of
    /// the second topic at once, out of order. Bounded: it waits for each
    /// reader's last backlog batch at most [`BACKLOG_WAIT`] (and not past a
    /// stop; a `--duration` shorter than that still gets the backlog, as it
    /// did) and holds at most [`BACKLOG_HOLD_BYTES`] of frames; whatever
    /// comes after that is written as it comes.
    fn merge_backlogs(&mut self, rx: &Receiver<Batch>) -> Result<(), mcap::McapError> {
        let mut waiting: HashSet<usize> = (self.topics.iter().enumerate())
            .filter(|(_, t)| t.thread.is_some())
            .map(|(i, _)| i)
            .collect();
        let give_up = Instant::now() + BACKLOG_WAIT;
        let mut held: Vec<Batch> = Vec::new();
        let mut bytes = 0;
        while !waiting.is_empty() && bytes < BACKLOG_HOLD_BYTES {
            let now = Instant::now();
            if stop::requested() || now >= give_up {
                break;
            }
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(b) => {
                    if b.backlog_done || b.ended.is_some() {
                        waiting.remove(&b.topic);
                    }
                    bytes += b.bytes.len();
                    held.push(b);
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        // Each batch is in publish order, and a topic's later batches are
        // newer than its earlier ones: take the oldest head each time. A
        // missed-frames report goes out before the frame it precedes.
        let mut next = vec![0; held.len()];
        loop {
            let head = |i: usize, b: &Batch| match b.items.get(next[i])? {
                Item::Frame(m, ..) => Some(m.mono_ns),
                Item::Missed(..) => Some(0),
            };
            let Some((_, i)) = (held.iter().enumerate())
                .filter_map(|(i, b)| head(i, b).map(|t| (t, i)))
                .min()
            else {
                break;
            };
            self.write_item(&held[i], next[i])?;
            next[i] += 1;
        }
        for b in held {
            self.batch_written(b);
        }
        Ok(())
    }

    fn write_batch(&mut self, b: Batch) -> Result<(), mcap::McapError> {
        for i in 0..b.items.len() {
            self.write_item(&b, i)?;
        }
        self.batch_written(b);
        Ok(())
    }

    /// Write item `i` of batch `b`.
    fn write_item(&mut self, b: &Batch, i: usize) -> Result<(), mcap::McapError> {
        let (Some(t), Some(item)) = (self.topics.get_mut(b.topic), b.items.get(i)) else {
            return Ok(());
        };
        {
            match *item {
                Item::Frame(meta, s, e) => {
                    let data = &b.bytes[s..e];
                    let header = MessageHeader {
                        channel_id: t.lossless,
                        // MCAP sequences are 32-bit: the generation's low
                        // bits; readers recover the rest from the channel's
                        // `shmbus.start_generation` (format::Generations).
                        sequence: meta.generation as u32,
                        log_time: meta.real_ns,
                        // CLOCK_MONOTONIC (the channel's
                        // `shmbus.publish_time`): replay spaces frames by
                        // it, so a wall-clock step is no pause there.
                        publish_time: meta.mono_ns,
                    };
                    self.w.write_to_known_channel(&header, data)?;
                    t.frames += 1;
                    self.totals.frames += 1;
                    self.ledger.handed(self.totals.frames);
                    self.totals.bytes += data.len() as u64;
                    if let (Some(view), Some(codec)) = (t.view, &t.codec) {
                        self.scratch.clear();
                        if codec.write_message_json(data, &mut self.scratch).is_ok() {
                            let header = MessageHeader {
                                channel_id: view,
                                ..header
                            };
                            self.w.write_to_known_channel(&header, &self.scratch)?;
                            self.totals.bytes += self.scratch.len() as u64;
                        } else {
                            if t.undecodable == 0 {
                                shmbus_toolbox::say!(
                                    "shmbus: warning: a frame of '{}' (generation {}) does not match its schema; kept lossless, left out of the JSON view",
                                    t.meta.name,
                                    meta.generation
                                );
                            }
                            t.undecodable += 1;
                        }
                    }
                }
                Item::Missed(n, at) => {
                    t.missed += n;
                    self.totals.missed += n;
                    let event = json!({ "topic": t.meta.name, "missed": n, "at_generation": at });
                    let header = MessageHeader {
                        channel_id: self.missed_channel,
                        sequence: at as u32,
                        log_time: sys::realtime_ns(),
                        publish_time: sys::monotonic_ns(),
                    };
                    self.w
                        .write_to_known_channel(&header, event.to_string().as_bytes())?;
                }
            }
        }
        Ok(())
    }

    /// What batch `b` says besides its items (corrupt or torn frames, the
    /// publisher stopped or back, the reader's end), once its items are
    /// written.
    fn batch_written(&mut self, b: Batch) {
        let Some(t) = self.topics.get_mut(b.topic) else {
            return;
        };
        if let Some(g) = b.corrupt {
            let name = &t.meta.name;
            self.notes.note("corrupt", "corrupt frames skipped", || {
                format!(
                    "frame {g} of '{name}' is corrupt (its length exceeds the frame capacity); skipped to the newest frame, the frames in between are logged as missed"
                )
            });
        }
        if let Some(lost) = b.torn {
            let name = &t.meta.name;
            self.notes.note("torn", "frames lost to a publish left mid-write", || {
                format!(
                    "frame {} of '{name}' is lost: {}; counted as missed, the frames after it are recorded",
                    lost.generation, lost.why
                )
            });
        }
        match b.publisher {
            Some(false) => shmbus_toolbox::say!(
                "shmbus: the publisher of '{}' is not running: no frames from it until it starts again (the recording goes on)",
                t.meta.name
            ),
            Some(true) => shmbus_toolbox::say!(
                "shmbus: the publisher of '{}' is running again: recording its frames",
                t.meta.name
            ),
            None => {}
        }
        if let Some(why) = b.ended {
            // A publisher that recreates the topic makes a new segment (new
            // shmid), which the next scan finds if it is to be recorded.
            shmbus_toolbox::say!("shmbus: topic '{}' stopped: {why}", t.meta.name);
        }
    }
}

/// The summary line of a finished recording, and the topics that had
/// frames not matching their schema.
/// `size`: the output's size; `moved`: where a regular output is now if it
/// was moved (renamed) while it was recorded.
fn summary(
    a: &RecordArgs,
    clock: CpuClock,
    totals: &Totals,
    topics: &[Recorded],
    size: u64,
    moved: Option<std::path::PathBuf>,
) {
    let (cpu, wall) = clock.elapsed();
    let output = match moved {
        Some(now) => format!(
            "{} (moved from {} while it was recorded)",
            now.display(),
            a.output.display()
        ),
        None => a.output.display().to_string(),
    };
    // The path as given (`-o`), which may hold anything: escaped.
    let output = printable(&output);
    shmbus_toolbox::say!(
        "wrote {output}: {} of {} ({} missed), {}; cpu {:.3} s in {:.1} s",
        count(totals.frames, "frame"),
        count(topics.len(), "topic"),
        totals.missed,
        human_bytes(size),
        cpu,
        wall
    );
    for t in topics {
        if t.undecodable > 0 {
            shmbus_toolbox::say!(
                "shmbus: warning: {} of '{}' did not match the topic's schema (lossless copies kept)",
                count(t.undecodable, "frame"),
                t.meta.name
            );
        }
    }
}

/// Where a newly added topic's reader starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// At the oldest frame still in the ring (`--backlog`, at the start).
    Backlog,
    /// A topic found at the start (without --backlog), or by a rescan
    /// while recording (it appeared, was recreated, or its name became
    /// unambiguous): at the oldest frame still in the ring published after
    /// the start (any with --backlog), the overwritten frames published
    /// after the start reported as missed. `before`: the segment's
    /// generation when the recording started, that is when it was found
    /// for a topic there then (0 if it was not there).
    Found {
        /// Frames the segment had when the recording started.
        before: u64,
    },
}

/// The reader thread of one topic. `overwritten`: a missed report to
/// write before anything else (the frames a topic found while recording
/// lost before it was found); it starts the first batch, so a loss right
/// after it merges into it, and it does not count as the reader falling
/// behind ([`Pace`]). `backlog`: the reader starts at the oldest frame in
/// the ring, and marks the batch that ends that backlog (`backlog_done`).
fn read_topic(
    idx: usize,
    mut sub: RawSubscriber,
    mut overwritten: Option<Item>,
    backlog: bool,
    tx: &SyncSender<Batch>,
    quit: &AtomicBool,
) {
    let mut backlog_pending = backlog;
    let mut frame = Vec::new();
    let mut pace = Pace::new(sub.info().geometry.slot_count);
    // Said once when the publisher is found gone, and again when frames
    // come after that (a restarted publisher reopens the same segment).
    let mut gone = false;
    loop {
        let stopping = quit.load(Ordering::Relaxed) || stop::requested();
        let mut batch = Batch {
            topic: idx,
            items: Vec::new(),
            bytes: Vec::new(),
            ended: None,
            corrupt: None,
            torn: None,
            publisher: None,
            backlog_done: false,
        };
        let seeded = usize::from(overwritten.is_some());
        batch.items.extend(overwritten.take());
        let r = if stopping {
            // One last look, so frames published just before the stop are kept.
            drain(&mut sub, &mut batch, &mut frame).map_err(WaitError::Read)
        } else {
            sub.wait_until(Duration::from_millis(200), |s| {
                drain(s, &mut batch, &mut frame)?;
                Ok((!batch.items.is_empty() || batch.ended.is_some()).then_some(()))
            })
        };
        let frames = batch.items[seeded..]
            .iter()
            .any(|i| matches!(i, Item::Frame(..)));
        if gone && frames {
            gone = false;
            batch.publisher = Some(true);
        }
        if !gone && matches!(r, Err(WaitError::PublisherGone)) {
            gone = true;
            batch.publisher = Some(false);
        }
        let ended = match r {
            Ok(()) | Err(WaitError::Timeout) | Err(WaitError::PublisherGone) => None,
            Err(WaitError::Removed) => Some("the topic was removed".to_string()),
            Err(WaitError::Read(
                e @ (ReadError::PublisherDied | ReadError::WriterStuck { .. }),
            )) => {
                // The slot of the frame at the cursor is mid-write: its
                // publisher died in the middle of a publish (or is stopped
                // there), writing a frame a lap newer over it (a frame
                // not yet in the header is never read: docs/LAYOUT.md 5).
                // That frame is lost whatever the publisher does next, and
                // the frames after it are whole: count it missed and read
                // on. Was: the slot was retried every 50 ms until a new
                // publisher repaired it, so with none (a sensor that
                // crashed for good) the frames still in the ring were never
                // recorded nor counted, and nothing was said.
                batch.torn = sub.skip_lost(&e);
                push_missed(&mut batch.items, 1, sub.cursor());
                None
            }
            Err(WaitError::Read(ReadError::Corrupt { generation, .. }))
                if generation > MAX_SANE_GENERATION =>
            {
                // The header (or a slot) claims a generation no publisher
                // reaches: the segment was overwritten. Nothing after it
                // can be trusted.
                Some(format!(
                    "its generation {generation} is impossible (above 2^62): the segment is corrupt or forged; remove it with `shmbus rm 0x{:08x}`",
                    sub.segment().key() as u32
                ))
            }
            Err(WaitError::Read(
                e @ (ReadError::Corrupt { .. } | ReadError::Overwritten { .. }),
            )) => {
                // A frame that cannot be read (corrupt, or rewritten during
                // every read: frames larger than this recorder copies in
                // time): move past everything published so far and say how
                // many frames that skipped.
                let before = sub.cursor();
                sub.seek_latest();
                let n = sub.cursor().saturating_sub(before);
                batch.items.push(Item::Missed(n.max(1), sub.cursor()));
                if let ReadError::Corrupt { generation, .. } = e {
                    batch.corrupt = Some(generation);
                }
                None
            }
            Err(e) => Some(e.to_string()),
        };
        let ended = batch.ended.take().or(ended);
        let done = ended.is_some();
        // A frame skipped (mid-write) ended the drain early: the frames
        // after it are read at once, also in the last look at a stop.
        let full = batch.items.len() >= MAX_BATCH
            || batch.bytes.len() >= MAX_BATCH_BYTES
            || batch.torn.is_some();
        pace.observe(batch.items.get(seeded..).unwrap_or_default());
        batch.ended = ended;
        // The backlog ends with the first drain that did not stop at a
        // batch's bounds (or with the reader's end).
        if backlog_pending && (!full || done) {
            backlog_pending = false;
            batch.backlog_done = true;
        }
        if (!batch.items.is_empty() || done || batch.publisher.is_some() || batch.backlog_done)
            && tx.send(batch).is_err()
        {
            return;
        }
        if done || (stopping && !full) {
            return;
        }
        let pause = pace.pause();
        if !full && !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
}

/// Coalescing: after a drain, the reader sleeps for an eighth of the time
/// the ring takes to fill at the topic's average rate (an average over
/// about 16 frames; at most [`MAX_PAUSE`]; no pause under
/// [`MIN_PAUSE`]), so a steady 1 kHz topic with 64 slots is read about 8
/// frames per wake-up instead of one. The other seven eighths of the ring
/// absorb bursts and scheduling delays (a quarter lost frames on a machine
/// loaded 7x over). A topic on which the recorder ever loses frames is not
/// coalesced again.
pub(crate) struct Pace {
    slots: u32,
    last_mono: Option<u64>,
    /// Average interval between frames, ns (0 = unknown).
    avg_interval_ns: u64,
    lost: bool,
}

/// The longest coalescing pause.
const MAX_PAUSE: Duration = Duration::from_millis(10);
/// Shorter pauses are not worth a system call.
const MIN_PAUSE: Duration = Duration::from_millis(1);

impl Pace {
    fn new(slots: u32) -> Pace {
        Pace {
            slots,
            last_mono: None,
            avg_interval_ns: 0,
            lost: false,
        }
    }

    fn observe(&mut self, items: &[Item]) {
        for item in items {
            match item {
                Item::Frame(meta, ..) => {
                    if let Some(last) = self.last_mono {
                        let d = meta.mono_ns.saturating_sub(last);
                        self.avg_interval_ns = if self.avg_interval_ns == 0 {
                            d
                        } else {
                            // Exponential average, weight 1/16.
                            self.avg_interval_ns - self.avg_interval_ns / 16 + d / 16
                        };
                    }
                    self.last_mono = Some(meta.mono_ns);
                }
                Item::Missed(..) => self.lost = true,
            }
        }
    }

    fn pause(&self) -> Duration {
        if self.lost {
            return Duration::ZERO;
        }
        let ring_ns = self.avg_interval_ns.saturating_mul(u64::from(self.slots));
        let p = Duration::from_nanos(ring_ns / 8).min(MAX_PAUSE);
        if p < MIN_PAUSE { Duration::ZERO } else { p }
    }
}

/// Move the frames now in the ring into `batch`: at most [`MAX_BATCH`]
/// reads, entries and [`MAX_BATCH_BYTES`] bytes (or one frame). Consecutive
/// missed-frame reports become one. A "missed" report after which the
/// cursor did not move (a header generation no real publisher reaches)
/// ends the topic: `batch.ended` says why.
fn drain(s: &mut RawSubscriber, batch: &mut Batch, frame: &mut Vec<u8>) -> Result<(), ReadError> {
    for _ in 0..MAX_BATCH {
        if batch.items.len() >= MAX_BATCH || batch.bytes.len() >= MAX_BATCH_BYTES {
            break;
        }
        let before = s.cursor();
        match s.next_bytes(frame)? {
            RawNext::Frame(meta, ()) => {
                let start = batch.bytes.len();
                batch.bytes.extend_from_slice(frame);
                batch
                    .items
                    .push(Item::Frame(meta, start, batch.bytes.len()));
            }
            RawNext::Missed(_) if s.cursor() <= before => {
                batch.ended = Some(format!(
                    "its header claims generation {}, which no publisher reaches (the in-order cursor cannot advance past {before}); the segment is corrupt or forged: remove it with `shmbus rm 0x{:08x}`",
                    s.generation(),
                    s.segment().key() as u32
                ));
                break;
            }
            RawNext::Missed(n) => push_missed(&mut batch.items, n, s.cursor()),
            RawNext::Empty => break,
        }
    }
    Ok(())
}

/// Add `n` missed frames, the next frame read being generation `at`:
/// merged into the last entry if that is a missed report too.
fn push_missed(items: &mut Vec<Item>, n: u64, at: u64) {
    match items.last_mut() {
        Some(Item::Missed(m, next)) => {
            *m = m.saturating_add(n);
            *next = at;
        }
        _ => items.push(Item::Missed(n, at)),
    }
}

/// CPU time (user + system, all threads) and wall time used since
/// [`CpuClock::start`], from `getrusage(RUSAGE_SELF)`.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    cpu: f64,
    wall: Instant,
}

impl CpuClock {
    /// Start measuring.
    pub fn start() -> CpuClock {
        CpuClock {
            cpu: process_cpu(),
            wall: Instant::now(),
        }
    }
    /// (cpu seconds, wall seconds) since the start.
    pub fn elapsed(&self) -> (f64, f64) {
        (process_cpu() - self.cpu, self.wall.elapsed().as_secs_f64())
    }
}

fn process_cpu() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            tv(u.user_time()) + tv(u.system_time())
        })
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(interval_ns: u64, n: u64) -> Vec<Item> {
        (0..n)
            .map(|i| {
                let meta = SlotMeta {
                    len: 0,
                    generation: i + 1,
                    mono_ns: 1_000_000 + i * interval_ns,
                    real_ns: 0,
                };
                Item::Frame(meta, 0, 0)
            })
            .collect()
    }

    /// A full file system (no inode left for the new file, or no block
    /// for its directory entry) or quota when the output is created: said
    /// as such, with its fix. Was: "check that the directory exists and is
    /// writable". (The integration test covers the causes a test can make
    /// without mounting a file system.)
    #[test]
    fn an_output_on_a_full_file_system_is_named_full() {
        use nix::libc::{EDQUOT, ENOSPC};
        let path = std::path::Path::new("/mnt/sd/run.mcap");
        let full = cannot_create(path, &std::io::Error::from_raw_os_error(ENOSPC));
        assert!(
            full.contains("its file system is full") && full.contains("df -i /mnt/sd"),
            "{full}"
        );
        let quota = cannot_create(path, &std::io::Error::from_raw_os_error(EDQUOT));
        assert!(quota.contains("the disk quota is exceeded"), "{quota}");
        for m in [full, quota] {
            assert!(!m.contains("check that the directory exists"), "{m}");
        }
    }

    /// Another user's segment of the name is named by user, as every
    /// other message names who created or owns something: "created by
    /// root (uid 0)", not a bare "uid 0" the reader has to look up.
    #[test]
    fn another_users_segment_of_the_name_names_the_user() {
        let rule = NameRule {
            name: "imu".into(),
            keys: vec![0x5300_0001],
            publisher_uid: None,
            source: "bus 'shmbus'".into(),
            only_keys: false,
        };
        let root = shmbus_toolbox::units::user(0);
        assert!(root.starts_with("root (uid 0"), "{root}");
        let e = NameError::NotFound {
            others: vec![names::Other {
                key: 0x5300_0002,
                uid: 0,
                cuid: 0,
            }],
            foreign: None,
        };
        match name_error(&rule, e) {
            Why::NotFound(m) => assert!(
                m.contains(&format!(
                    "created by {root} and belongs to {root}, another user"
                )),
                "{m}"
            ),
            Why::Unusable(m) => panic!("unusable: {m}"),
        }
    }

    #[test]
    fn pauses_scale_with_the_ring_and_stop_after_a_loss() {
        let mut steady = Pace::new(64);
        assert_eq!(
            steady.pause(),
            Duration::ZERO,
            "no pause before the rate is known"
        );
        steady.observe(&frames(1_000_000, 40));
        assert_eq!(
            steady.pause(),
            Duration::from_millis(8),
            "64 slots at 1 kHz: 8 ms"
        );
        steady.observe(&[Item::Missed(3, 10)]);
        assert_eq!(
            steady.pause(),
            Duration::ZERO,
            "lost frames: no more coalescing"
        );

        let mut short = Pace::new(4);
        short.observe(&frames(1_000_000, 40));
        assert_eq!(short.pause(), Duration::ZERO, "0.5 ms is not worth a sleep");

        let mut slow = Pace::new(16);
        slow.observe(&frames(100_000_000, 5));
        assert_eq!(slow.pause(), MAX_PAUSE);
    }
}
