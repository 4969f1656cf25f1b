//! `cat` and `replay` reading hostile, corrupt or truncated recordings:
//! the reader's memory, measured by a counting global allocator in this
//! test binary (one test per process state, so no other test allocates
//! at the same time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use shmbus_record::format::{self, End};

/// `System` that keeps the current and the highest number of bytes
/// allocated.
struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters do
// not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Tests that measure take this, so their allocations are their own.
static MEASURING: Mutex<()> = Mutex::new(());

const MAGIC: &[u8] = b"\x89MCAP0\r\n";

fn record(op: u8, body: &[u8]) -> Vec<u8> {
    let mut r = vec![op];
    r.extend_from_slice(&(body.len() as u64).to_le_bytes());
    r.extend_from_slice(body);
    r
}

/// The start of a recording: magic and an empty header record.
fn start() -> Vec<u8> {
    let mut f = MAGIC.to_vec();
    f.extend(record(0x01, &[0; 8]));
    f
}

/// A file in a temp directory of its own, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("shmbus-hostile-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A length field that says 200 MiB in a file of a few dozen bytes (a
/// record, a chunk, a record inside a chunk): reading it allocates about
/// what the file holds, not what it claims, and ends as a file cut short.
/// Was: 200 MiB allocated (and zeroed) before the first byte of the record
/// was read, on a board a fraction of its RAM, for a 60-byte file.
#[test]
fn a_length_field_that_lies_costs_no_memory() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    const CLAIM: u64 = 200 * 1024 * 1024;
    let dir = TempDir::new("lies");
    // A schema record that says it is 200 MiB long.
    let mut lying_record = start();
    lying_record.push(0x03);
    lying_record.extend_from_slice(&CLAIM.to_le_bytes());
    lying_record.extend_from_slice(&[0; 20]);
    // A chunk that says it holds 200 MiB of records (with a CRC, so the
    // reader loads all of them to check it first).
    let chunk_header = |crc: u32| {
        let mut h = Vec::new();
        h.extend_from_slice(&0u64.to_le_bytes()); // start time
        h.extend_from_slice(&0u64.to_le_bytes()); // end time
        h.extend_from_slice(&CLAIM.to_le_bytes()); // uncompressed size
        h.extend_from_slice(&crc.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes()); // compression: none
        h.extend_from_slice(&CLAIM.to_le_bytes()); // compressed size
        h
    };
    let mut lying_chunk = start();
    lying_chunk.push(0x06);
    lying_chunk.extend_from_slice(&(CLAIM + 40).to_le_bytes());
    lying_chunk.extend(chunk_header(0x1234_5678));
    lying_chunk.extend_from_slice(&[0; 20]);
    // A chunk without a CRC, whose first record says 200 MiB.
    let mut lying_inner = start();
    lying_inner.push(0x06);
    lying_inner.extend_from_slice(&(CLAIM + 40).to_le_bytes());
    lying_inner.extend(chunk_header(0));
    lying_inner.push(0x05);
    lying_inner.extend_from_slice(&(CLAIM - 9).to_le_bytes());
    lying_inner.extend_from_slice(&[0; 20]);
    for (name, bytes) in [
        ("record", lying_record),
        ("chunk", lying_chunk),
        ("record-in-chunk", lying_inner),
    ] {
        let path = dir.0.join(format!("{name}.mcap"));
        std::fs::write(&path, &bytes).unwrap();
        let before = NOW.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let mut messages = 0;
        let mut end = End::Complete;
        for m in format::open_messages(&path).unwrap() {
            match m {
                Ok(_) => messages += 1,
                Err(e) => {
                    end = format::classify(&path, e).unwrap();
                    break;
                }
            }
        }
        let peak = PEAK.load(Ordering::Relaxed) - before;
        assert_eq!(messages, 0, "{name}");
        assert_eq!(end, End::CutShort, "{name}");
        assert!(
            peak < 4 * 1024 * 1024,
            "{name}: a {}-byte file claiming {CLAIM} bytes made the reader allocate {peak} bytes",
            bytes.len()
        );
    }
}
