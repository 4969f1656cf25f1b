//! Reading `/proc/sysvipc/shm` and `/proc/sysvipc/sem`: every segment and
//! semaphore set on the machine, readable by any user. Used to list topics
//! and to name the owner of a segment we were refused access to.

use std::collections::HashMap;

/// One line of `/proc/sysvipc/shm` (or `sem`), by column name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    fields: HashMap<String, i64>,
}

impl ProcEntry {
    /// A numeric column (`key`, `shmid`, `perms` (octal in the file),
    /// `size`, `cpid`, `lpid`, `nattch`, `uid`, `gid`, `cuid`, `cgid`,
    /// `atime`, `dtime`, `ctime`, `rss`, `swap`; for semaphores `semid`,
    /// `nsems`, `otime`).
    pub fn get(&self, column: &str) -> Option<i64> {
        self.fields.get(column).copied()
    }
    /// The key.
    pub fn key(&self) -> i32 {
        self.get("key").unwrap_or(0) as i32
    }
    /// The shmid or semid.
    pub fn id(&self) -> i32 {
        self.get("shmid")
            .or_else(|| self.get("semid"))
            .unwrap_or(-1) as i32
    }
    /// Owner uid, gid and permission bits (`perms & 0o777`: without the
    /// kernel's `SHM_DEST`/`SHM_LOCKED` flags).
    pub fn owner(&self) -> (u32, u32, u32) {
        (
            self.get("uid").unwrap_or(-1) as u32,
            self.get("gid").unwrap_or(-1) as u32,
            (self.get("perms").unwrap_or(0) as u32) & 0o777,
        )
    }

    /// The whole `perms` column: permission bits plus the kernel's flags
    /// (`SHM_DEST` 0o1000 once removed, `SHM_LOCKED` 0o2000 while locked in
    /// RAM). [`ProcEntry::owner`] strips the flags.
    pub fn mode(&self) -> u32 {
        self.get("perms").unwrap_or(0) as u32
    }

    /// Creator uid.
    pub fn creator_uid(&self) -> u32 {
        self.get("cuid").unwrap_or(-1) as u32
    }
}

/// Parse the text of a `/proc/sysvipc/*` file. Unknown or malformed lines
/// are skipped; `perms` is parsed as octal, everything else as decimal.
pub fn parse(text: &str) -> Vec<ProcEntry> {
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Vec::new();
    };
    let cols: Vec<&str> = head.split_whitespace().collect();
    lines
        .filter_map(|line| {
            let vals: Vec<&str> = line.split_whitespace().collect();
            if vals.len() != cols.len() {
                return None;
            }
            let mut fields = HashMap::new();
            for (c, v) in cols.iter().zip(vals) {
                let n = if *c == "perms" {
                    i64::from_str_radix(v, 8).ok()?
                } else {
                    v.parse::<i64>().ok()?
                };
                fields.insert((*c).to_string(), n);
            }
            Some(ProcEntry { fields })
        })
        .collect()
}

/// Every System V shared memory segment on the machine.
///
/// An error, not an empty list, when the file has no column header with
/// `key` and `shmid`: the kernel always writes one, so such a file is
/// masked (a container's runtime may bind `/dev/null` over it) or not the
/// kernel's, and "no segments" would be a lie that tools act on (a live
/// publisher's lock taken for one left behind, a topic for missing).
pub fn segments() -> std::io::Result<Vec<ProcEntry>> {
    table("/proc/sysvipc/shm", "shmid")
}

/// Every System V semaphore set on the machine; an error for a file with
/// no `key`/`semid` header, as [`segments`].
pub fn semaphores() -> std::io::Result<Vec<ProcEntry>> {
    table("/proc/sysvipc/sem", "semid")
}

/// The rows of the `/proc/sysvipc` file at `path`, whose header must name
/// `key` and `id`.
fn table(path: &str, id: &str) -> std::io::Result<Vec<ProcEntry>> {
    parse_table(&std::fs::read_to_string(path)?, id)
}

/// [`parse`] for a whole file, whose header must name `key` and `id`.
fn parse_table(text: &str, id: &str) -> std::io::Result<Vec<ProcEntry>> {
    let head = text.lines().next().unwrap_or("");
    let mut cols = head.split_whitespace();
    if !(cols.clone().any(|c| c == "key") && cols.any(|c| c == id)) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "no column header naming key and {id} ({} read): the file is masked (a container may bind /dev/null over it) or not the kernel's",
                crate::plural::count(text.len(), "byte")
            ),
        ));
    }
    Ok(parse(text))
}

/// The semaphore set at `key`, if any.
pub fn semaphore_by_key(key: i32) -> Option<ProcEntry> {
    semaphores().ok()?.into_iter().find(|e| e.key() == key)
}

/// The segment at `key`, if any.
pub fn segment_by_key(key: i32) -> Option<ProcEntry> {
    segments().ok()?.into_iter().find(|e| e.key() == key)
}

/// Which System V limit a failed creation of `size` bytes (`ENOSPC`) hit,
/// judged from `/proc` (this IPC namespace's segments and limits).
pub fn which_limit(size: u64) -> &'static str {
    const MNI: &str = "kernel.shmmni (number of segments)";
    const ALL: &str = "kernel.shmall (total pages)";
    const BOTH: &str = "kernel.shmmni (number of segments) or kernel.shmall (total pages)";
    let Ok(segs) = segments() else { return BOTH };
    if kernel_limit("shmmni").is_some_and(|mni| segs.len() as u64 >= mni) {
        return MNI;
    }
    let page = crate::sys::page_size();
    let pages = |bytes: u64| bytes.div_ceil(page);
    let used: u64 = segs
        .iter()
        .map(|e| pages(e.get("size").unwrap_or(0).max(0) as u64))
        .sum();
    match kernel_limit("shmall") {
        Some(all) if used.saturating_add(pages(size)) > all => ALL,
        _ => BOTH,
    }
}

/// The four values of `/proc/sys/kernel/sem`: SEMMSL (semaphores per
/// set), SEMMNS (semaphores in all), SEMOPM (operations per `semop`),
/// SEMMNI (number of sets).
pub fn sem_limits() -> Option<[u64; 4]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/sem").ok()?;
    let v: Vec<u64> = text
        .split_whitespace()
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    v.try_into().ok()
}

/// The `kernel.sem` field a publisher lock's `semop` needs at least 2 of
/// (`E2BIG` below that): [`crate::OpenError::SemaphoreLimit`]'s `field`.
pub const SEMOPM_FIELD: &str = "SEMOPM (3rd field: operations per semop call)";

/// The `kernel.sem` field a publisher lock's set of one semaphore needs at
/// least 1 of (its `semget` creation fails with `EINVAL` below that):
/// [`crate::OpenError::SemaphoreLimit`]'s `field`.
pub const SEMMSL_FIELD: &str = "SEMMSL (1st field: semaphores per set)";

/// Which field of `kernel.sem` a failed `semget` creation (`ENOSPC`) hit,
/// judged from `/proc` (this IPC namespace's sets and limits). The lock
/// is one set of one semaphore.
pub fn which_sem_limit() -> &'static str {
    const MNI: &str = "SEMMNI (4th field: number of semaphore sets)";
    const MNS: &str = "SEMMNS (2nd field: total semaphores)";
    const BOTH: &str =
        "SEMMNI (4th field: number of semaphore sets) or SEMMNS (2nd field: total semaphores)";
    let (Some([_, mns, _, mni]), Ok(sets)) = (sem_limits(), semaphores()) else {
        return BOTH;
    };
    if sets.len() as u64 >= mni {
        return MNI;
    }
    let used: u64 = sets
        .iter()
        .map(|e| e.get("nsems").unwrap_or(0).max(0) as u64)
        .sum();
    if used.saturating_add(1) > mns {
        MNS
    } else {
        BOTH
    }
}

/// Read a `/proc/sys/kernel/*` limit (`shmmax`, `shmall`, `shmmni`).
pub fn kernel_limit(name: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_format() {
        let text = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n\
                    1392508928          5  1644                   960  1234  1235      2  1000  1000  1000  1000 1700000000 1700000001 1700000002                  4096                     0\n\
                    garbage line\n";
        let v = parse(text);
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].key(), 1392508928);
        assert_eq!(v[0].id(), 5);
        assert_eq!(v[0].owner(), (1000, 1000, 0o644));
        assert_eq!(v[0].mode(), 0o1644, "SHM_DEST kept");
        assert_eq!(v[0].creator_uid(), 1000);
        assert_eq!(v[0].get("nattch"), Some(2));
        assert!(parse("").is_empty());
    }

    /// A file with no header (masked by `/dev/null`, or garbage) is an
    /// error, never "no segments"; the kernel's header with no rows is an
    /// empty list.
    #[test]
    fn a_file_without_the_kernels_header_is_an_error() {
        for text in ["", "\n", "1392508928 5 1644 960\n", "garbage\n"] {
            let e = parse_table(text, "shmid").expect_err(text);
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("masked"), "{e}");
        }
        let head = "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap\n";
        assert_eq!(parse_table(head, "shmid").unwrap(), Vec::new());
        assert!(
            parse_table(head, "semid").is_err(),
            "a shm header is no sem header"
        );
        let sem = "       key      semid perms      nsems   uid   gid  cuid  cgid      otime      ctime\n         0          3   600          1     0     0     0     0          0 1700000000\n";
        assert_eq!(parse_table(sem, "semid").unwrap().len(), 1);
    }
}
