//! A C publisher's steady state allocates nothing: setting fields by path
//! and publishing, and reading the newest frame back into a frame, through
//! the exported functions, with a counting global allocator watching.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use shmbus::frame::*;
use shmbus::json::shmbus_schema_parse;
use shmbus::publisher::*;
use shmbus::schema::{shmbus_schema, shmbus_schema_close};
use shmbus::subscriber::*;
use shmbus::topic::shmbus_topic;
use shmbus::*;

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Count only this test's thread: the test harness's own threads may
    /// allocate at any time.
    static WATCHED: core::cell::Cell<bool> = const { core::cell::Cell::new(false) };
}

fn note() {
    if WATCHED.with(|w| w.get()) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        note();
        // SAFETY: the caller's contract, forwarded.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn ok(rc: i32) {
    assert_eq!(rc, SHMBUS_OK, "status {rc}");
}

#[test]
fn set_publish_and_latest_allocate_nothing_per_frame() {
    let (topic, _guard) = shmbus_testkit::unique_topic("ffi_no_alloc");
    let name = std::ffi::CString::new(topic.name.clone()).unwrap();
    let t = shmbus_topic {
        name: name.as_ptr(),
        bus: core::ptr::null(),
        key: topic.key as u32,
        slots: 0,
        mode: 0,
        lock: 0,
        flags: 0,
        publisher_uid: 0,
        group: 0,
    };
    let decl = c"struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }";
    let mut s = shmbus_schema { id: 0 };
    let mut p = shmbus_publisher { id: 0 };
    let mut sub = shmbus_subscriber { id: 0 };
    let (mut f, mut g) = (shmbus_frame { id: 0 }, shmbus_frame { id: 0 });
    // SAFETY: valid pointers for every argument.
    unsafe {
        ok(shmbus_schema_parse(decl.as_ptr(), &mut s));
        ok(shmbus_publisher_open(&t, s, &mut p));
        ok(shmbus_subscriber_open(&t, s, 0, &mut sub));
        ok(shmbus_frame_new(s, &mut f));
        ok(shmbus_frame_new(s, &mut g));
    }
    let one = |i: u64| {
        let mut sample = shmbus_sample::default();
        let mut seq = 0u64;
        let mut id = [0u8; 17];
        let mut len = 0usize;
        // SAFETY: valid handles, NUL-terminated paths, valid out pointers.
        unsafe {
            ok(shmbus_frame_set_u64(f, c"seq".as_ptr(), i));
            ok(shmbus_frame_set_u64(f, c"t_us".as_ptr(), i * 1000));
            ok(shmbus_frame_set_str(
                f,
                c"frame_id".as_ptr(),
                if i % 2 == 0 {
                    c"imu_link"
                } else {
                    c"imu_link_right16"
                }
                .as_ptr(),
            ));
            ok(shmbus_frame_set_f64(f, c"acc[2]".as_ptr(), 9.81));
            ok(shmbus_frame_set_f64(f, c"temp_c".as_ptr(), 35.0));
            ok(shmbus_publish(p, f, core::ptr::null_mut()));
            ok(shmbus_subscriber_latest(sub, g, &mut sample));
            ok(shmbus_subscriber_next(sub, g, &mut sample));
            ok(shmbus_frame_get_u64(g, c"seq".as_ptr(), &mut seq));
            ok(shmbus_frame_get_str(
                g,
                c"frame_id".as_ptr(),
                id.as_mut_ptr().cast(),
                id.len(),
                &mut len,
            ));
        }
        assert_eq!(seq, i);
    };
    // Warm up (first use of thread-locals, first frames), then count.
    for i in 0..4 {
        one(i);
    }
    let before = ALLOCS.load(Ordering::Relaxed);
    WATCHED.with(|w| w.set(true));
    for i in 4..1004 {
        one(i);
    }
    WATCHED.with(|w| w.set(false));
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(
        allocs, 0,
        "{allocs} allocations in 1000 set+publish+latest+next rounds"
    );
    ok(shmbus_publisher_remove(p));
    ok(shmbus_subscriber_close(sub));
    ok(shmbus_frame_close(f));
    ok(shmbus_frame_close(g));
    ok(shmbus_schema_close(s));
}
