//! Whether standard output may be redrawn in place.
//!
//! The live views (`shmbus top`, `shmbus hz`, `shmbus demo`) redraw their
//! table with cursor movements when standard output is a terminal. A
//! terminal that cannot move its cursor says so with `TERM=dumb` (an Emacs
//! `M-x shell`, some serial consoles and CI log viewers); there, and where
//! `TERM` is not set at all, the escape sequences would be printed as they
//! are, `ESC[H ESC[2J` before every refresh. Those get the line-by-line
//! output a pipe gets.

use std::ffi::OsStr;
use std::io::IsTerminal;

/// True if output that `is_terminal`, on a terminal of type `term` (the
/// value of `TERM`), can be redrawn with ANSI cursor movements.
pub fn can_redraw(is_terminal: bool, term: Option<&OsStr>) -> bool {
    is_terminal && term.is_some_and(|t| !t.is_empty() && t != "dumb")
}

/// [`can_redraw`] for this process's standard output and `TERM`.
pub fn stdout_can_redraw() -> bool {
    can_redraw(
        std::io::stdout().is_terminal(),
        std::env::var_os("TERM").as_deref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_that_can_move_its_cursor_is_redrawn() {
        fn t(s: &str) -> Option<&OsStr> {
            Some(OsStr::new(s))
        }
        assert!(can_redraw(true, t("xterm-256color")));
        assert!(can_redraw(true, t("linux")));
        assert!(can_redraw(true, t("vt100")));
        assert!(!can_redraw(true, t("dumb")));
        assert!(!can_redraw(true, t("")));
        assert!(!can_redraw(true, None));
        assert!(!can_redraw(false, t("xterm")));
    }
}
