//! A simulated 6-axis IMU: deterministic, physically consistent motion.
//!
//! The body sways in roll and pitch, turns at a steady yaw rate and moves
//! on a small horizontal circle. The gyroscope gives the body angular rate
//! of that attitude (ZYX Euler kinematics); the accelerometer gives the
//! specific force (acceleration minus gravity) rotated into the body frame,
//! plus a small 97 Hz vibration. Sample `n` at rate `r` depends only on `n`
//! and `r`: two runs publish the same values.

use crate::msg::Imu;
use crate::run::{Source, Warn};

/// Standard gravity, m/s².
pub const G: f64 = 9.80665;

const TAU: f64 = std::f64::consts::TAU;
const ROLL_AMP: f64 = 0.30; // rad
const ROLL_HZ: f64 = 0.5;
const PITCH_AMP: f64 = 0.20; // rad
const PITCH_HZ: f64 = 0.3;
const YAW_RATE: f64 = 0.5; // rad/s
const CIRCLE_R: f64 = 0.05; // m
const CIRCLE_HZ: f64 = 1.0;
const VIB_AMP: f64 = 0.05; // m/s²
const VIB_HZ: f64 = 97.0;

/// Attitude (roll, pitch, yaw) and its time derivative at `t` seconds.
fn attitude(t: f64) -> ([f64; 3], [f64; 3]) {
    let (wr, wp) = (TAU * ROLL_HZ, TAU * PITCH_HZ);
    let roll = ROLL_AMP * (wr * t).sin();
    let pitch = PITCH_AMP * (wp * t + 1.0).sin();
    let yaw = YAW_RATE * t;
    let d = [
        ROLL_AMP * wr * (wr * t).cos(),
        PITCH_AMP * wp * (wp * t + 1.0).cos(),
        YAW_RATE,
    ];
    ([roll, pitch, yaw], d)
}

/// World vector (x east, y north, z up) into the body frame for attitude
/// `[roll, pitch, yaw]` (R = Rz(yaw)·Ry(pitch)·Rx(roll); this is Rᵀ·v).
pub fn world_to_body(att: [f64; 3], v: [f64; 3]) -> [f64; 3] {
    let [r, p, y] = att;
    // Rz(yaw)ᵀ
    let (sy, cy) = y.sin_cos();
    let a = [cy * v[0] + sy * v[1], -sy * v[0] + cy * v[1], v[2]];
    // Ry(pitch)ᵀ
    let (sp, cp) = p.sin_cos();
    let b = [cp * a[0] - sp * a[2], a[1], sp * a[0] + cp * a[2]];
    // Rx(roll)ᵀ
    let (sr, cr) = r.sin_cos();
    [b[0], cr * b[1] + sr * b[2], -sr * b[1] + cr * b[2]]
}

/// The sample at time `t` seconds (index `seq`, taken at `t_ns`).
pub fn simulate(t: f64, seq: u64, t_ns: u64) -> Imu {
    let (att, d) = attitude(t);
    let [roll, pitch, _] = att;
    let [droll, dpitch, dyaw] = d;
    // Body rates from Euler rates (ZYX).
    let p = droll - dyaw * pitch.sin();
    let q = dpitch * roll.cos() + dyaw * roll.sin() * pitch.cos();
    let r = -dpitch * roll.sin() + dyaw * roll.cos() * pitch.cos();
    // Specific force in the world: acceleration of the circle, minus gravity.
    let wc = TAU * CIRCLE_HZ;
    let a = [
        -CIRCLE_R * wc * wc * (wc * t).cos(),
        -CIRCLE_R * wc * wc * (wc * t).sin(),
        G,
    ];
    let f = world_to_body(att, a);
    let vib = VIB_AMP * (TAU * VIB_HZ * t).sin();
    Imu {
        t_ns,
        seq,
        acc: [
            (f[0] + vib) as f32,
            (f[1] - vib) as f32,
            (f[2] + 0.5 * vib) as f32,
        ],
        gyro: [p as f32, q as f32, r as f32],
        temp_c: (35.0 + 0.5 * (TAU * t / 60.0).sin()) as f32,
    }
}

/// The simulated IMU sensor: sample `n` is at `n / rate` seconds.
#[derive(Debug)]
pub struct ImuSource {
    rate_hz: f64,
    seq: u64,
}

impl ImuSource {
    /// A simulation sampled at `rate_hz`.
    pub fn new(rate_hz: f64) -> ImuSource {
        ImuSource { rate_hz, seq: 0 }
    }
}

impl Source for ImuSource {
    type Msg = Imu;

    fn sample(&mut self, t_ns: u64, _warn: &mut Warn) -> Imu {
        let m = simulate(self.seq as f64 / self.rate_hz, self.seq, t_ns);
        self.seq += 1;
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: [f32; 3]) -> f64 {
        v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt()
    }

    #[test]
    fn level_and_still_reads_one_g_up() {
        let f = world_to_body([0.0, 0.0, 1.234], [0.0, 0.0, G]);
        assert!((f[2] - G).abs() < 1e-12 && f[0].abs() < 1e-12 && f[1].abs() < 1e-12);
        // Rolled 90° right: gravity appears on the body y axis.
        let f = world_to_body([std::f64::consts::FRAC_PI_2, 0.0, 0.0], [0.0, 0.0, G]);
        assert!((f[1] - G).abs() < 1e-9 && f[2].abs() < 1e-9, "{f:?}");
    }

    #[test]
    fn samples_are_deterministic_and_plausible() {
        let mut a = ImuSource::new(1000.0);
        let mut b = ImuSource::new(1000.0);
        let mut w = Warn::new("test");
        let mut yaw_sum = 0.0;
        for i in 0..5000 {
            let (x, y) = (a.sample(i, &mut w), b.sample(i, &mut w));
            assert_eq!(x, y);
            assert_eq!(x.seq, i);
            // Gravity plus at most ~2 m/s² of motion and vibration.
            let n = norm(x.acc);
            assert!((7.5..12.2).contains(&n), "sample {i}: |acc| = {n}");
            assert!(norm(x.gyro) < 2.0, "sample {i}: gyro {:?}", x.gyro);
            assert!((34.0..36.0).contains(&x.temp_c));
            yaw_sum += f64::from(x.gyro[2]);
        }
        // The body turns at about YAW_RATE on average.
        let mean = yaw_sum / 5000.0;
        assert!((mean - YAW_RATE).abs() < 0.1, "mean yaw rate {mean}");
    }

    #[test]
    fn gyro_is_the_rate_of_the_attitude_that_rotates_gravity() {
        // Integrate the gyro's roll rate around level: small-angle check that
        // the accelerometer's y/z ratio follows the integrated roll.
        let dt = 1e-4;
        let (att0, _) = attitude(0.0);
        let mut roll = att0[0];
        for i in 0..20_000 {
            let s = simulate(i as f64 * dt, i, 0);
            let pitch = attitude(i as f64 * dt).0[1];
            // Euler roll rate from body rates: p + tanθ (q sinφ + r cosφ).
            roll += dt
                * (f64::from(s.gyro[0])
                    + pitch.tan()
                        * (f64::from(s.gyro[1]) * roll.sin() + f64::from(s.gyro[2]) * roll.cos()));
        }
        let (att, _) = attitude(2.0);
        assert!(
            (roll - att[0]).abs() < 0.01,
            "integrated roll {roll} vs {}",
            att[0]
        );
    }
}
