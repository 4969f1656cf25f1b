//! docs/TROUBLESHOOTING.md shows real output. Each block marked
//! `<!-- checked: NAME -->` there is produced again here, from the same
//! situation, and must match it line for line once the parts that differ
//! from board to board are normalized: the topic's name (the page says
//! `imu`), keys, pids, counts and times.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use shmbus_pub::Publisher;
use shmbus_testkit::{Check, Guard, KillOnDrop, Suspended, child, role, unique_topic, watchdog};

mod common;
use common::{Run, run_cmd, shmbus};

fn page() -> String {
    let root = shmbus_testkit::docs::root(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("docs/TROUBLESHOOTING.md")).expect("docs/TROUBLESHOOTING.md")
}

/// The output lines of the block marked `<!-- checked: NAME -->`: the
/// ```text block right after the marker, without its `$ ` command lines.
fn checked_block(page: &str, name: &str) -> Vec<String> {
    let marker = format!("<!-- checked: {name} -->");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/TROUBLESHOOTING.md has no block marked {marker}"));
    let mut lines = page[at + marker.len()..]
        .lines()
        .skip_while(|l| l.trim().is_empty());
    assert_eq!(
        lines.next(),
        Some("```text"),
        "{marker} must be followed by a ```text block"
    );
    let out: Vec<String> = lines
        .take_while(|l| *l != "```")
        .filter(|l| !l.starts_with("$ "))
        .map(str::to_string)
        .collect();
    assert!(!out.is_empty(), "the block marked {marker} shows no output");
    out
}

/// A line with what differs between runs replaced: the topic's name by
/// `imu`, hexadecimal numbers by `0xK`, other numbers by `N`, a unit of
/// time after a number by `T`, and runs of spaces (table alignment) by one.
fn normalize(line: &str, name: &str) -> String {
    let line = if name.is_empty() {
        line.to_string()
    } else {
        line.replace(name, "imu")
    };
    let mut out = String::new();
    let b: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '0'
            && b.get(i + 1) == Some(&'x')
            && b.get(i + 2).is_some_and(char::is_ascii_hexdigit)
        {
            i += 2;
            while i < b.len() && b[i].is_ascii_hexdigit() {
                i += 1;
            }
            out.push_str("0xK");
        } else if b[i].is_ascii_digit() {
            while i < b.len()
                && (b[i].is_ascii_digit()
                    || (b[i] == '.' && b.get(i + 1).is_some_and(char::is_ascii_digit)))
            {
                i += 1;
            }
            out.push('N');
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let mut norm = Vec::with_capacity(words.len());
    for (k, w) in words.iter().enumerate() {
        let unit = w.trim_end_matches([',', ';', ')']);
        if k > 0 && words[k - 1] == "N" && ["ns", "us", "µs", "ms", "s"].contains(&unit) {
            norm.push(format!("T{}", &w[unit.len()..]));
        } else {
            norm.push(w.to_string());
        }
    }
    norm.join(" ")
}

/// Assert that `got` (what the tool printed) is the block marked `name`.
fn assert_shown(name: &str, got: &str, topic: &str) {
    let page = page();
    let want: Vec<String> = checked_block(&page, name)
        .iter()
        .map(|l| normalize(l, ""))
        .collect();
    let got: Vec<String> = got
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| normalize(l, topic))
        .collect();
    assert_eq!(
        got, want,
        "docs/TROUBLESHOOTING.md's block `{name}` no longer shows what the tool prints (normalized; left: the tool, right: the page)"
    );
}

/// Child roles. `publish NAME KEY`: publish at 100 Hz until killed,
/// printing "ready" once the topic exists. `limit WHICH VALUE NAME KEY`:
/// in a new IPC namespace (root), set the sysctl `kernel.WHICH` to VALUE
/// and print why a publisher cannot open the topic.
#[test]
fn child_role_entry() {
    let Some((role, args)) = role() else { return };
    let topic = shmbus_core::Topic::new(&args[args.len() - 2])
        .key(args[args.len() - 1].parse().unwrap())
        .slots(64);
    match role.as_str() {
        "publish" => {
            let mut p = Publisher::<Check>::open(&topic).unwrap();
            p.publish(&Check::new(0)).unwrap();
            println!("ready");
            // "quiet" on standard input: publish no more, and say so.
            let quiet = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let q = quiet.clone();
            std::thread::spawn(move || {
                for l in std::io::stdin().lines().map_while(Result::ok) {
                    if l.trim() == "quiet" {
                        q.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
            for seq in 1.. {
                std::thread::sleep(Duration::from_millis(10));
                if quiet.load(std::sync::atomic::Ordering::SeqCst) {
                    println!("quiet");
                    // Until killed.
                    loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    }
                }
                p.publish(&Check::new(seq)).unwrap();
            }
        }
        "limit" => {
            // SAFETY: unshare takes a flag word and touches no memory.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWIPC) };
            assert_eq!(rc, 0, "unshare: {}", std::io::Error::last_os_error());
            std::fs::write(format!("/proc/sys/kernel/{}", args[0]), &args[1]).unwrap();
            match Publisher::<Check>::open(&topic) {
                Ok(_) => panic!("{} = {} did not keep a publisher out", args[0], args[1]),
                Err(e) => println!("\nLIMIT: {e}"),
            }
        }
        other => panic!("unknown role {other}"),
    }
}

/// A publisher child (role `publish`) and its standard input and output.
struct Pub {
    child: KillOnDrop,
    stdin: std::process::ChildStdin,
    out: BufReader<std::process::ChildStdout>,
}

impl Pub {
    /// Read its output until a line holds `word`.
    fn wait_for(&mut self, word: &str) {
        let mut line = String::new();
        while !line.contains(word) {
            line.clear();
            assert!(
                self.out.read_line(&mut line).unwrap() > 0,
                "publisher exited before it said {word}"
            );
        }
    }

    /// Kill it (SIGKILL, as a crash) once it has stopped publishing: a kill
    /// that lands in the middle of a publish leaves that slot mid-write,
    /// and the tools then say so first ("died in the middle of a
    /// publish"), which is not the situation the page shows.
    fn crash(&mut self) {
        use std::io::Write;
        self.stdin.write_all(b"quiet\n").unwrap();
        self.wait_for("quiet");
        self.child.0.kill().unwrap();
        self.child.0.wait().unwrap();
    }
}

/// A publisher child of a unique topic, once its topic exists.
fn publisher(test: &str) -> (Pub, String, Guard) {
    let (t, guard) = unique_topic(test);
    let (p, name) = publisher_at(&t.name, t.key);
    (p, name, guard)
}

/// A publisher of topic `name` at `key` (which the caller cleans up).
fn publisher_at(name: &str, key: i32) -> (Pub, String) {
    let mut c = KillOnDrop(
        child("publish", &[name.to_string(), key.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn publisher"),
    );
    let out = BufReader::new(c.0.stdout.take().unwrap());
    let stdin = c.0.stdin.take().unwrap();
    let mut p = Pub {
        child: c,
        stdin,
        out,
    };
    p.wait_for("ready");
    (p, name.to_string())
}

fn run(args: &[&str]) -> Run {
    run_cmd(shmbus(args))
}

#[test]
fn a_missing_topic_is_shown_as_the_page_shows_it() {
    watchdog("troubleshooting-missing", Duration::from_secs(120));
    let (t, _guard) = unique_topic("ts-missing");
    let r = run(&["echo", &t.name]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_shown("no-topic", &r.stderr, &t.name);
}

#[test]
fn a_second_publisher_is_refused_as_the_page_shows_it() {
    watchdog("troubleshooting-second", Duration::from_secs(120));
    let (_p, name, _guard) = publisher("ts-second");
    let json = serde_json::to_string(&Check::new(1)).unwrap();
    let r = run(&["pub", &name, &json]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_shown("second-publisher", &r.stderr, &name);
}

/// What the sensor says when its topic has a live publisher: its own
/// prefix, then the publisher's error, produced here by a second
/// `Publisher::open`.
#[test]
fn a_second_sensor_is_refused_as_the_page_shows_it() {
    watchdog("troubleshooting-second-sensor", Duration::from_secs(120));
    let (_p, name, guard) = publisher("ts-second-sensor");
    let topic = shmbus_core::Topic::new(&name).key(guard.key()).slots(64);
    let e = match Publisher::<Check>::open(&topic) {
        Ok(_) => panic!("a second publisher opened {name}"),
        Err(e) => e,
    };
    let line = format!("shmbus-sensor-imu: cannot open topic `{name}`: {e}");
    assert_shown("sensor-second", &line, &name);
}

/// `shmbus echo` following a topic whose publisher dies, then whose
/// segment is removed.
#[test]
fn echo_says_what_the_page_shows_when_the_publisher_dies_and_the_topic_goes() {
    watchdog("troubleshooting-echo", Duration::from_secs(180));
    let (mut p, name, guard) = publisher("ts-echo");
    let mut echo = KillOnDrop(
        shmbus(&["echo", &name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run shmbus echo"),
    );
    p.crash();
    let mut err = BufReader::new(echo.0.stderr.take().unwrap());
    let mut line = String::new();
    assert!(
        err.read_line(&mut line).unwrap() > 0,
        "echo ended without a word"
    );
    assert_shown("echo-dead", &line, &name);
    // Removed only now that echo has said the above (it would otherwise
    // see the removal first and say only that).
    shmbus_testkit::remove_key(guard.key());
    line.clear();
    assert!(
        err.read_line(&mut line).unwrap() > 0,
        "echo ended without a word on the removal"
    );
    assert_shown("echo-removed", &line, &name);
    // The topic created again at its key: echo attaches it and says so.
    let (_p2, _) = publisher_at(&name, guard.key());
    line.clear();
    assert!(
        err.read_line(&mut line).unwrap() > 0,
        "echo ended without a word on the new topic"
    );
    assert_shown("echo-recreated", &line, &name);
}

#[test]
fn a_crashed_publisher_is_shown_as_the_page_shows_it() {
    watchdog("troubleshooting-dead", Duration::from_secs(120));
    let (mut p, name, _guard) = publisher("ts-dead");
    p.crash();
    let r = run(&["hz", &name, "--count", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_shown("dead", &r.stdout, &name);
    // "`list` says `not running` in the PUBLISHER column", the words every
    // other tool uses (it said "stopped", which is what `ps` calls a
    // SIGSTOP'd process: the suspended case, further down the page).
    assert!(
        page().contains("`list` says `not running` in the PUBLISHER"),
        "the page's words changed: update this test"
    );
    let r = run(&["list"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no row for {name}:\n{}", r.stdout));
    assert!(row.contains(" not running "), "{row}");
}

/// The lock removed (`ipcrm -s`, logind's `RemoveIPC`) under a publisher
/// that goes on publishing (this one takes no new lock, as `shmbus pub
/// --rate` and `replay`): `hz` said `publisher NOT RUNNING` beside the
/// rate; it now says the publisher runs without its lock, as the page
/// shows. Once the publisher is gone, NOT RUNNING again.
#[test]
fn a_removed_lock_is_shown_as_the_page_shows_it() {
    watchdog("troubleshooting-no-lock", Duration::from_secs(240));
    let (mut p, name, guard) = publisher("ts-no-lock");
    assert!(shmbus_core::lock::remove_lock(guard.key()).unwrap());
    // A report whose interval held no two frames in a row (a publisher
    // starved on a loaded machine) is not the page's: reports are taken
    // until one has frames (60 s).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["hz", &name, "--count", "1"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let framed = r.stdout.contains("interval mean") && !r.stdout.contains("unreadable");
        if (framed && r.stdout.contains("WITHOUT ITS LOCK")) || Instant::now() > until {
            assert_shown("no-lock", &r.stdout, &name);
            break;
        }
    }
    p.crash();
    let r = run(&["hz", &name, "--count", "2", "--interval", "0.5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let last = r.stdout.lines().last().unwrap_or_default().to_string();
    assert!(last.ends_with("publisher NOT RUNNING"), "{}", r.stdout);
}

#[test]
fn a_stuck_publisher_is_shown_as_the_page_shows_it() {
    watchdog("troubleshooting-stale", Duration::from_secs(180));
    let (p, name, guard) = publisher("ts-stale");
    // Stopped before `hz` looks (a process goes on for a moment after
    // `kill`), and continued when the test ends, also if it fails.
    let _stopped = Suspended::stop(p.child.0.id()).unwrap();
    // A frame written just before the stop can still fall inside the
    // report's interval on a loaded machine: the page shows a report with
    // none, so reports are taken until one has none (60 s).
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["hz", &name, "--count", "1"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        if r.stdout.contains(" 0.0 Hz") || Instant::now() > until {
            assert_shown("stale", &r.stdout, &name);
            break;
        }
    }
    // `top` says it in its STATE column once the topic is STALE (no frame
    // for two intervals), in the words the page gives.
    let key = format!("0x{:08x}", guard.key() as u32);
    let page: String = page().split_whitespace().collect::<Vec<_>>().join(" ");
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = run(&["top", "--count", "1", "--interval", "0.5", "--key", &key]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let row = r
            .stdout
            .lines()
            .find(|l| l.contains(&name))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", r.stdout));
        if let Some(at) = row.find("STALE") {
            let state = row[at..].trim_end();
            assert!(
                state.starts_with("STALE: publisher suspended"),
                "top does not say the publisher is suspended: {row}"
            );
            assert!(
                page.contains(&format!("`{state}`")),
                "docs/TROUBLESHOOTING.md does not show top's `{state}`"
            );
            break;
        }
        assert!(
            Instant::now() < until,
            "top never said STALE of a stopped publisher in 60 s:\n{}",
            r.stdout
        );
    }
}

/// The three limit messages the page shows, after the sensor's own
/// `shmbus-sensor-imu: cannot open topic `imu`: ` prefix, each produced
/// by a publisher in a new IPC namespace with that limit set. Root only
/// (a new IPC namespace and its sysctls); the normalization is still
/// checked without root.
#[test]
fn the_system_limits_are_named_as_the_page_shows_them() {
    watchdog("troubleshooting-limits", Duration::from_secs(120));
    assert_eq!(
        normalize(
            "imu: 0.0 Hz  interval -  age 3.0 s (pid 20148), key 0x53d528b4",
            ""
        ),
        "imu: N Hz interval - age N T (pid N), key 0xK"
    );
    let page = page();
    let prefix = "shmbus-sensor-imu: cannot open topic `imu`: ";
    let shown: Vec<&str> = page
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|l| l.contains("kernel.shm"))
        .collect();
    assert_eq!(
        shown.len(),
        3,
        "the page shows one line per limit: {shown:?}"
    );
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "note: not root: the limit messages are not produced again here (CI runs as root)"
        );
        return;
    }
    for (which, value) in [("shmmni", "0"), ("shmall", "1"), ("shmmax", "4096")] {
        // The key is in the child's own IPC namespace: nothing to clean up
        // in this one, and no collision with another test.
        let (t, _guard) = unique_topic(&format!("ts-limit-{which}"));
        let out = child(
            "limit",
            &[
                which.into(),
                value.into(),
                t.name.clone(),
                t.key.to_string(),
            ],
        )
        .output()
        .expect("run the limit child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{which}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = stdout
            .lines()
            .find_map(|l| l.strip_prefix("LIMIT: "))
            .unwrap_or_else(|| {
                panic!("{which} = {value}: no message names kernel.{which}: {stdout}")
            });
        let want = shown
            .iter()
            .find(|l| l.contains(&format!("kernel.{which}")))
            .unwrap_or_else(|| panic!("the page shows no line for kernel.{which}"));
        assert_eq!(
            normalize(got, &t.name),
            normalize(want, ""),
            "docs/TROUBLESHOOTING.md's kernel.{which} line no longer shows what a publisher says"
        );
    }
}
