//! One-line summaries of each message, for the demo's table.

use crate::msg::{Accel, Imu, Net, Power, System, Thermal};

/// A short, human-readable line describing a frame.
pub trait Summary {
    /// The line (no newline).
    fn summary(&self) -> String;
}

fn v3(v: [f32; 3]) -> String {
    format!("[{:+.2} {:+.2} {:+.2}]", v[0], v[1], v[2])
}

impl Summary for Imu {
    fn summary(&self) -> String {
        format!(
            "acc {} m/s² gyro {} rad/s {:.1}°C",
            v3(self.acc),
            v3(self.gyro),
            self.temp_c
        )
    }
}

impl Summary for Accel {
    fn summary(&self) -> String {
        match self.acc {
            Some(a) => format!("{} acc {} m/s²", self.device, v3(a)),
            None => "absent (no IIO accelerometer)".to_string(),
        }
    }
}

impl Summary for System {
    fn summary(&self) -> String {
        let mut s = String::new();
        if let Some(c) = self.cpu_pct {
            s += &format!("cpu {c:.0}% of {} ", self.cpus);
        }
        if let Some(l) = self.load {
            s += &format!("load {:.2} {:.2} {:.2} ", l[0], l[1], l[2]);
        }
        if let Some(m) = self.mem {
            s += &format!(
                "mem {} / {} MiB free",
                m.available_kib / 1024,
                m.total_kib / 1024
            );
        }
        if s.is_empty() {
            "no data".into()
        } else {
            s.trim_end().into()
        }
    }
}

impl Summary for Thermal {
    fn summary(&self) -> String {
        if self.temps.is_empty() {
            return "none (no thermal zone or hwmon sensor here)".into();
        }
        let parts: Vec<String> = self
            .temps
            .iter()
            .map(|t| format!("{} {:.1}°C", t.name, f64::from(t.milli_c) / 1000.0))
            .collect();
        parts.join(", ")
    }
}

impl Summary for Power {
    fn summary(&self) -> String {
        if self.supplies.is_empty() {
            return "none (no battery or charger here)".into();
        }
        let parts: Vec<String> = self
            .supplies
            .iter()
            .map(|s| {
                let mut p = format!("{} {}", s.name, s.kind);
                if let Some(c) = s.capacity_pct {
                    p += &format!(" {c}%");
                }
                if let Some(o) = s.online {
                    p += if o { " online" } else { " offline" };
                }
                if !s.status.is_empty() {
                    p += &format!(" {}", s.status);
                }
                if let Some(v) = s.voltage_uv {
                    p += &format!(" {:.2}V", f64::from(v) / 1e6);
                }
                p
            })
            .collect();
        parts.join(", ")
    }
}

fn rate(bps: f32) -> String {
    match bps {
        b if b >= 1e6 => format!("{:.1}MB/s", b / 1e6),
        b if b >= 1e3 => format!("{:.1}kB/s", b / 1e3),
        b => format!("{b:.0}B/s"),
    }
}

impl Summary for Net {
    fn summary(&self) -> String {
        if self.ifaces.is_empty() {
            return "no interfaces".into();
        }
        let parts: Vec<String> = self
            .ifaces
            .iter()
            .filter(|i| i.name.as_str() != "lo" || self.ifaces.len() == 1)
            .map(|i| {
                format!(
                    "{} rx {} tx {}",
                    i.name,
                    rate(i.rx_bytes_per_s),
                    rate(i.tx_bytes_per_s)
                )
            })
            .collect();
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Memory, Temp, name};

    #[test]
    fn summaries_show_values_and_absence() {
        let imu = crate::imu::simulate(0.0, 0, 0);
        assert!(imu.summary().starts_with("acc ["), "{}", imu.summary());
        let none = Accel {
            t_ns: 0,
            device: name(""),
            acc: None,
        };
        assert!(none.summary().contains("absent"));
        let sys = System {
            t_ns: 0,
            cpu_pct: Some(12.4),
            cpus: 2,
            load: Some([0.5, 0.25, 0.125]),
            tasks: None,
            mem: Some(Memory {
                total_kib: 2048 * 1024,
                available_kib: 1024 * 1024,
                swap_total_kib: 0,
                swap_free_kib: 0,
            }),
        };
        assert_eq!(
            sys.summary(),
            "cpu 12% of 2 load 0.50 0.25 0.12 mem 1024 / 2048 MiB free"
        );
        let mut th = Thermal {
            t_ns: 0,
            temps: heapless::Vec::new(),
        };
        assert!(th.summary().starts_with("none"));
        th.temps
            .push(Temp {
                name: name("zone:cpu"),
                milli_c: 42500,
            })
            .unwrap();
        assert_eq!(th.summary(), "zone:cpu 42.5°C");
        assert!(
            Power {
                t_ns: 0,
                supplies: heapless::Vec::new()
            }
            .summary()
            .starts_with("none")
        );
        assert_eq!(rate(1500.0), "1.5kB/s");
    }
}
