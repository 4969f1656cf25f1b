//! End-to-end: each sensor program publishes real frames on a topic of a
//! config with unique keys; the demo runs the whole bus and cleans up,
//! whether it stops on its duration, on its stop flag or on SIGINT.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use postcard_schema::Schema;
use serde::de::DeserializeOwned;
use shmbus_config::Config;
use shmbus_sensors::SensorKind;
use shmbus_sensors::demo::{self, Options};
use shmbus_sensors::msg::{Accel, Imu, Net, Power, System, Thermal};
use shmbus_sub::{Next, Subscriber};
use shmbus_testkit::{Guard, KillOnDrop, role, unique_key, watchdog};

/// The multi-call program that runs every sensor.
const EXE: &str = env!("CARGO_BIN_EXE_shmbus-sensor");

/// `shmbus-sensor NAME ARGS...`: `args` after the sensor's name.
fn with_name<A: AsRef<std::ffi::OsStr>>(kind: SensorKind, args: &[A]) -> Vec<OsString> {
    let mut all = vec![OsString::from(kind.name())];
    all.extend(args.iter().map(|a| a.as_ref().to_os_string()));
    all
}

/// The command for a sensor (`shmbus-sensor NAME ARGS`, behind
/// `SHMBUS_TEST_RUNNER` if set).
fn sensor_cmd<A: AsRef<std::ffi::OsStr>>(kind: SensorKind, args: &[A]) -> Command {
    let mut cmd = demo::command(Path::new(EXE), &with_name(kind, args));
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

/// A directory of this test's own with links `shmbus-sensor-NAME` to the
/// multi-call program, for each `NAME` in `names` (a sensor or not),
/// removed when it drops or by the testkit's watchdog before it aborts.
struct Links(shmbus_testkit::TempDir);
impl Links {
    fn new(test: &str, names: &[&str]) -> Links {
        let links = Links(shmbus_testkit::TempDir::new(&format!(
            "sensors-links-{test}"
        )));
        for n in names {
            std::os::unix::fs::symlink(EXE, links.path(n)).unwrap();
        }
        links
    }
    /// The link `shmbus-sensor-NAME`.
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(&format!("shmbus-sensor-{name}"))
    }
}

/// A file named `name` (as given: it may be not UTF-8) in a temp dir of its
/// own, removed with the dir when it drops or by the testkit's watchdog
/// before it aborts. Nothing is written to it.
struct TempFile(
    PathBuf,
    #[allow(dead_code, reason = "held for its drop, which removes the dir")]
    shmbus_testkit::TempDir,
);
impl TempFile {
    fn new(name: impl AsRef<std::ffi::OsStr>) -> TempFile {
        let dir = shmbus_testkit::TempDir::new("sensors");
        TempFile(dir.path().join(name.as_ref()), dir)
    }
}

/// A demo config of two sensors (a 100 Hz `imu` and `power`) on a bus of
/// its own (`PREFIX` and six hex digits of a key unique to `what`): the
/// bus name and the file.
fn imu_and_power_demo(prefix: &str, what: &str) -> (String, TempFile) {
    let bus = format!("{prefix}{:06x}", unique_key(what) & 0xff_ffff);
    let text = format!(
        "bus = \"{bus}\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imu\"\nrate_hz = 100.0\n\
         [[topic]]\nname = \"power\"\npublisher = \"shmbus-sensor-power\"\n"
    );
    let file = TempFile::new(format!("{what}.toml"));
    std::fs::write(&file.0, &text).unwrap();
    (bus, file)
}

/// Run the demo (`config`, or the built-in one) for `duration`, not live,
/// with the sensors started from this test binary; its report.
fn run_demo(config: Option<PathBuf>, duration: Duration) -> demo::Report {
    let opts = Options {
        duration: Some(duration),
        config,
        live: false,
    };
    let stop = AtomicBool::new(false);
    demo::run(&opts, &sensor_cmd, &stop, &mut std::io::sink()).unwrap()
}

/// Topic `name` of the config file at `path`.
fn config_topic(path: &std::path::Path, name: &str) -> shmbus_core::Topic {
    Config::load(path)
        .unwrap()
        .topic(name)
        .unwrap_or_else(|| panic!("no topic {name} in {}", path.display()))
        .to_topic()
        .unwrap()
}

/// Run the IMU sensor with `args` until it ends by itself (`--count`); it
/// must exit 0. Then every frame its topic (topic `imu` of `config`) still
/// holds, oldest first, with its monotonic stamp.
fn imu_run_to_end<A: AsRef<std::ffi::OsStr>>(config: &Path, args: &[A]) -> Vec<(u64, Imu)> {
    let out = sensor_cmd(SensorKind::Imu, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let topic = config_topic(config, "imu");
    let mut sub = Subscriber::<Imu>::attach(&topic).unwrap();
    sub.raw().seek_oldest();
    let mut frames = Vec::new();
    while let Ok(Next::Frame(s)) = sub.next() {
        frames.push((s.mono_ns, s.value));
    }
    frames
}

/// A config of one topic, `imu` at `key`, published by the IMU sensor
/// (`extra`: more lines of that topic), in a file of this test's own
/// (`TAG.toml` in a dir of its own), removed when the `TempFile` drops.
fn imu_config(tag: &str, key: i32, extra: &str) -> (std::path::PathBuf, TempFile) {
    let file = TempFile::new(format!("{tag}.toml"));
    let path = file.0.clone();
    std::fs::write(
        &path,
        format!(
            "bus = \"test\"\n[[topic]]\nname = \"imu\"\nkey = 0x{:08x}\npublisher = \"shmbus-sensor-imu\"\n{extra}",
            key as u32
        ),
    )
    .unwrap();
    (path, file)
}

/// A config with one topic per sensor, each at a unique key.
fn unique_config(test: &str) -> (TempFile, Vec<Guard>) {
    let mut text = String::from("bus = \"test\"\n");
    let mut guards = Vec::new();
    for k in SensorKind::ALL {
        let key = unique_key(&format!("{test}-{}", k.name()));
        guards.push(Guard(key));
        text += &format!(
            "[[topic]]\nname = \"{}\"\nkey = 0x{:08x}\npublisher = \"{}\"\n",
            k.name(),
            key as u32,
            k.program()
        );
    }
    let file = TempFile::new(format!("{test}.toml"));
    std::fs::write(&file.0, text).unwrap();
    (file, guards)
}

/// Run sensor `kind` on `config` and return the first `n` frames it publishes.
fn frames<T: DeserializeOwned + Schema>(
    kind: SensorKind,
    config: &Path,
    extra: &[&str],
    n: usize,
) -> Vec<T> {
    let cfg = Config::load(config).unwrap();
    let topic = cfg.topic(kind.name()).unwrap().to_topic().unwrap();
    let mut args: Vec<String> = ["--config", config.to_str().unwrap(), "--duration", "60"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let _child = KillOnDrop(
        sensor_cmd(kind, &args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut sub = Subscriber::<T>::wait_for_topic(&topic, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{}: {e}", kind.program()));
    sub.raw().seek_oldest();
    let mut out = Vec::new();
    while out.len() < n {
        match sub.wait_next(Duration::from_secs(30)) {
            Ok(Next::Frame(s)) => {
                assert!(s.mono_ns > 0);
                out.push(s.value);
            }
            Ok(_) => {}
            Err(e) => panic!("{}: {e}", kind.program()),
        }
    }
    out
}

/// Entry point for child processes (`shmbus_testkit::child`): role "demo"
/// runs the whole demo command, as `shmbus demo` does.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    match role.as_str() {
        // squat A B: another user's non-shmbus segment at key A, and a held
        // publisher lock with no segment at key B; until killed.
        "squat" => {
            let (a, b): (i32, i32) = (args[0].parse().unwrap(), args[1].parse().unwrap());
            shmbus_core::sys::shmget(a, 4096, libc_create()).unwrap();
            let topic = shmbus_core::Topic::new("squat").key(b);
            let p = shmbus_pub::Publisher::<Imu>::open(&topic).unwrap();
            let id = shmbus_core::sys::shmget(b, 0, 0).unwrap();
            shmbus_core::sys::shm_remove(id).unwrap();
            println!("ready");
            std::thread::sleep(Duration::from_secs(300));
            drop(p);
        }
        // orphan CONFIG: start the thermal sensor at 0.01 Hz with
        // `--parent <this process>`, wait for its topic, then exit.
        "orphan" => {
            let cfg = Config::load(Path::new(&args[0])).unwrap();
            let topic = cfg.topic("thermal").unwrap().to_topic().unwrap();
            let a: Vec<String> = [
                "--config",
                &args[0],
                "--rate",
                "0.01",
                "--duration",
                "120",
                "--parent",
                &std::process::id().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            // Not `sensor_cmd`: its death signal would kill the sensor
            // with this process, and the sensor must see it go. Never
            // waited for: this process exits and the sensor is orphaned.
            #[allow(clippy::zombie_processes)]
            let _sensor = demo::command(Path::new(EXE), &with_name(SensorKind::Thermal, &a))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            Subscriber::<Thermal>::wait_for_topic(&topic, Duration::from_secs(60)).unwrap();
            println!("ready");
        }
        // killed-demo CONFIG BUS: what a demo does at its start (the imu
        // and power sensors of CONFIG on the bus `BUS-<this pid>`), then
        // "ready IMU_PID POWER_PID" once both topics have a frame; until
        // killed.
        "killed-demo" => {
            let bus = format!("{}-{}", args[1], std::process::id());
            let mut config = Config::load(Path::new(&args[0])).unwrap();
            config.rebus(&bus).unwrap();
            let mut sensors = Vec::new();
            for (kind, name) in [(SensorKind::Imu, "imu"), (SensorKind::Power, "power")] {
                let a = [
                    "--config",
                    &args[0],
                    "--bus",
                    &bus,
                    "--topic",
                    name,
                    "--duration",
                    "120",
                ];
                let child = sensor_cmd(kind, &a)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap();
                sensors.push(child);
                let topic = config.topic(name).unwrap().to_topic().unwrap();
                let start = std::time::Instant::now();
                while !shmbus_core::Segment::attach(&topic).is_ok_and(|s| s.generation() > 0) {
                    assert!(
                        start.elapsed() < Duration::from_secs(60),
                        "no frame on {name}"
                    );
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            println!("ready {} {}", sensors[0].id(), sensors[1].id());
            std::thread::sleep(Duration::from_secs(300));
            drop(sensors);
        }
        "demo" => {
            let code = demo::main(None, None, &sensor_cmd);
            std::process::exit(if code == std::process::ExitCode::SUCCESS {
                0
            } else {
                1
            });
        }
        other => panic!("unknown role {other}"),
    }
}

/// Every sensor program says its version (`--version`), the package's: a
/// packaged board's programs can be told apart by release (they had no
/// `--version` at all; `shmbus` and the bridge had).
#[test]
fn every_sensor_program_says_its_version() {
    for kind in SensorKind::ALL {
        let o = demo::command(Path::new(EXE), &with_name(kind, &["--version"]))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(o.status.success(), "{kind:?}: {o:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stdout),
            format!("{} {}\n", kind.program(), env!("CARGO_PKG_VERSION")),
            "{kind:?}"
        );
    }
}

#[test]
fn every_sensor_program_publishes_frames() {
    watchdog(
        "every_sensor_program_publishes_frames",
        Duration::from_secs(180),
    );
    let (cfg, _guards) = unique_config("every-sensor");
    let fast = ["--rate", "50"];
    let sys: Vec<System> = frames(SensorKind::System, &cfg.0, &fast, 3);
    assert!(sys[2].cpus >= 1, "{:?}", sys[2]);
    assert!(sys[2].mem.unwrap().total_kib > 0);
    assert!(sys[2].load.is_some());
    assert!(sys[1].t_ns < sys[2].t_ns, "timestamps advance");
    let net: Vec<Net> = frames(SensorKind::Net, &cfg.0, &fast, 3);
    assert!(
        net[2].ifaces.iter().any(|i| i.name.as_str() == "lo"),
        "{:?}",
        net[2]
    );
    let imu: Vec<Imu> = frames(SensorKind::Imu, &cfg.0, &[], 200);
    for (i, f) in imu.iter().enumerate() {
        // In publish order; a slow reader (qemu) may miss some, never reorder.
        if i > 0 {
            assert!(
                f.seq > imu[i - 1].seq,
                "seq {} after {}",
                f.seq,
                imu[i - 1].seq
            );
        }
        let g = f
            .acc
            .iter()
            .map(|x| f64::from(*x).powi(2))
            .sum::<f64>()
            .sqrt();
        assert!((7.5..12.2).contains(&g), "|acc| = {g}");
    }
    // These may be empty on this machine; they must still publish.
    let _: Vec<Thermal> = frames(SensorKind::Thermal, &cfg.0, &fast, 3);
    let _: Vec<Power> = frames(SensorKind::Power, &cfg.0, &fast, 3);
    let _: Vec<Accel> = frames(SensorKind::Iio, &cfg.0, &fast, 3);
}

#[test]
fn sysfs_sensors_publish_what_the_files_say() {
    watchdog(
        "sysfs_sensors_publish_what_the_files_say",
        Duration::from_secs(120),
    );
    let (cfg, _guards) = unique_config("sysfs");
    let tmp_root = shmbus_testkit::TempDir::new("sensors-root");
    let root = tmp_root.path().to_path_buf();
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("sys/class/thermal/thermal_zone0/type", "imx_thermal_zone\n");
    write("sys/class/thermal/thermal_zone0/temp", "48250\n");
    write("sys/class/power_supply/BAT0/type", "Battery\n");
    write("sys/class/power_supply/BAT0/capacity", "64\n");
    let dev = "sys/bus/iio/devices/iio:device0";
    write(&format!("{dev}/name"), "mma8451\n");
    for (axis, raw) in [("x", "0"), ("y", "0"), ("z", "4096")] {
        write(&format!("{dev}/in_accel_{axis}_raw"), raw);
    }
    write(&format!("{dev}/in_accel_scale"), "0.002394\n");
    let r = root.to_str().unwrap();
    let args = ["--rate", "50", "--root", r];
    let th: Vec<Thermal> = frames(SensorKind::Thermal, &cfg.0, &args, 2);
    assert_eq!(th[1].temps.len(), 1);
    assert_eq!(
        (th[1].temps[0].name.as_str(), th[1].temps[0].milli_c),
        ("zone:imx_thermal_zone", 48250)
    );
    let pw: Vec<Power> = frames(SensorKind::Power, &cfg.0, &args, 2);
    assert_eq!(pw[1].supplies[0].capacity_pct, Some(64));
    let acc: Vec<Accel> = frames(SensorKind::Iio, &cfg.0, &args, 2);
    assert_eq!(acc[1].device.as_str(), "mma8451");
    assert!(
        (acc[1].acc.unwrap()[2] - 9.805).abs() < 0.01,
        "{:?}",
        acc[1]
    );
}

#[test]
fn a_bad_config_or_topic_is_reported_not_a_crash() {
    let (cfg, _guards) = unique_config("bad-topic");
    let out = sensor_cmd(
        SensorKind::Imu,
        &[
            "--config".into(),
            cfg.0.display().to_string(),
            "--topic".into(),
            "gnss".into(),
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no topic `gnss`; the topics are: system, thermal"),
        "{err}"
    );
    let bad_file = TempFile::new("bad.toml");
    let bad = bad_file.0.clone();
    std::fs::write(&bad, "[[topic]]\nname = \"imu\"\nslots = 3\n").unwrap();
    let out = sensor_cmd(
        SensorKind::Imu,
        &["--config".into(), bad.display().to_string()],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:3:9: slots = 3", bad.display())),
        "{err}"
    );
}

/// Keys (as `/proc/sysvipc` lists them) of segments and semaphores still there.
fn ipc_keys() -> Vec<i32> {
    let mut keys: Vec<i32> = shmbus_core::sysvipc::segments()
        .unwrap()
        .iter()
        .map(|e| e.key())
        .collect();
    keys.extend(
        shmbus_core::sysvipc::semaphores()
            .unwrap()
            .iter()
            .map(|e| e.key()),
    );
    keys
}

fn demo_keys(pid: u32) -> Vec<i32> {
    let mut c = Config::builtin_demo();
    c.rebus(&format!("demo-{pid}")).unwrap();
    c.topics.iter().map(|t| t.key).collect()
}

/// The demo's topics (names and keys) for the demo run by process `pid`.
fn demo_topics(pid: u32) -> Vec<shmbus_core::Topic> {
    let mut c = Config::builtin_demo();
    c.rebus(&format!("demo-{pid}")).unwrap();
    c.topics.iter().map(|t| t.to_topic().unwrap()).collect()
}

/// Guards for the demo's keys, in case the demo's own cleanup fails.
fn demo_guards(pid: u32) -> Vec<Guard> {
    demo_keys(pid).into_iter().map(Guard).collect()
}

fn check_report(report: &demo::Report) {
    let text = report.summary();
    assert!(report.ok(), "{text}");
    assert_eq!(report.topics.len(), 6, "{text}");
    for t in &report.topics {
        assert!(t.sensor.is_some() && t.frames > 0, "{text}");
        assert!(!t.latest.is_empty(), "{text}");
    }
    assert!(report.leftover_keys.is_empty(), "{text}");
    assert!(
        text.contains("result: every topic received frames"),
        "{text}"
    );
}

#[test]
fn demo_runs_every_sensor_and_leaves_nothing_behind() {
    watchdog(
        "demo_runs_every_sensor_and_leaves_nothing_behind",
        Duration::from_secs(120),
    );
    let _guards = demo_guards(std::process::id());
    let report = run_demo(None, Duration::from_secs(3));
    check_report(&report);
    assert!(report.bus.starts_with("demo-"));
    let left = ipc_keys();
    for k in demo_keys(std::process::id()) {
        assert!(!left.contains(&k), "key 0x{:08x} left in ipcs", k as u32);
    }
}

/// The demo as a child process (stdout and stderr piped), the guards of
/// its keys, once its topics are up: the child, its pid, the guards.
fn demo_child_up() -> (KillOnDrop, u32, Vec<Guard>) {
    let child = shmbus_testkit::child("demo", &[])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let guards = demo_guards(pid);
    let child = KillOnDrop(child);
    wait_demo_up(pid);
    (child, pid, guards)
}

#[test]
fn demo_stops_on_sigint_and_cleans_up() {
    watchdog(
        "demo_stops_on_sigint_and_cleans_up",
        Duration::from_secs(120),
    );
    let (mut child, pid, _guards) = demo_child_up();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = child.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("result: every topic received frames"), "{out}");
    let left = ipc_keys();
    for k in demo_keys(pid) {
        assert!(
            !left.contains(&k),
            "key 0x{:08x} left in ipcs after SIGINT",
            k as u32
        );
    }
}

/// `systemctl stop` of a unit that runs the demo (`KillMode=control-group`,
/// systemd's default), `pkill shmbus` or `kill 0`: SIGTERM reaches the demo
/// and every sensor at once, and the sensors die of it before the demo
/// stops them. That is a clean stop: exit 0, each sensor "stopped with the
/// demo". The demo said "FAILED: the sensor of imu ended during the run"
/// of every sensor, exit 1 (a failed unit).
#[test]
fn sigterm_to_the_demo_and_its_sensors_at_once_is_a_clean_stop() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    watchdog(
        "sigterm_to_the_demo_and_its_sensors_at_once_is_a_clean_stop",
        Duration::from_secs(120),
    );
    let (mut child, pid, _guards) = demo_child_up();
    let sensors: Vec<i32> = demo_topics(pid)
        .iter()
        .map(|t| match shmbus_core::lock::publisher_status(t.key) {
            shmbus_core::PublisherStatus::Alive { pid } => pid,
            other => panic!("{}: {other:?}", t.name),
        })
        .collect();
    // As systemd does: the main process first, then the rest of the group.
    kill(Pid::from_raw(pid as i32), Signal::SIGTERM).unwrap();
    for s in sensors {
        let _ = kill(Pid::from_raw(s), Signal::SIGTERM);
    }
    let status = child.0.wait().unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(child.0.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("result: every topic received frames"), "{out}");
    assert!(!out.contains("ended during the run"), "{out}");
    let left = ipc_keys();
    for k in demo_keys(pid) {
        assert!(!left.contains(&k), "key 0x{:08x} left in ipcs", k as u32);
    }
}

/// Wait until every topic of the demo run by process `pid` has a frame and
/// the demo's watcher of each has read it (it went back to sleep on the
/// topic since). A fixed 1.5 s after the topics appeared was no promise
/// that a sensor had published, or a watcher run, on a loaded machine; the
/// report then said "no frames on ...".
fn wait_demo_up(pid: u32) {
    let keys = demo_keys(pid);
    let start = std::time::Instant::now();
    while !keys
        .iter()
        .all(|k| shmbus_core::sys::shmget(*k, 0, 0).is_ok())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the demo's topics never all appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for t in demo_topics(pid) {
        let start = std::time::Instant::now();
        while !shmbus_core::Segment::attach(&t).is_ok_and(|s| s.generation() > 0) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no frame on {} within 60 s",
                t.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        shmbus_testkit::wait_subscriber_caught_up(&t).unwrap();
    }
}

/// A demo killed with its sensors (`kill -9` of them all) leaves its
/// topics, and a later demo with the same pid (a container's pid
/// namespace, pids that wrapped) has the same keys: its sensors reopened
/// the old segments, and its cleanup left them, every run, as "not
/// created by this demo (a squatter?)". The later demo removes them before
/// its sensors start, says so, and leaves nothing.
#[test]
fn a_demo_with_the_pid_of_a_killed_one_removes_its_stale_topics() {
    watchdog("demo_stale_same_pid", Duration::from_secs(180));
    let (bus, file) = imu_and_power_demo("st", "demo-stale");
    let mut config = Config::load(&file.0).unwrap();
    config
        .rebus(&format!("{bus}-{}", std::process::id()))
        .unwrap();
    let _guards: Vec<Guard> = config.topics.iter().map(|t| Guard(t.key)).collect();
    // What the killed demo's sensors left: segments with frames, their
    // publishers gone.
    {
        let mut imu =
            shmbus_pub::Publisher::<Imu>::open(&config.topics[0].to_topic().unwrap()).unwrap();
        for seq in 0..20 {
            imu.publish(&shmbus_sensors::imu::simulate(0.0, seq, 1))
                .unwrap();
        }
        let mut power =
            shmbus_pub::Publisher::<Power>::open(&config.topics[1].to_topic().unwrap()).unwrap();
        power
            .publish(&Power {
                t_ns: 1,
                supplies: heapless::Vec::new(),
            })
            .unwrap();
    }
    let report = run_demo(Some(file.0.clone()), Duration::from_millis(1500));
    let text = report.summary();
    assert!(report.not_ours.is_empty(), "{text}");
    assert!(report.ok(), "{text}");
    assert_eq!(
        report
            .notes
            .iter()
            .filter(|n| n.contains("an earlier demo with this pid left it"))
            .count(),
        2,
        "{text}"
    );
    let left = ipc_keys();
    for t in &config.topics {
        assert!(!left.contains(&t.key), "{} left: {text}", t.name);
    }
}

/// A topic whose `publisher` is no sensor of the demo's (a misspelt
/// program name) is not started: a note names the demo's sensors, and the
/// result says which topics were not started. With every topic so, nothing
/// ran and the run fails; it said "result: every topic received frames"
/// and exited 0 with no frame at all.
#[test]
fn a_topic_with_no_sensor_of_the_demos_is_named_and_nothing_started_fails() {
    watchdog("demo-unknown-publisher", Duration::from_secs(180));
    let bus = format!(
        "unk{:06x}",
        unique_key("demo-unknown-publisher") & 0xff_ffff
    );
    let half = TempFile::new("demo-unknown-half.toml");
    std::fs::write(
        &half.0,
        format!(
            "bus = \"{bus}\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imuu\"\n\
             [[topic]]\nname = \"power\"\npublisher = \"shmbus-sensor-power\"\n"
        ),
    )
    .unwrap();
    let report = run_demo(Some(half.0.clone()), Duration::from_millis(1500));
    let text = report.summary();
    assert!(report.ok(), "{text}");
    let note = text
        .lines()
        .find(|l| l.contains("note: topic `imu`"))
        .unwrap_or_else(|| panic!("no note on imu: {text}"));
    assert!(
        note.contains("publisher \"shmbus-sensor-imuu\" is not one of the demo's sensors (")
            && shmbus_sensors::SensorKind::ALL
                .iter()
                .all(|k| note.contains(k.program()))
            && note.ends_with("): not started"),
        "{note}"
    );
    assert!(
        text.contains(
            "result: every topic with a sensor of the demo received frames; not started (no sensor of the demo's): imu\n"
        ),
        "{text}"
    );

    let none = TempFile::new("demo-unknown-none.toml");
    std::fs::write(
        &none.0,
        format!(
            "bus = \"{bus}n\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imuu\"\n"
        ),
    )
    .unwrap();
    let report = run_demo(Some(none.0.clone()), Duration::from_millis(500));
    let text = report.summary();
    assert!(!report.ok(), "{text}");
    assert!(
        text.contains(
            "result: FAILED: no topic has a sensor of the demo's, so nothing ran (not started: imu)"
        ),
        "{text}"
    );
}

/// A pid that no process has now: that of a child that has exited.
fn dead_pid() -> u32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

/// A fake demo (role `killed-demo`) running the imu and power sensors of
/// `config` on `<bus>-<its pid>`, once both topics have a frame: the
/// process, its pid and its sensors' pids.
fn fake_demo(config: &Path, bus: &str) -> (KillOnDrop, u32, Vec<u32>) {
    let mut child = shmbus_testkit::child(
        "killed-demo",
        &[config.display().to_string(), bus.to_string()],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // After the test harness's "test child_role_entry ... ".
    let ready = loop {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the fake demo exited"
        );
        if let Some((_, pids)) = line.split_once("ready ") {
            break pids.to_string();
        }
    };
    let sensors = ready
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    let pid = child.id();
    (KillOnDrop(child), pid, sensors)
}

fn sigkill(pid: u32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// A demo killed together with its sensors (SIGKILL to the whole group)
/// leaves its topics, and the next demo runs under another pid: they
/// stayed, locked in RAM, until `shmbus rm`. A starting demo now removes
/// the topics of earlier demos of its bus whose pid is dead, and says so;
/// it leaves those of a live pid (it may be that demo), another program's
/// memory at such a key, and a topic someone has attached.
#[test]
fn a_demo_removes_the_topics_of_earlier_demos_that_died_with_their_sensors() {
    watchdog("demo_dead_demos", Duration::from_secs(240));
    let (bus, file) = imu_and_power_demo("dd", "demo-dead-demos");
    let key = |pid: u32, name: &str| shmbus_core::topic::derive_key(&format!("{bus}-{pid}"), name);
    let mut guards = Vec::new();
    let mut guard_demo = |pid: u32| {
        for name in ["imu", "power"] {
            guards.push(Guard(key(pid, name)));
        }
    };
    guard_demo(std::process::id());
    // Killed with its sensors: its pid is dead.
    let (mut killed, killed_pid, killed_sensors) = fake_demo(&file.0, &bus);
    guard_demo(killed_pid);
    // Its sensors killed, the demo alive: it may still be watching.
    let (alive, alive_pid, alive_sensors) = fake_demo(&file.0, &bus);
    guard_demo(alive_pid);
    // Killed with its sensors, one of its topics attached by a reader.
    let (mut read, read_pid, read_sensors) = fake_demo(&file.0, &bus);
    guard_demo(read_pid);
    let watched =
        shmbus_core::Segment::attach(&shmbus_core::Topic::new("power").key(key(read_pid, "power")))
            .unwrap();
    for s in &alive_sensors {
        sigkill(*s);
    }
    for c in [&mut killed, &mut read] {
        sigkill(c.0.id());
        c.0.wait().unwrap();
    }
    // The sensors die with their demo (their parent-death signal).
    let start = std::time::Instant::now();
    for p in killed_sensors
        .iter()
        .chain(&alive_sensors)
        .chain(&read_sensors)
    {
        while !shmbus_testkit::process_gone(*p) {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "sensor {p} lives on"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Another program's memory at a dead demo pid's key.
    let foreign_pid = dead_pid();
    let foreign = key(foreign_pid, "imu");
    guards.push(Guard(foreign));
    let foreign_id = shmbus_core::sys::shmget(foreign, 4096, libc_create()).unwrap();

    let report = run_demo(Some(file.0.clone()), Duration::from_millis(1000));
    let text = report.summary();
    let removed: Vec<&String> = report
        .notes
        .iter()
        .filter(|n| n.contains("that an earlier demo left"))
        .collect();
    assert_eq!(removed.len(), 2, "{text}");
    for name in ["imu", "power"] {
        let k = key(killed_pid, name);
        assert!(
            removed
                .iter()
                .any(|n| n.contains(&format!("`{name}` (key 0x{:08x}", k as u32))
                    && n.contains(&format!("demo pid {killed_pid}"))),
            "{name}: {text}"
        );
        assert!(
            shmbus_core::sys::shmget(k, 0, 0).is_err(),
            "{name} left: {text}"
        );
        assert!(
            shmbus_core::sysvipc::semaphore_by_key(k).is_none(),
            "{name}'s lock left: {text}"
        );
        assert!(
            shmbus_core::sys::shmget(key(alive_pid, name), 0, 0).is_ok(),
            "the topic {name} of a live demo was removed: {text}"
        );
        // One of its two topics is attached: the other alone is not taken
        // for a dead demo's either.
        assert!(
            shmbus_core::sys::shmget(key(read_pid, name), 0, 0).is_ok(),
            "the topic {name} of a demo with an attached topic was removed: {text}"
        );
    }
    assert_eq!(
        shmbus_core::sys::shmget(foreign, 0, 0).ok(),
        Some(foreign_id),
        "another program's memory was removed: {text}"
    );
    assert!(report.ok(), "{text}");
    drop(watched);
    drop(alive);
    drop(guards);
}

/// Another program's memory at one of the demo's own keys, made by the
/// same user (an `ftok` key made with 'S' falls among the keys derived
/// from names), is not a stale topic of an earlier demo: it stays, byte
/// for byte, and the demo says its topic could not be created. The stale
/// check removed any segment of this user's at the key whose lock was not
/// held.
#[test]
fn another_programs_memory_at_a_demo_key_is_not_taken_for_a_stale_topic() {
    watchdog("demo_stale_foreign", Duration::from_secs(180));
    let bus = format!("sf{:06x}", unique_key("demo-stale-foreign") & 0xff_ffff);
    let text = format!(
        "bus = \"{bus}\"\n[[topic]]\nname = \"power\"\npublisher = \"shmbus-sensor-power\"\n"
    );
    let file = TempFile::new("stale-foreign.toml");
    std::fs::write(&file.0, &text).unwrap();
    let mut config = Config::load(&file.0).unwrap();
    config
        .rebus(&format!("{bus}-{}", std::process::id()))
        .unwrap();
    let key = config.topics[0].key;
    let _guard = Guard(key);
    let shmid = shmbus_core::sys::shmget(key, 4096, libc_create()).unwrap();
    let report = run_demo(Some(file.0.clone()), Duration::from_millis(1000));
    let text = report.summary();
    assert_eq!(
        shmbus_core::sys::shmget(key, 0, 0).ok(),
        Some(shmid),
        "the program's memory was removed:\n{text}"
    );
    assert!(
        !text.contains("an earlier demo with this pid left it"),
        "{text}"
    );
    assert!(!report.ok(), "no topic can be created there:\n{text}");
}

/// `IPC_CREAT | IPC_EXCL | 0644`.
fn libc_create() -> i32 {
    0o1000 | 0o2000 | 0o644
}

/// As root, the demo's cleanup removes only what its own run created: a
/// squatter's segment and lock at the demo's keys (another uid's) are left
/// alone as evidence and reported as not the demo's, never as left behind
/// by it; the demo's own objects are gone.
#[test]
fn demo_cleanup_removes_only_what_this_run_created() {
    /// The squatter: `nobody`, a uid with a name on every Debian system.
    const SQUATTER: u32 = 65534;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        let skip = std::env::var("SHMBUS_SKIP_ROOT_TESTS").as_deref() == Ok("1");
        assert!(
            skip && std::env::var_os("CI").is_none(),
            "needs root: the squatter runs as another uid (SHMBUS_SKIP_ROOT_TESTS=1 skips it knowingly)"
        );
        eprintln!("SKIPPED demo_cleanup_removes_only_what_this_run_created: needs root");
        return;
    }
    watchdog("demo_cleanup_only_ours", Duration::from_secs(180));
    let bus = format!("sq{:06x}", unique_key("demo-squat") & 0xff_ffff);
    let text = format!(
        "bus = \"{bus}\"\n[[topic]]\nname = \"imu\"\npublisher = \"shmbus-sensor-imu\"\n\
         [[topic]]\nname = \"power\"\npublisher = \"shmbus-sensor-power\"\n\
         [[topic]]\nname = \"net\"\npublisher = \"shmbus-sensor-net\"\n"
    );
    let file = TempFile::new("squat.toml");
    let path = file.0.clone();
    std::fs::write(&path, text).unwrap();
    let demo_bus = format!("{bus}-{}", std::process::id());
    let key = |name: &str| shmbus_core::topic::derive_key(&demo_bus, name);
    let (k_imu, k_seg, k_lock) = (key("imu"), key("power"), key("net"));
    let _guards = [Guard(k_imu), Guard(k_seg), Guard(k_lock)];
    let mut squatter = KillOnDrop(
        shmbus_testkit::child("squat", &[k_seg.to_string(), k_lock.to_string()])
            .uid(SQUATTER)
            .gid(SQUATTER)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    let mut out = std::io::BufReader::new(squatter.0.stdout.take().unwrap());
    while !line.contains("ready") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "the squatter exited"
        );
    }
    let report = run_demo(Some(path), Duration::from_secs(2));
    let text = report.summary();
    assert_eq!(report.bus, demo_bus);
    assert!(
        report.leftover_keys.is_empty(),
        "nothing of the demo's left: {text}"
    );
    assert!(!text.contains("left behind"), "{text}");
    assert_eq!(report.not_ours.len(), 2, "{text}");
    assert!(
        text.contains(&format!("segment at key 0x{:08x}", k_seg as u32)),
        "{text}"
    );
    assert!(
        text.contains(&format!("publisher lock at key 0x{:08x}", k_lock as u32)),
        "{text}"
    );
    // Named as every message names a user: `nobody (uid 65534)` (or
    // `uid 65534` where no user has it), not a bare uid.
    let who = shmbus_toolbox::units::user(SQUATTER);
    assert_eq!(report.not_ours.len(), 2, "{text}");
    for line in &report.not_ours {
        assert!(line.contains(&format!("created by {who}")), "{text}");
    }
    // The evidence is still there; the demo's own topic is gone.
    assert!(
        shmbus_core::sys::shmget(k_seg, 0, 0).is_ok(),
        "the squatter's segment was removed"
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(k_lock).is_some(),
        "the squatter's lock was removed"
    );
    assert!(shmbus_core::sys::shmget(k_imu, 0, 0).is_err(), "{text}");
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(k_imu).is_none(),
        "{text}"
    );
    drop(squatter);
}

/// A topic that was there before the demo, at a key its config gives
/// (the demo's sensor reopens it and publishes into it), is not the
/// demo's: the cleanup leaves its segment and its publisher lock, and says
/// so. The lock was removed because a demo sensor was the last to use it,
/// while the summary said the segment was left alone.
#[test]
fn demo_cleanup_leaves_a_topic_it_only_reopened_with_its_lock() {
    watchdog("demo_cleanup_reopened", Duration::from_secs(180));
    let (cfg, _guards) = unique_config("reopened");
    let topic = Config::load(&cfg.0)
        .unwrap()
        .topic("system")
        .unwrap()
        .to_topic()
        .unwrap();
    {
        let mut p = shmbus_pub::Publisher::<System>::open(&topic).unwrap();
        p.publish(&System {
            t_ns: 1,
            cpu_pct: Some(1.0),
            cpus: 1,
            load: None,
            tasks: None,
            mem: None,
        })
        .unwrap();
    }
    let report = run_demo(Some(cfg.0.clone()), Duration::from_secs(2));
    let text = report.summary();
    assert!(report.leftover_keys.is_empty(), "{text}");
    assert!(
        text.contains(&format!("segment at key 0x{:08x}", topic.key as u32)),
        "{text}"
    );
    assert!(
        shmbus_core::sys::shmget(topic.key, 0, 0).is_ok(),
        "the topic's segment stays: {text}"
    );
    assert!(
        shmbus_core::sysvipc::semaphore_by_key(topic.key).is_some(),
        "and its publisher lock: {text}"
    );
}

/// A sensor that ends during the demo (here: `--count 20`, as a crash or a
/// `kill -9` would) fails the run, and its rate drops to 0: the demo said
/// "every topic received frames", exit 0, and kept showing 1000 Hz for a
/// dead publisher.
#[test]
fn a_sensor_that_ends_during_the_demo_fails_the_run() {
    watchdog(
        "a_sensor_that_ends_during_the_demo_fails_the_run",
        Duration::from_secs(180),
    );
    let (cfg, _guards) = unique_config("ends-early");
    let opts = Options {
        duration: Some(Duration::from_secs(3)),
        config: Some(cfg.0.clone()),
        live: false,
    };
    let launch = |kind: SensorKind, args: &[OsString]| {
        let mut args = args.to_vec();
        if kind == SensorKind::Imu {
            args.extend(["--count".into(), "20".into()]);
        }
        sensor_cmd(kind, &args)
    };
    let stop = AtomicBool::new(false);
    let report = demo::run(&opts, &launch, &stop, &mut std::io::sink()).unwrap();
    let text = report.summary();
    let imu = report.topics.iter().find(|t| t.topic == "imu").unwrap();
    assert!(imu.frames > 0, "{text}");
    assert!(imu.ended_early && imu.status.contains("exited"), "{text}");
    assert_eq!(imu.rate_hz, 0.0, "{text}");
    assert!(!report.ok(), "{text}");
    assert!(
        text.contains("result: FAILED: the sensor of imu ended during the run"),
        "{text}"
    );
    for t in report.topics.iter().filter(|t| t.topic != "imu") {
        assert!(t.frames > 0 && !t.ended_early, "{text}");
    }
    assert!(report.leftover_keys.is_empty(), "{text}");
}

/// Replays terminal output on an 80-column terminal (autowrap, DECAWM,
/// cursor up, erase below) and returns its rows.
fn screen_80(out: &str) -> (Vec<String>, bool) {
    const W: usize = 80;
    let mut rows: Vec<Vec<char>> = vec![Vec::new()];
    let (mut r, mut c, mut wrap) = (0usize, 0usize, true);
    let mut it = out.chars();
    while let Some(ch) = it.next() {
        match ch {
            '\x1b' => {
                assert_eq!(it.next(), Some('['), "{out:?}");
                let mut p = String::new();
                let fin = loop {
                    let x = it.next().expect("an escape sequence is cut");
                    if x.is_ascii_alphabetic() {
                        break x;
                    }
                    p.push(x);
                };
                match (p.as_str(), fin) {
                    ("?7", 'l') => wrap = false,
                    ("?7", 'h') => wrap = true,
                    (n, 'A') => r = r.saturating_sub(n.parse().unwrap_or(1)),
                    ("", 'J') => {
                        rows[r].truncate(c);
                        rows.truncate(r + 1);
                    }
                    other => panic!("unexpected escape {other:?}"),
                }
            }
            '\n' => {
                r += 1;
                c = 0;
            }
            ch => {
                if c == W {
                    if wrap {
                        r += 1;
                        c = 0;
                    } else {
                        c = W - 1;
                    }
                }
                while rows.len() <= r {
                    rows.push(Vec::new());
                }
                let row = &mut rows[r];
                while row.len() < c {
                    row.push(' ');
                }
                if c < row.len() {
                    row[c] = ch;
                } else {
                    row.push(ch);
                }
                c += 1;
            }
        }
        while rows.len() <= r {
            rows.push(Vec::new());
        }
    }
    (
        rows.into_iter().map(|v| v.into_iter().collect()).collect(),
        wrap,
    )
}

/// On an 80-column terminal the live table is redrawn in place: one
/// header, one copy of each row. Its lines are wider than 80 (120 when
/// `COLUMNS` is not exported, as shells do not; the header is not cut at
/// all), and wrapped lines took more rows than the cursor-up went back:
/// every redraw left another copy of the table's top on the screen.
#[test]
fn the_live_table_redraws_in_place_on_a_narrow_terminal() {
    watchdog(
        "the_live_table_redraws_in_place_on_a_narrow_terminal",
        Duration::from_secs(180),
    );
    let (cfg, _guards) = unique_config("live-80");
    let opts = Options {
        duration: Some(Duration::from_millis(1500)),
        config: Some(cfg.0.clone()),
        live: true,
    };
    let stop = AtomicBool::new(false);
    let mut out = Vec::new();
    let report = demo::run(&opts, &sensor_cmd, &stop, &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.matches("shmbus demo ·").count() >= 3,
        "few redraws: {out}"
    );
    let (rows, wrap) = screen_80(&out);
    let screen = rows.join("\n");
    assert!(wrap, "autowrap is left off: {out:?}");
    // Between two drawings too: a demo stopped there (Ctrl-Z) left the
    // shell with autowrap off, every long line cut at the right edge.
    for (at, _) in out.match_indices("\x1b[?7l").skip(1) {
        assert!(screen_80(&out[..at]).1, "autowrap off between drawings");
    }
    assert_eq!(
        rows.iter()
            .filter(|l| l.starts_with("shmbus demo ·"))
            .count(),
        1,
        "{screen}"
    );
    assert_eq!(
        rows.iter().filter(|l| l.starts_with("TOPIC")).count(),
        1,
        "{screen}"
    );
    for t in &report.topics {
        assert_eq!(
            rows.iter()
                .filter(|l| l.starts_with(&format!("{:<10} 0x", t.topic)))
                .count(),
            1,
            "{screen}"
        );
    }
}

/// A sensor whose stderr nobody reads any more (the demo's pipe after a
/// `kill -9` of the demo) goes on, and ends as asked: its first warning
/// ("no temperature found") panicked in `eprintln!` (exit 101) before it
/// could remove its topic, which then stayed locked in RAM.
#[test]
fn a_sensor_with_a_closed_stderr_keeps_publishing() {
    watchdog(
        "a_sensor_with_a_closed_stderr_keeps_publishing",
        Duration::from_secs(120),
    );
    let (cfg, _guards) = unique_config("closed-stderr");
    let tmp_root = shmbus_testkit::TempDir::new("sensors-closed-stderr");
    let root = tmp_root.path().to_path_buf();
    let (r, w) = nix::unistd::pipe().unwrap();
    drop(r);
    let args: Vec<String> = [
        "--config",
        cfg.0.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
        "--rate",
        "50",
        "--count",
        "3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let status = sensor_cmd(SensorKind::Thermal, &args)
        .stdin(Stdio::null())
        .stderr(Stdio::from(w))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}");
    let topic = config_topic(&cfg.0, "thermal");
    let mut sub = Subscriber::<Thermal>::attach(&topic).unwrap();
    sub.raw().seek_oldest();
    let mut n = 0;
    while let Ok(Next::Frame(_)) = sub.next() {
        n += 1;
    }
    assert_eq!(n, 3, "frames published");
}

/// A sensor behind its schedule publishes back to back, and each frame
/// still gets a clock read of its own. The publish loop reads the clock
/// once per frame (on the board every read is a system call) and carries
/// the last frame's stamp into the next pass, where it may only decide to
/// sleep: a frame due at once must not be stamped with it. At 10^6 Hz every
/// frame is due before the last one is out.
#[test]
fn frames_published_back_to_back_each_have_their_own_stamp() {
    watchdog(
        "frames_published_back_to_back_each_have_their_own_stamp",
        Duration::from_secs(120),
    );
    let key = unique_key("sensors-back-to-back-stamps");
    let _guard = Guard(key);
    let (path, _file) = imu_config("back-to-back-stamps", key, "slots = 64\n");
    let args = [
        "--config",
        path.to_str().unwrap(),
        "--rate",
        "1000000",
        "--count",
        "64",
    ];
    let stamps: Vec<u64> = imu_run_to_end(&path, &args)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(stamps.len(), 64, "frames published");
    for w in stamps.windows(2) {
        assert!(
            w[1] > w[0],
            "two frames share a stamp or go back in time: {} then {} (all: {stamps:?})",
            w[0],
            w[1]
        );
    }
}

/// A sensor started with `--parent` removes its topic soon after the
/// parent is gone, however slow its topic: between two frames it slept a
/// whole period without looking (100 s at 0.01 Hz), so a `kill -9` of the
/// demo left that topic, locked in RAM, for as long.
#[test]
fn a_slow_sensor_notices_its_parent_is_gone() {
    watchdog(
        "a_slow_sensor_notices_its_parent_is_gone",
        Duration::from_secs(180),
    );
    let (cfg, _guards) = unique_config("orphan");
    let topic = config_topic(&cfg.0, "thermal");
    let out = shmbus_testkit::child("orphan", &[cfg.0.display().to_string()])
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ready"),
        "{out:?}"
    );
    // The parent is gone: the topic goes within about 100 ms (30 s here,
    // for a loaded machine or qemu), not at the next frame in 100 s.
    let start = std::time::Instant::now();
    while shmbus_core::sys::shmget(topic.key, 0, 0).is_ok() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the orphaned sensor kept its topic for 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `shmbus rm --force` (or `ipcrm`) of a topic under its live sensor: the
/// sensor went on publishing into the removed segment, which no subscriber
/// can find, and the topic never came back while it ran. It now opens the
/// topic again, and says so in one line.
///
/// Also on a slow topic (0.01 Hz): the sensor looked for the removal only
/// before its next frame, so the topic came back up to 100 s later; it
/// now looks every half a second between frames too, and publishes at
/// once into the topic it created again.
#[test]
fn a_topic_removed_under_its_sensor_comes_back() {
    watchdog(
        "a_topic_removed_under_its_sensor_comes_back",
        Duration::from_secs(300),
    );
    removed_under_its_sensor("50");
}

#[test]
fn a_slow_topic_removed_under_its_sensor_comes_back_before_its_next_frame() {
    watchdog(
        "a_slow_topic_removed_under_its_sensor_comes_back",
        Duration::from_secs(300),
    );
    removed_under_its_sensor("0.01");
}

fn removed_under_its_sensor(rate: &str) {
    let (cfg, _guards) = unique_config(&format!("removed-{rate}"));
    let topic = config_topic(&cfg.0, "imu");
    let args: Vec<String> = [
        "--config",
        cfg.0.to_str().unwrap(),
        "--rate",
        rate,
        "--duration",
        "120",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut child = KillOnDrop(
        sensor_cmd(SensorKind::Imu, &args)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // Its first frame (published at once, also on a slow topic).
    let mut sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(30)).unwrap();
    let start = std::time::Instant::now();
    while !matches!(sub.latest(), Ok(Some(_))) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no first frame within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let first = shmbus_core::sys::shmget(topic.key, 0, 0).unwrap();
    // What `shmbus rm --force imu` does: the segment and the lock go.
    shmbus_testkit::remove_key(topic.key);
    let start = std::time::Instant::now();
    // A new segment at the key: the sensor created the topic again.
    while !matches!(shmbus_core::sys::shmget(topic.key, 0, 0), Ok(id) if id != first) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the topic did not come back within 30 s of its removal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And a frame in it soon (at once: a slow topic's next frame may be
    // far away).
    let mut sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(30)).unwrap();
    while !matches!(sub.latest(), Ok(Some(_))) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no frame in the topic created again within 60 s of its removal"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut err = String::new();
    use std::io::Read;
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("topic `imu` was removed while publishing")
            && err.contains("creating it again"),
        "{err}"
    );
}

/// `shmbus rm --force` of a topic during the demo: its sensor creates the
/// topic again, and the demo goes on counting its frames. The demo's
/// watcher stopped at the removal, so a live topic showed 0 Hz and its
/// old frames for the rest of the run.
#[test]
fn the_demo_follows_a_topic_removed_and_created_again() {
    watchdog(
        "the_demo_follows_a_topic_removed_and_created_again",
        Duration::from_secs(180),
    );
    let key = unique_key("demo-removed-imu");
    let _guard = Guard(key);
    let (path, _file) = imu_config("demo-removed", key, "rate_hz = 50\n");
    let topic = config_topic(&path, "imu");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let demo = std::thread::spawn(move || {
        let opts = Options {
            duration: None,
            config: Some(path),
            live: false,
        };
        demo::run(&opts, &sensor_cmd, &stop2, &mut std::io::sink())
    });
    // Stops the demo if an assertion below fails.
    struct Stop(std::sync::Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let stopper = Stop(stop);
    let mut sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(60)).unwrap();
    assert!(matches!(
        sub.wait_next(Duration::from_secs(30)),
        Ok(Next::Frame(_))
    ));
    let first = shmbus_core::sys::shmget(key, 0, 0).unwrap();
    shmbus_testkit::remove_key(key);
    let start = std::time::Instant::now();
    while !matches!(shmbus_core::sys::shmget(key, 0, 0), Ok(id) if id != first) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the sensor did not create its topic again within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // 150 frames (3 s at 50 Hz) of the topic created again, then stop.
    let mut sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(30)).unwrap();
    sub.raw().seek_oldest();
    let mut n = 0;
    while n < 150 {
        match sub.wait_next(Duration::from_secs(30)) {
            Ok(Next::Frame(_)) => n += 1,
            Ok(_) => {}
            Err(e) => panic!("the topic created again: {e}"),
        }
    }
    drop(stopper);
    let report = demo.join().unwrap().unwrap();
    let text = report.summary();
    let imu = &report.topics[0];
    assert!(
        imu.frames > 150,
        "the demo counted {} frames: not those after the removal\n{text}",
        imu.frames
    );
    assert!(imu.rate_hz > 0.0, "{text}");
    assert!(report.ok(), "{text}");
    assert!(report.leftover_keys.is_empty(), "{text}");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("was removed while publishing")),
        "{text}"
    );
}

/// A config whose path is not UTF-8 (a Latin-1 file name): the sensor
/// programs collected `std::env::args()`, which panicked (exit 101 and a
/// backtrace), and the demo passed the path through `display()`, a lossy
/// copy that names another, missing file, so every sensor failed.
#[test]
fn a_config_path_that_is_not_utf8_reaches_the_sensors() {
    use std::os::unix::ffi::OsStringExt;
    watchdog(
        "a_config_path_that_is_not_utf8_reaches_the_sensors",
        Duration::from_secs(180),
    );
    let key = unique_key("latin1-imu");
    let _guard = Guard(key);
    let file = TempFile::new(OsString::from_vec(b"caf\xe9.toml".to_vec()));
    let path = file.0.clone();
    assert!(path.to_str().is_none());
    std::fs::write(
        &path,
        format!(
            "bus = \"test\"\n[[topic]]\nname = \"imu\"\nkey = 0x{:08x}\npublisher = \"shmbus-sensor-imu\"\nrate_hz = 50\n",
            key as u32
        ),
    )
    .unwrap();
    // The sensor program.
    let args = [
        OsString::from("--config"),
        path.clone().into_os_string(),
        "--count".into(),
        "3".into(),
    ];
    assert_eq!(imu_run_to_end(&path, &args).len(), 3, "frames published");
    shmbus_testkit::remove_key(key);
    // The demo, with the same config.
    let report = run_demo(Some(path.clone()), Duration::from_secs(1));
    let text = report.summary();
    assert!(report.ok(), "{text}");
    assert!(report.topics[0].frames > 0, "{text}");
}

/// `--parent PID` that is not the sensor's parent: the sensor created its
/// topic, removed it 100 ms later (it took its parent for gone) and exited
/// 0 without a word. It now refuses to start, in one line, exit 2.
#[test]
fn a_parent_that_is_not_the_parent_is_refused() {
    watchdog(
        "a_parent_that_is_not_the_parent_is_refused",
        Duration::from_secs(120),
    );
    let (cfg, _guards) = unique_config("wrong-parent");
    // This test's own parent: alive, and not the sensor's parent.
    let not_parent = std::os::unix::process::parent_id().to_string();
    let args = [
        "--config",
        cfg.0.to_str().unwrap(),
        "--parent",
        &not_parent,
        "--duration",
        "60",
    ];
    let out = sensor_cmd(SensorKind::Imu, &args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "--parent {not_parent} is not this process's parent"
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// What a sensor writes on stderr reaches the demo's notes whole, line by
/// line: a line that is not UTF-8 ended the demo's reading of that
/// sensor's messages (`BufRead::lines`), so every later one was lost, and
/// a line of any length was held in memory.
#[test]
fn every_line_a_sensor_writes_reaches_the_notes() {
    watchdog(
        "every_line_a_sensor_writes_reaches_the_notes",
        Duration::from_secs(120),
    );
    let key = unique_key("demo-notes-imu");
    let _guard = Guard(key);
    let (path, _file) = imu_config("demo-notes", key, "");
    // A "sensor" that writes a Latin-1 line, a 100 kB line, then one more.
    let launch = |_: SensorKind, _: &[OsString]| {
        let mut c = Command::new("sh");
        c.arg("-c").arg(
            "printf 'bad \\351 line\\n' >&2; \
             head -c 100000 /dev/zero | tr '\\0' x >&2; printf '\\n' >&2; \
             echo after >&2",
        );
        c
    };
    let opts = Options {
        duration: Some(Duration::from_secs(1)),
        config: Some(path),
        live: false,
    };
    let stop = AtomicBool::new(false);
    let report = demo::run(&opts, &launch, &stop, &mut std::io::sink()).unwrap();
    let text = report.summary();
    assert_eq!(report.notes.len(), 3, "{text}");
    assert_eq!(report.notes[0], "bad \u{fffd} line", "{text}");
    assert!(report.notes[1].starts_with("xxxx"), "{text}");
    assert!(report.notes[1].len() < 600, "{text}");
    assert_eq!(report.notes[2], "after", "{text}");
}

/// `shmbus-sensor-system --topic imu` (a typo, a copied unit file): the
/// system sensor created the IMU's topic with its own frame type, and
/// the IMU sensor, and every reader of `imu`, then refused the segment.
/// A topic whose `publisher` is another sensor is refused in one line.
#[test]
fn a_sensor_refuses_the_topic_of_another_sensor() {
    watchdog(
        "a_sensor_refuses_the_topic_of_another_sensor",
        Duration::from_secs(120),
    );
    let (cfg, _guards) = unique_config("other-topic");
    let imu_key = Config::load(&cfg.0).unwrap().topic("imu").unwrap().key;
    let args = [
        "--config",
        cfg.0.to_str().unwrap(),
        "--topic",
        "imu",
        "--count",
        "1",
    ];
    let out = sensor_cmd(SensorKind::System, &args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("topic `imu` is published by shmbus-sensor-imu"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        shmbus_core::sys::shmget(imu_key, 0, 0).is_err(),
        "a segment was created at the IMU's key"
    );
}

/// Every sensor program's command line in the docs exists with the
/// options it gives (`shmbus_testkit::docs`, as `shmbus`'s in `shmbus-cli`):
/// `shmbus-sensor NAME ...`, and each `shmbus-sensor-NAME ...` through a
/// real link, as a board runs it.
#[test]
fn every_sensor_command_the_docs_show_has_the_options_they_give() {
    let names: Vec<&str> = SensorKind::ALL.iter().map(|k| k.name()).collect();
    let links = Links::new("docs", &names);
    let paths: Vec<(&str, String)> = SensorKind::ALL
        .iter()
        .map(|k| (k.program(), links.path(k.name()).display().to_string()))
        .collect();
    let mut programs = vec![("shmbus-sensor", EXE, false)];
    programs.extend(paths.iter().map(|(n, p)| (*n, p.as_str(), false)));
    shmbus_testkit::docs::assert_programs(
        env!("CARGO_MANIFEST_DIR"),
        "shmbus-sensors",
        &programs,
        &[],
        1,
    );
    // cargo builds `shmbus-sensor` only: `target/release/shmbus-sensor-imu`
    // or `cargo run --bin shmbus-sensor-imu` in the docs is a file or a
    // target that does not exist.
    let root = shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for f in shmbus_testkit::docs::doc_files(&root) {
        for shown in shmbus_testkit::docs::shown_commands(&f) {
            let words: Vec<&str> = shown.text.split_whitespace().collect();
            for (i, w) in words.iter().enumerate() {
                let built = w.contains("target/") && w.contains("/shmbus-sensor-");
                let bin = *w == "--bin"
                    && words
                        .get(i + 1)
                        .is_some_and(|b| b.starts_with("shmbus-sensor-"));
                if built || bin {
                    problems.push(format!(
                        "{}:{}: `{}`: cargo builds `shmbus-sensor` (run `shmbus-sensor NAME`)",
                        shown.file,
                        shown.line,
                        shown.text.trim()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// What `exe args...` prints and its exit code.
fn run_out<A: AsRef<std::ffi::OsStr>>(exe: &Path, args: &[A]) -> (Option<i32>, String, String) {
    let o = demo::command(exe, args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A link named `shmbus-sensor-imu` (a symlink in any directory, as the
/// package and the board install them) runs the IMU with all its
/// arguments: it publishes, and its help, version and messages are the
/// IMU's. Under qemu-arm the runner runs the link's path, so the program
/// sees the link's name there too.
#[test]
fn a_link_named_after_a_sensor_runs_that_sensor() {
    watchdog(
        "a_link_named_after_a_sensor_runs_that_sensor",
        Duration::from_secs(120),
    );
    let links = Links::new("dispatch", &["imu", "thermal"]);
    let imu = links.path("imu");
    let (code, out, _) = run_out(&imu, &["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!("shmbus-sensor-imu {}\n", env!("CARGO_PKG_VERSION"))
    );
    // The help through the link is the help of `shmbus-sensor imu`.
    let (code, link_help, _) = run_out(&imu, &["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        link_help.starts_with("publish a simulated 6-axis IMU"),
        "{link_help}"
    );
    assert!(
        link_help.contains("Usage: shmbus-sensor-imu [OPTIONS]"),
        "{link_help}"
    );
    assert!(link_help.contains("default 1000 Hz"), "{link_help}");
    let (code, named_help, _) = run_out(Path::new(EXE), &["imu", "--help"]);
    assert_eq!(code, Some(0));
    assert_eq!(link_help, named_help);
    // Its messages name the sensor's program.
    let (code, _, err) = run_out(&imu, &["--demo-config", "--topic", "nope"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.starts_with("shmbus-sensor-imu: "), "{err}");
    // `imu` after the link's name is an argument, not a sensor's name.
    let (code, _, err) = run_out(&links.path("thermal"), &["imu"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("unexpected argument 'imu'"), "{err}");
    // And it publishes: frames of the IMU's type on the config's topic.
    let key = unique_key("multicall-link");
    let _guard = Guard(key);
    let (cfg, _file) = imu_config("link", key, "rate_hz = 200.0\n");
    let topic = config_topic(&cfg, "imu");
    let _child = KillOnDrop(
        demo::command(
            &imu,
            &["--config", cfg.to_str().unwrap(), "--duration", "60"],
        )
        .stdin(Stdio::null())
        .spawn()
        .unwrap(),
    );
    let mut sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(60)).unwrap();
    sub.raw().seek_oldest();
    let mut n = 0;
    while n < 3 {
        if let Next::Frame(_) = sub.wait_next(Duration::from_secs(60)).unwrap() {
            n += 1;
        }
    }
}

/// A sensor runs as `shmbus-sensor-imu` in `ps` and `top` (its
/// `/proc/PID/comm`, which the kernel cuts at 15 bytes) whether it was
/// started through its link or as `shmbus-sensor imu`.
#[test]
fn a_sensor_shows_as_its_program_in_ps() {
    watchdog(
        "a_sensor_shows_as_its_program_in_ps",
        Duration::from_secs(120),
    );
    let links = Links::new("comm", &["imu"]);
    let key = unique_key("multicall-comm");
    let _guard = Guard(key);
    let (cfg, _file) = imu_config("comm", key, "rate_hz = 50.0\n");
    let topic = config_topic(&cfg, "imu");
    let args = ["--config", cfg.to_str().unwrap(), "--duration", "60"];
    for how in ["link", "name"] {
        let mut cmd = match how {
            "link" => demo::command(&links.path("imu"), &args),
            _ => sensor_cmd(SensorKind::Imu, &args),
        };
        let child = KillOnDrop(cmd.stdin(Stdio::null()).spawn().unwrap());
        // Its topic up: the sensor is past its start and named itself.
        let _sub = Subscriber::<Imu>::wait_for_topic(&topic, Duration::from_secs(60)).unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{}/comm", child.0.id())).unwrap();
        assert_eq!(comm.trim_end(), "shmbus-sensor-i", "{how}");
        drop(child);
        shmbus_testkit::remove_key(key);
    }
}

/// A name that is no sensor, as the first argument or as the name of a
/// link, is one line that lists the six, exit 2 (never a panic); the
/// multi-call program's own `--help` lists the six, `--version` says it.
#[test]
fn an_unknown_sensor_name_lists_the_six() {
    let links = Links::new("unknown", &["foo"]);
    let six = "the sensors are system, thermal, power, net, iio, imu";
    for (exe, args) in [
        (links.path("foo"), vec!["--rate", "5"]),
        (PathBuf::from(EXE), vec!["foo", "--rate", "5"]),
        (PathBuf::from(EXE), vec![]),
    ] {
        let (code, out, err) = run_out(&exe, &args);
        assert_eq!(code, Some(2), "{exe:?} {args:?}: {err}");
        assert!(out.is_empty(), "{out}");
        assert!(err.contains(six), "{exe:?} {args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let (code, help, _) = run_out(Path::new(EXE), &["--help"]);
    assert_eq!(code, Some(0));
    assert!(
        help.contains("Usage: shmbus-sensor <SENSOR> [OPTIONS]"),
        "{help}"
    );
    for k in SensorKind::ALL {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(k.name())),
            "{}: {help}",
            k.name()
        );
    }
    let (code, out, _) = run_out(Path::new(EXE), &["--version"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        format!("shmbus-sensor {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// `systemctl stop` (SIGTERM), Ctrl-C (SIGINT) and SIGHUP end a sensor
/// between two frames, never in the middle of one. The sensor is held at
/// the first moment a slot is mid-write (odd sequence, read through a
/// read-only mapping) and sent the stop signal there: it must still die of
/// that signal (systemd's clean stop), and leave no slot odd
/// (`shmbus_testkit::assert_stop_signals_end_it_between_frames`). A sensor killed mid-write left the slot odd, and every in-order
/// reader got "publisher died mid-publish" for it until the next start
/// repaired it.
#[test]
fn a_stop_signal_never_ends_a_sensor_in_the_middle_of_a_frame() {
    watchdog(
        "a_stop_signal_never_ends_a_sensor_in_the_middle_of_a_frame",
        Duration::from_secs(600),
    );
    let (cfg, _guards) = unique_config("stop-mid-frame");
    let topic = config_topic(&cfg.0, "imu");
    let args: Vec<String> = [
        "--config",
        cfg.0.to_str().unwrap(),
        // As fast as it goes: most of its time is spent publishing.
        "--rate",
        "1000000",
        "--duration",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    shmbus_testkit::assert_stop_signals_end_it_between_frames("the sensor", topic.key, || {
        sensor_cmd(SensorKind::Imu, &args)
    });
}
