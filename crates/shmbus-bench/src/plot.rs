//! A small hand-made SVG writer for the two plots: handoff latency
//! distributions (one row per mechanism: p1-p99 whisker, p25-p75 box,
//! median bar, on a log scale) and fan-out scaling (publish and read cost
//! against the number of subscribers, log-log). No dependency: the output
//! is plain SVG 1.1 that browsers and GitHub render.

use std::fmt::Write as _;

use crate::fanout::Way;
use crate::report::{Dist, Report, ns};
use crate::stats::quantile;

const W: f64 = 960.0;
const LEFT: f64 = 300.0;
const RIGHT: f64 = 40.0;
const ROW: f64 = 22.0;
const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Log-scale axis from `lo` to `hi` onto `[a, b]` pixels.
struct LogAxis {
    lo: f64,
    hi: f64,
    a: f64,
    b: f64,
}

impl LogAxis {
    fn new(lo: f64, hi: f64, a: f64, b: f64) -> LogAxis {
        let lo = 10f64.powf(lo.max(0.1).log10().floor());
        let hi = 10f64.powf(hi.max(lo * 10.0).log10().ceil());
        LogAxis { lo, hi, a, b }
    }
    fn at(&self, v: f64) -> f64 {
        let f = (v.max(self.lo).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10());
        self.a + f.clamp(0.0, 1.0) * (self.b - self.a)
    }
    fn decades(&self) -> Vec<f64> {
        let mut v = Vec::new();
        let mut x = self.lo;
        while x <= self.hi * 1.001 {
            v.push(x);
            x *= 10.0;
        }
        v
    }
}

/// The whole SVG document.
pub fn svg(rep: &Report, dists: &[Dist]) -> String {
    let mut rows: Vec<(String, Vec<f64>)> = dists
        .iter()
        .filter(|d| !d.samples.is_empty())
        .map(|d| {
            let mut s = d.samples.clone();
            s.sort_by(f64::total_cmp);
            let pin = if d.pinned { "pinned" } else { "unpinned" };
            (format!("{} ({pin})", d.mech.label()), s)
        })
        .collect();
    rows.sort_by_key(|(l, _)| l.contains("unpinned"));
    let top = 60.0;
    let h1 = rows.len() as f64 * ROW;
    let fan_top = top + h1 + 110.0;
    let fan_h = if rep.fanout.is_empty() { 0.0 } else { 300.0 };
    let height = fan_top + fan_h + 80.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let m = &rep.machine;
    let _ = writeln!(
        o,
        r#"<text x="{}" y="22" font-size="15" font-weight="bold">shmbus bench: one-way handoff latency, 64 B (whisker p1-p99, box p25-p75, bar median)</text>"#,
        10
    );
    let _ = writeln!(
        o,
        r##"<text x="10" y="40" fill="#555">{} CPU(s), {}, Linux {}; {}</text>"##,
        m.cpus,
        esc(&m.cpu_model),
        esc(&m.kernel),
        esc(&rep.command)
    );
    if !rows.is_empty() {
        let lo = rows
            .iter()
            .map(|(_, s)| quantile(s, 0.01))
            .fold(f64::MAX, f64::min);
        let hi = rows
            .iter()
            .map(|(_, s)| quantile(s, 0.99))
            .fold(0.0, f64::max);
        let ax = LogAxis::new(lo, hi, LEFT, W - RIGHT);
        for d in ax.decades() {
            let x = ax.at(d);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" y1="{top}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                top + h1,
                top + h1 + 16.0,
                ns(d)
            );
        }
        for (i, (label, s)) in rows.iter().enumerate() {
            let y = top + i as f64 * ROW + ROW / 2.0;
            let color = if label.starts_with("shmbus") {
                COLORS[1]
            } else if label.starts_with("floor") {
                COLORS[2]
            } else {
                COLORS[0]
            };
            let q = |p: f64| ax.at(quantile(s, p));
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 8.0,
                y + 4.0,
                esc(label)
            );
            let _ = writeln!(
                o,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{color}"/>"#,
                q(0.01),
                q(0.99)
            );
            let _ = writeln!(
                o,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}" fill-opacity="0.35" stroke="{color}"/>"#,
                q(0.25),
                y - 6.0,
                (q(0.75) - q(0.25)).max(1.0),
                12.0
            );
            let xm = q(0.5);
            let _ = writeln!(
                o,
                r#"<line x1="{xm:.1}" y1="{:.1}" x2="{xm:.1}" y2="{:.1}" stroke="black" stroke-width="2"/>"#,
                y - 8.0,
                y + 8.0
            );
        }
    }
    if !rep.fanout.is_empty() {
        fanout(&mut o, rep, fan_top, fan_h);
    }
    o.push_str("</svg>\n");
    o
}

fn fanout(o: &mut String, rep: &Report, top: f64, h: f64) {
    let _ = writeln!(
        o,
        r#"<text x="10" y="{:.1}" font-size="15" font-weight="bold">Fan-out: cost per frame against subscriber processes (medians, log-log)</text>"#,
        top - 30.0
    );
    let ns_max = rep
        .fanout
        .iter()
        .flat_map(|p| [p.publish.median_ns, p.read.median_ns])
        .fold(0.0, f64::max);
    let ns_min = rep
        .fanout
        .iter()
        .flat_map(|p| [p.publish.median_ns, p.read.median_ns])
        .fold(f64::MAX, f64::min);
    let n_max = rep.fanout.iter().map(|p| p.subscribers).max().unwrap_or(1) as f64;
    let (x0, x1) = (LEFT, W - RIGHT - 270.0);
    let y = LogAxis::new(ns_min, ns_max, top + h, top);
    let xat = |n: f64| x0 + (n.log2() / n_max.log2().max(1.0)) * (x1 - x0);
    let _ = writeln!(
        o,
        r##"<rect x="{x0}" y="{top}" width="{:.1}" height="{h}" fill="none" stroke="#999"/>"##,
        x1 - x0
    );
    for d in y.decades() {
        let yy = y.at(d);
        let _ = writeln!(
            o,
            r##"<line x1="{x0}" y1="{yy:.1}" x2="{x1}" y2="{yy:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 - 6.0,
            yy + 4.0,
            ns(d)
        );
    }
    let mut ticks: Vec<usize> = rep.fanout.iter().map(|p| p.subscribers).collect();
    ticks.dedup();
    for n in ticks {
        let xx = xat(n as f64);
        let _ = writeln!(
            o,
            r#"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{n}</text>"#,
            top + h + 16.0
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">subscriber processes</text>"#,
        (x0 + x1) / 2.0,
        top + h + 34.0
    );
    // (label, the way, publish cost (else read cost)); unpinned ways only.
    let way = |notify, waiting, control| Way {
        notify,
        waiting,
        pinned: false,
        control,
    };
    let series: [(&str, Way, bool); 6] = [
        (
            "publish, notify on, subscribers asleep",
            way(true, true, false),
            true,
        ),
        ("publish, notify on, polling", way(true, false, false), true),
        (
            "publish, notify off, polling",
            way(false, false, false),
            true,
        ),
        (
            "publish to a topic nobody reads (control)",
            way(true, false, true),
            true,
        ),
        ("read latest(), asleep", way(true, true, false), false),
        ("read latest(), polling", way(true, false, false), false),
    ];
    for (i, (name, way, publish)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = rep
            .fanout
            .iter()
            .filter(|p| p.way == *way)
            .map(|p| {
                let v = if *publish {
                    // The control's line is its unread topic's publishes.
                    p.unread.as_ref().unwrap_or(&p.publish).median_ns
                } else {
                    p.read.median_ns
                };
                (xat(p.subscribers as f64), y.at(v))
            })
            .collect();
        if pts.is_empty() {
            continue;
        }
        let color = COLORS[i % COLORS.len()];
        let dash = if *publish {
            ""
        } else {
            r#" stroke-dasharray="5,4""#
        };
        let path: Vec<String> = pts.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            o,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"{dash}/>"#,
            path.join(" ")
        );
        for (a, b) in &pts {
            let _ = writeln!(
                o,
                r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#
            );
        }
        let ly = top + 14.0 + i as f64 * 18.0;
        let _ = writeln!(
            o,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{name}</text>"#,
            x1 + 10.0,
            x1 + 34.0,
            x1 + 40.0,
            ly + 4.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::Mech;
    use crate::opts::Opts;

    #[test]
    fn svg_has_a_row_per_distribution_and_escapes_labels() {
        let opts = Opts::parse(&[]).unwrap();
        let mut rep = Report::new(&opts, &["--plot".into(), "a<b".into()], 20.0, 2);
        rep.finish();
        let d = vec![
            Dist {
                mech: Mech::Seqlock,
                pinned: true,
                samples: vec![50.0, 60.0, 70.0],
                rounds: Vec::new(),
            },
            Dist {
                mech: Mech::Unix,
                pinned: false,
                samples: vec![5000.0, 6000.0],
                rounds: Vec::new(),
            },
        ];
        let s = svg(&rep, &d);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("floor: bare seqlock 64 B (pinned)"));
        assert!(s.contains("Unix datagram socketpair (unpinned)"));
        assert!(s.contains("a&lt;b") && !s.contains("a<b"));
    }
}
