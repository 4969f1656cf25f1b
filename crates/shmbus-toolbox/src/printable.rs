//! Text from a segment or a file, made safe to print on a terminal.
//!
//! Topic names, schema type and field names, string values in frames and
//! everything in a recording come from other processes, possibly another
//! user's. Printed as they are, control characters in them drive the
//! terminal: `ESC ] 0 ;` retitles the window, `ESC [ 2 J` clears it, a
//! carriage return overwrites the line with something else, and the
//! bidirectional overrides (U+202E) make text read backwards. Every tool
//! prints such text through [`printable`] (or a [`PrintableWriter`]).
//!
//! Each control character (Unicode category Cc: C0, DEL, C1) except newline
//! and tab, and each bidirectional formatting character, is replaced by its
//! JSON escape `\uXXXX`. Inside a JSON string that escape means the same
//! character, so JSON output stays valid and equal in value; serde_json
//! already escapes C0 itself, but not DEL, C1 or the bidi controls.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// True for a character that [`printable`] escapes.
pub fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every character for which [`is_unsafe`] holds replaced by
/// `\uXXXX`; borrowed when there is none (the usual case).
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `s` with each run of non-space characters that is too long to quote
/// whole cut as every shmbus message cuts one
/// ([`shmbus_core::topic::long_head`]: over 64 characters, its first 40 and
/// its length in bytes, e.g. `aaaa... (10000 bytes)`). For messages that
/// quote what the user typed (clap's "invalid value" and "unexpected
/// argument"): a 10 kB argument gives a short line, and the start shows
/// which argument it was.
pub fn clipped(s: &str) -> Cow<'_, str> {
    use shmbus_core::topic::long_head;
    if !s.split(char::is_whitespace).any(|w| long_head(w).is_some()) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(1024));
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        match long_head(word) {
            Some(head) => {
                out.push_str(head);
                let _ = write!(out, "... ({} bytes)", word.len());
            }
            None => out.push_str(word),
        }
        let space = after.len() - after.trim_start().len();
        out.push_str(&after[..space]);
        rest = &after[space..];
    }
    Cow::Owned(out)
}

/// A writer that passes text through [`printable`]. Each `write` is taken
/// as whole UTF-8 text (as `write!` and `write_all` of a `str` or of a
/// whole JSON line produce); bytes that are not UTF-8 are written as
/// `\xNN`, never raw.
#[derive(Debug)]
pub struct PrintableWriter<W: Write>(pub W);

impl<W: Write> Write for PrintableWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(s) => self.0.write_all(printable(s).as_bytes())?,
            Err(_) => {
                for chunk in buf.utf8_chunks() {
                    self.0.write_all(printable(chunk.valid()).as_bytes())?;
                    for b in chunk.invalid() {
                        write!(self.0, "\\x{b:02x}")?;
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_controls_are_escaped_and_plain_text_is_borrowed() {
        assert!(matches!(
            printable("imu/accel-1 °C ok\tx\n"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            printable("a\u{1b}]0;pwned\u{7}\u{1b}[2J\r\u{7f}\u{9b}b\u{202e}c"),
            "a\\u001b]0;pwned\\u0007\\u001b[2J\\u000d\\u007f\\u009bb\\u202ec"
        );
    }

    #[test]
    fn long_words_are_clipped_and_the_rest_kept() {
        assert!(matches!(clipped("a short\nline"), Cow::Borrowed(_)));
        let long = "x".repeat(10_000);
        let msg = format!("error: invalid value '{long}' for '[TOPIC]...'\n\n  tip: ok\n");
        let c = clipped(&msg);
        assert_eq!(
            c,
            format!(
                "error: invalid value '{}... (10002 bytes) for '[TOPIC]...'\n\n  tip: ok\n",
                "x".repeat(39)
            )
        );
        let whole = "y".repeat(64);
        assert_eq!(clipped(&whole), whole, "64 characters are kept whole");
        assert_eq!(
            clipped(&format!("{whole}y")),
            format!("{}... (65 bytes)", "y".repeat(40))
        );
        let wide = "é".repeat(100);
        assert_eq!(clipped(&wide), format!("{}... (200 bytes)", "é".repeat(40)));
    }

    #[test]
    fn escaped_json_means_the_same_value() {
        let v = serde_json::json!({"s": "x\u{9b}y\u{7f}\u{202e}z\u{1b}"});
        let text = serde_json::to_string(&v).unwrap();
        let safe = printable(&text);
        assert!(!safe.chars().any(is_unsafe));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn the_writer_escapes_invalid_utf8_too() {
        let mut w = PrintableWriter(Vec::new());
        w.write_all(b"ok \x1b[31m \xff\xc2\x9b").unwrap();
        assert_eq!(
            String::from_utf8(w.0).unwrap(),
            "ok \\u001b[31m \\xff\\u009b"
        );
    }
}
