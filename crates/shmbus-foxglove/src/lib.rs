//! # shmbus-foxglove: live plots of the bus in Foxglove or Lichtblick
//!
//! A server of the Foxglove WebSocket protocol (`shmbus foxglove`): it
//! advertises every topic of the bus as a channel, and topics that appear
//! or go while it runs; frames are JSON (`json` encoding) with a JSON
//! Schema (`jsonschema`) from the shared codec, the same as the JSON
//! channels of `shmbus record`, each sent with its publish time; publisher
//! liveness and staleness are status messages. Clients may offer the
//! subprotocol `foxglove.websocket.v1` (Lichtblick, the npm client) or
//! `foxglove.sdk.v1` (current Foxglove).
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use shmbus_foxglove::{Config, Server};
//!
//! let server = Server::bind(Config::default())?; // 127.0.0.1:8765, every topic
//! println!("open ws://{} in Foxglove", server.local_addr());
//! let stop = AtomicBool::new(false); // set it from a signal handler
//! let summary = server.run(&stop);
//! println!("{} clients served", summary.clients);
//! # Ok::<(), shmbus_foxglove::ServeError>(())
//! ```
//!
//! ## On the bus it is only a subscriber
//! Topics are attached read-only and read only while a client subscribes.
//! Each frame is decoded once, whatever the number of clients. The server
//! is one thread with non-blocking sockets: it never waits for a client,
//! so it never slows a publisher, and a slow or stuck client costs only
//! itself ([`client`]: bounded queues, oldest frames dropped first, a
//! client that takes nothing for [`Config::stall_timeout`] disconnected).
//! [`Config::max_rate`] and [`Config::topic_rates`] cap the frames per
//! second of a topic for a weak board or link (newest frame per interval).
//!
//! ## Network exposure
//! The protocol has no authentication: anyone who can connect can read
//! every topic (and publish, with [`Config::allow_publish`]). The default
//! address is `127.0.0.1:8765`; reach it from a laptop through an SSH
//! tunnel (`docs/FOXGLOVE.md`). Listening on another address is an
//! explicit choice.
//!
//! ## Modules
//! - [`protocol`]: the messages of the protocol this server speaks.
//! - [`topics`]: finding topics, reading their frames as JSON, health.
//! - [`client`]: one client's subscriptions and bounded output.
//! - [`server`]: the `poll(2)` loop.
//! - [`publish`]: Foxglove's Publish panel writing to a topic.
//! - [`cli`]: the `shmbus foxglove` command.
#![warn(missing_docs)]
// Not `eprintln!`: it panics when stderr cannot be written (`shmbus_toolbox::say!`).
#![warn(clippy::print_stderr)]

pub mod cli;
pub mod client;
pub mod protocol;
pub mod publish;
pub mod server;
pub mod topics;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

pub use server::Server;
pub use topics::{Selector, Unserved, settle};

/// The default address: loopback only, Foxglove's usual port.
pub const DEFAULT_BIND: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8765);

/// What to serve and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address to listen on. Default [`DEFAULT_BIND`].
    pub bind: SocketAddr,
    /// Topics to serve; empty: every topic this user may read.
    pub topics: Vec<Selector>,
    /// Match topic names only at the key derived from this bus name.
    pub bus: Option<String>,
    /// At most this many frames per second of any topic (the newest frame
    /// per interval); `None`: every frame.
    pub max_rate: Option<f64>,
    /// Per-topic limits by name, over `max_rate` (0: no limit for it).
    pub topic_rates: Vec<(String, f64)>,
    /// Bytes of frames queued per client before its oldest queued frames
    /// are dropped. Default 1 MiB.
    pub client_queue: usize,
    /// Clients at once; more are refused (HTTP 503). Default 16.
    pub max_clients: usize,
    /// A client that takes no data for this long while some waits is
    /// disconnected. Default 10 s.
    pub stall_timeout: Duration,
    /// A client heard nothing from for this long is sent a WebSocket ping;
    /// one that answers nothing (not even the pong every WebSocket
    /// library sends by itself) within [`Config::stall_timeout`] after it
    /// is disconnected: a connection that went without closing (the
    /// viewer's machine slept, a network or SSH tunnel dropped) frees its
    /// client slot. Default 30 s.
    pub keepalive: Duration,
    /// A topic whose newest frame is older than this (publisher alive) is
    /// reported stale. Default 2 s.
    pub stale_after: Duration,
    /// How often to look for topics that appeared or went. Default 1 s.
    pub scan_interval: Duration,
    /// Let clients publish on existing topics (Publish panel). Default off.
    pub allow_publish: bool,
    /// The server name clients show.
    pub name: String,
    /// No connect/disconnect lines on stderr.
    pub quiet: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: DEFAULT_BIND,
            topics: Vec::new(),
            bus: None,
            max_rate: None,
            topic_rates: Vec::new(),
            client_queue: 1024 * 1024,
            max_clients: 16,
            stall_timeout: Duration::from_secs(10),
            keepalive: Duration::from_secs(30),
            stale_after: Duration::from_secs(2),
            scan_interval: Duration::from_secs(1),
            allow_publish: false,
            name: "shmbus".to_string(),
            quiet: false,
        }
    }
}

/// Why the server could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum ServeError {
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
}

impl std::fmt::Display for ServeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServeError::Bind { addr, error } if error.kind() == std::io::ErrorKind::AddrInUse => {
                let mut other = *addr;
                other.set_port(addr.port().wrapping_add(1).max(1024));
                write!(
                    f,
                    "cannot listen on {addr}: the port is in use (another shmbus foxglove or Foxglove bridge?); choose another with --bind {other}"
                )
            }
            ServeError::Bind { addr, error } => write!(
                f,
                "cannot listen on {addr}: {error}; choose another address with --bind ADDR:PORT (default {DEFAULT_BIND})"
            ),
        }
    }
}

impl std::error::Error for ServeError {}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Clients that connected.
    pub clients: u64,
    /// Frames dropped for slow clients (disconnected ones).
    pub dropped_frames: u64,
    /// Messages clients published on the bus.
    pub published: u64,
    /// Per topic served during the run: name, frames read, frames the
    /// server missed, frames that did not decode. The topics still served
    /// at the end come first; a topic that went (removed, or recreated by
    /// its restarted publisher) keeps its counts, added up under its name.
    pub topics: Vec<(String, u64, u64, u64)>,
    /// Turns of the server loop (one `poll` each): about 1 per second
    /// idle, 100 per second while a topic is subscribed, plus one per
    /// burst of client activity.
    pub turns: u64,
}
