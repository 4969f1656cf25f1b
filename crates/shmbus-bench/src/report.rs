//! The results of one run: rows, ratios against the floors and the
//! alternatives, the project's targets, and the human table.

use std::fmt::Write as _;

use serde::Serialize;

use crate::fanout::{Point, Way};
use crate::handoff::{Kind, Mech};
use crate::opts::Opts;
use crate::stats::{Summary, median};

/// The one-way samples of a handoff mechanism, kept for the plot.
pub struct Dist {
    /// Mechanism.
    pub mech: Mech,
    /// Pinned to two CPUs.
    pub pinned: bool,
    /// One-way latencies, ns.
    pub samples: Vec<f64>,
    /// The median round trip of each round, by round (`None`: not
    /// measured in that round).
    pub rounds: Vec<Option<f64>>,
}

/// Add the round trips of round `round` (from 0) to the mechanism's
/// distribution, and their median to its figures per round. The clock
/// overhead is subtracted later, in [`Report::add_handoff`].
pub fn push_samples(dists: &mut Vec<Dist>, mech: Mech, pinned: bool, round: usize, rtt: Vec<f64>) {
    let at = match dists
        .iter()
        .position(|d| d.mech == mech && d.pinned == pinned)
    {
        Some(i) => i,
        None => {
            dists.push(Dist {
                mech,
                pinned,
                samples: Vec::new(),
                rounds: Vec::new(),
            });
            dists.len() - 1
        }
    };
    let d = &mut dists[at];
    if d.rounds.len() <= round {
        d.rounds.resize(round + 1, None);
    }
    d.rounds[round] = Some(median(&rtt));
    d.samples.extend(rtt);
}

/// A figure of the run: its median over all rounds, and its median in
/// each round (`None` where it was not measured), for ratios paired by
/// round.
#[derive(Debug, Clone, PartialEq)]
pub struct Fig {
    /// Median over the whole run, ns.
    pub median: f64,
    /// Median of each round, ns.
    pub rounds: Vec<Option<f64>>,
}

impl Fig {
    /// A figure with no figures per round (a fan-out point).
    pub fn whole(median: f64) -> Fig {
        Fig {
            median,
            rounds: Vec::new(),
        }
    }

    /// `self - other`, overall and round by round.
    pub fn minus(&self, other: &Fig) -> Fig {
        Fig {
            median: self.median - other.median,
            rounds: self
                .rounds
                .iter()
                .zip(&other.rounds)
                .map(|(a, b)| a.zip(*b).map(|(a, b)| a - b))
                .collect(),
        }
    }
}

/// One handoff row.
#[derive(Debug, Clone, Serialize)]
pub struct HandoffRow {
    /// Mechanism key.
    pub key: &'static str,
    /// Label.
    pub label: &'static str,
    /// Floor, shmbus or alternative.
    pub kind: Kind,
    /// Pinned to two different CPUs.
    pub pinned: bool,
    /// Both sides sleep in the kernel.
    pub blocking: bool,
    /// One-way latency.
    pub one_way: Summary,
    /// The median one-way latency of each round (`null`: not measured in
    /// that round; empty: not interleaved).
    pub rounds_ns: Vec<Option<f64>>,
    /// The floor this row is compared with.
    pub floor: Option<&'static str>,
    /// Median / the floor's median.
    pub vs_floor: Option<f64>,
    /// The fastest alternative (same pinning).
    pub best_alternative: Option<&'static str>,
    /// Median / the best alternative's median.
    pub vs_best_alternative: Option<f64>,
    /// Median / the Unix socket's median (same pinning).
    pub vs_unix_socket: Option<f64>,
    /// Anything special about this row.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// One in-process row.
#[derive(Debug, Clone, Serialize)]
pub struct MicroRow {
    /// Key.
    pub key: &'static str,
    /// Label.
    pub label: &'static str,
    /// Cost per operation (batch means).
    pub cost: Summary,
    /// The median cost of each round.
    pub rounds_ns: Vec<Option<f64>>,
    /// What it is compared with.
    pub compared_to: Option<&'static str>,
    /// Median / the compared row's median.
    pub ratio: Option<f64>,
}

/// A headline ratio, with the project's target when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// What is divided by what.
    pub name: String,
    /// The ratio of medians.
    pub value: f64,
    /// The same ratio in each round where both figures were measured
    /// (paired: numerator and denominator of the same round). Empty when
    /// there is no figure per round.
    pub rounds: Vec<f64>,
    /// Target (the ratio must be at most this).
    pub target: Option<f64>,
    /// Whether the target is met (by the ratio of the run's medians).
    pub met: Option<bool>,
    /// In how many of [`Self::rounds`] the target is met: a verdict that
    /// flips from round to round is the machine's noise, not a result.
    pub rounds_met: Option<usize>,
}

/// Where the run happened.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Usable CPUs.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Architecture of this build.
    pub arch: &'static str,
}

/// How the figures were taken.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    /// How one-way latency is derived.
    pub one_way: &'static str,
    /// The cost of one clock read, subtracted from timed samples.
    pub clock_overhead_ns: f64,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Round trips per mechanism per round.
    pub iters_per_round: usize,
    /// Quick mode.
    pub quick: bool,
}

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// The method.
    pub method: Method,
    /// Two-process handoffs.
    pub handoff: Vec<HandoffRow>,
    /// In-process costs.
    pub micro: Vec<MicroRow>,
    /// Fan-out points.
    pub fanout: Vec<Point>,
    /// Headline ratios and targets.
    pub ratios: Vec<Ratio>,
    /// What was not measured, and why.
    pub skipped: Vec<String>,
}

fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for key in ["model name", "Processor", "cpu model", "CPU part"] {
        if let Some(v) = info
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
        {
            return v;
        }
    }
    "unknown".into()
}

impl Report {
    /// An empty report for this run.
    pub fn new(opts: &Opts, args: &[String], clock_ns: f64, cpus: usize) -> Report {
        Report {
            command: format!("shmbus bench {}", args.join(" "))
                .trim_end()
                .to_string(),
            machine: Machine {
                cpus,
                cpu_model: cpu_model(),
                kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default(),
                arch: std::env::consts::ARCH,
            },
            method: Method {
                one_way: "(round trip - clock overhead) / 2, round trips timed with CLOCK_MONOTONIC in the initiating process",
                clock_overhead_ns: clock_ns,
                rounds: opts.rounds,
                iters_per_round: opts.iters,
                quick: opts.quick,
            },
            handoff: Vec::new(),
            micro: Vec::new(),
            fanout: Vec::new(),
            ratios: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Add a handoff distribution of raw round trips (converted in place
    /// to one-way figures), with the median round trip of each round
    /// (empty if not interleaved).
    pub fn add_handoff(
        &mut self,
        m: Mech,
        pinned: bool,
        rtt: &mut [f64],
        rounds: &[Option<f64>],
        note: &str,
    ) {
        let c = self.method.clock_overhead_ns;
        let one_way = |x: f64| ((x - c) / 2.0).max(0.0);
        for x in rtt.iter_mut() {
            *x = one_way(*x);
        }
        self.handoff.push(HandoffRow {
            key: m.key(),
            label: m.label(),
            kind: m.kind(),
            pinned,
            blocking: m.blocking(),
            one_way: Summary::of(rtt),
            rounds_ns: rounds.iter().map(|r| r.map(one_way)).collect(),
            floor: None,
            vs_floor: None,
            best_alternative: None,
            vs_best_alternative: None,
            vs_unix_socket: None,
            note: note.to_string(),
        });
    }

    /// Add an in-process row: `samples` in the order taken, `per_round`
    /// of them in each round.
    pub fn add_micro(
        &mut self,
        key: &'static str,
        label: &'static str,
        samples: &mut [f64],
        per_round: usize,
    ) {
        let rounds = samples
            .chunks(per_round.max(1))
            .map(|c| Some(median(c)))
            .collect();
        let compared_to = match key {
            "poll_nothing_new" => Some("bare_acquire_load"),
            "publish_64" | "publish_256" | "publish_1k" | "publish_64_clocks" => {
                Some("seqlock_publish_64")
            }
            "publish_64_notify" => Some("publish_64"),
            "publish_256_notify" => Some("publish_256"),
            "publish_1k_notify" => Some("publish_1k"),
            "read_latest_bytes_64" => Some("seqlock_read_64"),
            "read_next_64" => Some("read_latest_64"),
            "read_next_new_64" => Some("read_latest_new_64"),
            "read_latest_64" => Some("seqlock_read_64"),
            "read_latest_64_bytes" => Some("read_latest_bytes_64"),
            "decode_64_bytes" => Some("decode_64_shmbus"),
            "encode_64_bytes" => Some("encode_64_shmbus"),
            "publish_64_typed" => Some("publish_64"),
            "publish_64_array" => Some("layout_publish_64"),
            "store_bytes_64" => Some("seqlock_publish_64"),
            "layout_publish_64" => Some("seqlock_publish_64"),
            "layout_v2_publish_64" => Some("seqlock_publish_64"),
            "seqlock_copy_publish_64" => Some("seqlock_publish_64"),
            "raw_hop_64" => Some("layout_hop_64"),
            "raw_hop_64_fixed" => Some("layout_hop_64"),
            _ => None,
        };
        self.micro.push(MicroRow {
            key,
            label,
            cost: Summary::of(samples),
            rounds_ns: rounds,
            compared_to,
            ratio: None,
        });
    }

    /// The median one-way latency of a handoff row.
    pub fn handoff_median(&self, key: &str, pinned: bool) -> Option<f64> {
        self.handoff_fig(key, pinned).map(|f| f.median)
    }

    fn handoff_fig(&self, key: &str, pinned: bool) -> Option<Fig> {
        self.handoff
            .iter()
            .find(|r| r.key == key && r.pinned == pinned)
            .map(|r| Fig {
                median: r.one_way.median_ns,
                rounds: r.rounds_ns.clone(),
            })
    }

    fn micro_fig(&self, key: &str) -> Option<Fig> {
        self.micro.iter().find(|r| r.key == key).map(|r| Fig {
            median: r.cost.median_ns,
            rounds: r.rounds_ns.clone(),
        })
    }

    /// Add the ratio `num / den` of the run's medians, with the ratio of
    /// each round where both were measured.
    fn ratio(&mut self, name: String, num: &Option<Fig>, den: &Option<Fig>, target: Option<f64>) {
        let (Some(n), Some(d)) = (num, den) else {
            return;
        };
        if !(d.median > 0.0 && n.median.is_finite()) {
            return;
        }
        let value = n.median / d.median;
        let rounds: Vec<f64> = n
            .rounds
            .iter()
            .zip(&d.rounds)
            .filter_map(|(a, b)| a.zip(*b))
            .filter(|&(a, b)| b > 0.0 && a.is_finite())
            .map(|(a, b)| a / b)
            .collect();
        let rounds_met = target
            .filter(|_| !rounds.is_empty())
            .map(|t| rounds.iter().filter(|&&r| r <= t).count());
        self.ratios.push(Ratio {
            name,
            value,
            rounds,
            target,
            met: target.map(|t| value <= t),
            rounds_met,
        });
    }

    /// Compute every ratio.
    pub fn finish(&mut self) {
        let rows = self.handoff.clone();
        for r in &mut self.handoff {
            let same = |k: &str| rows.iter().find(|x| x.key == k && x.pinned == r.pinned);
            let floor = match r.key {
                "shmbus_wait" => Some("futex"),
                "seqlock" | "futex" | "layout" => Some("atomic"),
                // Every busy-poll of shmbus, whatever its variant.
                _ if r.kind == Kind::Shmbus => Some("seqlock"),
                _ => None,
            };
            if let Some(f) = floor.and_then(same) {
                r.floor = Some(f.key);
                r.vs_floor = Some(r.one_way.median_ns / f.one_way.median_ns);
            }
            if r.kind == Kind::Shmbus {
                let best = rows
                    .iter()
                    .filter(|x| x.kind == Kind::Alternative && x.pinned == r.pinned)
                    .min_by(|a, b| a.one_way.median_ns.total_cmp(&b.one_way.median_ns));
                if let Some(b) = best {
                    r.best_alternative = Some(b.key);
                    r.vs_best_alternative = Some(r.one_way.median_ns / b.one_way.median_ns);
                }
            }
            if let Some(u) = same("unix_dgram") {
                r.vs_unix_socket = Some(r.one_way.median_ns / u.one_way.median_ns);
            }
        }
        let micro = self.micro.clone();
        for r in &mut self.micro {
            if let Some(c) = r
                .compared_to
                .and_then(|k| micro.iter().find(|x| x.key == k))
            {
                r.ratio = Some(r.cost.median_ns / c.cost.median_ns);
            }
        }
        for pinned in [true, false] {
            let p = if pinned { "pinned" } else { "unpinned" };
            let h = |k: &str| self.handoff_fig(k, pinned);
            let (poll, seq, ice) = (h("shmbus_poll"), h("seqlock"), h("iceoryx2"));
            let (wait, futex, unix) = (h("shmbus_wait"), h("futex"), h("unix_dgram"));
            let (poll_n, raw) = (h("shmbus_poll_notify"), h("shmbus_poll_raw"));
            let (poll_b, raw_at) = (h("shmbus_poll_bytes"), h("shmbus_poll_raw_at"));
            let layout = h("layout");
            let raw_fixed = h("shmbus_poll_raw_fixed");
            self.ratio(
                format!("handoff busy-poll, raw bytes / bare seqlock floor ({p})"),
                &raw,
                &seq,
                Some(1.3),
            );
            self.ratio(
                format!("handoff busy-poll, raw, caller's stamp / bare seqlock floor ({p})"),
                &raw_at,
                &seq,
                None,
            );
            self.ratio(
                format!("handoff busy-poll, raw, caller's stamp / layout floor ({p})"),
                &raw_at,
                &layout,
                None,
            );
            self.ratio(
                format!("handoff busy-poll, raw fixed length / bare seqlock floor ({p})"),
                &raw_fixed,
                &seq,
                None,
            );
            self.ratio(
                format!("handoff busy-poll, raw fixed length / layout floor ({p})"),
                &raw_fixed,
                &layout,
                None,
            );
            self.ratio(
                format!("layout floor / bare seqlock floor ({p})"),
                &layout,
                &seq,
                None,
            );
            self.ratio(
                format!("handoff busy-poll, typed / raw bytes ({p})"),
                &poll,
                &raw,
                Some(1.3),
            );
            self.ratio(
                format!("handoff busy-poll, typed with Bytes<32> fields / raw bytes ({p})"),
                &poll_b,
                &raw,
                Some(1.3),
            );
            self.ratio(
                format!("handoff busy-poll, raw bytes / iceoryx2 ({p})"),
                &raw,
                &ice,
                None,
            );
            self.ratio(
                format!("handoff busy-poll / bare seqlock floor ({p})"),
                &poll,
                &seq,
                None,
            );
            self.ratio(
                format!("handoff busy-poll / iceoryx2 ({p})"),
                &poll,
                &ice,
                None,
            );
            self.ratio(
                format!("handoff busy-poll, notify on / bare seqlock floor ({p})"),
                &poll_n,
                &seq,
                None,
            );
            self.ratio(
                format!("blocking wake-up / raw futex floor ({p})"),
                &wait,
                &futex,
                Some(1.1),
            );
            self.ratio(
                format!("handoff busy-poll / Unix socket ({p})"),
                &poll,
                &unix,
                None,
            );
            self.ratio(
                format!("blocking wake-up / Unix socket ({p})"),
                &wait,
                &unix,
                None,
            );
        }
        let m = |k: &str| self.micro_fig(k);
        let (poll, load) = (m("poll_nothing_new"), m("bare_acquire_load"));
        let (p64, s64, p64c) = (
            m("publish_64"),
            m("seqlock_publish_64"),
            m("publish_64_clocks"),
        );
        let p64n = m("publish_64_notify");
        let p64a = m("publish_64_array");
        let (clock, next64, latest64) = (m("clock_read"), m("read_next_64"), m("read_latest_64"));
        let (next_new, latest_new) = (m("read_next_new_64"), m("read_latest_new_64"));
        let (layout64, v2_64) = (m("layout_publish_64"), m("layout_v2_publish_64"));
        let copy64 = m("seqlock_copy_publish_64");
        let (hop, layout_hop) = (m("raw_hop_64"), m("layout_hop_64"));
        let hop_fixed = m("raw_hop_64_fixed");
        self.ratio(
            "poll nothing new / bare acquire load".into(),
            &poll,
            &load,
            Some(1.5),
        );
        self.ratio(
            "publish 64 B pre-encoded / bare seqlock publish".into(),
            &p64,
            &s64,
            Some(2.0),
        );
        self.ratio(
            "publish 64 B pre-encoded / the layout's stores alone".into(),
            &p64,
            &layout64,
            None,
        );
        self.ratio(
            "publish 64 B fixed length / bare seqlock publish".into(),
            &p64a,
            &s64,
            Some(2.0),
        );
        self.ratio(
            "publish 64 B fixed length / the layout's stores alone".into(),
            &p64a,
            &layout64,
            None,
        );
        self.ratio(
            "publish 64 B fixed length / pre-encoded (publish_bytes)".into(),
            &p64a,
            &p64,
            None,
        );
        self.ratio(
            "the layout's stores alone / bare seqlock publish".into(),
            &layout64,
            &s64,
            None,
        );
        self.ratio(
            "bare seqlock publish, frame copied / bare seqlock publish".into(),
            &copy64,
            &s64,
            None,
        );
        self.ratio(
            "publish 64 B pre-encoded / bare seqlock publish, frame copied".into(),
            &p64,
            &copy64,
            None,
        );
        self.ratio(
            "a layout v2 candidate's stores / bare seqlock publish".into(),
            &v2_64,
            &s64,
            None,
        );
        self.ratio(
            "the layout's stores alone / a layout v2 candidate's stores".into(),
            &layout64,
            &v2_64,
            None,
        );
        self.ratio(
            "raw hop / layout floor hop, both in one process".into(),
            &hop,
            &layout_hop,
            None,
        );
        self.ratio(
            "raw hop, fixed length / layout floor hop, both in one process".into(),
            &hop_fixed,
            &layout_hop,
            None,
        );
        self.ratio(
            "publish 64 B incl. clock read / bare seqlock publish".into(),
            &p64c,
            &s64,
            None,
        );
        self.ratio(
            "publish 64 B incl. clock read / one clock read".into(),
            &p64c.as_ref().zip(p64.as_ref()).map(|(c, p)| c.minus(p)),
            &clock,
            Some(1.25),
        );
        self.ratio(
            "publish 64 B notify on (no waiter) / notify off".into(),
            &p64n,
            &p64,
            Some(1.5),
        );
        self.ratio(
            "next() / latest() of the same new 64 B frame".into(),
            &next_new,
            &latest_new,
            Some(1.0),
        );
        self.ratio(
            "next() of a new frame / latest() of an unchanged one".into(),
            &next64,
            &latest64,
            None,
        );
        for way in Way::all(true) {
            let pts: Vec<&Point> = self.fanout.iter().filter(|p| p.way == way).collect();
            if let (Some(first), Some(last)) = (pts.first(), pts.last()) {
                if last.subscribers > first.subscribers {
                    let name = format!(
                        "publish cost {} / {} subscribers ({})",
                        last.subscribers,
                        first.subscribers,
                        way.label()
                    );
                    let (a, b) = (last.publish.median_ns, first.publish.median_ns);
                    // Sleeping subscribers are all woken inside the one
                    // FUTEX_WAKE: that cost grows with N by design. The
                    // control's growth is the machine's, not the bus's.
                    let target = (!way.waiting && !way.control).then_some(1.25);
                    self.ratio(name, &Some(Fig::whole(a)), &Some(Fig::whole(b)), target);
                }
            }
        }
        // The subscribers' effect on the publisher with the machine's load
        // divided out: in each control point, publishes to the topic the N
        // subscribers read against those to a topic nobody reads,
        // interleaved in the same point.
        let controls: Vec<(String, Option<f64>, Option<f64>)> = self
            .fanout
            .iter()
            .filter(|p| p.way.control)
            .map(|p| {
                (
                    format!(
                        "publish, {} subscribers / a topic nobody reads, interleaved{}",
                        p.subscribers,
                        if p.way.pinned { " (pinned)" } else { "" }
                    ),
                    Some(p.publish.median_ns),
                    p.unread.as_ref().map(|u| u.median_ns),
                )
            })
            .collect();
        for (name, a, b) in controls {
            self.ratio(name, &a.map(Fig::whole), &b.map(Fig::whole), Some(1.25));
        }
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let m = &self.machine;
        let _ = writeln!(
            t,
            "shmbus bench — {} CPU(s), {}, Linux {}, {}",
            m.cpus, m.cpu_model, m.kernel, m.arch
        );
        let _ = writeln!(
            t,
            "{} rounds interleaved, {} round trips per mechanism per round; clock read {:.0} ns (subtracted)",
            self.method.rounds, self.method.iters_per_round, self.method.clock_overhead_ns
        );
        let _ = writeln!(t, "one-way latency = (round trip - clock) / 2\n");
        for pinned in [true, false] {
            let rows: Vec<&HandoffRow> =
                self.handoff.iter().filter(|r| r.pinned == pinned).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(
                t,
                "Handoff, one way, 64 B, two processes {}",
                if pinned {
                    "pinned to two CPUs"
                } else {
                    "unpinned"
                }
            );
            let _ = writeln!(
                t,
                "  {:<34} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}",
                "mechanism", "median", "p99", "min", "max", "/floor", "/best-alt", "/unix"
            );
            for r in rows {
                let _ = writeln!(
                    t,
                    "  {:<34} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8} {:>8}",
                    r.label,
                    ns(r.one_way.median_ns),
                    ns(r.one_way.p99_ns),
                    ns(r.one_way.min_ns),
                    ns(r.one_way.max_ns),
                    x(r.vs_floor),
                    x(r.vs_best_alternative),
                    x(r.vs_unix_socket)
                );
            }
            let _ = writeln!(t);
        }
        if !self.micro.is_empty() {
            let _ = writeln!(t, "In-process cost per operation (means of batches)");
            let _ = writeln!(
                t,
                "  {:<48} {:>9} {:>9} {:>9} {:>9} {:>8}",
                "operation", "median", "p99", "min", "max", "ratio"
            );
            for r in &self.micro {
                let _ = writeln!(
                    t,
                    "  {:<48} {:>9} {:>9} {:>9} {:>9} {:>8}",
                    r.label,
                    ns(r.cost.median_ns),
                    ns(r.cost.p99_ns),
                    ns(r.cost.min_ns),
                    ns(r.cost.max_ns),
                    x(r.ratio)
                );
            }
            let _ = writeln!(
                t,
                "  (ratio: to the bare seqlock for publish/read, to a bare load for poll, to notify off for notify on)\n"
            );
        }
        if !self.fanout.is_empty() {
            let _ = writeln!(
                t,
                "Fan-out: one publisher, N subscriber processes (median / p99)"
            );
            let _ = writeln!(
                t,
                "  {:>4} {:<22} {:>19} {:>19} {:>21}",
                "N", "notify", "publish", "read (latest)", "publish->read"
            );
            for p in &self.fanout {
                let _ = writeln!(
                    t,
                    "  {:>4} {:<22} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
                    p.subscribers,
                    p.way.label(),
                    ns(p.publish.median_ns),
                    ns(p.publish.p99_ns),
                    ns(p.read.median_ns),
                    ns(p.read.p99_ns),
                    ns(p.latency.median_ns),
                    ns(p.latency.p99_ns)
                );
                if let Some(u) = &p.unread {
                    let _ = writeln!(
                        t,
                        "  {:>4} {:<22} {:>9} {:>9}",
                        "",
                        "  same, unread topic",
                        ns(u.median_ns),
                        ns(u.p99_ns),
                    );
                }
            }
            if self.fanout.iter().any(|p| p.way.control) {
                let _ = writeln!(
                    t,
                    "  (control: the timed publishes alternate between the topic the N subscribers read and one nobody reads)"
                );
            }
            let _ = writeln!(t);
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(
                t,
                "Ratios (medians of this run; [lowest-highest] of the same ratio per round)"
            );
            for r in &self.ratios {
                let _ = writeln!(t, "  {}", r.line());
            }
            let _ = writeln!(t);
        }
        for s in &self.skipped {
            let _ = writeln!(t, "skipped: {s}");
        }
        t
    }
}

impl Ratio {
    /// The ratio as a line of the table: name, value, its spread over the
    /// rounds, and the verdict with how many rounds agree.
    pub fn line(&self) -> String {
        let spread = match (
            self.rounds.iter().copied().reduce(f64::min),
            self.rounds.iter().copied().reduce(f64::max),
        ) {
            (Some(lo), Some(hi)) if self.rounds.len() > 1 => format!("[{lo:.2}-{hi:.2}]"),
            _ => String::new(),
        };
        let of_rounds = match self.rounds_met {
            Some(k) if self.rounds.len() > 1 => {
                format!(" (met in {k} of {} rounds)", self.rounds.len())
            }
            _ => String::new(),
        };
        let verdict = match (self.target, self.met) {
            (Some(tg), Some(true)) => format!("target <= {tg}: met{of_rounds}"),
            (Some(tg), Some(false)) => format!("target <= {tg}: MISSED{of_rounds}"),
            _ => String::new(),
        };
        format!(
            "{:<62} {:>8.2}x {:>13}  {}",
            self.name, self.value, spread, verdict
        )
        .trim_end()
        .to_string()
    }
}

/// A duration in ns with about three significant digits (`1.23 ns`,
/// `456 ns`, `12.3 us`), as every shmbus command writes durations.
pub use shmbus_toolbox::units::duration as ns;

fn x(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}x")).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_compare_medians_of_the_same_pinning() {
        let opts = Opts::parse(&[]).unwrap();
        let mut r = Report::new(&opts, &[], 0.0, 2);
        r.add_handoff(Mech::Seqlock, true, &mut [200.0, 200.0, 200.0], &[], "");
        r.add_handoff(Mech::ShmbusPoll, true, &mut [240.0, 240.0, 240.0], &[], "");
        r.add_handoff(Mech::ShmbusRaw, true, &mut [250.0; 3], &[], "");
        r.add_handoff(Mech::Unix, true, &mut [2000.0; 3], &[], "");
        r.add_handoff(Mech::Seqlock, false, &mut [1000.0; 3], &[], "");
        r.finish();
        let poll = r.handoff.iter().find(|h| h.key == "shmbus_poll").unwrap();
        assert_eq!(poll.one_way.median_ns, 120.0, "round trip / 2");
        assert_eq!(poll.vs_floor, Some(1.2));
        assert_eq!(poll.vs_best_alternative, Some(0.12));
        let met = |name: &str| r.ratios.iter().find(|x| x.name == name).unwrap().met;
        assert_eq!(
            met("handoff busy-poll, raw bytes / bare seqlock floor (pinned)"),
            Some(true),
            "125 / 100 ns <= 1.3"
        );
        assert_eq!(
            met("handoff busy-poll, typed / raw bytes (pinned)"),
            Some(true),
            "120 / 125 ns <= 1.3"
        );
    }

    /// A ratio is also taken round by round, each round's numerator over
    /// the same round's denominator, and the table says in how many rounds
    /// the target holds: a run whose pooled ratio misses by noise says so.
    #[test]
    fn ratios_are_paired_by_round_and_the_table_counts_the_rounds_met() {
        let opts = Opts::parse(&[]).unwrap();
        let mut r = Report::new(&opts, &[], 0.0, 2);
        let mut dists = Vec::new();
        // Round trips (one way is half): the floor drifts 200 -> 400 ns
        // over the rounds; the raw handoff follows it at 1.2x, except in
        // round 1 (2.0x). The typed poll is missing in round 2.
        let floor = [200.0, 300.0, 400.0, 400.0];
        let raw = [240.0, 600.0, 480.0, 480.0];
        for (round, (f, w)) in floor.iter().zip(&raw).enumerate() {
            report_push(&mut dists, Mech::Seqlock, round, *f);
            report_push(&mut dists, Mech::ShmbusRaw, round, *w);
            if round != 2 {
                report_push(&mut dists, Mech::ShmbusPoll, round, *w * 1.5);
            }
        }
        for d in &mut dists {
            r.add_handoff(d.mech, d.pinned, &mut d.samples, &d.rounds, "");
        }
        let raw_row = r
            .handoff
            .iter()
            .find(|h| h.key == "shmbus_poll_raw")
            .unwrap();
        assert_eq!(
            raw_row.rounds_ns,
            vec![Some(120.0), Some(300.0), Some(240.0), Some(240.0)],
            "one way per round"
        );
        r.finish();
        let get = |name: &str| r.ratios.iter().find(|x| x.name == name).unwrap().clone();
        let raw = get("handoff busy-poll, raw bytes / bare seqlock floor (pinned)");
        assert_eq!(raw.rounds, vec![1.2, 2.0, 1.2, 1.2]);
        assert_eq!(raw.rounds_met, Some(3));
        // Pooled, the drift of the floor reads as a miss (240 / 150 ns):
        // paired by round, three rounds of four hold the target.
        assert_eq!(raw.met, Some(false));
        assert!(
            raw.line()
                .ends_with("1.60x   [1.20-2.00]  target <= 1.3: MISSED (met in 3 of 4 rounds)"),
            "{}",
            raw.line()
        );
        // Round 2 has no typed figure: three pairs, all 1.5x.
        let typed = get("handoff busy-poll, typed / raw bytes (pinned)");
        assert_eq!(typed.rounds, vec![1.5, 1.5, 1.5]);
        assert_eq!((typed.met, typed.rounds_met), (Some(false), Some(0)));
        assert!(
            typed
                .line()
                .ends_with("target <= 1.3: MISSED (met in 0 of 3 rounds)"),
            "{}",
            typed.line()
        );
        // Without figures per round: no spread, no count.
        let mut one = Report::new(&opts, &[], 0.0, 2);
        one.add_handoff(Mech::Seqlock, true, &mut [200.0; 3], &[], "");
        one.add_handoff(Mech::ShmbusRaw, true, &mut [300.0; 3], &[], "");
        one.finish();
        let line = one.ratios[0].line();
        assert!(
            line.contains(" 1.50x ")
                && line.ends_with(" target <= 1.3: MISSED")
                && !line.contains('['),
            "{line}"
        );
    }

    /// One batch of three equal round trips of `mech` in `round`.
    fn report_push(dists: &mut Vec<Dist>, mech: Mech, round: usize, rtt: f64) {
        push_samples(dists, mech, true, round, vec![rtt; 3]);
    }

    /// The figures per round of an in-process row are the medians of its
    /// batches, `per_round` at a time in the order taken.
    #[test]
    fn micro_rounds_are_the_medians_of_each_rounds_batches() {
        let opts = Opts::parse(&[]).unwrap();
        let mut r = Report::new(&opts, &[], 0.0, 2);
        r.add_micro(
            "bare_acquire_load",
            "load",
            &mut [1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
            3,
        );
        r.add_micro(
            "poll_nothing_new",
            "poll",
            &mut [1.0, 1.5, 1.2, 9.0, 2.2, 2.4],
            3,
        );
        assert_eq!(r.micro[1].rounds_ns, vec![Some(1.2), Some(2.4)]);
        r.finish();
        let poll = r
            .ratios
            .iter()
            .find(|x| x.name == "poll nothing new / bare acquire load")
            .unwrap();
        assert_eq!(poll.rounds, vec![1.2, 1.2]);
        assert_eq!(poll.rounds_met, Some(2));
    }

    /// Every shmbus mechanism is compared with a floor: a variant added
    /// later gets its `/floor` column without a list to extend.
    #[test]
    fn every_shmbus_mechanism_has_a_floor() {
        let opts = Opts::parse(&[]).unwrap();
        let mut r = Report::new(&opts, &[], 0.0, 2);
        for m in Mech::ALL {
            r.add_handoff(m, true, &mut [200.0; 3], &[], "");
        }
        r.finish();
        for h in r.handoff.iter().filter(|h| h.kind == Kind::Shmbus) {
            let want = if h.key == "shmbus_wait" {
                "futex"
            } else {
                "seqlock"
            };
            assert_eq!((h.key, h.floor), (h.key, Some(want)));
            assert_eq!(h.vs_floor, Some(1.0), "{}", h.key);
        }
    }
}
