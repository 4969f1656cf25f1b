//! # shmbus-bridge: board topics to a broker, and back
//!
//! shmbus stops at the board's edge; this crate carries topics off it to an
//! existing messaging engine, and chosen broker topics back onto the bus.
//! The first engine is MQTT (Mosquitto, EMQX, HiveMQ, the cloud IoT
//! services). It runs as `shmbus bridge` (a command of the `shmbus` tool,
//! cargo feature `bridge`) or as the small standalone `shmbus-bridge`
//! binary for the board, configured by the `[bridge]` table of the topic
//! TOML file. The user's guide is `docs/BRIDGE.md`.
//!
//! ```text
//! topics on the bus ──(RawSubscriber, read-only)──> outbound readers ──┐
//!                                                                     outbox ──> engine (mqtt) ──> broker
//! topics on the bus <──(RawPublisher)── inbound routes <──────────────────────── engine <────────┘
//! ```
//!
//! ## The parts
//! - Engine-neutral: [`settings`] (the config and the command line,
//!   resolved), [`outbound`] (one reader per sent topic: pacing, JSON via the
//!   shared codec `shmbus-codec`, publisher status and staleness),
//!   [`inbound`] (broker messages checked by the codec and published on
//!   the bus, never over a live local publisher), [`outbox`] (the bounded
//!   drop-oldest queue and the retained state), [`names`] (every broker
//!   topic name), [`stats`] (every counter), [`secrets`] (credential files).
//! - The engine: [`mqtt`] is the only module that knows MQTT (rumqttc).
//!   A second engine (Zenoh) is one more module with the same shape: a
//!   `run(&Core, &Settings)` that takes messages from [`Core::outbox`] while
//!   connected, tells the outbox (`Outbox::set_connected`) about link
//!   changes, and hands incoming messages to [`Core::inbound`].
//!
//! ## Never slowing a publisher
//! On the bus the bridge is only a subscriber (and, for what comes back, the
//! publisher of its own topics): a reader never blocks the publisher it
//! reads, and a full outbox drops its own oldest message instead of
//! waiting. A slow or absent broker costs the bridge memory (bounded) and
//! frames (counted), never the board's publishers.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]
// Nor `println!`: it panics when stdout cannot be written (`cli::put`).
#![warn(clippy::print_stdout)]

pub mod cli;
pub mod inbound;
pub mod mqtt;
pub mod names;
pub mod outbound;
pub mod outbox;
mod run;
pub mod secrets;
pub mod settings;
pub mod stats;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use run::run;

/// What an engine shares with the engine-neutral core.
#[derive(Clone)]
pub struct Core {
    /// Broker topic names of this board.
    pub names: names::Names,
    /// Messages to send (take them only while connected).
    pub outbox: Arc<outbox::Outbox>,
    /// Counters.
    pub stats: Arc<stats::Stats>,
    /// Where incoming messages go.
    pub inbound: Arc<Mutex<inbound::Inbound>>,
    /// Set when the engine must say goodbye and return.
    pub stop: Arc<AtomicBool>,
    /// First and longest delay between reconnection attempts.
    pub reconnect: (Duration, Duration),
}
