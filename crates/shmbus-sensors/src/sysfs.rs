//! Small helpers for reading sysfs attribute files.

use std::path::{Path, PathBuf};

use shmbus_core::topic::shown;

/// The trimmed contents of a sysfs attribute.
pub fn read_str(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A sysfs attribute holding one integer.
pub fn read_int(path: &Path) -> Result<i64, String> {
    let s = read_str(path)?;
    s.parse().map_err(|_| {
        let p = path.display().to_string();
        format!("{}: '{}' is not an integer", shown(&p), shown(&s))
    })
}

/// A sysfs attribute holding one decimal number (IIO scales: `0.009576806`).
pub fn read_f64(path: &Path) -> Result<f64, String> {
    let s = read_str(path)?;
    s.parse().map_err(|_| {
        let p = path.display().to_string();
        format!("{}: '{}' is not a number", shown(&p), shown(&s))
    })
}

/// Entries of `dir` whose names start with `prefix`, in natural order
/// (`zone2` before `zone10`). A missing directory is an empty list.
pub fn entries(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(prefix))
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort_by_key(|p| natural_key(p.file_name().and_then(|n| n.to_str()).unwrap_or("")));
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
}
