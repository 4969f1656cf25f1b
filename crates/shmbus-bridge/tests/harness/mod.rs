//! Real components for the broker tests: a Mosquitto broker on a free
//! loopback port (killed when dropped), "boards" as private IPC namespaces
//! (`unshare --ipc`, entered with `nsenter`), the bridge and probe
//! processes (killed when dropped), and Mosquitto's own clients as the
//! independent check. Every wait is bounded.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous bounds: the machine is shared and qemu-arm is slow.
pub const LONG: Duration = Duration::from_secs(90);
pub const SHORT: Duration = Duration::from_secs(30);

/// A directory removed when dropped, or by the testkit's watchdog before
/// it aborts (it is a `shmbus_testkit::TempDir`).
pub struct Dir(pub shmbus_testkit::TempDir);

impl Dir {
    pub fn new(name: &str) -> Dir {
        Dir(shmbus_testkit::TempDir::new(&format!("bridge-{name}")))
    }
    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
    /// Write a file; `mode` 0o600 for secrets.
    pub fn write(&self, f: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path(f);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

/// A free TCP port on 127.0.0.1 (the kernel's choice).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// A Mosquitto broker with a config of our own, on loopback only.
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    conf: PathBuf,
    log: PathBuf,
}

impl Broker {
    /// A broker whose config is `listener <port> 127.0.0.1` plus `extra`
    /// (e.g. TLS or password settings; default: anonymous allowed).
    pub fn start(dir: &Dir, name: &str, extra: &str) -> Broker {
        let port = free_port();
        let mut text = format!("listener {port} 127.0.0.1\npersistence false\nlog_dest stderr\n");
        if !extra.contains("allow_anonymous") {
            text.push_str("allow_anonymous true\n");
        }
        text.push_str(extra);
        let conf = dir.write(&format!("{name}.conf"), &text, 0o644);
        let mut b = Broker {
            child: None,
            port,
            conf,
            log: dir.path(&format!("{name}.log")),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new("mosquitto");
        // Started as root, Mosquitto would switch to its own user itself,
        // and a change of user clears the parent-death signal: start it as
        // that user (so it never switches) and then set the signal.
        if let Ok(Some(u)) = nix::unistd::User::from_name("mosquitto") {
            use std::os::unix::process::CommandExt;
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        die_with_test(&mut cmd);
        let child = cmd
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("mosquitto is not installed: ci/bridge-test.sh installs it (apt-get install mosquitto mosquitto-clients)");
        self.child = Some(child);
        assert!(
            wait_port(self.port, SHORT),
            "mosquitto did not listen on {} (log {}):\n{}",
            self.port,
            self.log.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// `mqtt://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Make `cmd`'s process die with the test thread that starts it, even if
/// the test process is killed (SIGKILL, a panic=abort): brokers and boards
/// never outlive their test.
pub fn die_with_test(cmd: &mut Command) {
    shmbus_testkit::dies_with_parent(cmd);
}

/// A child process whose stdout and stderr lines are collected.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads that collect stdout and stderr: each ends at its
    /// pipe's end, once it has taken every line.
    readers: Vec<std::thread::JoinHandle<()>>,
    status: Option<ExitStatus>,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        die_with_test(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: cannot start {cmd:?}: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let mut readers = Vec::new();
        for (r, tag) in [
            (Box::new(out) as Box<dyn std::io::Read + Send>, "out"),
            (Box::new(err), "err"),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for l in BufReader::new(r).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(format!("{tag}: {l}"));
                }
            }));
        }
        Proc {
            name: name.to_string(),
            child: Some(child),
            lines,
            readers,
            status: None,
        }
    }

    /// After the exit: wait until the reader threads have taken its last
    /// lines (each ends at its pipe's end). Was: a fixed 100 ms, after
    /// which a reader thread still waiting for a CPU on a loaded machine
    /// had not taken the last line (the `RESULT` a test reads). Bounded:
    /// a process it started that still holds the pipes open keeps the end
    /// away, and the lines so far are then what there is.
    fn drained(&mut self) {
        let end = Instant::now() + Duration::from_secs(30);
        while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Everything it printed so far (`out: ` / `err: ` prefixed lines).
    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// Wait for a line containing `pat`; panics with the output on timeout
    /// or if the process exits first.
    pub fn wait_line(&mut self, pat: &str, timeout: Duration) -> String {
        let end = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(pat)) {
                return l.clone();
            }
            if let Some(st) = self.try_status() {
                self.drained(); // the last lines
                if let Some(l) = self.lines.lock().unwrap().iter().find(|l| l.contains(pat)) {
                    return l.clone();
                }
                panic!(
                    "{} exited ({st}) before printing '{pat}':\n{}",
                    self.name,
                    self.text()
                );
            }
            assert!(
                Instant::now() < end,
                "{} did not print '{pat}' within {timeout:?}:\n{}",
                self.name,
                self.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines containing `pat`.
    pub fn count_lines(&self, pat: &str) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                self.status = c.try_wait().ok().flatten();
            }
        }
        self.status
    }

    /// Wait for the exit (killing it after `timeout`); the exit status.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                // The reader threads have taken the last lines.
                self.drained();
                return st;
            }
            if Instant::now() >= end {
                let _ = self.child.as_mut().unwrap().kill();
                panic!(
                    "{} did not exit within {timeout:?}:\n{}",
                    self.name,
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Our own child, not yet reaped (we hold its `Child`), so the pid is
    /// not reused.
    pub fn signal(&self, sig: i32) {
        if let Ok(sig) = nix::sys::signal::Signal::try_from(sig) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), sig);
        }
    }

    /// SIGTERM, wait, and the JSON it printed last (`RESULT {...}` or a
    /// line that is a JSON object).
    pub fn stop(&mut self, timeout: Duration) -> (ExitStatus, Value) {
        if self.try_status().is_none() {
            self.signal(libc::SIGTERM);
        }
        let st = self.wait(timeout);
        (st, self.json())
    }

    /// The last JSON object printed on stdout.
    pub fn json(&self) -> Value {
        let lines = self.lines.lock().unwrap();
        for l in lines.iter().rev() {
            let Some(l) = l.strip_prefix("out: ") else {
                continue;
            };
            let l = l.strip_prefix("RESULT ").unwrap_or(l);
            if l.starts_with('{') {
                if let Ok(v) = serde_json::from_str(l) {
                    return v;
                }
            }
        }
        panic!("{} printed no JSON:\n{}", self.name, lines.join("\n"));
    }

    /// Wait for the exit, then its RESULT JSON.
    pub fn finish(&mut self, timeout: Duration) -> Value {
        let st = self.wait(timeout);
        assert!(
            st.success(),
            "{} failed ({st}):\n{}",
            self.name,
            self.text()
        );
        self.json()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if self.status.is_none() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// The bridge under test: `$SHMBUS_BRIDGE_UNDER_TEST` (a command line,
/// e.g. `qemu-arm -L /usr/arm-linux-gnueabihf target/.../shmbus-bridge`)
/// or this build's `shmbus-bridge`.
pub fn bridge_argv() -> Vec<String> {
    match std::env::var("SHMBUS_BRIDGE_UNDER_TEST") {
        Ok(s) if !s.trim().is_empty() => s.split_whitespace().map(str::to_string).collect(),
        _ => vec![env!("CARGO_BIN_EXE_shmbus-bridge").to_string()],
    }
}

pub fn probe_argv() -> Vec<String> {
    vec![env!("CARGO_BIN_EXE_shmbus-bridge-probe").to_string()]
}

fn command(argv: &[String]) -> Command {
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..]);
    c
}

/// `argv` in a new private IPC namespace (a new "board"). `unshare`
/// execs the program, so its pid is the namespace's first process.
pub fn in_new_board(argv: &[String]) -> Command {
    let mut c = Command::new("unshare");
    c.arg("--ipc").arg("--").args(argv);
    c
}

/// `argv` in the IPC namespace of process `pid`.
pub fn on_board(pid: u32, argv: &[String]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--target={pid}"))
        .arg("--ipc")
        .arg("--")
        .args(argv);
    c
}

/// Arguments as owned strings.
pub fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A board: a private IPC namespace (held by a `sleep` started with
/// `unshare --ipc`), its bridge, and probes run in it with `nsenter`. The
/// namespace, and every segment in it, goes away with its last process.
pub struct Board {
    pub name: String,
    holder: Proc,
    pub bridge: Option<Proc>,
}

impl Board {
    pub fn new(name: &str) -> Board {
        let holder = Proc::spawn(
            &format!("board {name}"),
            in_new_board(&args(&["sleep", "900"])),
        );
        let ours = std::fs::read_link("/proc/self/ns/ipc").unwrap();
        let end = Instant::now() + SHORT;
        loop {
            match std::fs::read_link(format!("/proc/{}/ns/ipc", holder.pid())) {
                Ok(ns) if ns != ours => break,
                _ => {}
            }
            assert!(
                Instant::now() < end,
                "unshare --ipc did not make a namespace: {}",
                holder.text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Board {
            name: name.to_string(),
            holder,
            bridge: None,
        }
    }

    /// Start the board's bridge: `<bridge> BROKER --config CONFIG --json EXTRA...`.
    pub fn start_bridge(&mut self, broker: &str, config: &Path, extra: &[&str]) -> &mut Proc {
        let mut argv = bridge_argv();
        argv.push(broker.to_string());
        argv.push("--config".into());
        argv.push(config.display().to_string());
        argv.push("--json".into());
        argv.extend(extra.iter().map(|s| s.to_string()));
        self.bridge = Some(Proc::spawn(
            &format!("bridge {}", self.name),
            on_board(self.holder.pid(), &argv),
        ));
        self.bridge.as_mut().unwrap()
    }

    pub fn bridge(&mut self) -> &mut Proc {
        self.bridge.as_mut().expect("start_bridge first")
    }

    /// A probe on this board.
    pub fn probe(&self, name: &str, a: &[&str]) -> Proc {
        let mut argv = probe_argv();
        argv.extend(a.iter().map(|s| s.to_string()));
        Proc::spawn(
            &format!("{} {name}", self.name),
            on_board(self.holder.pid(), &argv),
        )
    }
}

/// `mosquitto_sub`: up to `count` messages of `filter` within `wait`
/// seconds, as (topic, payload) with the payload as text, or as hex with
/// `hex`. Retained messages arrive at once.
pub fn mqtt_sub(
    port: u16,
    filter: &str,
    count: usize,
    wait: u32,
    hex: bool,
    extra: &[&str],
) -> Vec<(String, String)> {
    let fmt = if hex { "%t %x" } else { "%t %p" };
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", filter])
        .args(["-C", &count.to_string(), "-W", &wait.to_string(), "-F", fmt])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub is not installed: ci/bridge-test.sh installs mosquitto-clients");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(t, p)| (t.to_string(), p.to_string()))
        })
        .collect()
}

/// The retained message of `topic` (None if there is none within 30 s).
/// A retained message comes at once after the subscription, so the wait
/// costs nothing when there is one; 5 s was a bound on starting
/// `mosquitto_sub` and its connection, which a loaded machine can break.
pub fn retained(port: u16, topic: &str) -> Option<String> {
    retained_bytes(port, topic, 30).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The retained payload of `topic`, bytes exactly (`mosquitto_sub -N`),
/// waiting up to `wait` seconds for one.
pub fn retained_bytes(port: u16, topic: &str, wait: u32) -> Option<Vec<u8>> {
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", topic])
        .args(["-C", "1", "-W", &wait.to_string(), "-N", "--retained-only"])
        .stdin(Stdio::null())
        .output()
        .expect("mosquitto_sub");
    (out.status.success() && !out.stdout.is_empty()).then_some(out.stdout)
}

/// `mosquitto_pub` one message.
pub fn mqtt_pub(port: u16, topic: &str, payload: &[u8], retain: bool) {
    let mut c = Command::new("mosquitto_pub");
    c.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-t",
        topic,
        "-q",
        "1",
        "-s",
    ]);
    if retain {
        c.arg("-r");
    }
    let mut child = c.stdin(Stdio::piped()).spawn().expect("mosquitto_pub");
    child.stdin.take().unwrap().write_all(payload).unwrap();
    let st = child.wait().unwrap();
    assert!(st.success(), "mosquitto_pub to {topic} failed: {st}");
}

/// CPU time (user + system) of a process so far, from /proc.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) end with ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .map_or(100, |t| t as u64);
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

/// `VmRSS` and `VmHWM` of a process, KiB.
pub fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}
