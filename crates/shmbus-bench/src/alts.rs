//! The alternatives a user would reach for instead of shmbus: a Unix
//! datagram socketpair, a pair of pipes, a pair of POSIX message queues
//! (all blocking, 64-byte messages), and iceoryx2 (an external peer binary,
//! see `bench/iceoryx2-peer`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;

use nix::mqueue::{MQ_OFlag, MqAttr, MqdT, mq_open, mq_receive, mq_send, mq_unlink};
use nix::sys::stat::Mode;

use crate::os::{Peer, fd_arg, inherited_fd};

/// A 64-byte message carrying `seq`.
fn msg(seq: u64) -> [u8; 64] {
    let mut m = [0x5a; 64];
    m[..8].copy_from_slice(&seq.to_le_bytes());
    m
}

fn seq_of(m: &[u8]) -> u64 {
    let mut s = [0; 8];
    s.copy_from_slice(&m[..8]);
    u64::from_le_bytes(s)
}

/// The parent's end of a mechanism, for one batch.
pub enum Link {
    /// Unix datagram socketpair.
    Unix(UnixDatagram),
    /// Two pipes: write to the peer, read from it.
    Pipe(File, File),
    /// Two message queues: send, receive.
    Mq(MqdT, MqdT),
}

fn err(what: &str) -> impl Fn(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

impl Link {
    /// One round trip of a 64-byte message.
    pub fn rt(&mut self, seq: u64) -> Result<(), String> {
        let m = msg(seq);
        let mut r = [0u8; 64];
        loop {
            match self {
                Link::Unix(s) => {
                    s.send(&m).map_err(err("send"))?;
                    s.recv(&mut r).map_err(err("recv"))?;
                }
                Link::Pipe(w, rd) => {
                    w.write_all(&m).map_err(err("pipe write"))?;
                    rd.read_exact(&mut r).map_err(err("pipe read"))?;
                }
                Link::Mq(tx, rx) => {
                    mq_send(tx, &m, 0).map_err(|e| format!("mq_send: {e}"))?;
                    let mut prio = 0;
                    mq_receive(rx, &mut r, &mut prio).map_err(|e| format!("mq_receive: {e}"))?;
                }
            }
            if seq_of(&r) == seq {
                return Ok(());
            }
        }
    }

    /// Tell the peer to exit.
    pub fn stop(&mut self) {
        let m = msg(u64::MAX);
        let _ = match self {
            Link::Unix(s) => s.send(&m).map(drop).map_err(|e| e.to_string()),
            Link::Pipe(w, _) => w.write_all(&m).map_err(|e| e.to_string()),
            Link::Mq(tx, _) => mq_send(tx, &m, 0).map_err(|e| e.to_string()),
        };
    }
}

/// Start a Unix-socket peer; returns the parent's end and the peer.
pub fn unix(extra: &[String]) -> Result<(Link, Peer), String> {
    let (mine, theirs) = UnixDatagram::pair().map_err(err("socketpair"))?;
    let mut args = vec![format!("fd={}", fd_arg(&theirs))];
    args.extend_from_slice(extra);
    let peer = Peer::spawn("unix", &args, &[theirs.as_fd()])?;
    Ok((Link::Unix(mine), peer))
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))
}

/// Start a pipe peer.
pub fn pipes(extra: &[String]) -> Result<(Link, Peer), String> {
    let (to_r, to_w) = pipe()?;
    let (from_r, from_w) = pipe()?;
    let mut args = vec![
        format!("rfd={}", fd_arg(&to_r)),
        format!("wfd={}", fd_arg(&from_w)),
    ];
    args.extend_from_slice(extra);
    let peer = Peer::spawn("pipe", &args, &[to_r.as_fd(), from_w.as_fd()])?;
    Ok((Link::Pipe(File::from(to_w), File::from(from_r)), peer))
}

fn mq_names() -> (String, String) {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let base = format!("/shmbus-bench.{}.{n}", std::process::id());
    (format!("{base}.a"), format!("{base}.b"))
}

fn mq_create(name: &str) -> Result<MqdT, String> {
    let attr = MqAttr::new(0, 1, 64, 0);
    mq_open(
        name,
        MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
        Mode::S_IRUSR | Mode::S_IWUSR,
        Some(&attr),
    )
    .map_err(|e| format!("mq_open({name}): {e} (POSIX message queues need CONFIG_POSIX_MQUEUE)"))
}

/// Start a message-queue peer. The queues are unlinked as soon as the peer
/// has opened them, so none is left behind.
pub fn mqueue(extra: &[String]) -> Result<(Link, Peer), String> {
    let (a, b) = mq_names();
    let tx = mq_create(&a)?;
    let rx = match mq_create(&b) {
        Ok(rx) => rx,
        Err(e) => {
            let _ = mq_unlink(a.as_str());
            return Err(e);
        }
    };
    let mut args = vec![format!("rq={a}"), format!("wq={b}")];
    args.extend_from_slice(extra);
    let peer = Peer::spawn("mq", &args, &[]);
    let _ = mq_unlink(a.as_str());
    let _ = mq_unlink(b.as_str());
    Ok((Link::Mq(tx, rx), peer?))
}

/// Peer side of every alternative: echo 64-byte messages until the stop
/// message.
pub fn peer(role: &str, arg: impl Fn(&str) -> Result<String, String>) -> Result<(), String> {
    let fd = |k: &str| -> Result<OwnedFd, String> {
        let n = arg(k)?
            .parse()
            .map_err(|_| format!("{k} is not a descriptor number"))?;
        inherited_fd(n)
    };
    let mut link = match role {
        "unix" => Link::Unix(UnixDatagram::from(fd("fd")?)),
        "pipe" => Link::Pipe(File::from(fd("wfd")?), File::from(fd("rfd")?)),
        "mq" => {
            let open = |k: &str| -> Result<MqdT, String> {
                let name = arg(k)?;
                mq_open(
                    name.as_str(),
                    MQ_OFlag::O_RDWR | MQ_OFlag::O_CLOEXEC,
                    Mode::empty(),
                    None,
                )
                .map_err(|e| format!("mq_open({name}): {e}"))
            };
            let rx = open("rq")?;
            Link::Mq(open("wq")?, rx)
        }
        other => return Err(format!("unknown peer role '{other}'")),
    };
    println!("ready");
    let mut m = [0u8; 64];
    loop {
        match &mut link {
            Link::Unix(s) => {
                s.recv(&mut m).map_err(err("recv"))?;
            }
            Link::Pipe(_, rd) => rd.read_exact(&mut m).map_err(err("pipe read"))?,
            Link::Mq(_, rx) => {
                let mut prio = 0;
                mq_receive(rx, &mut m, &mut prio).map_err(|e| format!("mq_receive: {e}"))?;
            }
        }
        if seq_of(&m) == u64::MAX {
            return Ok(());
        }
        match &mut link {
            Link::Unix(s) => s.send(&m).map(drop).map_err(err("send"))?,
            Link::Pipe(w, _) => w.write_all(&m).map_err(err("pipe write"))?,
            Link::Mq(tx, _) => mq_send(tx, &m, 0).map_err(|e| format!("mq_send: {e}"))?,
        }
    }
}

/// Run the iceoryx2 peer binary for one batch; its raw round trips in ns.
pub fn iceoryx2(
    path: &Path,
    iters: usize,
    cpus: Option<(usize, usize)>,
) -> Result<Vec<f64>, String> {
    let mut cmd = Command::new(path);
    cmd.args([
        "--iters",
        &iters.to_string(),
        "--warmup",
        &(iters / 10).clamp(50, 2000).to_string(),
    ]);
    if let Some((a, b)) = cpus {
        cmd.args(["--cpus", &format!("{a},{b}")]);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run the iceoryx2 peer {}: {e}", path.display()))?;
    if !out.status.success() {
        return Err(format!(
            "iceoryx2 peer failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_iceoryx2(&String::from_utf8_lossy(&out.stdout))
}

/// The round trips in the iceoryx2 peer's JSON output.
pub fn parse_iceoryx2(text: &str) -> Result<Vec<f64>, String> {
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("iceoryx2 peer output is not JSON: {e}"))?;
    v.get("rtt_ns")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .ok_or_else(|| "iceoryx2 peer output has no rtt_ns array".to_string())
}
