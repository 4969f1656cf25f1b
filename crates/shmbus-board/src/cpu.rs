//! CPU time of a process from `/proc/<pid>/stat` (utime + stime).

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`, 100 on Linux).
pub fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&t| t > 0)
        .map_or(100, |t| t as u64)
}

/// `utime + stime` in clock ticks from the text of a `/proc/<pid>/stat`.
///
/// The command name (field 2) may contain spaces and parentheses, so the
/// fields are counted from the last `)`: utime and stime are fields 14 and 15.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")" come field 3 (state) onwards: utime is field 14, the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time (user + system) used so far by `pid`, in milliseconds.
pub fn cpu_ms(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let ticks = parse_stat_ticks(&text).ok_or_else(|| format!("{path}: cannot parse '{text}'"))?;
    Ok(ticks * 1000 / ticks_per_second())
}

/// CPU time of this process so far, in milliseconds.
pub fn self_cpu_ms() -> u64 {
    cpu_ms(std::process::id()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_after_a_tricky_name() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 1 0 5 1000 10";
        assert_eq!(parse_stat_ticks(stat), Some(287));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn reads_this_process() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {
            std::hint::black_box(0u64);
        }
        assert!(cpu_ms(std::process::id()).is_ok());
        assert!(cpu_ms(u32::MAX).is_err());
    }
}
