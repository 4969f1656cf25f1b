//! What a publish and a `latest()` cost through the C API, next to the same
//! operations in Rust, measured in one run of one process.
//!
//! ```text
//! cargo run --release -p shmbus-ffi --example ffi_bench [-- --rounds 400 --iters 500]
//! ```
//!
//! The message is the examples' `Imu` (40 bytes encoded for the values used). Each round times
//! `iters` operations of every kind, in turn, so machine load hits all kinds
//! alike. On a shared machine a round is often preempted; the table shows,
//! per operation, the fastest round (the cost when nothing interfered) and
//! the median round, in ns per operation, and the ratios of each to the
//! matching Rust operation. The fastest-round ratio is the stable one.
//! The C functions are called
//! through their `extern "C"` symbols (the code `libshmbus.so` runs, without
//! the PLT jump a C program adds, about a nanosecond).
//!
//! | row | Rust | C |
//! |---|---|---|
//! | publish | `Publisher<Imu>::publish(&imu)` (encodes into the slot) | 9 `shmbus_frame_set_*` by path + `shmbus_publish` |
//! | publish, fields set | (same) | `shmbus_publish` of a ready frame |
//! | publish bytes | `RawPublisher::publish_bytes` | `shmbus_publish_bytes` |
//! | latest | `Subscriber<Imu>::latest()` (decodes in place) | `shmbus_subscriber_latest` into a frame + 9 getters |
//! | latest, no getters | (same) | `shmbus_subscriber_latest` into a frame |

use std::hint::black_box;
use std::time::Instant;

use shmbus::frame::shmbus_frame;
use shmbus::json::shmbus_schema_parse;
use shmbus::publisher::*;
use shmbus::schema::shmbus_schema;
use shmbus::subscriber::*;
use shmbus::topic::shmbus_topic;
use shmbus::*;
use shmbus_examples::Imu;
use shmbus_pub::{Publisher, RawPublisher, Topic};
use shmbus_sub::Subscriber;

const IMU: &core::ffi::CStr = c"struct Imu { seq: u32, t_us: u64, frame_id: heapless::String<16>, acc: [f32; 3], gyro: [f32; 3], temp_c: f32 }";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ok(rc: i32, what: &str) {
    if rc != SHMBUS_OK {
        // SAFETY: shmbus_last_error returns a valid NUL-terminated string.
        let msg = unsafe { core::ffi::CStr::from_ptr(shmbus_last_error()) };
        panic!("{what}: status {rc}: {}", msg.to_string_lossy());
    }
}

fn time(iters: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..iters {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / iters as f64
}

fn min_and_median(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2])
}

fn main() {
    let rounds = arg("--rounds", 400);
    let iters = arg("--iters", 500);
    let pid = std::process::id();
    let key = |n: u32| (0x7b00_0000 | ((pid & 0xffff) << 4) | n) as i32;
    let (k_rust, k_c, k_rraw, k_craw) = (key(1), key(2), key(3), key(4));
    let keys = [k_rust, k_c, k_rraw, k_craw];
    struct Cleanup([i32; 4]);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            for k in self.0 {
                shmbus_testkit::remove_key(k);
            }
        }
    }
    let _cleanup = Cleanup(keys);

    // Rust side.
    let rt = Topic::new("bench/rust").key(k_rust).notify(false);
    let mut rpub = Publisher::<Imu>::open(&rt).expect("rust publisher");
    let mut rsub = Subscriber::<Imu>::attach(&rt).expect("rust subscriber");
    let rawt = Topic::new("bench/rraw").key(k_rraw).notify(false);
    let mut rraw = RawPublisher::open(&rawt, &[0], 64).expect("raw publisher");

    // C side, through the exported functions.
    let mut schema = shmbus_schema { id: 0 };
    // SAFETY: valid pointers to a NUL-terminated string and an out value.
    ok(
        unsafe { shmbus_schema_parse(IMU.as_ptr(), &mut schema) },
        "parse",
    );
    let ctopic = |name: &'static core::ffi::CStr, key: i32| shmbus_topic {
        name: name.as_ptr(),
        bus: core::ptr::null(),
        key: key as u32,
        slots: 0,
        mode: 0,
        lock: 0,
        flags: topic::SHMBUS_TOPIC_NO_NOTIFY,
        publisher_uid: 0,
        group: 0,
    };
    let ct = ctopic(c"bench/c", k_c);
    let mut cpub = shmbus_publisher { id: 0 };
    let mut csub = shmbus_subscriber { id: 0 };
    let mut pframe = shmbus_frame { id: 0 };
    let mut sframe = shmbus_frame { id: 0 };
    // SAFETY: valid pointers for every argument.
    unsafe {
        ok(shmbus_publisher_open(&ct, schema, &mut cpub), "c publisher");
        ok(
            shmbus_subscriber_open(&ct, schema, 0, &mut csub),
            "c subscriber",
        );
        ok(frame::shmbus_frame_new(schema, &mut pframe), "frame");
        ok(frame::shmbus_frame_new(schema, &mut sframe), "frame");
    }
    let crt = ctopic(c"bench/craw", k_craw);
    let mut craw = shmbus_publisher { id: 0 };
    // SAFETY: valid pointers.
    ok(
        unsafe { shmbus_publisher_open(&crt, schema, &mut craw) },
        "c raw publisher",
    );

    let imu = Imu::simulate(7, 1_000);
    let bytes = postcard::to_allocvec(&imu).unwrap();
    let set_fields = |i: usize| {
        let v = Imu::simulate(i as u32, i as u64);
        // SAFETY: valid frame handle and NUL-terminated paths.
        unsafe {
            let f = pframe;
            ok(
                frame::shmbus_frame_set_u64(f, c"seq".as_ptr(), v.seq.into()),
                "seq",
            );
            ok(
                frame::shmbus_frame_set_u64(f, c"t_us".as_ptr(), v.t_us),
                "t_us",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"acc[0]".as_ptr(), v.acc[0].into()),
                "acc",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"acc[1]".as_ptr(), v.acc[1].into()),
                "acc",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"acc[2]".as_ptr(), v.acc[2].into()),
                "acc",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"gyro[0]".as_ptr(), v.gyro[0].into()),
                "gyro",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"gyro[1]".as_ptr(), v.gyro[1].into()),
                "gyro",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"gyro[2]".as_ptr(), v.gyro[2].into()),
                "gyro",
            );
            ok(
                frame::shmbus_frame_set_f64(f, c"temp_c".as_ptr(), v.temp_c.into()),
                "temp",
            );
        }
    };
    set_fields(0);
    // SAFETY: valid handle and path.
    ok(
        unsafe { frame::shmbus_frame_set_str(pframe, c"frame_id".as_ptr(), c"imu_link".as_ptr()) },
        "id",
    );
    // One frame in each topic for the latest() rows.
    rpub.publish(&imu).unwrap();
    // SAFETY: valid handles; NULL generation is allowed.
    ok(
        unsafe { shmbus_publish(cpub, pframe, core::ptr::null_mut()) },
        "publish",
    );

    let names = [
        "publish (Rust typed | C: set 9 fields + publish)",
        "publish, fields already set (C)",
        "publish pre-encoded bytes (40 B)",
        "latest (Rust typed | C: latest + 9 getters)",
        "latest into a frame, no getters (C)",
    ];
    let mut rust = vec![Vec::new(); names.len()];
    let mut c = vec![Vec::new(); names.len()];
    for _ in 0..rounds {
        let r_pub = time(iters, |i| {
            black_box(rpub.publish(&Imu::simulate(i as u32, i as u64)).unwrap());
        });
        rust[0].push(r_pub);
        rust[1].push(r_pub);
        c[0].push(time(iters, |i| {
            set_fields(i);
            // SAFETY: valid handles.
            ok(
                unsafe { shmbus_publish(cpub, pframe, core::ptr::null_mut()) },
                "publish",
            );
        }));
        c[1].push(time(iters, |_| {
            // SAFETY: valid handles.
            ok(
                unsafe { shmbus_publish(cpub, pframe, core::ptr::null_mut()) },
                "publish",
            );
        }));
        rust[2].push(time(iters, |_| {
            black_box(rraw.publish_bytes(&bytes).unwrap());
        }));
        c[2].push(time(iters, |_| {
            // SAFETY: valid handle and buffer.
            ok(
                unsafe {
                    shmbus_publish_bytes(craw, bytes.as_ptr(), bytes.len(), core::ptr::null_mut())
                },
                "bytes",
            );
        }));
        let r_latest = time(iters, |_| {
            black_box(rsub.latest().unwrap());
        });
        rust[3].push(r_latest);
        rust[4].push(r_latest);
        c[3].push(time(iters, |_| {
            let mut s = shmbus_sample::default();
            let (mut u, mut d) = (0u64, 0f64);
            // SAFETY: valid handles, paths and out pointers.
            unsafe {
                ok(shmbus_subscriber_latest(csub, sframe, &mut s), "latest");
                let f = sframe;
                ok(
                    frame::shmbus_frame_get_u64(f, c"seq".as_ptr(), &mut u),
                    "seq",
                );
                ok(
                    frame::shmbus_frame_get_u64(f, c"t_us".as_ptr(), &mut u),
                    "t_us",
                );
                for p in [
                    c"acc[0]", c"acc[1]", c"acc[2]", c"gyro[0]", c"gyro[1]", c"gyro[2]", c"temp_c",
                ] {
                    ok(frame::shmbus_frame_get_f64(f, p.as_ptr(), &mut d), "f64");
                }
            }
            black_box((s, u, d));
        }));
        c[4].push(time(iters, |_| {
            let mut s = shmbus_sample::default();
            // SAFETY: valid handles and out pointer.
            ok(
                unsafe { shmbus_subscriber_latest(csub, sframe, &mut s) },
                "latest",
            );
            black_box(s);
        }));
    }
    println!(
        "ffi_bench: {rounds} rounds x {iters} ops of each kind, ns/op (fastest round / median round), Imu frame {} bytes",
        bytes.len()
    );
    println!(
        "{:<50} {:>8} {:>8} {:>7} | {:>8} {:>8} {:>7}",
        "operation", "Rust min", "C min", "C/Rust", "Rust med", "C med", "C/Rust"
    );
    for (i, n) in names.iter().enumerate() {
        let (rmin, rmed) = min_and_median(&mut rust[i]);
        let (cmin, cmed) = min_and_median(&mut c[i]);
        println!(
            "{n:<50} {rmin:>8.1} {cmin:>8.1} {:>6.2}x | {rmed:>8.1} {cmed:>8.1} {:>6.2}x",
            cmin / rmin,
            cmed / rmed
        );
    }
    ok(shmbus_publisher_remove(cpub), "remove");
    ok(shmbus_publisher_remove(craw), "remove");
    rpub.remove().ok();
    rraw.remove().ok();
}
