//! Network interface counters and rates from `/proc/net/dev`.

use std::path::PathBuf;

use shmbus_core::topic::shown;

use crate::args::Args;
use crate::msg::{Iface, MAX_IFACES, Net, name};
use crate::run::{Source, Warn};
use crate::sysfs::{MAX_PROC_BYTES, read_text_lossy, shown_path};

/// Parse `/proc/net/dev`: two header lines, then
/// `name: rx_bytes rx_packets rx_errs rx_drop fifo frame compressed multicast
/// tx_bytes tx_packets tx_errs tx_drop ...`. Rates are left at 0. The
/// first bad line is the error.
pub fn parse_net_dev(text: &str) -> Result<Vec<Iface>, String> {
    let (ifaces, mut bad) = parse_net_dev_lines(text);
    if bad.is_empty() {
        Ok(ifaces)
    } else {
        Err(bad.swap_remove(0))
    }
}

/// Parse `/proc/net/dev` line by line: the interfaces of the good lines,
/// and an error for each bad one. One bad line (a truncated last line, a
/// garbage counter in a fake tree) cost every interface of the file: the
/// sensor published empty frames.
pub fn parse_net_dev_lines(text: &str) -> (Vec<Iface>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate().skip(2) {
        match parse_line(line, i + 1) {
            Ok(Some(iface)) => out.push(iface),
            Ok(None) => {}
            Err(e) => bad.push(e),
        }
    }
    (out, bad)
}

/// One interface line (number `n`), `None` for a blank one.
fn parse_line(line: &str, n: usize) -> Result<Option<Iface>, String> {
    let Some((ifname, rest)) = line.split_once(':') else {
        if line.trim().is_empty() {
            return Ok(None);
        }
        return Err(format!("line {n}: no ':' after the interface name"));
    };
    let v: Vec<u64> = rest
        .split_whitespace()
        .map(|x| {
            x.parse::<u64>()
                .map_err(|_| format!("line {n}: bad counter '{}'", shown(x)))
        })
        .collect::<Result<_, _>>()?;
    if v.len() < 12 {
        return Err(format!("line {n}: {} counters, expected 16", v.len()));
    }
    Ok(Some(Iface {
        name: name(ifname),
        rx_bytes: v[0],
        rx_packets: v[1],
        rx_errors: v[2],
        rx_dropped: v[3],
        tx_bytes: v[8],
        tx_packets: v[9],
        tx_errors: v[10],
        tx_dropped: v[11],
        rx_bytes_per_s: 0.0,
        tx_bytes_per_s: 0.0,
    }))
}

/// Fill in the rates of `cur` from `prev` (same interface name), `dt_s`
/// seconds earlier. A counter that went down (reset, wrapped 32-bit
/// counter, interface re-created) gives rate 0.
pub fn set_rates(cur: &mut [Iface], prev: &[Iface], dt_s: f64) {
    if dt_s <= 0.0 {
        return;
    }
    for c in cur {
        if let Some(p) = prev.iter().find(|p| p.name == c.name) {
            let rate = |now: u64, before: u64| {
                now.checked_sub(before)
                    .map_or(0.0, |d| (d as f64 / dt_s) as f32)
            };
            c.rx_bytes_per_s = rate(c.rx_bytes, p.rx_bytes);
            c.tx_bytes_per_s = rate(c.tx_bytes, p.tx_bytes);
        }
    }
}

/// The network sensor.
#[derive(Debug)]
pub struct NetSource {
    path: PathBuf,
    prev: Vec<Iface>,
    prev_t: u64,
}

impl NetSource {
    /// Reading under `args.root`.
    pub fn new(args: &Args) -> NetSource {
        NetSource::at(args.at("proc/net/dev"))
    }

    /// Reading the file at `path` (a `/proc/net/dev`).
    fn at(path: PathBuf) -> NetSource {
        NetSource {
            path,
            prev: Vec::new(),
            prev_t: 0,
        }
    }
}

impl Source for NetSource {
    type Msg = Net;

    fn sample(&mut self, t_ns: u64, warn: &mut Warn) -> Net {
        // Lossy: an interface name is the kernel's bytes, any but '/', ':'
        // and white space; one that is not UTF-8 blanked every interface.
        let mut ifaces = match read_text_lossy(&self.path, MAX_PROC_BYTES) {
            Ok(text) => {
                let (ifaces, bad) = parse_net_dev_lines(&text);
                for e in bad {
                    warn.once(format!(
                        "{}: {e}; publishing the other interfaces",
                        shown_path(&self.path)
                    ));
                }
                ifaces
            }
            Err(e) => {
                warn.once(format!("cannot read {e}; publishing empty frames"));
                Vec::new()
            }
        };
        if !self.prev.is_empty() {
            set_rates(
                &mut ifaces,
                &self.prev,
                t_ns.saturating_sub(self.prev_t) as f64 / 1e9,
            );
        }
        if ifaces.len() > MAX_IFACES {
            warn.once(format!(
                "{} interfaces found, publishing the first {MAX_IFACES}",
                ifaces.len()
            ));
        }
        self.prev = ifaces.clone();
        self.prev_t = t_ns;
        Net {
            t_ns,
            ifaces: ifaces.into_iter().take(MAX_IFACES).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    3293      31    0    0    0     0          0         0     3293      31    0    0    0     0       0          0
  eth0: 357488514   10042    1    2    0     0          0         0   549091    5772    3    4    0     0       0          0
";

    #[test]
    fn counters_are_parsed_per_interface() {
        let v = parse_net_dev(DEV).unwrap();
        assert_eq!(v.len(), 2);
        let e = &v[1];
        assert_eq!(e.name.as_str(), "eth0");
        assert_eq!(
            (e.rx_bytes, e.rx_packets, e.rx_errors, e.rx_dropped),
            (357488514, 10042, 1, 2)
        );
        assert_eq!(
            (e.tx_bytes, e.tx_packets, e.tx_errors, e.tx_dropped),
            (549091, 5772, 3, 4)
        );
    }

    #[test]
    fn rates_come_from_the_previous_sample_and_resets_give_zero() {
        let prev = parse_net_dev(DEV).unwrap();
        let mut cur = prev.clone();
        cur[1].rx_bytes += 2000;
        cur[1].tx_bytes += 500;
        cur[0].rx_bytes = 0; // counter reset
        set_rates(&mut cur, &prev, 0.5);
        assert_eq!(
            (cur[1].rx_bytes_per_s, cur[1].tx_bytes_per_s),
            (4000.0, 1000.0)
        );
        assert_eq!(cur[0].rx_bytes_per_s, 0.0);
    }

    #[test]
    fn malformed_files_are_errors() {
        let h = "h1\nh2\n";
        assert!(
            parse_net_dev(&format!("{h}eth0 1 2 3\n"))
                .unwrap_err()
                .contains("no ':'")
        );
        assert!(
            parse_net_dev(&format!("{h}eth0: 1 2 x\n"))
                .unwrap_err()
                .contains("bad counter 'x'")
        );
        assert!(
            parse_net_dev(&format!("{h}eth0: 1 2 3\n"))
                .unwrap_err()
                .contains("expected 16")
        );
        assert!(parse_net_dev(h).unwrap().is_empty());
        assert!(parse_net_dev("").unwrap().is_empty());
    }

    /// An interface whose name is not UTF-8 (`ip link add name $'caf\xe9'`)
    /// is published with its name shown lossily, and so is every other:
    /// `/proc/net/dev` was "not UTF-8 text" and the frames were empty.
    #[test]
    fn an_interface_named_in_latin1_costs_nothing() {
        use crate::sysfs::testdir::TempDir;
        let d = TempDir::new("net-latin1");
        let mut text = DEV.as_bytes().to_vec();
        text.extend_from_slice(
            b"  caf\xe9:      12       1    0    0    0     0          0         0       34       2    0    0    0     0       0          0\n",
        );
        std::fs::create_dir_all(d.path().join("proc/net")).unwrap();
        std::fs::write(d.path().join("proc/net/dev"), text).unwrap();
        let mut src = NetSource::at(d.path().join("proc/net/dev"));
        let mut w = Warn::new("test");
        let m = src.sample(1, &mut w);
        let names: Vec<&str> = m.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0", "caf\u{fffd}"]);
        assert_eq!((m.ifaces[2].rx_bytes, m.ifaces[2].tx_bytes), (12, 34));
        assert_eq!(w.count(), 0);
    }

    /// A truncated last line or a garbage counter costs that interface,
    /// not the file's: the sensor published empty frames for one bad line.
    #[test]
    fn one_bad_line_costs_only_its_interface() {
        use crate::sysfs::testdir::TempDir;
        let d = TempDir::new("net-bad-line");
        d.file(
            "proc/net/dev",
            &format!("{DEV}  wlan0: 1 2 x 4 5 6 7 8 9 10 11 12 13 14 15 16\n  eth1: 12 3"),
        );
        let mut src = NetSource::at(d.path().join("proc/net/dev"));
        let mut w = Warn::new("test");
        let m = src.sample(1, &mut w);
        let names: Vec<&str> = m.ifaces.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["lo", "eth0"]);
        assert_eq!(m.ifaces[1].rx_bytes, 357488514);
        assert_eq!(w.count(), 2, "one warning per bad line");
        // The strict parser still names the first bad line.
        let text = std::fs::read_to_string(&src.path).unwrap();
        assert!(
            parse_net_dev(&text)
                .unwrap_err()
                .contains("line 5: bad counter 'x'")
        );
    }
}
