//! Where the config comes from: the search order.
//!
//! 1. the path given explicitly (`--config FILE`);
//! 2. the path in the environment variable `SHMBUS_CONFIG` (if set and not empty);
//! 3. `/etc/shmbus/shmbus.toml`, if it exists;
//! 4. the built-in demo config (`configs/demo.toml`, compiled in).
//!
//! A path named by 1 or 2 that cannot be read is an error, never a silent
//! fall-through to the next place; so is a system config that is there
//! (or that this user cannot tell is there) but cannot be read.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::Config;
use crate::error::ConfigErrors;

/// The environment variable that names a config file.
pub const ENV_VAR: &str = "SHMBUS_CONFIG";
/// The system-wide config file.
pub const SYSTEM_PATH: &str = "/etc/shmbus/shmbus.toml";
/// The text of the built-in demo config.
pub const BUILTIN_DEMO: &str = include_str!("../../../configs/demo.toml");
/// The name the built-in config has in messages.
pub const BUILTIN_PATH: &str = "<builtin demo.toml>";

/// Which step of the search order gave the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config FILE`.
    Explicit(PathBuf),
    /// `$SHMBUS_CONFIG`.
    Env(PathBuf),
    /// `/etc/shmbus/shmbus.toml`.
    System(PathBuf),
    /// The built-in demo config.
    Builtin,
}

/// A path for a message: lossy UTF-8, control characters escaped.
fn shown(p: &std::path::Path) -> String {
    crate::error::path_shown(&p.to_string_lossy()).into_owned()
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::Explicit(p) => write!(f, "{} (--config)", shown(p)),
            ConfigSource::Env(p) => write!(f, "{} (${ENV_VAR})", shown(p)),
            ConfigSource::System(p) => write!(f, "{}", shown(p)),
            ConfigSource::Builtin => write!(
                f,
                "the built-in demo config (no --config, no ${ENV_VAR}, no {SYSTEM_PATH})"
            ),
        }
    }
}

impl Config {
    /// Find and load the config by the search order (module doc of `find`,
    /// and `configs/README.md`).
    pub fn find(explicit: Option<&Path>) -> Result<(Config, ConfigSource), ConfigErrors> {
        let env = std::env::var_os(ENV_VAR)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        find_in(explicit, env, Path::new(SYSTEM_PATH))
    }
}

/// The search, with the environment and system path passed in (testable).
pub(crate) fn find_in(
    explicit: Option<&Path>,
    env: Option<PathBuf>,
    system: &Path,
) -> Result<(Config, ConfigSource), ConfigErrors> {
    if let Some(p) = explicit {
        return Config::load(p).map(|c| (c, ConfigSource::Explicit(p.to_path_buf())));
    }
    if let Some(p) = env {
        // A file that cannot be read names only its path: a variable left
        // set in a shell or a unit sent every tool to it, and nothing said
        // where the path came from.
        return Config::load(&p)
            .map(|c| (c, ConfigSource::Env(p)))
            .map_err(|mut errs| {
                for e in errs.errors.iter_mut().filter(|e| e.at.line == 0) {
                    e.message.push_str(&format!(
                        " (the path is ${ENV_VAR}'s: fix it, or `unset {ENV_VAR}` to use {SYSTEM_PATH} or the built-in demo config)"
                    ));
                }
                errs
            });
    }
    // Only a system config that is not there gives the built-in one. One
    // this user cannot even look at (a directory it may not search), or a
    // symbolic link to nothing, is an error: the demo's keys in its place
    // would make every tool look at the wrong segments without a word.
    match std::fs::symlink_metadata(system) {
        Ok(_) => Config::load(system).map(|c| (c, ConfigSource::System(system.to_path_buf()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok((Config::builtin_demo(), ConfigSource::Builtin))
        }
        Err(e) => Err(ConfigErrors::one(
            crate::Location::file(&system.display().to_string()),
            crate::cannot_read(system, &e),
        )),
    }
}
