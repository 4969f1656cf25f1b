//! Small helpers for reading sysfs attribute files.

use std::path::{Path, PathBuf};

use shmbus_core::topic::shown;

/// Characters of a path a message shows whole; a longer one keeps its
/// first [`PATH_HEAD`] and its last [`PATH_TAIL`].
const PATH_WHOLE: usize = 200;
const PATH_HEAD: usize = 60;
const PATH_TAIL: usize = 120;

/// A path as a sensor's message shows it: control characters escaped
/// (directory names come from drivers: a USB battery's carries the
/// device's serial), and the end always kept, so the message names the
/// file. Paths went through the rule for quoted values, which keeps the
/// first 40 characters of anything over 64:
/// `/sys/class/power_supply/hid-0018:046D:4069.0007-battery/capacity`
/// (66) was shown as `/sys/class/power_supply/hid-0018:046D:406... (66
/// bytes)`, without the supply's full name or the file.
pub fn shown_path(path: &Path) -> String {
    let s: String = path
        .display()
        .to_string()
        .chars()
        .flat_map(char::escape_debug)
        .collect();
    let n = s.chars().count();
    if n <= PATH_WHOLE {
        return s;
    }
    let head: String = s.chars().take(PATH_HEAD).collect();
    let tail: String = s.chars().skip(n - PATH_TAIL).collect();
    format!("{head}...{tail}")
}

/// The most a sysfs attribute may hold (the kernel's is one page).
pub const MAX_ATTR_BYTES: u64 = 64 * 1024;

/// The most a `/proc` file the sensors read may hold (`/proc/stat` of a
/// many-core machine, `/proc/net/dev` with thousands of interfaces).
pub const MAX_PROC_BYTES: u64 = 4 * 1024 * 1024;

/// The text of the regular file `path`, at most `max` bytes.
///
/// Opened without blocking, and refused unless it is a regular file (every
/// `/proc` and sysfs file is): a FIFO or a device where a file was
/// expected (a fake tree under `--root`, a wrong bind mount) hung the
/// sensor in `open` or `read` for good, past its `--duration` and its
/// `--parent` check, and `/dev/zero` grew its memory without end. The
/// error is one line that names the file and what it is.
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    String::from_utf8(read_bytes(path, max)?)
        .map_err(|_| format!("{}: not UTF-8 text", shown_path(path)))
}

/// [`read_text`], with bytes that are not UTF-8 shown as U+FFFD: for a file
/// that names things (`/proc/net/dev`, a `name`, `type` or `label`
/// attribute), where a name is the kernel's bytes, not necessarily UTF-8.
/// One interface named in Latin-1 made `/proc/net/dev` "not UTF-8 text",
/// and the net sensor published empty frames, every interface gone; a
/// Latin-1 hwmon label or IIO device name was dropped unsaid.
pub fn read_text_lossy(path: &Path, max: u64) -> Result<String, String> {
    read_bytes(path, max).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The bytes of the regular file `path`, at most `max` (see [`read_text`]).
fn read_bytes(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let p = || shown_path(path);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{}: {e}", p()))?;
    let ft = file
        .metadata()
        .map_err(|e| format!("{}: {e}", p()))?
        .file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() || ft.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Err(format!("{}: is {what}, not a file with a value", p()));
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", p()))?;
    if bytes.len() as u64 > max {
        return Err(format!("{}: larger than {max} bytes", p()));
    }
    Ok(bytes)
}

/// The trimmed contents of a sysfs attribute.
pub fn read_str(path: &Path) -> Result<String, String> {
    read_text(path, MAX_ATTR_BYTES).map(|s| s.trim().to_string())
}

/// The trimmed contents of a sysfs attribute that names something (a
/// device's `name`, a zone's `type`, a `label`), read lossily
/// ([`read_text_lossy`]).
pub fn read_name(path: &Path) -> Result<String, String> {
    read_text_lossy(path, MAX_ATTR_BYTES).map(|s| s.trim().to_string())
}

/// A sysfs attribute holding one integer.
pub fn read_int(path: &Path) -> Result<i64, String> {
    let s = read_str(path)?;
    s.parse()
        .map_err(|_| format!("{}: '{}' is not an integer", shown_path(path), shown(&s)))
}

/// A sysfs attribute holding one integer from `lo` to `hi`: what its field
/// can hold, or what the quantity can be (a battery's charge, 0 to 100 %).
/// A value outside is a driver's garbage, refused like a non-number, never
/// clamped into a believable one (a battery at -5 % read as 0 % is a
/// battery a consumer shuts the board down for).
pub fn read_int_in(path: &Path, lo: i64, hi: i64) -> Result<i64, String> {
    let v = read_int(path)?;
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "{}: {v} is out of range ({lo} to {hi})",
            shown_path(path)
        ))
    }
}

/// A sysfs attribute holding one finite decimal number (IIO scales:
/// `0.009576806`). `nan`, `inf` and `1e999` (which parse as floats) are
/// refused like any other garbage: they went into the frames as NaN and
/// infinite accelerations.
pub fn read_f64(path: &Path) -> Result<f64, String> {
    let s = read_str(path)?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!(
            "{}: '{}' is not a finite number",
            shown_path(path),
            shown(&s)
        )),
    }
}

/// Entries of `dir` whose names start with `prefix`, in natural order
/// (`zone2` before `zone10`). A missing directory is an empty list.
pub fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            // A name that is not UTF-8 is matched (and shown) lossily: it
            // was skipped without a word (a power supply whose driver puts
            // a device's raw serial in its name vanished from the frames).
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort_by_key(|p| natural_key(&file_name(p)));
    v
}

/// Sort key: the name without trailing digits, then the trailing number.
fn natural_key(name: &str) -> (String, u64) {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (stem, num) = name.split_at(name.len() - digits);
    (stem.to_string(), num.parse().unwrap_or(0))
}

/// The file name of `p` as text.
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod testdir {
    //! Fake sysfs trees in a temporary directory.
    use std::path::{Path, PathBuf};

    /// A temporary directory removed on drop.
    pub struct TempDir(pub PathBuf);

    impl TempDir {
        pub fn new(tag: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let p = std::env::temp_dir().join(format!(
                "shmbus-sensors-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        /// Write `rel` (creating directories) with `text`.
        pub fn file(&self, rel: &str, text: &str) -> &Self {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
            self
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testdir::TempDir;
    use super::*;

    #[test]
    fn entries_are_in_natural_order_and_missing_dirs_are_empty() {
        let d = TempDir::new("entries");
        for n in ["zone10", "zone2", "zone1", "other"] {
            d.file(&format!("{n}/x"), "1");
        }
        let names: Vec<String> = entries(d.path(), "zone")
            .iter()
            .map(|p| file_name(p))
            .collect();
        assert_eq!(names, ["zone1", "zone2", "zone10"]);
        assert!(entries(&d.path().join("none"), "").is_empty());
    }

    #[test]
    fn attribute_reads_trim_and_reject_garbage() {
        let d = TempDir::new("attrs");
        d.file("a", "42000\n")
            .file("b", "hot\n")
            .file("c", "0.0095768\n");
        assert_eq!(read_int(&d.path().join("a")), Ok(42000));
        assert!(
            read_int(&d.path().join("b"))
                .unwrap_err()
                .contains("'hot' is not an integer")
        );
        assert!((read_f64(&d.path().join("c")).unwrap() - 0.0095768).abs() < 1e-12);
        assert!(read_str(&d.path().join("missing")).is_err());
    }

    /// An attribute of a fake tree (`--root`) may hold anything: the
    /// message escapes it and cuts it to one short line.
    #[test]
    fn garbage_in_an_attribute_is_escaped_and_cut_in_the_message() {
        let d = TempDir::new("garbage");
        let garbage = format!("\u{1b}]0;owned\u{7}{}", "x".repeat(10_000));
        d.file("t", &garbage);
        for e in [
            read_int(&d.path().join("t")).unwrap_err(),
            read_f64(&d.path().join("t")).unwrap_err(),
        ] {
            assert!(!e.contains('\u{1b}') && !e.contains('\u{7}'), "{e:?}");
            assert!(e.contains("\\u{1b}]0;owned"), "{e}");
            assert!(e.len() < 300, "{} bytes", e.len());
        }
    }

    /// A FIFO, a device, a directory, a huge or a non-UTF-8 file where an
    /// attribute was expected: each read returns at once with one line that
    /// names the file and what is wrong. A FIFO hung the sensor for good
    /// (past `--duration` and `--parent`), `/dev/zero` ate memory.
    #[test]
    fn fifos_devices_and_huge_files_are_errors_not_hangs() {
        use std::sync::mpsc;
        use std::time::Duration;
        let d = TempDir::new("odd");
        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU)
            .unwrap_or_else(|e| panic!("mkfifo {}: {e}", fifo.display()));
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero")).unwrap();
        std::fs::create_dir(d.path().join("dir")).unwrap();
        d.file("big", &"1".repeat(MAX_ATTR_BYTES as usize + 1));
        std::fs::write(d.path().join("latin1"), b"4\xb00\n").unwrap();
        let dir = d.path().to_path_buf();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let errs: Vec<String> = ["fifo", "zero", "dir", "big", "latin1"]
                .iter()
                .map(|n| read_int(&dir.join(n)).unwrap_err())
                .collect();
            let _ = tx.send(errs);
        });
        let errs = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("reading a FIFO or /dev/zero as an attribute hung");
        let want = [
            "is a FIFO",
            "is a device",
            "is a directory",
            "larger than 65536 bytes",
            "not UTF-8",
        ];
        for (e, w) in errs.iter().zip(want) {
            assert!(e.contains(w), "{e:?} should say {w:?}");
            assert!(!e.contains('\n') && e.len() < 300, "{e:?}");
        }
        // A regular file still reads.
        d.file("ok", "7\n");
        assert_eq!(read_int(&d.path().join("ok")), Ok(7));
    }

    /// A message names the file whatever the length of its path: a USB
    /// battery's supply directory made the path longer than the 64
    /// characters a quoted value keeps, and the message lost the supply's
    /// name and the attribute.
    #[test]
    fn messages_name_the_file_of_a_long_path() {
        let d = TempDir::new("long-path");
        let supply = "sys/class/power_supply/hid-0018:046D:4069.0007-battery";
        d.file(&format!("{supply}/capacity"), "full\n");
        let e = read_int(&d.path().join(supply).join("capacity")).unwrap_err();
        assert!(
            e.contains("hid-0018:046D:4069.0007-battery/capacity: 'full' is not an integer"),
            "{e}"
        );
        // Very long: the head and the tail, one short line; control
        // characters escaped.
        let deep = format!("{}/x\u{1b}[2Jy/value", vec!["d".repeat(100); 3].join("/"));
        d.file(&deep, "nan\n");
        let e = read_f64(&d.path().join(&deep)).unwrap_err();
        assert!(
            e.contains("x\\u{1b}[2Jy/value: 'nan' is not a finite number"),
            "{e}"
        );
        assert!(
            !e.contains('\u{1b}') && e.len() < 300,
            "{} bytes: {e}",
            e.len()
        );
        assert!(
            e.starts_with(&std::env::temp_dir().display().to_string()),
            "{e}"
        );
    }
}
