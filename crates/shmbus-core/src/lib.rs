//! # shmbus-core
//!
//! The shared foundation of shmbus, a telemetry bus over System V shared
//! memory: the segment layout ([`layout`], specified in `docs/LAYOUT.md`),
//! the seqlock protocol ([`seqlock`]), the frame copies in and out of a
//! slot ([`codec`]), the typed paths' postcard decoder and encoder
//! ([`decode`], [`encode`]), the System V and futex wrappers ([`sys`]), the publisher lock
//! ([`lock`]), topic descriptions ([`topic`]), errors ([`error`]), the
//! load-only views a reader gets of shared memory ([`view`]) and the
//! waiter registration that lets a publish skip `FUTEX_WAKE` when nobody
//! sleeps ([`waiter`]).
//!
//! Applications use `shmbus-pub` (publisher) and `shmbus-sub` (subscriber);
//! tools use this crate directly. The write side (read-write attachment,
//! seqlock writer, publishing) is compiled only with the `writer` feature,
//! which only `shmbus-pub` enables: a program that links the subscriber
//! alone contains no code that writes to a topic segment. Its one store is
//! the waiter registration ([`waiter::WaiterWord::register`]), in the
//! topic's separate waiter segment.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]
#![cfg_attr(loom, allow(dead_code, unused_imports))]

#[cfg(not(loom))]
pub mod bytes;
#[cfg(not(loom))]
pub mod codec;
#[cfg(not(loom))]
pub mod decode;
#[cfg(not(loom))]
pub mod encode;
#[cfg(not(loom))]
pub mod error;
#[cfg(not(loom))]
pub mod layout;
#[cfg(not(loom))]
pub mod lock;
pub mod plural;
#[cfg(not(loom))]
pub mod schema;
#[cfg(not(loom))]
pub mod segment;
pub mod seqlock;
#[cfg(not(loom))]
pub mod sys;
#[cfg(not(loom))]
pub mod sysvipc;
#[cfg(not(loom))]
pub mod topic;
pub mod view;
pub mod waiter;

#[cfg(not(loom))]
pub use bytes::Bytes;
#[cfg(not(loom))]
pub use error::{OpenError, ReadError, WaitError};
#[cfg(not(loom))]
pub use lock::PublisherStatus;
#[cfg(not(loom))]
pub use segment::{Segment, SlotMeta};
#[cfg(not(loom))]
pub use topic::{LockPolicy, Topic};
#[cfg(not(loom))]
pub use view::{ReadHeader, ReadWord32, ReadWord64, ReadWords};

#[cfg(not(loom))]
pub use postcard;
#[cfg(not(loom))]
pub use postcard_schema;
