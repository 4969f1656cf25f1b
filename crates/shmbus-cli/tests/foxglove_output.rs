//! `shmbus foxglove` whose log or listening line cannot be written (stderr
//! or stdout on /dev/full, as under a log pipe whose reader quit) keeps
//! serving: `eprintln!`/`println!` panic there, and the server died at its
//! next client line (stderr) or before listening (stdout).
#![cfg(feature = "foxglove")]

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shmbus_testkit::{Guard, unique_key, watchdog, ws};

/// The shmbus binary, behind `SHMBUS_TEST_RUNNER` when emulated, killed
/// if the test dies.
fn shmbus(args: &[&str]) -> Command {
    let mut cmd = shmbus_testkit::command(env!("CARGO_BIN_EXE_shmbus"));
    cmd.args(args).stdin(Stdio::null());
    shmbus_testkit::dies_with_parent(&mut cmd);
    cmd
}

/// The server's first message to a new client (its server info), after
/// a WebSocket handshake written by hand.
fn first_message(addr: SocketAddr, what: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    ws::handshake(&mut s, what);
    ws::read_text(&mut s, what)
}

/// A port on 127.0.0.1 nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (bounded) until `addr` accepts connections or `child` ended.
fn wait_listening(child: &mut Child, addr: SocketAddr) -> bool {
    let end = Instant::now() + Duration::from_secs(60);
    while Instant::now() < end {
        if TcpStream::connect(addr).is_ok() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the server did not listen on {addr} within 60 s");
}

/// SIGTERM, then its exit code (bounded wait).
fn stop(mut child: Child) -> Option<i32> {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    shmbus_testkit::exit_within(
        &mut child,
        Duration::from_secs(60),
        "the server after SIGTERM",
    )
    .code()
}

fn full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

#[test]
fn foxglove_keeps_serving_when_stderr_or_stdout_cannot_be_written() {
    watchdog("foxglove_full_output", Duration::from_secs(300));
    let key = unique_key("fox-full-output");
    let _g = Guard(key);
    let topic = format!("0x{:08x}", key as u32);
    for which in ["stderr", "stdout"] {
        // The port is chosen first (the listening line, on stdout, may be
        // what cannot be written); taken meanwhile by another program, the
        // server exits 2 and the next port is tried.
        let mut served = None;
        for _ in 0..5 {
            let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
            let bind = addr.to_string();
            // Not quiet: a line per client, and the summary at the end.
            let mut cmd = shmbus(&["foxglove", "--bind", &bind, &topic]);
            if which == "stderr" {
                cmd.stderr(full()).stdout(Stdio::null());
            } else {
                cmd.stdout(full()).stderr(Stdio::null());
            }
            let mut child = cmd.spawn().expect("spawn shmbus foxglove");
            if wait_listening(&mut child, addr) {
                served = Some((child, addr));
                break;
            }
        }
        let (child, addr) = served.expect("a free port in 5 tries");
        // One client after the other: each is logged (to the full output)
        // before the next is served, and both get the server's info.
        for n in 1..=2 {
            let m = first_message(addr, &format!("{which} on /dev/full, client {n}"));
            assert!(
                m.contains(r#""op":"serverInfo""#),
                "{which}, client {n}: {m}"
            );
        }
        assert_eq!(stop(child), Some(0), "{which} on /dev/full");
    }
}

/// A connection that ends mid-handshake (reset, or closed) is logged as
/// such, not as a refusal: it was "refused: Connection reset by peer (os
/// error 104)" and "refused: not a WebSocket handshake (Handshake not
/// finished)", though nothing was refused.
#[test]
fn a_connection_that_ends_mid_handshake_is_not_logged_as_refused() {
    watchdog("foxglove_mid_handshake", Duration::from_secs(300));
    let key = unique_key("fox-mid-handshake");
    let _g = Guard(key);
    let topic = format!("0x{:08x}", key as u32);
    let mut served = None;
    for _ in 0..5 {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let bind = addr.to_string();
        let mut cmd = shmbus(&["foxglove", "--bind", &bind, &topic]);
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn shmbus foxglove");
        if wait_listening(&mut child, addr) {
            served = Some((child, addr));
            break;
        }
    }
    let (mut child, addr) = served.expect("a free port in 5 tries");
    // Its log, line by line, as it comes.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let partial = b"GET / HTTP/1.1\r\nHost: x\r\n";
    // Reset (SO_LINGER 0), then closed, each after part of a request.
    let mut peers = Vec::new();
    for reset in [true, false] {
        let mut s = TcpStream::connect(addr).unwrap();
        peers.push(s.local_addr().unwrap().to_string());
        s.write_all(partial).unwrap();
        if reset {
            let l = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(&s, nix::sys::socket::sockopt::Linger, &l).unwrap();
        }
        drop(s);
    }
    let mut lines = Vec::new();
    let end = Instant::now() + Duration::from_secs(60);
    while !peers
        .iter()
        .all(|p| lines.iter().any(|l: &String| l.contains(&format!("{p}:"))))
    {
        assert!(Instant::now() < end, "no line for {peers:?}: {lines:#?}");
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    assert_eq!(stop(child), Some(0));
    lines.extend(rx.try_iter());
    for p in &peers {
        let line = lines.iter().find(|l| l.contains(&format!("{p}:"))).unwrap();
        assert!(
            line.ends_with(&format!("{p}: the connection ended during the handshake")),
            "{lines:#?}"
        );
    }
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("refused") || l.contains("panicked")),
        "{lines:#?}"
    );
}
