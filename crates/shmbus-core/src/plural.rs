//! Counted nouns in messages: `1 byte`, `2 bytes`, `1 entry`, `3 processes`.
//!
//! Every crate's messages count things (bytes left over, frames missed,
//! processes attached); a count of one takes the singular. [`count`] is
//! the one place that rule lives, so no message says "1 bytes".

use core::fmt;

/// A whole number that can be counted (`u64`, `usize`, ...).
pub trait Amount: Copy {
    /// The number, as a `u64`.
    fn amount(self) -> u64;
}

macro_rules! amount {
    ($($t:ty),*) => {$(
        impl Amount for $t {
            fn amount(self) -> u64 {
                // A negative count (none is made) shows as 0 things.
                u64::try_from(self).unwrap_or(0)
            }
        }
    )*};
}
amount!(u8, u16, u32, u64, usize, i32, i64);

/// `n` and `noun` (given in the singular), made plural unless `n` is 1:
/// `count(1, "byte")` shows `1 byte`, `count(2, "entry")` `2 entries`.
pub fn count<N: Amount>(n: N, noun: &str) -> Count<'_> {
    Count {
        n: n.amount(),
        noun,
    }
}

/// `noun` (given in the singular) as it goes with `n`, without the number:
/// `noun(1, "frame")` is `frame`, `noun(3, "process")` is `processes`.
pub fn noun<N: Amount>(n: N, noun: &str) -> Noun<'_> {
    Noun {
        one: n.amount() == 1,
        noun,
    }
}

/// What [`count`] shows.
#[derive(Debug, Clone, Copy)]
pub struct Count<'a> {
    n: u64,
    noun: &'a str,
}

/// What [`noun`] shows.
#[derive(Debug, Clone, Copy)]
pub struct Noun<'a> {
    one: bool,
    noun: &'a str,
}

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.n, noun(self.n, self.noun))
    }
}

impl fmt::Display for Noun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let w = self.noun;
        if self.one {
            return f.write_str(w);
        }
        // The noun is the last word ("semaphore set", "JSON line").
        let last = w.rsplit(' ').next().unwrap_or(w);
        if let Some(stem) = w.strip_suffix('y') {
            let before = last.chars().rev().nth(1);
            if !matches!(before, Some('a' | 'e' | 'i' | 'o' | 'u') | None) {
                return write!(f, "{stem}ies");
            }
        }
        if ["s", "x", "sh", "ch"].iter().any(|e| last.ends_with(e)) {
            return write!(f, "{w}es");
        }
        write!(f, "{w}s")
    }
}

#[cfg(test)]
mod tests {
    use super::{count, noun};

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        let shown = |n: u64, w: &str| count(n, w).to_string();
        assert_eq!(shown(1, "byte"), "1 byte");
        assert_eq!(shown(0, "byte"), "0 bytes");
        assert_eq!(shown(2, "byte"), "2 bytes");
        assert_eq!(shown(1, "entry"), "1 entry");
        assert_eq!(shown(5, "entry"), "5 entries");
        assert_eq!(shown(2, "key"), "2 keys");
        assert_eq!(shown(1, "process"), "1 process");
        assert_eq!(shown(3, "process"), "3 processes");
        assert_eq!(shown(2, "semaphore set"), "2 semaphore sets");
        assert_eq!(count(1usize, "frame").to_string(), "1 frame");
        assert_eq!(noun(7u32, "frame").to_string(), "frames");
        assert_eq!(noun(-1i64, "topic").to_string(), "topics");
    }
}
