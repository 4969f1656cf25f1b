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
        if self.line == 0 {
            write!(f, "{}", self.path)
        } else {
            write!(f, "{}:{}:{}", self.path, self.line, self.col)
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

/// Every problem found in a config, in file order. Displayed one
/// `path:line:col: message` per line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors {
    /// The problems, sorted by position.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A single error.
    pub fn one(at: Location, message: impl Into<String>) -> ConfigErrors {
        ConfigErrors {
            errors: vec![ConfigError {
                at,
                message: message.into(),
            }],
        }
    }

    /// Add a problem.
    pub fn push(&mut self, at: Location, message: impl Into<String>) {
        self.errors.push(ConfigError {
            at,
            message: message.into(),
        });
    }

    /// True if no problem was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// Number of problems.
    pub fn len(&self) -> usize {
        self.errors.len()
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
}
