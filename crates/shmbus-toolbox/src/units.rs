//! Sizes, durations, rates, dates, keys and users as short text for humans.
//!
//! Every shmbus command formats these through this module, so a duration
//! reads the same in `shmbus echo`, `hz`, `top`, `bench` and the demo.

/// A duration in nanoseconds with about three significant digits, in the
/// largest unit that keeps it readable: `1.23 ns`, `850 ns`, `12.3 us`,
/// `4.1 ms`, `2.5 s`, `3 min`, `5 h`, `12 d`. Not finite: `-`. Negative
/// values are shown as 0 ns.
pub fn duration(ns: f64) -> String {
    if !ns.is_finite() {
        return "-".into();
    }
    let v = ns.max(0.0);
    if v < 10.0 {
        format!("{v:.2} ns")
    } else if v < 1e3 {
        format!("{v:.0} ns")
    } else if v < 1e6 {
        format!("{:.1} us", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1} ms", v / 1e6)
    } else if v < 120e9 {
        format!("{:.1} s", v / 1e9)
    } else if v < 7200e9 {
        format!("{:.0} min", (v / 60e9).floor())
    } else if v < 172_800e9 {
        format!("{:.0} h", (v / 3600e9).floor())
    } else {
        format!("{:.0} d", (v / 86_400e9).floor())
    }
}

/// [`duration`] of a whole number of nanoseconds.
pub fn duration_ns(ns: u64) -> String {
    duration(ns as f64)
}

/// A byte count in binary units: `960 B`, `12.0 KiB`, `3.5 MiB`, `1.2 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// A rate in frames per second: `2.0 Hz`, `999.5 Hz`, `1000 Hz`.
pub fn rate(hz: f64) -> String {
    if !hz.is_finite() {
        "-".into()
    } else if hz >= 100.0 {
        format!("{hz:.0} Hz")
    } else {
        format!("{hz:.1} Hz")
    }
}

/// A System V key as `ipcs` shows it: `0x5312abcd`.
pub fn key_hex(key: i32) -> String {
    format!("0x{:08x}", key as u32)
}

/// Seconds since the epoch as UTC `YYYY-MM-DD HH:MM:SS`.
pub fn utc(secs: i64) -> String {
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// Nanoseconds since the epoch as `2026-11-26T23:59:01.123456789Z` (UTC).
pub fn iso8601(ns: u64) -> String {
    let (y, m, d, hh, mm, ss) = civil((ns / 1_000_000_000) as i64);
    let frac = ns % 1_000_000_000;
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{frac:09}Z")
}

/// A user's name for a table cell or a JSON field: the name, or the uid
/// as a number when no user has it.
pub fn user_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => u.name,
        _ => uid.to_string(),
    }
}

/// A user in a sentence: `alice (uid 1000)`, or `uid 4321` when no user
/// has that uid (not `4321 (uid 4321)`). Every message that names who
/// created or owns something says it this way.
pub fn user(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Seconds since the epoch as UTC (year, month, day, hour, minute, second),
/// by Howard Hinnant's `civil_from_days`: no time zone database needed.
pub fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_user_is_named_once_known_and_numbered_once_unknown() {
        assert_eq!(user(0), "root (uid 0)");
        assert_eq!(user_name(0), "root");
        // No user has the largest uid but one (the largest is "no uid").
        let nobody = u32::MAX - 1;
        assert_eq!(user(nobody), format!("uid {nobody}"));
        assert_eq!(user_name(nobody), nobody.to_string());
    }
    use super::*;

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(duration(1.234), "1.23 ns");
        assert_eq!(duration(456.0), "456 ns");
        assert_eq!(duration_ns(850), "850 ns");
        assert_eq!(duration(12_345.0), "12.3 us");
        assert_eq!(duration_ns(12_300_000), "12.3 ms");
        assert_eq!(duration(2.5e7), "25.0 ms");
        assert_eq!(duration_ns(4_100_000_000), "4.1 s");
        assert_eq!(duration_ns(180_000_000_000), "3 min");
        assert_eq!(duration_ns(5 * 3_600_000_000_000), "5 h");
        assert_eq!(duration_ns(u64::MAX), "213503 d");
        assert_eq!(duration(f64::NAN), "-");
        assert_eq!(duration(-5.0), "0.00 ns");
    }

    #[test]
    fn sizes_and_rates() {
        assert_eq!(bytes(960), "960 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 512 * 1024), "3.5 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(rate(2.0), "2.0 Hz");
        assert_eq!(rate(1000.4), "1000 Hz");
        assert_eq!(key_hex(-1), "0xffffffff");
        assert_eq!(key_hex(0x5312_abcd), "0x5312abcd");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            iso8601(951_827_696_500_000_000),
            "2000-02-29T12:34:56.500000000Z"
        );
        assert_eq!(
            iso8601(1_798_761_599_000_000_001),
            "2026-12-31T23:59:59.000000001Z"
        );
        assert_eq!(utc(i64::MIN / 1_000_000), utc(i64::MIN / 1_000_000));
    }
}
