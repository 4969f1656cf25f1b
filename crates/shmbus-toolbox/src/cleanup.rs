//! Removing a topic a tool left behind: one rule for every tool that
//! cleans up after itself (the demo after a killed demo, `shmbus bench`
//! after a killed bench), so none removes what another program made or a
//! live publisher still writes.

use shmbus_core::PublisherStatus;
use shmbus_core::lock;
use shmbus_core::sys;

/// Whether nobody publishes the topic at `key`: its lock is free or gone,
/// or held by `own` (a pid the caller answers for, such as itself).
pub fn publisher_idle(key: i32, own: Option<i32>) -> bool {
    match lock::publisher_status(key) {
        PublisherStatus::NotRunning | PublisherStatus::NoLock => true,
        PublisherStatus::Alive { pid } => own == Some(pid),
        PublisherStatus::Unknown => false,
    }
}

/// Remove the topic at `key` that the caller found to be this user's
/// (`me`) and the one it looks for: its segment `shmid` (if any), unless a
/// publisher other than `own` holds the topic's lock; then the lock, if
/// `me` made it (`lock::remove_lock` also leaves a set that is no
/// publisher lock). `false`: left as it was.
pub fn remove_idle_topic(shmid: Option<i32>, key: i32, me: u32, own: Option<i32>) -> bool {
    if !publisher_idle(key, own) {
        return false;
    }
    if let Some(id) = shmid {
        if sys::shm_remove(id).is_err() {
            return false;
        }
    }
    if lock::creator(key) == Some(me) {
        let _ = lock::remove_lock(key);
    }
    true
}
