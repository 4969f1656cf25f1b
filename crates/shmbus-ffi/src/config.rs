//! Topics by their name in the board's config: a C or Python process opens
//! "topic imu of /etc/shmbus/board.toml" instead of repeating its key,
//! slots, mode, group, lock policy and publisher user by hand.
//!
//! The config is found and read exactly as the `shmbus` tools and the
//! sensors find it (`shmbus_config::Config::find`): the path given, else
//! `$SHMBUS_CONFIG`, else `/etc/shmbus/shmbus.toml`, else the built-in demo
//! config; a bus given moves the config's derived keys to that bus, as
//! `--bus` does. Its errors are the tools' own texts (`path:line:col:
//! message`), with the code [`SHMBUS_ERR_CONFIG`].

use core::ffi::{CStr, c_char};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use shmbus_config::Config;
use shmbus_core::Topic;

use crate::cabi;
use crate::status::*;

/// The closest of `names` to `name` (edit distance), if it is close enough
/// to be a typo: at most 2 edits, and fewer than half the name's length.
fn closest<'a>(name: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = 2.min(name.chars().count().saturating_sub(1) / 2 + 1);
    names
        .map(|n| (distance(name, n, limit), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance of `a` and `b`, or `limit + 1` if the lengths
/// alone say it is more than `limit` (names are at most 63 bytes; the
/// name asked for may be anything a caller passed, so it is not compared
/// in full when it cannot be close).
fn distance(a: &str, b: &str, limit: usize) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len().abs_diff(b.len()) > limit {
        return limit + 1;
    }
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// Load the config at `path` (NULL: the tools' search order), moved to
/// `bus` if one is given.
///
/// # Safety
/// `path` and `bus` are NULL or NUL-terminated.
unsafe fn load(path: *const c_char, bus: Option<&str>) -> Result<Config> {
    let explicit = if path.is_null() {
        None
    } else {
        // SAFETY: non-NULL and NUL-terminated by the caller's contract. A
        // path is bytes, not necessarily UTF-8.
        Some(Path::new(std::ffi::OsStr::from_bytes(
            unsafe { CStr::from_ptr(path) }.to_bytes(),
        )))
    };
    if explicit.is_some_and(|p| p.as_os_str().is_empty()) {
        return fail(
            SHMBUS_ERR_CONFIG,
            "the config path is empty: give the path of a config file, or NULL (None in Python) for the usual search ($SHMBUS_CONFIG, /etc/shmbus/shmbus.toml, the built-in demo config)",
        );
    }
    let mut config = Config::find(explicit)
        .map_err(|e| Error::new(SHMBUS_ERR_CONFIG, e.to_string()))?
        .0;
    if let Some(bus) = bus {
        config
            .rebus(bus)
            .map_err(|e| Error::new(SHMBUS_ERR_CONFIG, e.to_string()))?;
    }
    Ok(config)
}

/// The topic `name` of the config at `path` (NULL: the tools' search
/// order), on `bus` (NULL: the config's own bus), ready to open: key,
/// slots, mode, group, lock policy, notification and publisher user as the
/// config declares them.
///
/// # Safety
/// `path` and `bus` are NULL or NUL-terminated; `name` is NUL-terminated.
pub(crate) unsafe fn topic_of(
    path: *const c_char,
    bus: *const c_char,
    name: *const c_char,
) -> Result<Topic> {
    // SAFETY: the caller's contract.
    let name = unsafe { cabi::text(name, "name") }?;
    // SAFETY: the caller's contract.
    let bus = unsafe { cabi::opt_text(bus, "bus") }?;
    // SAFETY: the caller's contract.
    let config = unsafe { load(path, bus) }?;
    let tc = config.require_topic(name).map_err(|msg| {
        let hint = closest(name, config.topics.iter().map(|t| t.name.as_str()))
            .map(|n| format!("; did you mean `{n}`?"))
            .unwrap_or_default();
        Error::new(SHMBUS_ERR_CONFIG, format!("{msg}{hint}"))
    })?;
    tc.to_topic()
        .map_err(|e| Error::new(SHMBUS_ERR_CONFIG, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_is_suggested_and_a_stranger_is_not() {
        let names = ["imu", "gnss", "power", "thermal"];
        assert_eq!(closest("imu0", names.into_iter()), Some("imu"));
        assert_eq!(closest("gns", names.into_iter()), Some("gnss"));
        assert_eq!(closest("thremal", names.into_iter()), Some("thermal"));
        assert_eq!(closest("lidar", names.into_iter()), None);
        assert_eq!(closest("x", names.into_iter()), None);
        assert_eq!(closest(&"a".repeat(100_000), names.into_iter()), None);
    }
}
