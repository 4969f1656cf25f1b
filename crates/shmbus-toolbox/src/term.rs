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

/// True unless standard output is a terminal on which this process is in
/// the background: `tcgetpgrp` names another process group as the
/// terminal's foreground (`shmbus demo &`, or `bg` after Ctrl-Z). Output
/// that is not a terminal, or a terminal whose foreground is unknown, is
/// taken as foreground.
///
/// A live view in the background draws over the screen of the program in
/// the foreground.
pub fn stdout_in_foreground() -> bool {
    in_foreground(
        nix::unistd::tcgetpgrp(std::io::stdout()).ok(),
        nix::unistd::getpgrp(),
    )
}

/// [`stdout_in_foreground`] for a terminal whose foreground process group
/// is `foreground` (`None`: not a terminal, or not known), seen from a
/// process in group `mine`.
pub fn in_foreground(foreground: Option<nix::unistd::Pid>, mine: nix::unistd::Pid) -> bool {
    foreground.is_none_or(|f| f == mine)
}

/// Whether standard output was closed when the program started (`>&-`,
/// or a service manager that gives it none).
///
/// Rust's runtime puts `/dev/null` on a closed fd 0, 1 or 2 before `main`
/// (opened read-write), so a closed stdout looks open, and everything
/// written to it is gone without an error: `shmbus record -o - >&-`
/// recorded into nothing, `shmbus echo imu >&-` read for ever. That
/// `/dev/null` is told from a shell's `> /dev/null` (write-only, kept as
/// the user's wish) by its read-write mode; only `1<> /dev/null` looks the
/// same, and is taken as closed.
pub fn stdout_closed() -> bool {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::AsFd;
    let out = std::io::stdout();
    let fd = out.as_fd();
    let flags = match fcntl(fd, FcntlArg::F_GETFL) {
        Ok(f) => OFlag::from_bits_truncate(f),
        Err(e) => return e == nix::errno::Errno::EBADF,
    };
    if flags & OFlag::O_ACCMODE != OFlag::O_RDWR {
        return false;
    }
    nix::sys::stat::fstat(fd).is_ok_and(|st| {
        (st.st_mode & nix::libc::S_IFMT) == nix::libc::S_IFCHR
            && st.st_rdev == nix::libc::makedev(1, 3)
    })
}

/// The error of a command whose output is a closed standard output
/// ([`stdout_closed`]): `what` says what would be lost.
pub fn stdout_closed_message(what: &str) -> String {
    format!(
        "standard output is closed (`>&-`; or it is /dev/null opened read-write, which is how a closed one reaches this program): {what}; give it a file or a pipe (`> /dev/null` to discard on purpose)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_whose_group_is_not_the_terminals_foreground_is_in_the_background() {
        use nix::unistd::Pid;
        let me = Pid::from_raw(100);
        assert!(in_foreground(Some(me), me));
        assert!(!in_foreground(Some(Pid::from_raw(200)), me));
        assert!(in_foreground(None, me), "not a terminal: foreground");
        // This test's stdout (captured, a pipe or a file): foreground.
        if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            assert!(stdout_in_foreground());
        }
    }

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
