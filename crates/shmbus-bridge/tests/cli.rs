//! The `shmbus-bridge` command line, without a broker: help, `--check`,
//! and every bad input as a clear error with exit code 2 (never a panic,
//! never a hang); stopping while the broker is unreachable.

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

/// A running bridge creates its `[[bridge.in]]` topics' segments (CONFIG's
/// `setpoint`, a fixed key): every bridge of these tests runs in a private
/// IPC namespace where allowed (root, as in CI), so nothing it makes
/// outlives the test or meets another run's objects; elsewhere the guards
/// remove CONFIG's keys when the test ends.
#[must_use]
fn isolate() -> Option<[shmbus_testkit::Guard; 2]> {
    if shmbus_testkit::private_ipc() {
        None
    } else {
        Some([
            shmbus_testkit::Guard(0x7b000101),
            shmbus_testkit::Guard(0x7b000102),
        ])
    }
}

/// The bridge binary (behind $SHMBUS_TEST_RUNNER, qemu-arm, when set: see
/// shmbus_testkit::command), killed with this test process.
fn bridge_cmd() -> std::process::Command {
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus-bridge"));
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

fn bridge(args: &[&str]) -> Output {
    let mut child = bridge_cmd()
        .args(args)
        .env_remove("SHMBUS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Watchdog: nothing here may run for long.
    let end = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            panic!("shmbus-bridge {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// The bridge with `args`, stopped by SIGTERM once a line it writes to
/// stderr contains `event` (60 s at most): for a test of what the bridge
/// took in, which a `--duration` window would count only if it all fitted
/// in it (a loaded machine, or qemu-arm, gave the bridge less of it).
fn bridge_until(args: &[&str], event: &str) -> Output {
    use std::io::{BufRead, Read};
    let mut child = bridge_cmd()
        .args(args)
        .env_remove("SHMBUS_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let mut err = String::new();
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                err.push_str(&l);
                err.push('\n');
                if l.contains(event) {
                    break;
                }
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("shmbus-bridge {args:?} did not say {event:?} within 60 s:\n{err}");
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("shmbus-bridge {args:?} did not exit within 60 s of SIGTERM:\n{err}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // The rest of what it said, up to its exit (the reader ends at EOF).
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(30)) {
        err.push_str(&l);
        err.push('\n');
    }
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.into_bytes(),
    }
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Removed when dropped, or by the testkit's watchdog before it aborts.
struct Tmp(shmbus_testkit::TempDir);
impl Tmp {
    fn new(name: &str) -> Tmp {
        Tmp(shmbus_testkit::TempDir::new(&format!("bridge-cli-{name}")))
    }
    fn write(&self, f: &str, text: &str, mode: u32) -> String {
        let p = self.0.join(f);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p.display().to_string()
    }
}

/// A stand-in broker on 127.0.0.1: every connection the bridge makes is
/// handed to `each` (on the listener's thread, so one at a time). Bounded:
/// it stops when dropped or after 120 s.
struct Peer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Peer {
    fn each(mut each: impl FnMut(std::net::TcpStream) + Send + 'static) -> Peer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            while !s.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((sock, _)) => {
                        sock.set_nonblocking(false).unwrap();
                        each(sock);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Peer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    /// `127.0.0.1:PORT`, as the bridge takes it.
    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const CONFIG: &str = "bus = \"lab\"\n[[topic]]\nname = \"imu\"\nkey = 0x7b000101\n[[topic]]\nname = \"setpoint\"\nkey = 0x7b000102\n\n[bridge]\nboard_id = \"lab-1\"\n[[bridge.out]]\ntopic = \"imu\"\nrate_hz = 10\n[[bridge.in]]\nfrom = \"ground/lab-1/setpoint\"\ntopic = \"setpoint\"\nschema = \"struct Setpoint { speed: f32, label: heapless::String<8> }\"\n";

#[test]
fn help_has_examples() {
    let o = bridge(&["--help"]);
    let (out, _) = text(&o);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        out.contains("Examples:") && out.contains("shmbus bridge 127.0.0.1:1883"),
        "{out}"
    );
    assert!(out.contains("--credentials"), "{out}");
    assert!(!out.contains("--password"), "{out}");
}

/// The `--check` example of `--help`, typed as it stands (with the
/// repository's demo config as the config found): it passes. It read
/// `shmbus bridge --check`, which fails with "no broker" on every config
/// that names none (the demo's, the built-in one).
#[test]
fn the_check_example_of_the_help_passes_as_typed() {
    shmbus_testkit::watchdog("help_check_example", Duration::from_secs(120));
    let o = bridge(&["--help"]);
    let (out, _) = text(&o);
    let example = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("shmbus bridge ") && l.contains(" --check"))
        .unwrap_or_else(|| panic!("--help shows no --check example:\n{out}"));
    let typed: Vec<&str> = example
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(typed[..2], ["shmbus", "bridge"], "{example}");
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/demo.toml");
    let o = bridge_cmd()
        .args(&typed[2..])
        .env("SHMBUS_CONFIG", demo)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "`{example}` of --help fails as typed: {err}"
    );
    assert!(out.ends_with("ok\n"), "{out}");
}

#[test]
fn check_shows_what_would_run_and_connects_to_nothing() {
    let t = Tmp::new("check");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let o = bridge(&["127.0.0.1:1", "--config", &cfg, "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        out.contains("broker: mqtt://127.0.0.1:1 as shmbus-lab-1"),
        "{out}"
    );
    assert!(
        out.contains("out: imu")
            && out.contains("-> shmbus/lab-1/imu")
            && out.contains("Rate(100ms)"),
        "{out}"
    );
    assert!(
        out.contains("in:  setpoint") && out.contains("<- ground/lab-1/setpoint"),
        "{out}"
    );
    assert!(out.ends_with("ok\n"), "{out}");
}

/// Each bad input: exit 2, and these words on stderr.
#[test]
fn bad_inputs_are_clear_errors_with_exit_code_2() {
    let t = Tmp::new("bad");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let bad_cfg = t.write(
        "bad.toml",
        "[[topic]]\nname = \"imu\"\n[bridge]\nqos = 5\n[[bridge.out]]\ntopic = \"gnss\"\n",
        0o644,
    );
    let bad_schema = t.write(
        "schema.toml",
        "[[topic]]\nname = \"sp\"\n[bridge]\n[[bridge.in]]\nfrom = \"g/sp\"\ntopic = \"sp\"\nschema = \"struct S { x: f33 }\"\n",
        0o644,
    );
    let unbounded = t.write(
        "unbounded.toml",
        "[[topic]]\nname = \"sp\"\n[bridge]\n[[bridge.in]]\nfrom = \"g/sp\"\ntopic = \"sp\"\nschema = \"struct S { name: String }\"\n",
        0o644,
    );
    let huge = t.write(
        "huge.toml",
        "[[topic]]\nname = \"sp\"\n[bridge]\n[[bridge.in]]\nfrom = \"g/sp\"\ntopic = \"sp\"\nschema = \"struct S { v: heapless::Vec<u8, 4000000000000> }\"\n",
        0o644,
    );
    let open_cred = t.write("open.cred", "username = \"u\"\npassword = \"p\"\n", 0o644);
    let key = t.write("k.pem", "x", 0o600);
    let cases: Vec<(Vec<&str>, String)> = vec![
        (vec!["--config", &cfg], "no broker: give one on the command line (shmbus bridge 127.0.0.1:1883)".into()),
        (vec!["h:x", "--config", &cfg], "port \"x\" is not a number".into()),
        (vec!["http://h", "--config", &cfg], "unknown scheme http://".into()),
        (vec!["h", "--config", &cfg, "--rate-hz", "0"], "0 is out of range: give frames per second from 0.001 to 1000000".into()),
        (vec!["h", "--config", &cfg, "--rate-hz", "NaN"], "'NaN' is not a finite number".into()),
        (vec!["h", "--config", &cfg, "--rate-hz", "-1"], "-1 is out of range".into()),
        (vec!["h", "--config", &cfg, "--rate-hz", "inf"], "'inf' is not a finite number".into()),
        (vec!["h", "--config", &cfg, "--duration", "0"], "0 is out of range: give seconds".into()),
        (vec!["h", "--config", &cfg, "--duration", "1e300"], "1e300 is out of range".into()),
        (vec!["h", "--config", &cfg, "--qos", "3"], "3 is not in 0..=2".into()),
        (vec!["h", "--config", &cfg, "--board-id", "a/b"], "board id \"a/b\" contains '/'".into()),
        (vec!["h", "--config", &cfg, "--topic", "gnss"], "no topic `gnss`; the topics are: imu, setpoint".into()),
        (vec!["h", "--config", &cfg, "--topic", "setpoint"], "`setpoint` is taken in by a [[bridge.in]]".into()),
        (vec!["h", "--config", &bad_cfg], format!("{bad_cfg}:4:7: qos = 5 is not an MQTT QoS")),
        (vec!["h", "--config", &bad_cfg], format!("{bad_cfg}:6:9: no [[topic]] named `gnss`")),
        (vec!["h", "--config", &bad_schema, "--check"], format!("{bad_schema}:7:10: schema:")),
        (vec!["h", "--config", &unbounded, "--check"], format!("{unbounded}:7:10: schema: a frame of this type has no largest size")),
        (vec!["h", "--config", &huge, "--check"], format!("{huge}:7:10: schema: a frame of this type can be {} bytes, more than a topic's frames hold (16777216)", if usize::BITS == 64 { "4000000000006".to_string() } else { format!("more than {}", usize::MAX) })),
        (vec!["h", "--config", "/nonexistent/x.toml"], "cannot read the config".into()),
        (vec!["h", "--config", &cfg, "--credentials", &open_cred], format!("run `chmod 600 {open_cred}`")),
        (vec!["h", "--config", &cfg, "--credentials", "/nonexistent/c"], "cannot read the credentials file /nonexistent/c".into()),
        (vec!["h", "--config", &cfg, "--ca", &key], "TLS files are given but the broker address mqtt://h:1883 is not TLS: write mqtts://h:8883".into()),
        (vec!["mqtts://h", "--config", &cfg, "--ca", &key], format!("the CA file {key} has no certificate")),
        (vec!["mqtts://h", "--config", &cfg, "--ca", "/nonexistent/ca.pem"], "cannot read the CA file /nonexistent/ca.pem".into()),
        (vec!["h", "--config", &cfg, "--client-cert", &key], "--client-key".into()),
    ];
    for (args, words) in &cases {
        let o = bridge(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(words.as_str()),
            "{args:?}: expected '{words}' in:\n{err}"
        );
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}

/// MQTT carries a client id, a username and a password with a 2-byte
/// length: `--client-id` (the config file already checked its own) and a
/// credentials file with more used to pass `--check` and then send a
/// CONNECT cut short, which the broker drops, retried for good.
#[test]
fn a_client_id_or_credentials_longer_than_mqtt_carries_are_refused() {
    let t = Tmp::new("long");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let long = "a".repeat(65_536);
    let cred = t.write(
        "long.cred",
        &format!("username = \"u\"\npassword = \"{long}\"\n"),
        0o600,
    );
    for (args, words) in [
        (
            vec!["h", "--config", &cfg, "--check", "--credentials", &cred],
            "the password in the credentials file",
        ),
        (
            vec!["h", "--config", &cfg, "--check", "--client-id", ""],
            "client id \"\": give 1 to 65535 bytes",
        ),
        (
            vec!["h", "--config", &cfg, "--check", "--client-id", &long],
            "client id \"aaa",
        ),
    ] {
        let o = bridge(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{words}: {out}{err}");
        assert!(err.contains(words), "{words}: {err}");
        assert!(err.len() < 500, "{}", &err[..500]);
    }
    // (--check prints the id: a long one would fill the stdout pipe here.)
    let ok = "a".repeat(1000);
    let o = bridge(&["h", "--config", &cfg, "--check", "--client-id", &ok]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
}

#[test]
fn an_unreachable_broker_is_retried_and_the_bridge_still_stops_on_time() {
    let _isolated = isolate();
    let t = Tmp::new("unreachable");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    // Nothing listens on port 1 of loopback: connection refused, retried.
    let start = Instant::now();
    let o = bridge(&[
        "127.0.0.1:1",
        "--config",
        &cfg,
        "--duration",
        "1.5",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("mqtt://127.0.0.1:1: cannot connect") && err.contains("retrying in"),
        "{err}"
    );
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (stats["connections"].as_u64(), stats["connected"].as_bool()),
        (Some(0), Some(false)),
        "{stats}"
    );
    assert!(start.elapsed() < Duration::from_secs(30));
}

/// The human stop line carries the frames still queued at the stop (never
/// delivered), the same number as `--json`'s `queue.len`, not only the JSON.
#[test]
fn the_stop_line_says_how_many_frames_were_never_delivered() {
    let _isolated = isolate();
    let t = Tmp::new("stop-line");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let o = bridge(&[
        "127.0.0.1:1",
        "--config",
        &cfg,
        "--duration",
        "0.5",
        "--json",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let queued = stats["queue"]["len"].as_u64().unwrap();
    let unconfirmed = stats["out"]["unconfirmed"].as_u64().unwrap();
    let line = err
        .lines()
        .find(|l| l.starts_with("shmbus-bridge: stopped: "))
        .unwrap_or_else(|| panic!("no stop line: {err}"));
    assert!(
        line.contains(&format!(
            ", {queued} still queued at the stop (never delivered), {unconfirmed} handed to the MQTT link but never confirmed (lost with it, or taken by a broker that did not acknowledge); in: "
        )),
        "{line}"
    );
}

#[test]
fn sigterm_stops_a_bridge_that_waits_for_its_broker() {
    let _isolated = isolate();
    let t = Tmp::new("sigterm");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let mut child = bridge_cmd()
        .args(["127.0.0.1:1", "--config", &cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it runs (the handler is installed before the first
    // connection attempt, which it reports), not for a fixed time.
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let l = rx.recv_timeout(ready.saturating_duration_since(Instant::now()));
        match l {
            Ok(l) if l.contains("retrying in") => break,
            Ok(_) => {}
            Err(_) => panic!("the bridge never reported its first connection attempt"),
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(st.code(), Some(0));
}

/// Files the bridge reads for TLS and credentials are regular files of at
/// most 1 MiB: a FIFO (whose open blocks) or /dev/zero (which never ends)
/// is refused at once, not read until memory runs out or forever.
#[test]
fn tls_and_credential_paths_that_are_not_files_are_refused_at_once() {
    let t = Tmp::new("notfile");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let key = t.write("k.pem", "x", 0o600);
    let fifo = t.0.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let fifo = fifo.display().to_string();
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["mqtts://h", "--config", &cfg, "--ca", &fifo, "--check"],
            format!("the CA file {fifo} is not a file"),
        ),
        (
            vec![
                "mqtts://h",
                "--config",
                &cfg,
                "--ca",
                "/dev/zero",
                "--check",
            ],
            "the CA file /dev/zero is not a file".into(),
        ),
        (
            vec![
                "mqtts://h",
                "--config",
                &cfg,
                "--client-cert",
                &fifo,
                "--client-key",
                &key,
                "--check",
            ],
            format!("the client certificate {fifo} is not a file"),
        ),
        (
            vec!["h", "--config", &cfg, "--credentials", &fifo, "--check"],
            format!("the credentials file {fifo} is not a file"),
        ),
    ];
    for (args, words) in &cases {
        let start = Instant::now();
        let o = bridge(args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(words.as_str()),
            "{args:?}: expected '{words}' in:\n{err}"
        );
        assert!(start.elapsed() < Duration::from_secs(30), "{args:?}");
    }
}

/// Any positive rate_hz is taken (down to 1e-300): a period, never a panic.
#[test]
fn a_tiny_rate_passes_the_check() {
    let t = Tmp::new("tiny");
    let cfg = t.write(
        "tiny.toml",
        "[[topic]]\nname = \"imu\"\n[bridge]\nrate_hz = 1e-300\n[[bridge.out]]\ntopic = \"imu\"\nrate_hz = 1e-300\n",
        0o644,
    );
    let o = bridge(&["h", "--config", &cfg, "--check"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A broker that answers every CONNECT with CONNACK and then drops the
/// connection is retried at the doubling interval, not every
/// `reconnect_min_ms`: the backoff starts again only after a link that
/// stayed up.
#[test]
fn a_broker_that_drops_every_connection_is_retried_with_a_growing_interval() {
    let _isolated = isolate();
    use std::io::{Read, Write};
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let peer = {
        let accepted = accepted.clone();
        Peer::each(move |mut sock| {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 512];
            let _ = sock.read(&mut buf); // the CONNECT
            let _ = sock.write_all(&[0x20, 0x02, 0x00, 0x00]); // CONNACK, accepted
            // and gone (dropped)
        })
    };
    let t = Tmp::new("flapping");
    let cfg = t.write(
        "lab.toml",
        // Outbound only: on a CONNACK the bridge would create the
        // [[bridge.in]] topic's segment, and this test makes nothing.
        &CONFIG[..CONFIG.find("[[bridge.in]]").unwrap()].replace(
            "[bridge]\n",
            "[bridge]\nreconnect_min_ms = 200\nreconnect_max_ms = 60000\n",
        ),
        0o644,
    );
    let o = bridge(&[&peer.addr(), "--config", &cfg, "--duration", "4", "--json"]);
    drop(peer);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let n = accepted.load(std::sync::atomic::Ordering::Relaxed);
    // Retries after 0.2, 0.4, 0.8, 1.6 s: 5 connections in 4 s at most
    // (a slow machine makes fewer); every 0.2 s would be about 20.
    assert!((2..=7).contains(&n), "{n} connections in 4 s:\n{err}");
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(stats["connections"].as_u64().unwrap() >= 2, "{stats}");
}

/// A peer that accepts the TCP connection and never answers CONNECT: the
/// bridge said "no answer from the broker (timeout)", which did not say how
/// long it waited or for what. It now names the CONNECT, the 5 s and the
/// usual causes, and keeps retrying.
#[test]
fn a_broker_that_never_answers_connect_is_named_with_the_wait() {
    let _isolated = isolate();
    // Holds every connection open and answers nothing.
    let mut held = Vec::new();
    let peer = Peer::each(move |sock| held.push(sock));
    let t = Tmp::new("silent");
    let cfg = t.write(
        "lab.toml",
        // Outbound only: this test makes no segment.
        &CONFIG[..CONFIG.find("[[bridge.in]]").unwrap()],
        0o644,
    );
    // Long enough for one 5 s connection timeout, whatever the load.
    let o = bridge(&[&peer.addr(), "--config", &cfg, "--duration", "8"]);
    let addr = peer.addr();
    drop(peer);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&addr)
            && err.contains("no answer to CONNECT within 5 s of connecting")
            && err.contains("retrying in"),
        "{err}"
    );
}

/// A client id from `--client-id` is printed escaped, as every other
/// untrusted text (`shmbus_core::topic::shown`): by `--check` and in the
/// "connected ... as" line (here from a broker of the test's own on
/// 127.0.0.1 that answers CONNECT). Both printed it raw, so an escape
/// sequence in it reached the terminal.
#[test]
fn a_client_id_with_control_characters_is_printed_escaped() {
    let _isolated = isolate();
    let t = Tmp::new("client-id-escaped");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let id = "id\u{1b}[2J\u{7}x";
    let shown = "id\\u{1b}[2J\\u{7}x";
    let raw = |s: &str| s.chars().any(|c| c == '\u{1b}' || c == '\u{7}');

    let o = bridge(&["h", "--config", &cfg, "--check", "--client-id", id]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(out.contains(&format!(" as {shown}")), "{out:?}");
    assert!(!raw(&out) && !raw(&err), "{out:?} {err:?}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf = [0; 4096];
        let mut answered = false;
        while Instant::now() < end {
            match sock.read(&mut buf) {
                Ok(0) => return,
                Ok(_) if !answered => {
                    answered = true;
                    let _ = sock.write_all(&[0x20, 2, 0, 0]); // CONNACK
                }
                _ => {}
            }
        }
    });
    let broker = format!("127.0.0.1:{port}");
    let o = bridge(&[
        &broker,
        "--config",
        &cfg,
        "--client-id",
        id,
        "--duration",
        "1",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("connected to mqtt://{broker} as {shown}")),
        "{err:?}"
    );
    assert!(!raw(&out) && !raw(&err), "{out:?} {err:?}");
}

/// Every message that quotes what was typed (a board id, a prefix, a
/// topic, a file name) shows control characters escaped: `--board-id`,
/// `--prefix` and `--topic` with ESC and BEL, and the credentials, CA and
/// config paths, reached the terminal raw (the client id was escaped, its
/// siblings were not).
#[test]
fn every_argument_echoed_in_a_message_is_printed_escaped() {
    let _isolated = isolate();
    let t = Tmp::new("args-escaped");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let odd = "x\u{1b}[2J\u{7}y";
    let raw = |s: &str| s.chars().any(|c| c == '\u{1b}' || c == '\u{7}');
    let odd_cfg = t.write(&format!("lab{odd}.toml"), CONFIG, 0o644);
    let missing = format!("{}/{odd}", t.0.path().display());
    for (args, code) in [
        (vec!["h", "--config", &cfg, "--check", "--board-id", odd], 2),
        (vec!["h", "--config", &cfg, "--check", "--prefix", odd], 2),
        (vec!["h", "--config", &cfg, "--check", "--topic", odd], 2),
        (
            vec!["h", "--config", &cfg, "--check", "--credentials", &missing],
            2,
        ),
        (
            vec!["mqtts://h", "--config", &cfg, "--check", "--ca", &missing],
            2,
        ),
        (vec!["h", "--config", &missing, "--check"], 2),
        (vec!["h", "--config", &odd_cfg, "--check"], 0),
    ] {
        let o = bridge(&args);
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {out} {err}");
        assert!(!raw(&out) && !raw(&err), "{args:?}: {out:?} {err:?}");
        assert!(
            out.contains("\\u001b[2J\\u0007y") || err.contains("\\u001b[2J\\u0007y"),
            "{args:?}: {out:?} {err:?}"
        );
    }
}

/// Two boards with one board id (the same host name) connect with the same
/// client id, and the broker closes the older connection at each connect:
/// both flapped for good, each drop said as "the broker closed the
/// connection", nothing pointing at the cause. After three links in a row
/// closed by the broker soon after its CONNACK, the bridge now says once
/// that another client may use its client id. The broker here is the
/// test's own on 127.0.0.1: it accepts each connection, answers CONNACK
/// and closes it, as Mosquitto does to the older of two.
#[test]
fn links_closed_right_after_connack_point_at_a_client_id_in_use_twice() {
    let _isolated = isolate();
    let t = Tmp::new("takeover");
    let cfg = t.write(
        "lab.toml",
        &CONFIG.replace(
            "[bridge]\n",
            "[bridge]\nreconnect_min_ms = 50\nreconnect_max_ms = 200\n",
        ),
        0o644,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        // Bounded: at most 100 connections, each for at most 10 s.
        for _ in 0..100 {
            let Ok((mut sock, _)) = listener.accept() else {
                return;
            };
            let _ = sock.set_read_timeout(Some(Duration::from_secs(10)));
            let mut buf = [0; 4096];
            if matches!(sock.read(&mut buf), Ok(n) if n > 0) {
                let _ = sock.write_all(&[0x20, 2, 0, 0]); // CONNACK
                std::thread::sleep(Duration::from_millis(100));
            }
            // Dropped: closed, as a broker closes a session taken over.
        }
    });
    let broker = format!("127.0.0.1:{port}");
    // Stopped once it has said the hint and retried 6 more times (room for
    // another streak of 3 links), not after a fixed `--duration 4`:
    // how many links fit in 4 s depends on how often the bridge runs, and
    // a loaded machine (or qemu-arm) gave it fewer than the 3 the hint
    // needs.
    let mut child = bridge_cmd()
        .args([&broker, "--config", &cfg])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    let end = Instant::now() + Duration::from_secs(60);
    let mut err = String::new();
    let mut after_hint: Option<usize> = None;
    while after_hint.is_none_or(|n| n < 6) {
        match rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
            Ok(l) => {
                if l.contains("another client may be connecting") {
                    after_hint.get_or_insert(0);
                } else if l.contains("retrying in") {
                    if let Some(n) = after_hint.as_mut() {
                        *n += 1;
                    }
                }
                err.push_str(&l);
                err.push('\n');
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no hint and 6 more links within 60 s:\n{err}");
            }
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let st = child.wait().unwrap();
    // The rest of what it said, up to its exit.
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(30)) {
        err.push_str(&l);
        err.push('\n');
    }
    assert_eq!(st.code(), Some(0), "{err}");
    let hints: Vec<&str> = err
        .lines()
        .filter(|l| {
            l.contains("another client may be connecting with the same client id shmbus-lab-1")
        })
        .collect();
    assert_eq!(hints.len(), 1, "{err}");
    assert!(hints[0].contains("board_id"), "{}", hints[0]);
}

/// The stop line accounts for every broker message received: a retained
/// value sent again (`replayed`), an empty message (`cleared`) and one on
/// a topic no route takes (`unmatched`) are said beside `published`, `bad`
/// and `refused`, so the numbers add up. The broker is the test's own on
/// 127.0.0.1: it answers the SUBSCRIBE with an empty message on the route's
/// topic and a message on another one.
#[test]
fn the_stop_line_accounts_for_every_broker_message() {
    let _isolated = isolate();
    let t = Tmp::new("stop-line-in");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(100)));
        let end = Instant::now() + Duration::from_secs(60);
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0; 4096];
        let publish = |topic: &[u8], payload: &[u8]| {
            let mut v = vec![0x30, (2 + topic.len() + payload.len()) as u8, 0];
            v.push(topic.len() as u8);
            v.extend_from_slice(topic);
            v.extend_from_slice(payload);
            v
        };
        while Instant::now() < end {
            match sock.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            // Whole packets: type, remaining length (varint), body.
            loop {
                let (mut len, mut mult, mut i) = (0usize, 1usize, 1);
                while i < buf.len() && i < 5 {
                    len += usize::from(buf[i] & 0x7f) * mult;
                    mult *= 128;
                    i += 1;
                    if buf[i - 1] & 0x80 == 0 {
                        break;
                    }
                }
                if buf.len() < 2 || buf.len() < i + len {
                    break;
                }
                let reply = match buf[0] >> 4 {
                    1 => vec![0x20, 2, 0, 0],
                    3 if (buf[0] >> 1) & 3 == 1 => {
                        // PUBACK for a QoS 1 PUBLISH.
                        let tl = usize::from(u16::from_be_bytes([buf[i], buf[i + 1]]));
                        vec![0x40, 2, buf[i + 2 + tl], buf[i + 3 + tl]]
                    }
                    8 => {
                        let mut v = vec![0x90, 3, buf[i], buf[i + 1], 0x01];
                        v.extend(publish(b"ground/lab-1/setpoint", b""));
                        v.extend(publish(b"ground/other", b"{}"));
                        v
                    }
                    12 => vec![0xd0, 0],
                    _ => Vec::new(),
                };
                if sock.write_all(&reply).is_err() {
                    return;
                }
                buf.drain(..i + len);
            }
        }
    });
    let broker = format!("127.0.0.1:{port}");
    // Stopped once it has taken both messages in, not after a fixed
    // `--duration 3`: under load that window could end before the bridge
    // had connected and subscribed. The broker sends the empty message
    // first, and the one on no route's topic, said once on stderr, last.
    let o = bridge_until(
        &[&broker, "--config", &cfg, "--json"],
        "which no [[bridge.in]] takes",
    );
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(summary["in"]["cleared"], 1, "{summary}");
    assert_eq!(summary["in"]["unmatched"], 1, "{summary}");
    let line = err
        .lines()
        .find(|l| l.starts_with("shmbus-bridge: stopped: "))
        .unwrap_or_default();
    assert!(
        line.contains(
            "in: 1 received, 0 published, 0 bad, 0 refused, 0 replayed, 1 cleared; 1 on no route's topic"
        ),
        "{line}"
    );
}

/// A broker that refuses the bridge at its first connection (here: not
/// authorized) is exit 2, and the run leaves nothing behind: the
/// `[[bridge.in]]` topic it created at the start, on which nothing was
/// published, is removed with its publisher lock (they stayed, empty).
#[test]
fn a_run_refused_at_the_first_connection_leaves_no_topic_it_created() {
    let imu = shmbus_testkit::unique_key("refused-imu");
    let sp = shmbus_testkit::unique_key("refused-sp");
    let _guards = (shmbus_testkit::Guard(imu), shmbus_testkit::Guard(sp));
    let t = Tmp::new("refused");
    let cfg = t.write(
        "lab.toml",
        &CONFIG
            .replace("0x7b000101", &format!("0x{:08x}", imu as u32))
            .replace("0x7b000102", &format!("0x{:08x}", sp as u32)),
        0o644,
    );
    // Every CONNECT is answered "not authorized" (CONNACK return code 5).
    let peer = Peer::each(|mut sock| {
        use std::io::{Read, Write};
        let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
        let mut buf = [0; 512];
        let _ = sock.read(&mut buf);
        let _ = sock.write_all(&[0x20, 2, 0, 5]);
        let _ = sock.read(&mut buf); // until the bridge closes the link
    });
    let o = bridge(&[&peer.addr(), "--config", &cfg]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("not authorized"), "{err}");
    assert!(
        shmbus_core::sys::shmget(sp, 0, 0).is_err(),
        "the setpoint topic this run created is still there: {err}"
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(sp).is_none(),
        "its publisher lock is still there: {err}"
    );
}

/// A stdout and a stderr that cannot be written (`>/dev/full 2>&1`, a
/// closed pipe) lose the output, not the exit code: the `--json` summary
/// and `--check`'s lines were `println!`s, which panicked (exit 101) after
/// a run that had gone well.
#[test]
fn an_unwritable_stdout_and_stderr_keep_the_exit_code() {
    let _isolated = isolate();
    let t = Tmp::new("dev-full");
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let run = |args: &[&str]| {
        let mut child = bridge_cmd()
            .args(args)
            .env_remove("SHMBUS_CONFIG")
            .stdin(Stdio::null())
            .stdout(full())
            .stderr(full())
            .spawn()
            .unwrap();
        shmbus_testkit::exit_within(&mut child, Duration::from_secs(60), "shmbus-bridge").code()
    };
    // A run (broker unreachable: retried, said on stderr) to its end.
    let code = run(&[
        "127.0.0.1:1",
        "--config",
        &cfg,
        "--duration",
        "0.5",
        "--json",
    ]);
    assert_eq!(code, Some(0));
    assert_eq!(run(&["127.0.0.1:1", "--config", &cfg, "--check"]), Some(0));
    assert_eq!(run(&["--config", &cfg, "--qos", "7"]), Some(2));
}

/// Every `shmbus-bridge` command line in the docs exists with the options
/// it gives (`shmbus_testkit::docs`, as `shmbus`'s in `shmbus-cli`).
#[test]
fn every_bridge_command_the_docs_show_has_the_options_they_give() {
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-bridge",
        &[("shmbus-bridge", env!("CARGO_BIN_EXE_shmbus-bridge"), false)],
        &[],
        1,
    );
}

/// A credentials, CA, certificate or key file the bridge's user cannot read
/// (written by root, mode 600, for a bridge that runs as its own service
/// user; or behind a directory it may not enter) says who the bridge runs
/// as, whose the file is, and how to let it in: it was "Permission denied
/// (os error 13)" alone.
#[test]
fn a_secret_file_the_bridge_cannot_read_says_whose_it_is_and_the_fix() {
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "needs root to run the bridge as another user; checked in CI, which runs as root"
        );
        return;
    }
    let t = Tmp::new("unreadable");
    std::fs::set_permissions(t.0.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = t.write("lab.toml", CONFIG, 0o644);
    let cred = t.write("bridge.cred", "username = \"u\"\npassword = \"p\"\n", 0o600);
    let pem = t.write("ca.pem", "x", 0o600);
    let shut = t.0.join("shut");
    std::fs::create_dir(&shut).unwrap();
    std::fs::set_permissions(&shut, std::fs::Permissions::from_mode(0o700)).unwrap();
    let hidden = shut.join("bridge.cred");
    std::fs::write(&hidden, "username = \"u\"\npassword = \"p\"\n").unwrap();
    std::fs::set_permissions(&hidden, std::fs::Permissions::from_mode(0o600)).unwrap();
    let hidden = hidden.display().to_string();
    let file_fix = |what: &str, f: &str| {
        vec![
            format!("cannot read the {what} {f}: permission denied: the bridge runs as "),
            "(uid 65534)".to_string(),
            "and the file belongs to root (uid 0) and group ".to_string(),
            "with mode 0600".to_string(),
            format!("`chmod 640 {f}`"),
        ]
    };
    let cases: Vec<(Vec<&str>, Vec<String>)> = vec![
        (
            vec!["h", "--config", &cfg, "--credentials", &cred, "--check"],
            file_fix("credentials file", &cred),
        ),
        (
            vec!["mqtts://h", "--config", &cfg, "--ca", &pem, "--check"],
            file_fix("CA file", &pem),
        ),
        (
            vec![
                "mqtts://h",
                "--config",
                &cfg,
                "--client-cert",
                &pem,
                "--client-key",
                &pem,
                "--check",
            ],
            file_fix("client certificate", &pem),
        ),
        (
            vec!["h", "--config", &cfg, "--credentials", &hidden, "--check"],
            vec![
                format!(
                    "cannot read the credentials file {hidden}: permission denied on a directory of its path"
                ),
                "(uid 65534)".to_string(),
                format!("`namei -l {hidden}`"),
            ],
        ),
    ];
    for (args, words) in &cases {
        let mut child = bridge_cmd()
            .args(args)
            .env_remove("SHMBUS_CONFIG")
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = shmbus_testkit::exit_within(
            &mut child,
            Duration::from_secs(60),
            "shmbus-bridge --check",
        );
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{args:?}: {err}");
        for w in words {
            assert!(
                err.contains(w.as_str()),
                "{args:?}: expected '{w}' in:\n{err}"
            );
        }
    }
}
