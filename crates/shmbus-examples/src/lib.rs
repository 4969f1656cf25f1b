//! # shmbus-examples: an IMU publisher and subscriber
//!
//! The message type [`Imu`] is what a sensor daemon for an inertial
//! measurement unit would publish: a sample counter, the sensor timestamp,
//! a frame id, acceleration, angular rate and temperature. Every field has
//! a fixed maximum size (`heapless::String`, arrays), so postcard's
//! `MaxSize` gives the frame capacity at compile time.
//!
//! The binaries `imu-publisher` and `imu-subscriber` use it; see the
//! crate's `README.md` for how to run them in two terminals.
#![warn(missing_docs)]

use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering, compiler_fence};
use std::time::Duration;

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};
use shmbus_pub::Topic;

/// The default topic name of the examples.
pub const DEFAULT_TOPIC: &str = "imu";

/// One IMU sample.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, MaxSize, postcard_schema::Schema)]
pub struct Imu {
    /// Sample counter, from 0 for each publisher run.
    pub seq: u32,
    /// When the sensor took the sample: `CLOCK_MONOTONIC`, microseconds.
    pub t_us: u64,
    /// Which sensor (coordinate frame) the sample is in.
    pub frame_id: heapless::String<16>,
    /// Linear acceleration, m/s², x y z.
    pub acc: [f32; 3],
    /// Angular rate, rad/s, x y z.
    pub gyro: [f32; 3],
    /// Die temperature, °C.
    pub temp_c: f32,
}

impl Imu {
    /// A simulated sample: a board rocking slowly on a table. Deterministic
    /// in `seq`, so a test can recompute what was sent.
    pub fn simulate(seq: u32, t_us: u64) -> Imu {
        let phase = seq as f32 * 0.05;
        Imu {
            seq,
            t_us,
            frame_id: heapless::String::from("imu_link"),
            acc: [0.3 * phase.sin(), 0.3 * phase.cos(), 9.81],
            gyro: [0.02 * phase.cos(), -0.02 * phase.sin(), 0.0],
            temp_c: 35.0 + (seq % 100) as f32 * 0.01,
        }
    }
}

/// Parse a System V key: `0x`-prefixed hex or decimal.
pub fn parse_key(s: &str) -> Result<i32, String> {
    let r = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).map(|k| k as i32),
        None => s.parse::<i32>(),
    };
    r.map_err(|_| format!("--key {s}: expected a number such as 0x53001234"))
}

/// The longest `--duration`, `--timeout` or `--wait`: 10^9 s (31.7 years).
pub const MAX_SECS: f64 = 1e9;

/// Seconds as `--flag` takes them: a finite number from 0 to [`MAX_SECS`].
/// `Duration::from_secs_f64` of `-1`, `nan` or `1e30` panicked (exit 101
/// and a backtrace), and a `--duration` of `-5` or `nan` published for
/// ever, as if none had been given.
pub fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    if !(0.0..=MAX_SECS).contains(&v) {
        return Err(format!(
            "--{flag} {v:?}: give seconds from 0 to {MAX_SECS:e} (decimals allowed), e.g. 2.5"
        ));
    }
    Ok(Duration::from_secs_f64(v))
}

/// Write `text` on stdout. An error (`| head -1` closed the pipe) is
/// returned, not a panic: `println!` panicked (exit 101 and a backtrace),
/// and a publisher with `--remove true` then left its topic behind.
pub fn out(text: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    o.write_fmt(text)?;
    o.write_all(b"\n")?;
    o.flush()
}

/// Write `text` on stderr, if it can be written (`eprintln!` panics when
/// it cannot).
pub fn say(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Command-line options shared by both binaries: `--name NAME`, `--key
/// KEY`, and the binary's own `--flag VALUE` pairs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The topic (name, key, slots).
    pub topic: Topic,
    /// The other `--flag value` pairs, in order.
    pub rest: Vec<(String, String)>,
}

impl Options {
    /// Parse `args` (without the program name). Every option takes a value.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Options, String> {
        let mut name = DEFAULT_TOPIC.to_string();
        let mut key = None;
        let mut slots = None;
        let mut rest = Vec::new();
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                return Err(String::new());
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--name" => name = value,
                "--key" => key = Some(parse_key(&value)?),
                "--slots" => {
                    slots = Some(
                        value
                            .parse()
                            .map_err(|_| format!("--slots {value}: not a number"))?,
                    )
                }
                _ if flag.starts_with("--") => rest.push((flag[2..].to_string(), value)),
                _ => return Err(format!("unexpected argument {flag}")),
            }
        }
        let mut topic = Topic::new(&name);
        if let Some(k) = key {
            topic = topic.key(k);
        }
        if let Some(s) = slots {
            topic = topic.slots(s);
        }
        Ok(Options { topic, rest })
    }

    /// The value of `--flag`, parsed, or `default`.
    pub fn get<T: core::str::FromStr>(&self, flag: &str, default: T) -> Result<T, String> {
        match self.rest.iter().rev().find(|(f, _)| f == flag) {
            Some((_, v)) => v
                .parse()
                .map_err(|_| format!("--{flag} {v}: not a valid value")),
            None => Ok(default),
        }
    }

    /// Fail on a flag that is not in `known`.
    pub fn only(&self, known: &[&str]) -> Result<(), String> {
        match self.rest.iter().find(|(f, _)| !known.contains(&f.as_str())) {
            Some((f, _)) => Err(format!("unknown option --{f}")),
            None => Ok(()),
        }
    }
}

/// Run `f` (opening the topic, a publish) so that `systemctl stop`
/// (SIGTERM), Ctrl-C (SIGINT) or a hang-up (SIGHUP) never ends the program
/// in the middle of it: one that arrives meanwhile ends the program right
/// after `f`, by its default action as before; one that arrives between
/// frames ends it at once. Ended mid-frame, a publisher leaves that slot
/// mid-write, and every in-order reader gets "publisher died mid-publish"
/// for it until the next start repairs it.
///
/// No system call per frame (on the board each costs microseconds): the
/// first call installs a handler for those of the three signals whose
/// action is the default (an ignored one, `nohup`'s SIGHUP, stays
/// ignored), and a frame is then two atomic operations on `FRAMES`. The
/// handler only sets its signal's bit there, unless no frame is in
/// progress: then it ends the program; else the end of the last frame
/// does. A `fork` child inherits the count: fork neither inside `f` nor
/// while another thread is in a frame (`shmbus_toolbox::stop::deferred`,
/// the same design, resets it in the child and documents the races).
pub fn between_frames<R>(f: impl FnOnce() -> R) -> R {
    static TAKEN: Once = Once::new();
    TAKEN.call_once(take_stop_signals);
    let frame = Frame::begin();
    let r = f();
    drop(frame); // also run if `f` panics
    r
}

/// SIGHUP, SIGINT, SIGTERM: ascending, as their pending bits in `FRAMES`.
const STOPS: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGINT, libc::SIGTERM];
const SHIFT: u32 = usize::BITS - 3;
const PENDING: usize = !0 << SHIFT;

/// Frames in progress, in all threads (low bits), and the stop signals
/// that came during one (the top three bits). One word, changed only by
/// read-modify-writes: the one that takes the count to 0 with a bit set,
/// or sets a bit at a count of 0, ends the program.
static FRAMES: AtomicUsize = AtomicUsize::new(0);

fn take_stop_signals() {
    for sig in STOPS {
        // SAFETY: all-zero is a valid `sigaction` (SIG_DFL, empty mask).
        let mut now: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: a query only (null new action), into a valid struct.
        let queried = unsafe { libc::sigaction(sig, std::ptr::null(), &mut now) } == 0;
        if queried && now.sa_sigaction == libc::SIG_DFL {
            let mut ours = now;
            ours.sa_sigaction = on_stop as extern "C" fn(libc::c_int) as libc::sighandler_t;
            ours.sa_flags = libc::SA_RESTART; // `f` goes on after a noted signal
            // SAFETY: replaces the default action only (checked above), so
            // no handler of the program's is lost; `on_stop` is
            // async-signal-safe (an atomic, then `signal`, `pthread_sigmask`,
            // `raise`).
            unsafe { libc::sigaction(sig, &ours, std::ptr::null_mut()) };
        }
    }
}

struct Frame;

impl Frame {
    fn begin() -> Frame {
        // Acquire/Release pair with the other frames' and the handler's
        // operations on FRAMES; the fence keeps `f`'s stores after the
        // increment for a handler on this thread too.
        if FRAMES.fetch_add(1, Ordering::AcqRel) & PENDING != 0 {
            drop(Frame); // a signal came: the program is ending, start nothing
            loop {
                std::thread::park();
            }
        }
        compiler_fence(Ordering::SeqCst);
        Frame
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        compiler_fence(Ordering::SeqCst);
        let before = FRAMES.fetch_sub(1, Ordering::AcqRel);
        if before & !PENDING == 1 && before & PENDING != 0 {
            end_by(before);
        }
    }
}

extern "C" fn on_stop(sig: libc::c_int) {
    let Some(i) = STOPS.iter().position(|&s| s == sig) else {
        return;
    };
    let bit = 1 << (SHIFT + i as u32);
    let before = FRAMES.fetch_or(bit, Ordering::AcqRel);
    if before & !PENDING == 0 {
        end_by(before | bit); // between frames: now
    }
}

/// End the program by the lowest pending stop signal's default action.
fn end_by(state: usize) -> ! {
    let sig = STOPS[((state & PENDING) >> SHIFT).trailing_zeros() as usize];
    // SAFETY: the default action back for a signal that had it when taken
    // over, unblocked (it is blocked in its own handler) and raised: it
    // ends the program here. All three calls are async-signal-safe.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::signal(sig, libc::SIG_DFL);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::_exit(128 + sig) // not reached
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SIGTERM inside `between_frames` waits for it, then ends the
    /// program by SIGTERM; one outside ends it at once; an ignored SIGHUP
    /// stays ignored. Forked children, stop signals at their defaults.
    #[test]
    fn a_stop_signal_waits_for_the_frame_and_an_ignored_one_stays_ignored() {
        use shmbus_testkit::{ForkChild, default_stop_signals};
        let limit = Duration::from_secs(60);
        let died_of = |sig: i32| Err(format!("the child ended by signal {sig}"));
        let start = |f: fn() -> i32| ForkChild::start(f).unwrap().wait(limit);
        let inside = start(|| {
            default_stop_signals();
            // SAFETY: raise is sound; _exit ends the forked child at once.
            between_frames(|| unsafe {
                libc::raise(libc::SIGTERM);
                libc::_exit(42)
            })
        });
        assert_eq!(inside, Ok(42));
        let after = start(|| {
            default_stop_signals();
            // SAFETY: raising a signal.
            between_frames(|| unsafe { libc::raise(libc::SIGTERM) });
            7
        });
        assert_eq!(after, died_of(libc::SIGTERM));
        let outside = start(|| {
            default_stop_signals();
            between_frames(|| ());
            // SAFETY: raising a signal.
            unsafe { libc::raise(libc::SIGINT) };
            7
        });
        assert_eq!(outside, died_of(libc::SIGINT));
        let ignored = start(|| {
            default_stop_signals();
            // SAFETY: ignoring a signal installs no handler; raising one.
            unsafe {
                libc::signal(libc::SIGHUP, libc::SIG_IGN);
                between_frames(|| libc::raise(libc::SIGHUP));
                libc::raise(libc::SIGHUP);
            }
            5
        });
        assert_eq!(ignored, Ok(5));
    }

    #[test]
    fn frame_capacity_is_known_at_compile_time() {
        // u32 varint 5 + u64 varint 10 + string 1 + 16 + 7 f32 = 28.
        assert_eq!(Imu::POSTCARD_MAX_SIZE, 5 + 10 + 1 + 16 + 28);
        let bytes = postcard::to_allocvec(&Imu::simulate(7, 1_000)).unwrap();
        assert!(bytes.len() <= Imu::POSTCARD_MAX_SIZE);
        assert_eq!(
            postcard::from_bytes::<Imu>(&bytes).unwrap(),
            Imu::simulate(7, 1_000)
        );
    }

    /// Seconds that are negative, not a number or too large are refused,
    /// not a panic (`Duration::from_secs_f64`) and not "no limit".
    #[test]
    fn bad_seconds_are_refused() {
        for bad in [-1.0, -0.5, f64::NAN, f64::INFINITY, 1e30] {
            let e = seconds("wait", bad).unwrap_err();
            assert!(e.starts_with("--wait ") && e.contains("from 0 to"), "{e}");
        }
        assert_eq!(seconds("wait", 2.5), Ok(Duration::from_millis(2500)));
        assert_eq!(seconds("wait", 0.0), Ok(Duration::ZERO));
    }

    #[test]
    fn options_parse_and_refuse() {
        let o = Options::parse(["--key", "0x53000001", "--rate", "50"].map(String::from)).unwrap();
        assert_eq!(o.topic.key, 0x5300_0001);
        assert_eq!(o.topic.name, "imu");
        assert_eq!(o.get("rate", 1.0).unwrap(), 50.0);
        assert_eq!(o.get("count", 3u64).unwrap(), 3);
        assert!(o.only(&["rate"]).is_ok());
        assert!(o.only(&["count"]).unwrap_err().contains("--rate"));
        assert!(
            Options::parse(["--key".to_string()])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(Options::parse(["--key", "zz"].map(String::from)).is_err());
    }
}
