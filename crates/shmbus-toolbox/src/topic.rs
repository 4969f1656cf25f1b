//! TOPIC arguments: how a command line names a topic, shared by every
//! command that takes one (`shmbus info|echo|hz|rm|record|foxglove`), so a
//! topic is written the same way everywhere.
//!
//! A TOPIC is a name (looked up in the headers), a key (`0x5312abcd`, or
//! `key:N`), a shmid (`shmid:N`), or a plain decimal, which is a key or a
//! shmid: [`number`] says which, given the segments on the machine.
//! Looking the selector up is the command's business (it needs the
//! segments); parsing it is done here, once.

/// How a TOPIC argument was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `0x...` or `key:N`.
    Key(i32),
    /// `shmid:N`.
    Shmid(i32),
    /// A plain decimal: a key or a shmid.
    Number(i64),
    /// A topic name.
    Name(String),
}

impl Selector {
    /// Parse a TOPIC argument. Anything that is not a key, shmid or number
    /// is a name (which the command then checks).
    pub fn parse(s: &str) -> Selector {
        let t = s.trim();
        if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            if let Ok(k) = u32::from_str_radix(h, 16) {
                return Selector::Key(k as i32);
            }
        }
        if let Some(n) = t.strip_prefix("key:") {
            if let Some(k) = parse_int(n) {
                return Selector::Key(k as i32);
            }
        }
        if let Some(n) = t.strip_prefix("shmid:") {
            if let Ok(k) = n.parse::<i32>() {
                return Selector::Shmid(k);
            }
        }
        match t.parse::<i64>() {
            Ok(n) => Selector::Number(n),
            Err(_) => Selector::Name(t.to_string()),
        }
    }
}

fn parse_int(s: &str) -> Option<i64> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).ok().map(|k| i64::from(k as i32)),
        None => s.parse().ok(),
    }
}

/// The key a plain decimal `n` would be (as `/proc` shows keys: negative
/// allowed, or up to 2^32 - 1); `None` if it is no 32-bit value or 0.
pub fn number_as_key(n: i64) -> Option<i32> {
    i32::try_from(n)
        .ok()
        .or_else(|| u32::try_from(n).ok().map(|u| u as i32))
        .filter(|k| *k != 0)
}

/// What a plain decimal `n` names among `segments`, each `(key, shmid,
/// removed)`: the key of a live segment, else a shmid
/// ([`Selector::Key`] or [`Selector::Shmid`]); `Ok(None)` if neither.
///
/// Errors when `n` is both the key of one segment and the shmid of
/// another, with the fix (`key:N` or `shmid:N`).
pub fn number(
    n: i64,
    segments: impl IntoIterator<Item = (i32, i32, bool)>,
) -> Result<Option<Selector>, String> {
    let key = number_as_key(n);
    let id = i32::try_from(n).ok();
    let (mut by_key, mut by_id) = (None, None);
    for (k, shmid, removed) in segments {
        if by_key.is_none() && !removed && Some(k) == key {
            by_key = Some(shmid);
        }
        if by_id.is_none() && Some(shmid) == id {
            by_id = Some(shmid);
        }
    }
    match (by_key, by_id) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "'{n}' is both the key of shmid {a} and a shmid; write `key:{n}` or `shmid:{n}`"
        )),
        (Some(_), _) => Ok(key.map(Selector::Key)),
        (None, Some(b)) => Ok(Some(Selector::Shmid(b))),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse() {
        let p = Selector::parse;
        assert_eq!(p("0x7e00ABCD"), Selector::Key(0x7e00_abcd));
        assert_eq!(p("0xffffffff"), Selector::Key(-1));
        assert_eq!(p("key:12"), Selector::Key(12));
        assert_eq!(p("key:0x10"), Selector::Key(16));
        assert_eq!(p("shmid:5"), Selector::Shmid(5));
        assert_eq!(p("42"), Selector::Number(42));
        assert_eq!(p("imu"), Selector::Name("imu".into()));
        assert_eq!(p("0xzz"), Selector::Name("0xzz".into()));
        assert_eq!(p("shmid:x"), Selector::Name("shmid:x".into()));
    }

    #[test]
    fn a_number_is_a_live_key_first_then_a_shmid() {
        // (key, shmid, removed)
        let segs = [
            (7, 100, false),
            (9, 7, false),
            (12, 12, false),
            (5, 3, true),
        ];
        assert_eq!(
            number(12, segs),
            Ok(Some(Selector::Key(12))),
            "same segment both ways"
        );
        assert_eq!(number(100, segs), Ok(Some(Selector::Shmid(100))));
        assert_eq!(
            number(5, segs),
            Ok(None),
            "a removed segment's key is no key"
        );
        assert_eq!(number(3, segs), Ok(Some(Selector::Shmid(3))));
        let e = number(7, segs).unwrap_err();
        assert!(e.contains("key:7") && e.contains("shmid:7"), "{e}");
        assert_eq!(number(0, segs), Ok(None));
        assert_eq!(number_as_key(4_294_967_295), Some(-1));
        assert_eq!(number_as_key(1 << 40), None);
    }
}
