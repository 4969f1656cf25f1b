//! `shmbus foxglove --rate TOPIC=HZ` with a name no served topic has: the
//! limit was silently not applied (a misspelt name on a weak board that
//! needed it, and nothing said so). Now a name outside the named TOPICs is
//! refused, and one that no topic served now has is warned about.
#![cfg(feature = "foxglove")]

use std::process::{Command, Stdio};
use std::time::Duration;

use shmbus_pub::RawPublisher;
use shmbus_testkit::{unique_topic, watchdog};

/// `shmbus foxglove ARGS --duration 0.3` on a free port of 127.0.0.1:
/// (exit code, stderr).
fn fox(args: &[&str]) -> (Option<i32>, String) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bind = format!("127.0.0.1:{port}");
        let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"));
        cmd.args(["foxglove", "--bind", &bind, "--duration", "0.3"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        shmbus_testkit::dies_with_parent(&mut cmd);
        let out = run(cmd);
        // Taken meanwhile by another program: try another port.
        if !out.1.contains("port is in use") {
            return out;
        }
    }
    panic!("no free port in 5 tries");
}

fn run(mut cmd: Command) -> (Option<i32>, String) {
    let out = cmd.output().expect("run shmbus foxglove");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_rate_for_a_topic_that_is_not_served_is_said_not_silently_ignored() {
    watchdog("foxglove_rate_names", Duration::from_secs(300));
    let (topic, _g) = unique_topic("fox-rate-names");
    let name = topic.name.clone();
    let schema = shmbus_core::schema::schema_bytes::<u32>().unwrap();
    let _p = RawPublisher::open(&topic, &schema, 4).expect("create the topic");
    let key = format!("0x{:08x}", topic.key as u32);
    let typo = format!("{name}x");
    let right = format!("{name}=5");
    let wrong = format!("{typo}=5");

    // Named topics: a rate for another name can never apply.
    let (code, err) = fox(&[&name, "--rate", &wrong]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "--rate {typo}=5: '{typo}' is not one of the topics to serve ({name})"
        )),
        "{err}"
    );
    // Served by key (or every topic): names are known once served; one that
    // no served topic has is warned about, with what is served.
    let (code, err) = fox(&[&key, "--rate", &wrong]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "shmbus: warning: --rate {typo}=5: no topic named '{typo}' is served (serving {name});"
        )),
        "{err}"
    );
    // The right names: no warning, by name or by key.
    for sel in [&name, &key] {
        let (code, err) = fox(&[sel, "--rate", &right]);
        assert_eq!(code, Some(0), "{sel}: {err}");
        assert!(!err.contains("--rate"), "{sel}: {err}");
    }
}
