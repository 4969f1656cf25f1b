//! The Python reader of `docs/LAYOUT.md` section 11, run as written (the
//! block is extracted from the document) against a live topic of
//! `imu-publisher` at a key above `0x80000000`, and checked against what the
//! Rust subscriber reads. A spec whose example does not run is not a spec.

use std::process::{Command, Stdio};
use std::time::Duration;

use shmbus_examples::Imu;
use shmbus_sub::{RawSubscriber, Topic};
use shmbus_testkit::{Guard, unique_key, watchdog};

/// The ```python block of section 11.
fn sketch() -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/LAYOUT.md"))
        .expect("read docs/LAYOUT.md");
    let sec = doc
        .split("\n## 11.")
        .nth(1)
        .expect("LAYOUT.md has a section 11");
    let code = sec
        .split("```python\n")
        .nth(1)
        .and_then(|c| c.split("\n```").next())
        .expect("section 11 has a python block");
    code.to_string()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

#[test]
fn layout_python_sketch_reads_a_live_topic() {
    watchdog("layout python sketch", Duration::from_secs(120));
    // Top bit set: the key is negative as a key_t, which the sketch must handle.
    let key = unique_key("layout-py") as u32 | 0x8000_0000;
    let _guard = Guard(key as i32);
    let key_arg = format!("0x{key:08x}");
    let name = "examples/imu-py";
    let out = shmbus_testkit::command(env!("CARGO_BIN_EXE_imu-publisher"))
        .args(["--name", name, "--key", &key_arg, "--rate", "2000"])
        .args(["--count", "130"])
        .stdin(Stdio::null())
        .output()
        .expect("run imu-publisher");
    assert!(out.status.success(), "imu-publisher: {out:?}");

    let tmp_dir = shmbus_testkit::TempDir::new("layout-py");
    let dir = tmp_dir.path().to_path_buf();
    let script = dir.join("reader.py");
    std::fs::write(&script, sketch()).unwrap();
    let run = Command::new("python3")
        .arg(&script)
        .arg(&key_arg)
        .output()
        .expect("python3 is part of this machine kind (CPython 3.11); install python3");
    let stdout = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(
        run.status.success(),
        "sketch failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    println!("sketch printed: {stdout}");
    assert!(stdout.starts_with(&format!("{name} (130, ")), "{stdout}");

    // The tuple, through Python's own literal parser, as hex.
    let parse = Command::new("python3")
        .args([
            "-c",
            "import ast, sys\n\
             name, rest = sys.stdin.read().split(' ', 1)\n\
             g, mono, data = ast.literal_eval(rest)\n\
             print(g, mono, data.hex())",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    parse
        .stdin
        .as_ref()
        .unwrap()
        .write_all(stdout.as_bytes())
        .unwrap();
    let parsed = parse.wait_with_output().unwrap();
    let parsed = String::from_utf8(parsed.stdout).unwrap();
    let f: Vec<&str> = parsed.split_whitespace().collect();
    assert_eq!(f.len(), 3, "{parsed}");
    let (g, mono, bytes): (u64, u64, Vec<u8>) =
        (f[0].parse().unwrap(), f[1].parse().unwrap(), unhex(f[2]));

    let mut sub = RawSubscriber::attach(&Topic::new(name).key(key as i32)).unwrap();
    let mut rust = Vec::new();
    let meta = sub.latest_bytes(&mut rust).unwrap().expect("a frame");
    assert_eq!((g, mono), (meta.generation, meta.mono_ns));
    assert_eq!(bytes, rust, "the sketch and the Rust reader disagree");
    let imu: Imu = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(imu.seq, 129, "a fresh topic: sample n is generation n + 1");
    assert_eq!(imu.frame_id.as_str(), "imu_link");
}
