//! Files a program may not read: what to say instead of "Permission
//! denied (os error 13)", which leaves the one on call to find out who the
//! program runs as and whose the file is (a service user reading a file
//! root wrote, a config under a directory only root may enter).

use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What follows "cannot read FILE: " when the read failed with permission
/// denied: `program` (how the sentence names this process: "the bridge",
/// "shmbus") runs as this process's effective user; the file belongs to
/// its owner and group with its mode, and the fix (`chown`, or `chgrp` and
/// `chmod 640`, or running as the file's owner). If the file itself cannot
/// be looked at, a directory of its path bars the way, and `namei -l`
/// shows which.
pub fn permission_denied(program: &str, path: &Path) -> String {
    let me = nix::unistd::geteuid().as_raw();
    let owner = std::fs::metadata(path)
        .ok()
        .map(|m| (m.uid(), m.gid(), m.mode()));
    permission_denied_as(program, me, owner, &path.display().to_string())
}

/// [`permission_denied`] for a process of uid `me`, and a file of `owner`
/// (uid, gid, mode), or `None` when it cannot be looked at.
fn permission_denied_as(
    program: &str,
    me: u32,
    owner: Option<(u32, u32, u32)>,
    shown: &str,
) -> String {
    let who = crate::units::user(me);
    match owner {
        Some((uid, gid, mode)) => {
            let group = match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
                Ok(Some(g)) => format!("{} (gid {gid})", g.name),
                _ => format!("gid {gid}"),
            };
            let name = crate::units::user_name(me);
            format!(
                "permission denied: {program} runs as {who}, and the file belongs to {} and group {group} with mode {:04o}; let {name} read it (`chown {name} {shown}`, or `chgrp GROUP {shown}` and `chmod 640 {shown}` with a group {name} is in), or run {program} as the file's owner",
                crate::units::user(uid),
                mode & 0o7777,
            )
        }
        None => format!(
            "permission denied on a directory of its path: {program} runs as {who}, which may not enter one of them; `namei -l {shown}` shows each directory's owner and mode"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_it_may_not_read_names_both_users_and_the_fix() {
        let s = permission_denied_as("the bridge", 65534, Some((0, 0, 0o100600)), "/etc/x");
        assert!(
            s.starts_with("permission denied: the bridge runs as "),
            "{s}"
        );
        assert!(s.contains("uid 65534"), "{s}");
        assert!(
            s.contains("belongs to root (uid 0) and group root (gid 0) with mode 0600"),
            "{s}"
        );
        assert!(
            s.contains(" /etc/x`") && s.contains("chmod 640 /etc/x"),
            "{s}"
        );
        assert!(s.contains("or run the bridge as the file's owner"), "{s}");
    }

    #[test]
    fn a_directory_it_may_not_enter_is_said_with_namei() {
        let s = permission_denied_as("shmbus", 1000, None, "/root/a.toml");
        assert!(
            s.starts_with("permission denied on a directory of its path: shmbus runs as "),
            "{s}"
        );
        assert!(s.contains("`namei -l /root/a.toml`"), "{s}");
    }
}
