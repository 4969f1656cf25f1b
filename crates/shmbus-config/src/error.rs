//! Config errors: every problem found, each as `path:line:col: message`.

use std::fmt;

/// Where something is in a config file. Lines and columns count from 1;
/// line 0 means "the file as a whole" (it could not be read at all).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Location {
    /// The path as given (or `<builtin demo>` for the compiled-in config).
    pub path: String,
    /// Line, from 1 (0: no position).
    pub line: usize,
    /// Column in characters, from 1.
    pub col: usize,
}

impl Location {
    /// The location of byte `offset` in `text`.
    pub fn of_offset(path: &str, text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = before[line_start..].chars().count() + 1;
        Location {
            path: path.to_string(),
            line,
            col,
        }
    }

    /// A location for the whole file.
    pub fn file(path: &str) -> Location {
        Location {
            path: path.to_string(),
            line: 0,
            col: 0,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = path_shown(&self.path);
        if self.line == 0 {
            write!(f, "{path}")
        } else {
            write!(f, "{path}:{}:{}", self.line, self.col)
        }
    }
}

/// A path as a message shows it: whole (the file name is what a reader
/// needs), with control characters escaped (`\u001b`, `\u000a`, as the
/// tools' `printable` writes them), so a path
/// given on the command line or in `$SHMBUS_CONFIG` cannot move the cursor
/// or forge a second line of output.
pub(crate) fn path_shown(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(path);
    }
    let mut out = String::with_capacity(path.len() + 8);
    for c in path.chars() {
        if c.is_control() {
            // As the tools' `printable` writes it: one style per line.
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A string from a command line (a `--topic`, a `--bus`) as a message
/// quotes it: cut by the one rule for outside text
/// (`shmbus_core::topic::long_head`: its head and its length in bytes)
/// and escaped in the same style as [`path_shown`], so that a line that
/// quotes a path and an argument has one style, and a tool that escapes
/// its output again finds nothing left to escape.
pub(crate) fn arg_shown(s: &str) -> String {
    match shmbus_core::topic::long_head(s) {
        None => path_shown(s).into_owned(),
        Some(head) => format!("{}... ({} bytes)", path_shown(head), s.len()),
    }
}

/// Byte offsets of one text to lines and columns, each in O(log n): the
/// parser asks for a location per topic, per field it keeps and per
/// problem, and a 1 MiB file holds hundreds of thousands of them
/// ([`Location::of_offset`] scans the text from its start each time).
pub(crate) struct LineIndex<'a> {
    path: &'a str,
    len: usize,
    /// Offset of every `\n`.
    newlines: Vec<usize>,
    /// Offset of every UTF-8 continuation byte (columns count characters).
    continuation: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(path: &'a str, text: &str) -> LineIndex<'a> {
        let bytes = text.as_bytes();
        LineIndex {
            path,
            len: text.len(),
            newlines: (0..bytes.len()).filter(|&i| bytes[i] == b'\n').collect(),
            continuation: (0..bytes.len())
                .filter(|&i| bytes[i] & 0xc0 == 0x80)
                .collect(),
        }
    }

    /// The same location as [`Location::of_offset`] gives.
    pub(crate) fn at(&self, offset: usize) -> Location {
        let offset = offset.min(self.len);
        let line = self.newlines.partition_point(|&n| n < offset);
        let line_start = if line == 0 {
            0
        } else {
            self.newlines[line - 1] + 1
        };
        let cont = self.continuation.partition_point(|&c| c < offset)
            - self.continuation.partition_point(|&c| c < line_start);
        Location {
            path: self.path.to_string(),
            line: line + 1,
            col: offset - line_start - cont + 1,
        }
    }
}

/// One problem in a config: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is.
    pub at: Location,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// The most problems a [`ConfigErrors`] keeps; the rest are counted
/// ([`ConfigErrors::omitted`]). A hand-edited file has a few; a file that
/// is not a config at all (a log, a binary saved as UTF-8) has one per
/// line, and hundreds of thousands of lines help nobody on a serial
/// console.
pub const MAX_ERRORS: usize = 50;

/// Every problem found in a config, in file order. Displayed one
/// `path:line:col: message` per line: the first [`MAX_ERRORS`] found, then
/// how many more there are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// The problems, sorted by position (at most [`MAX_ERRORS`]).
    pub errors: Vec<ConfigError>,
    /// How many more problems were found and not kept.
    pub omitted: usize,
}

impl ConfigErrors {
    /// A single error.
    pub fn one(at: Location, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            errors: vec![ConfigError {
                at,
                message: message.into(),
            }],
            omitted: 0,
        }
    }

    /// Add a problem (counted only, once [`MAX_ERRORS`] are kept).
    pub fn push(&mut self, at: Location, message: impl Into<String>) {
        if self.errors.len() >= MAX_ERRORS {
            self.omitted += 1;
            return;
        }
        self.errors.push(ConfigError {
            at,
            message: message.into(),
        });
    }

    /// True if no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of problems found, kept or not.
    pub fn len(&self) -> usize {
        self.errors.len() + self.omitted
    }

    /// Iterate over the problems.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// Sort by position (stable: same-position errors keep their order).
    pub(crate) fn sort(&mut self) {
        self.errors.sort_by_key(|e| (e.at.line, e.at.col));
    }

    /// `Ok(v)` if empty, else the errors, sorted.
    pub(crate) fn into_result<T>(mut self, v: T) -> Result<T, ConfigErrors> {
        if self.is_empty() {
            Ok(v)
        } else {
            self.sort();
            Err(self)
        }
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        if self.omitted > 0 {
            let path = self.errors.last().map_or("", |e| e.at.path.as_str());
            write!(
                f,
                "\n{path}: {} more problems not shown: is this the right file? fix the ones above first",
                self.omitted
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(Location::of_offset("f", text, 0).to_string(), "f:1:1");
        assert_eq!(Location::of_offset("f", text, 6).to_string(), "f:2:1");
        // Columns count characters, not bytes: '=' follows "bé ".
        let eq = text.rfind('=').unwrap();
        assert_eq!(Location::of_offset("f", text, eq).to_string(), "f:2:4");
        assert_eq!(Location::file("f").to_string(), "f");
    }

    #[test]
    fn the_line_index_gives_the_locations_a_scan_gives() {
        let text = "\u{feff}a = 1\r\nbé = \"日本\"\n\n  x\u{1F600}y = 2\nlast";
        let index = LineIndex::new("f", text);
        for offset in (0..=text.len() + 2).filter(|&o| o > text.len() || text.is_char_boundary(o)) {
            assert_eq!(
                index.at(offset),
                Location::of_offset("f", text, offset),
                "offset {offset}"
            );
        }
    }
}
