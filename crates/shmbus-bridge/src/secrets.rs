//! Credentials and private keys: read from files only, never from the
//! command line (where `ps` and shell history would show them), and only
//! from files other users cannot read.
//!
//! A credentials file is TOML:
//!
//! ```toml
//! username = "board-17"
//! password = "…"
//! ```

use std::fmt;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use toml::de::{DeTable, DeValue};

/// A username and password for the broker.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The username.
    pub username: String,
    /// The password (never printed: `Debug` hides it).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"…")
            .finish()
    }
}

/// The largest credentials, key or certificate file read (a credentials
/// file is two lines; a PEM key or a CA bundle at most a few hundred KiB):
/// a bigger one is a wrong path, not something to load into the board's
/// memory.
pub const MAX_SECRET_FILE: u64 = 1 << 20;

/// Why `path` cannot be read, with what to do. Permission denied names
/// who the bridge runs as and who may read the file (or that a directory
/// on its path bars the way): "Permission denied (os error 13)" alone left
/// the one on call to find both, on a board where the bridge runs as its
/// own service user and the file was written by root.
fn cannot_read(what: &str, path: &Path, e: &std::io::Error) -> String {
    let shown = path.display();
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        let why = shmbus_toolbox::files::permission_denied("the bridge", path);
        return format!("cannot read the {what} {shown}: {why}");
    }
    format!("cannot read the {what} {shown}: {e}")
}

/// Read a regular file of at most [`MAX_SECRET_FILE`] bytes. Anything else
/// (a FIFO, which would block the open; `/dev/zero`, which never ends; a
/// directory) is refused before it is opened.
pub fn read_bounded(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| cannot_read(what, path, &e))?;
    if !meta.is_file() {
        return Err(format!("the {what} {shown} is not a file"));
    }
    let too_big = |n: u64| {
        format!(
            "the {what} {shown} has {n} bytes, more than a {what} can ({MAX_SECRET_FILE}): is this the right file?"
        )
    };
    if meta.len() > MAX_SECRET_FILE {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| cannot_read(what, path, &e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Read a secret file: refuse it if other users may read or write it.
pub fn read_private(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| cannot_read(what, path, &e))?;
    let mode = meta.mode() & 0o777;
    if meta.is_file() && mode & 0o007 != 0 {
        return Err(format!(
            "the {what} {shown} is accessible to other users (mode {mode:04o}): run `chmod 600 {shown}`"
        ));
    }
    read_bounded(path, what)
}

/// The longest username, password or client id MQTT can carry (a 2-byte
/// length).
pub const MAX_FIELD: usize = 65_535;

/// Read a credentials file (`username` and `password`, TOML).
pub fn read_credentials(path: &Path) -> Result<Credentials, String> {
    let bytes = read_private(path, "credentials file")?;
    parse_credentials(&bytes, path)
}

fn parse_credentials(bytes: &[u8], path: &Path) -> Result<Credentials, String> {
    let shown = path.display();
    let example = "write two lines: username = \"NAME\" and password = \"SECRET\"";
    let text = std::str::from_utf8(bytes)
        .map_err(|_| format!("the credentials file {shown} is not UTF-8 text: {example}"))?;
    let doc = DeTable::parse(text).map_err(|e| {
        // The message can quote the line: never show a password.
        let line = e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        match line {
            Some(l) => {
                format!("the credentials file {shown} is not valid TOML (line {l}): {example}")
            }
            None => format!("the credentials file {shown} is not valid TOML: {example}"),
        }
    })?;
    let mut username = None;
    let mut password = None;
    for (k, v) in doc.get_ref().iter() {
        let slot = match k.get_ref().as_ref() {
            "username" => &mut username,
            "password" => &mut password,
            other => {
                return Err(format!(
                    "the credentials file {shown} has an unknown key `{other}`: {example}"
                ));
            }
        };
        match v.get_ref() {
            DeValue::String(s) => *slot = Some(s.to_string()),
            _ => {
                return Err(format!(
                    "`{}` in the credentials file {shown} must be a string in quotes",
                    k.get_ref()
                ));
            }
        }
    }
    // MQTT sends each with a 2-byte length: a longer one went out with its
    // length cut, a CONNECT the broker could only drop, retried for good.
    let too_long = |s: &Option<String>| s.as_ref().is_some_and(|s| s.len() > MAX_FIELD);
    if too_long(&username) || too_long(&password) {
        return Err(format!(
            "the {} in the credentials file {shown} is longer than MQTT allows ({MAX_FIELD} bytes)",
            if too_long(&username) {
                "username"
            } else {
                "password"
            }
        ));
    }
    if username.as_ref().is_some_and(|u| u.contains('\0')) {
        return Err(format!(
            "the username in the credentials file {shown} has a NUL character, which MQTT does not allow"
        ));
    }
    match (username, password) {
        (Some(username), Some(password)) if !username.is_empty() => {
            Ok(Credentials { username, password })
        }
        (Some(_), Some(_)) => Err(format!(
            "the username in the credentials file {shown} is empty"
        )),
        _ => Err(format!(
            "the credentials file {shown} needs both keys: {example}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shmbus_testkit::TempDir;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// `name` in `dir` with `text` and `mode`.
    fn file(dir: &TempDir, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn a_fifo_or_a_device_is_refused_before_it_is_opened() {
        let dir = TempDir::new("bridge-secrets");
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // Opening a FIFO nobody writes blocks: the check must come first.
        for p in [fifo.as_path(), Path::new("/dev/zero")] {
            let e = read_bounded(p, "CA file").unwrap_err();
            assert!(e.ends_with("is not a file"), "{e}");
        }
    }

    #[test]
    fn a_huge_secret_file_is_refused_before_it_is_read() {
        let dir = TempDir::new("bridge-secrets");
        let p = file(&dir, "huge.cred", "", 0o600);
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(MAX_SECRET_FILE + 1)
            .unwrap();
        let e = read_credentials(&p).unwrap_err();
        assert!(e.contains("is this the right file?"), "{e}");
    }

    #[test]
    fn credentials_are_read_from_a_private_file() {
        let dir = TempDir::new("bridge-secrets");
        let p = file(
            &dir,
            "ok.cred",
            "username = \"b17\"\npassword = \"s3:cr#t\"\n",
            0o600,
        );
        let c = read_credentials(&p).unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("b17", "s3:cr#t")
        );
        assert!(!format!("{c:?}").contains("s3:cr#t"));
        // Group-readable is allowed (a service group).
        let p = file(
            &dir,
            "grp.cred",
            "username = \"b\"\npassword = \"p\"\n",
            0o640,
        );
        assert!(read_credentials(&p).is_ok());
    }

    #[test]
    fn a_file_others_can_read_is_refused_with_the_fix() {
        let dir = TempDir::new("bridge-secrets");
        let p = file(
            &dir,
            "open.cred",
            "username = \"b\"\npassword = \"p\"\n",
            0o644,
        );
        let e = read_credentials(&p).unwrap_err();
        assert!(e.contains("accessible to other users (mode 0644)"), "{e}");
        assert!(
            e.ends_with(&format!("run `chmod 600 {}`", p.display())),
            "{e}"
        );
    }

    #[test]
    fn bad_credentials_files_say_what_to_write_and_never_echo_the_password() {
        let dir = TempDir::new("bridge-secrets");
        for (text, words) in [
            ("username = \"b\"\n", "needs both keys"),
            ("user = \"b\"\npassword = \"p\"\n", "unknown key `user`"),
            (
                "username = \"b\"\npassword = 5\n",
                "`password` in the credentials file",
            ),
            (
                "username = \"\"\npassword = \"p\"\n",
                "username in the credentials file",
            ),
            (
                "username = b\npassword = \"hunter2\"\n",
                "is not valid TOML (line 1)",
            ),
            ("password = \"hunter2\n", "is not valid TOML"),
        ] {
            let p = file(&dir, "bad.cred", text, 0o600);
            let e = read_credentials(&p).unwrap_err();
            assert!(e.contains(words), "{text:?}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = read_credentials(Path::new("/nonexistent/x.cred")).unwrap_err();
        assert!(
            e.starts_with("cannot read the credentials file /nonexistent/x.cred"),
            "{e}"
        );
    }

    /// MQTT gives a username and a password 2 bytes of length: a longer one
    /// used to go out with its length cut (a CONNECT the broker drops,
    /// retried for good as "connection closed by peer").
    #[test]
    fn credentials_longer_than_mqtt_carries_are_refused_and_the_longest_pass() {
        let dir = TempDir::new("bridge-secrets");
        let long = "p".repeat(MAX_FIELD + 1);
        for (text, words) in [
            (
                format!("username = \"{long}\"\npassword = \"p\"\n"),
                "the username in the credentials file",
            ),
            (
                format!("username = \"b\"\npassword = \"{long}\"\n"),
                "the password in the credentials file",
            ),
            (
                "username = \"b\\u0000c\"\npassword = \"p\"\n".to_string(),
                "has a NUL character",
            ),
        ] {
            let p = file(&dir, "long.cred", &text, 0o600);
            let e = read_credentials(&p).unwrap_err();
            assert!(e.contains(words), "{e}");
            assert!(e.len() < 300, "{e}");
        }
        let max = "p".repeat(MAX_FIELD);
        let p = file(
            &dir,
            "max.cred",
            &format!("username = \"{max}\"\npassword = \"{max}\"\n"),
            0o600,
        );
        let c = read_credentials(&p).unwrap();
        assert_eq!((c.username.len(), c.password.len()), (MAX_FIELD, MAX_FIELD));
        // A NUL in the password is fine: MQTT's password is binary data.
        let p = file(
            &dir,
            "nul.cred",
            "username = \"b\"\npassword = \"a\\u0000b\"\n",
            0o600,
        );
        assert_eq!(read_credentials(&p).unwrap().password, "a\0b");
    }
}
