//! The MQTT engine: everything that knows about MQTT is in this module.
//!
//! Built on `rumqttc`'s synchronous `Client`/`Connection` (it runs its own
//! small tokio runtime on the connection thread; nothing else here is
//! async). Two threads:
//!
//! - the **connection thread** drives `Connection::recv`: it connects,
//!   subscribes the `[[bridge.in]]` topics and sends the birth message on
//!   every `CONNACK`, hands incoming messages to the inbound side, and on a
//!   broken link takes back every message rumqttc had not delivered
//!   (rumqttc would drop them on a clean session) into the outbox, then
//!   waits (backoff: `reconnect_min_ms`, doubling up to `reconnect_max_ms`,
//!   back to the minimum only after a link that stayed up 10 s) and
//!   reconnects;
//! - the **pump** moves messages from the outbox into rumqttc's small
//!   request channel while connected (blocking there when the socket is
//!   slow, so the backlog stays in the bounded outbox).
//!
//! The session is clean (`clean_session = true`); the last will is
//! `offline` on `<prefix>/<board>/$state`, retained, QoS 1, and the birth
//! `online` replaces it on every connect. A broker that refuses the
//! credentials, a client id, or the TLS handshake on the first attempt is
//! a fatal error (exit code 2 with the reason); after the bridge was
//! connected once, every error is retried.
//!
//! ## TLS
//! `mqtts://` uses rustls with the `ring` provider (no OpenSSL, no C
//! library beyond ring's own assembly). The broker's certificate must be
//! signed by a CA from `ca` (PEM), or from the system's store
//! (`/etc/ssl/certs`) when `ca` is not given, and name the host as written
//! in the broker address (an IP address needs an IP SAN). `client_cert` and
//! `client_key` (PEM) authenticate the board to brokers that require it.

use std::path::PathBuf;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rumqttc::{
    Client, ConnectReturnCode, ConnectionError, Event, Incoming, LastWill, MqttOptions, Outgoing,
    QoS, Request,
};
use shmbus_config::bridge::MqttConfig;

use crate::Core;
use crate::names::{OFFLINE, ONLINE};
use crate::outbox::{Message, Qos};
use crate::secrets::{Credentials, read_credentials};

/// Default port of `mqtt://`.
pub const PORT: u16 = 1883;
/// Default port of `mqtts://`.
pub const TLS_PORT: u16 = 8883;
/// Largest message accepted from the broker (bigger ones break the
/// connection in rumqttc, so the bound is generous; the codec then
/// refuses anything that does not fit the topic).
const MAX_INCOMING: usize = 1 << 20;
/// Largest message sent.
const MAX_OUTGOING: usize = 1 << 20;
/// Largest topic plus payload of a message sent: MAX_OUTGOING less a
/// PUBLISH packet's own bytes (fixed header up to 5, topic length 2,
/// packet id 2). A larger one would break the connection in rumqttc.
pub const MAX_MESSAGE: usize = MAX_OUTGOING - 9;
/// Requests rumqttc buffers between the pump and the socket.
const CHANNEL: usize = 64;
/// How long the `[[bridge.in]]` subscriptions are left out after the broker
/// sent a message over `MAX_INCOMING` (doubling, up to `PAUSE_MAX`).
const PAUSE_MIN: Duration = Duration::from_secs(60);
const PAUSE_MAX: Duration = Duration::from_secs(900);
/// QoS 1/2 messages in flight before rumqttc waits for acknowledgements.
const INFLIGHT: u16 = 100;
/// How long a connection attempt may take, TCP connect and MQTT CONNECT to
/// CONNACK together (rumqttc's connection timeout, set here so that the
/// message that names it says the number the engine uses).
const CONNECT_TIMEOUT_S: u64 = 5;

/// What the command line can set in `[bridge.mqtt]`.
#[derive(Debug, Clone, Default)]
pub struct MqttOverrides {
    /// The broker address (`host:port` or a URL).
    pub broker: Option<String>,
    /// `--credentials FILE`.
    pub credentials: Option<PathBuf>,
    /// `--ca FILE`.
    pub ca: Option<PathBuf>,
    /// `--client-cert FILE`.
    pub client_cert: Option<PathBuf>,
    /// `--client-key FILE`.
    pub client_key: Option<PathBuf>,
    /// `--client-id`.
    pub client_id: Option<String>,
}

/// A parsed broker address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address (the TLS server name).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// `mqtts://`.
    pub tls: bool,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// Parse `host`, `host:port`, `[v6]:port`, `mqtt://host[:port]`,
/// `mqtts://host[:port]` (also `tcp://`, `ssl://`, `tls://`).
pub fn parse_broker(s: &str) -> Result<Broker, String> {
    let bad = |why: &str| {
        format!(
            "broker \"{}\": {why} (write e.g. 127.0.0.1:1883, mqtt://host:1883 or mqtts://host:8883)",
            shmbus_core::topic::shown(s)
        )
    };
    let (tls, rest) = match s.split_once("://") {
        None => (false, s),
        Some(("mqtt" | "tcp", r)) => (false, r),
        Some(("mqtts" | "ssl" | "tls", r)) => (true, r),
        Some((scheme, _)) => {
            return Err(bad(&format!(
                "unknown scheme {}://",
                shmbus_core::topic::shown(scheme)
            )));
        }
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('@') {
        return Err(bad("no path or user@ here (credentials go in a file)"));
    }
    let default = if tls { TLS_PORT } else { PORT };
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("missing ]"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("no IPv6 address between [ and ]"));
        }
        match after.strip_prefix(':') {
            Some(p) => (h, Some(p)),
            None if after.is_empty() => (h, None),
            None => return Err(bad("junk after ]")),
        }
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad("write an IPv6 address in brackets, [::1]:1883")),
            None => (rest, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    // A DNS name is at most 253 bytes of letters, digits, '-' and '.';
    // anything else would only fail later, in the resolver, once per retry.
    if host.len() > 253 {
        return Err(bad("host name longer than 253 bytes"));
    }
    if !rest.starts_with('[') {
        if let Some(c) = host
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
        {
            return Err(bad(&format!(
                "'{}' cannot be in a host name",
                c.escape_debug()
            )));
        }
    }
    let port = match port {
        None => default,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(bad(&format!(
                    "port \"{}\" is not a number from 1 to 65535",
                    shmbus_core::topic::shown(p)
                )));
            }
        },
    };
    Ok(Broker {
        host: host.to_string(),
        port,
        tls,
    })
}

/// Everything the engine needs to connect.
#[derive(Clone)]
pub struct MqttSettings {
    /// Where.
    pub broker: Broker,
    /// As whom.
    pub client_id: String,
    /// Keep-alive interval.
    pub keepalive: Duration,
    /// Username and password, from a file.
    pub credentials: Option<Credentials>,
    /// The credentials file, for messages.
    pub credentials_file: Option<PathBuf>,
    #[cfg(feature = "tls")]
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for MqttSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttSettings")
            .field("broker", &self.broker)
            .field("client_id", &self.client_id)
            .field("keepalive", &self.keepalive)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl MqttSettings {
    /// The client id as messages print it: escaped as every untrusted text
    /// is (`--client-id` may hold control characters), long ones cut.
    pub fn shown_client_id(&self) -> String {
        shmbus_core::topic::shown(&self.client_id)
    }

    /// `[bridge.mqtt]` with the command line on top. Reads the credentials
    /// and certificate files now, so a problem shows before anything runs.
    pub fn resolve(
        table: &MqttConfig,
        over: &MqttOverrides,
        config_path: &str,
        board_id: &str,
    ) -> Result<MqttSettings, String> {
        let pick = |o: &Option<PathBuf>, t: &Option<shmbus_config::bridge::PathSetting>| {
            o.clone()
                .or_else(|| t.as_ref().map(|p| p.resolve(config_path)))
        };
        let broker = match (&over.broker, &table.broker) {
            (Some(b), _) => parse_broker(b)?,
            (None, Some(b)) => parse_broker(&b.value).map_err(|e| format!("{}: {e}", b.at))?,
            (None, None) => {
                return Err(format!(
                    "no broker: give one on the command line (shmbus bridge 127.0.0.1:1883) or as broker = \"...\" in [bridge.mqtt] of {config_path}"
                ));
            }
        };
        let credentials_file = pick(&over.credentials, &table.credentials);
        let credentials = credentials_file
            .as_deref()
            .map(read_credentials)
            .transpose()?;
        let ca = pick(&over.ca, &table.ca);
        let cert = pick(&over.client_cert, &table.client_cert);
        let key = pick(&over.client_key, &table.client_key);
        match (&cert, &key) {
            (Some(_), None) => return Err("a client certificate needs its key: give --client-key FILE (or client_key in [bridge.mqtt])".into()),
            (None, Some(_)) => return Err("a client key needs its certificate: give --client-cert FILE (or client_cert in [bridge.mqtt])".into()),
            _ => {}
        }
        if !broker.tls && (ca.is_some() || cert.is_some()) {
            return Err(format!(
                "TLS files are given but the broker address {broker} is not TLS: write mqtts://{}:{TLS_PORT} (or the broker's TLS port)",
                broker.host
            ));
        }
        let client_id = over
            .client_id
            .clone()
            .or_else(|| table.client_id.clone())
            .unwrap_or_else(|| format!("shmbus-{board_id}"));
        // As the config file checks it: MQTT sends it with a 2-byte length
        // (a longer one went out cut, a CONNECT the broker drops, retried
        // for good), and an empty one names nobody on the broker.
        if client_id.is_empty()
            || client_id.len() > crate::secrets::MAX_FIELD
            || client_id.contains('\0')
        {
            return Err(format!(
                "client id \"{}\": give 1 to {} bytes with no NUL (the default is shmbus-<board-id>)",
                shmbus_core::topic::shown(&client_id),
                crate::secrets::MAX_FIELD
            ));
        }
        #[cfg(feature = "tls")]
        let tls = if broker.tls {
            Some(tls::client_config(
                ca.as_deref(),
                cert.as_deref().zip(key.as_deref()),
            )?)
        } else {
            None
        };
        #[cfg(not(feature = "tls"))]
        if broker.tls {
            return Err(format!(
                "{broker} needs TLS, and this shmbus-bridge was built without it: rebuild with --features tls"
            ));
        }
        Ok(MqttSettings {
            broker,
            client_id,
            keepalive: Duration::from_secs(
                table
                    .keepalive_s
                    .unwrap_or(shmbus_config::bridge::DEFAULT_KEEPALIVE_S),
            ),
            credentials,
            credentials_file,
            #[cfg(feature = "tls")]
            tls,
        })
    }

    fn options(&self, core: &Core) -> MqttOptions {
        let mut o = MqttOptions::new(&self.client_id, &self.broker.host, self.broker.port);
        o.set_keep_alive(self.keepalive)
            .set_clean_session(true)
            .set_last_will(LastWill::new(
                core.names.state(),
                OFFLINE,
                QoS::AtLeastOnce,
                true,
            ))
            .set_max_packet_size(MAX_INCOMING, MAX_OUTGOING)
            .set_inflight(INFLIGHT);
        if let Some(c) = &self.credentials {
            o.set_credentials(&c.username, &c.password);
        }
        #[cfg(feature = "tls")]
        if let Some(t) = &self.tls {
            o.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(t.clone()),
            ));
        }
        o
    }
}

fn qos(q: Qos) -> QoS {
    match q {
        Qos::AtMostOnce => QoS::AtMostOnce,
        Qos::AtLeastOnce => QoS::AtLeastOnce,
        Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

fn from_qos(q: QoS) -> Qos {
    match q {
        QoS::AtMostOnce => Qos::AtMostOnce,
        QoS::AtLeastOnce => Qos::AtLeastOnce,
        QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

/// Run the engine until `core.stop` is set (then say goodbye and
/// disconnect), or a fatal error on the first connection.
pub fn run(core: &Core, s: &MqttSettings) -> Result<(), String> {
    run_with_goodbye(core, s, GOODBYE)
}

/// [`run`], giving the goodbye `goodbye` to go out at a stop (tests use a
/// long one: a stop that waits for it then shows).
fn run_with_goodbye(core: &Core, s: &MqttSettings, goodbye: Duration) -> Result<(), String> {
    let (client, mut conn) = Client::new(s.options(core), CHANNEL);
    conn.eventloop
        .network_options
        .set_connection_timeout(CONNECT_TIMEOUT_S);
    // The connection loop has returned: nothing will take a request from
    // the channel any more, so the goodbye cannot go out.
    let link_done = Arc::new(AtomicBool::new(false));
    let pump = {
        let client = client.clone();
        let outbox = core.outbox.clone();
        let stats = core.stats.clone();
        let stop = core.stop.clone();
        std::thread::Builder::new()
            .name("mqtt-pump".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(m) = outbox.next(Duration::from_millis(200)) else {
                        continue;
                    };
                    // Counted as taken: a message the client refuses here
                    // (the connection gone for good, at a stop) is lost
                    // and must show in `out.unconfirmed`.
                    stats.handed.fetch_add(1, Ordering::Relaxed);
                    if client
                        .publish(m.topic, qos(m.qos), m.retain, m.payload)
                        .is_err()
                    {
                        return; // the connection is gone for good
                    }
                }
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    // The goodbye: when asked to stop, an explicit `offline` (the last will
    // only fires on an unclean end), then DISCONNECT.
    let goodbye_thread = {
        let client = client.clone();
        let stop = core.stop.clone();
        let link_done = link_done.clone();
        let state = core.names.state();
        let stats = core.stats.clone();
        std::thread::Builder::new()
            .name("mqtt-goodbye".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                // On a slow link the request channel is full of frames (the
                // pump blocks there by design): keep trying for `goodbye`, a
                // single try would lose the DISCONNECT and leave the link up
                // for good. Not once the connection loop has returned (the
                // link was down at the stop): the channel then only refuses,
                // and the stop waited the whole `goodbye` for nothing.
                let end = Instant::now() + goodbye;
                let retry = |f: &dyn Fn() -> bool| {
                    while !f() && Instant::now() < end && !link_done.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                };
                if stats.connected.load(Ordering::Relaxed) {
                    retry(&|| {
                        let ok = client
                            .try_publish(state.clone(), QoS::AtLeastOnce, true, OFFLINE)
                            .is_ok();
                        if ok {
                            stats.own.fetch_add(1, Ordering::Relaxed);
                        }
                        ok
                    });
                }
                // The acknowledgements of what is in flight (`offline`
                // itself at least) before the DISCONNECT: the connection
                // loop ends at the DISCONNECT, and a PUBACK that comes after
                // it is never read, so every clean stop reported one
                // message "never confirmed". Bounded (half the goodbye): a
                // broker that does not acknowledge leaves them unconfirmed.
                let acks = Instant::now() + goodbye / 2;
                while stats.unconfirmed() > 0
                    && stats.connected.load(Ordering::Relaxed)
                    && !link_done.load(Ordering::Relaxed)
                    && Instant::now() < acks.min(end)
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                retry(&|| client.try_disconnect().is_ok());
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    // The connection loop on a thread of its own: a poll of rumqttc cannot
    // be cut short safely (a request taken but not yet written would be
    // lost), so a link that gives no event at all (a stalled broker, every
    // QoS 1/2 slot in flight) blocks it until the keep-alive's ping goes
    // unanswered. A stop must not wait for that.
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let link = {
        let (core, s, client) = (core.clone(), s.clone(), client.clone());
        let link_done = link_done.clone();
        std::thread::Builder::new()
            .name("mqtt-link".into())
            .spawn(move || {
                let mut conn = conn;
                let result = connection_loop(&core, &s, &client, &mut conn, goodbye);
                link_done.store(true, Ordering::Relaxed);
                core.stop.store(true, Ordering::Relaxed);
                core.outbox.close();
                drop(client);
                // The pump may be blocked on a full request channel:
                // closing the channel's receiving end lets it go.
                drop(conn);
                let _ = done_tx.send(result);
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?
    };
    drop(client);
    let mut stop_seen: Option<Instant> = None;
    loop {
        match done_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(result) => {
                let _ = link.join();
                let _ = pump.join();
                let _ = goodbye_thread.join();
                return result;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                let _ = link.join();
                return Err("the MQTT connection thread failed".into());
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !core.stop.load(Ordering::Relaxed) {
            continue;
        }
        let since = *stop_seen.get_or_insert_with(Instant::now);
        if since.elapsed() >= goodbye + STALLED_GRACE {
            // The link thread, and the pump blocked behind it, are left
            // behind: they hold only the socket, closed when the process
            // exits (the broker then publishes the last will).
            shmbus_toolbox::say!(
                "shmbus-bridge: {}: the broker answered nothing for {} s after the stop (stalled, or the network is down); leaving without the goodbye: the broker publishes the last will (offline) once it notices",
                s.broker,
                (goodbye + STALLED_GRACE).as_secs()
            );
            core.outbox.close();
            core.outbox.set_connected(false);
            core.stats.connected.store(false, Ordering::Relaxed);
            let _ = goodbye_thread.join();
            return Ok(());
        }
    }
}

fn connection_loop(
    core: &Core,
    s: &MqttSettings,
    client: &Client,
    conn: &mut rumqttc::Connection,
    goodbye: Duration,
) -> Result<(), String> {
    let (min, max) = core.reconnect;
    let mut backoff = min;
    // When the link last came up. The backoff starts again from `min` only
    // after a link that stayed up for STABLE_LINK: a broker that accepts and
    // then drops every connection (overloaded, or refusing this client after
    // CONNACK) is retried at a doubling interval, not every `min`.
    let mut up_since: Option<Instant> = None;
    let mut ever = false;
    let mut down_since: Option<Instant> = None;
    let subscriptions: Vec<rumqttc::SubscribeFilter> = core
        .inbound
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .subscriptions()
        .into_iter()
        .map(|(t, q)| rumqttc::SubscribeFilter::new(t, qos(q)))
        .collect();
    // A message over MAX_INCOMING breaks the connection inside rumqttc (it
    // cannot skip one), and a retained one comes back on every connect: the
    // inbound subscriptions are then left out for a while, so the board's
    // outbound link stays up, and tried again later.
    let mut pause = PAUSE_MIN;
    let mut paused_until: Option<Instant> = None;
    let mut connected = false;
    // A SUBSCRIBE of the [[bridge.in]] topics went out on this link: only
    // then can the broker send a message (PUBLISH) at all. A packet over
    // MAX_INCOMING before that (before CONNACK, or with nothing
    // subscribed) is not a [[bridge.in]] message: the peer is not speaking
    // MQTT, and pausing the inbound topics for it would be wrong.
    let mut subscribed = false;
    // Links in a row that the broker closed within STABLE_LINK.
    let mut short_links = 0u32;
    // When the stop was first seen here: from then on the link gets `goodbye`
    // to take the goodbye and the DISCONNECT, then it is closed anyway (a
    // link too slow to take them would otherwise keep the bridge running).
    let mut stopping: Option<Instant> = None;
    loop {
        let polled = if stopping.is_some() {
            // Giving up on the link now: a poll cut short loses nothing
            // that is not lost anyway.
            conn.recv_timeout(Duration::from_millis(200))
        } else {
            conn.recv()
                .map_err(|_| rumqttc::RecvTimeoutError::Disconnected)
        };
        if core.stop.load(Ordering::Relaxed) {
            let since = *stopping.get_or_insert_with(Instant::now);
            if since.elapsed() >= goodbye {
                shmbus_toolbox::say!(
                    "shmbus-bridge: {}: the link did not take the goodbye within {} s; closing it",
                    s.broker,
                    goodbye.as_secs()
                );
                core.outbox.set_connected(false);
                core.stats.connected.store(false, Ordering::Relaxed);
                return Ok(());
            }
        }
        let event = match polled {
            Ok(e) => e,
            Err(rumqttc::RecvTimeoutError::Timeout) => continue,
            Err(rumqttc::RecvTimeoutError::Disconnected) => return Ok(()), // every client handle is gone
        };
        if connected && paused_until.is_some_and(|t| Instant::now() >= t) {
            // The request channel may be full of frames: then try again
            // a second later rather than lose the subscriptions.
            if client.try_subscribe_many(subscriptions.clone()).is_ok() {
                // This subscription brings the retained messages too.
                core.inbound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take_resubscribe();
                subscribed = true;
                paused_until = None;
                core.inbound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .resume();
                shmbus_toolbox::say!(
                    "shmbus-bridge: subscribing to the [[bridge.in]] topics again"
                );
            } else {
                paused_until = Some(Instant::now() + Duration::from_secs(1));
            }
        }
        // A [[bridge.in]] topic created again (`Inbound::watch`) lost its
        // value: subscribe again, and the broker sends its retained
        // messages anew (the SUBACK answers for every route, as at a
        // connect). Not while paused: the pause's end subscribes anyway.
        if connected
            && subscribed
            && paused_until.is_none()
            && core
                .inbound
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take_resubscribe()
            && client.try_subscribe_many(subscriptions.clone()).is_err()
        {
            // The request channel is full: a second later, as after a pause.
            paused_until = Some(Instant::now() + Duration::from_secs(1));
        }
        match event {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                core.stats.connections.fetch_add(1, Ordering::Relaxed);
                core.stats.connected.store(true, Ordering::Relaxed);
                connected = true;
                up_since = Some(Instant::now());
                if !subscriptions.is_empty() && paused_until.is_none() {
                    // This subscription brings the retained messages too.
                    core.inbound
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .take_resubscribe();
                    if client.try_subscribe_many(subscriptions.clone()).is_ok() {
                        subscribed = true;
                    } else {
                        // The request channel is full: try again a second
                        // later (as after a pause) rather than go
                        // unsubscribed.
                        paused_until = Some(Instant::now() + Duration::from_secs(1));
                    }
                }
                // Asked to stop while connecting: the DISCONNECT queued by
                // the goodbye follows; leave `offline` behind, not `online`.
                let birth = if core.stop.load(Ordering::Relaxed) {
                    OFFLINE
                } else {
                    ONLINE
                };
                if client
                    .try_publish(core.names.state(), QoS::AtLeastOnce, true, birth)
                    .is_ok()
                {
                    core.stats.own.fetch_add(1, Ordering::Relaxed);
                }
                core.outbox.set_connected(true);
                let (n, _) = core.outbox.len();
                match down_since.take() {
                    None => shmbus_toolbox::say!(
                        "shmbus-bridge: connected to {} as {}",
                        s.broker,
                        s.shown_client_id()
                    ),
                    Some(t) => shmbus_toolbox::say!(
                        "shmbus-bridge: reconnected to {} after {:.1} s; {n} queued messages follow",
                        s.broker,
                        t.elapsed().as_secs_f64()
                    ),
                }
                ever = true;
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => {
                core.inbound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .handle_message(&p.topic, &p.payload, p.retain);
            }
            Ok(Event::Incoming(Incoming::SubAck(ack))) => {
                let results = suback_results(&ack.return_codes, subscriptions.len());
                let refused: Vec<String> = results
                    .iter()
                    .zip(&subscriptions)
                    .filter_map(|(r, f)| r.as_ref().err().map(|why| format!("{} ({why})", f.path)))
                    .collect();
                if refused.is_empty() {
                    shmbus_toolbox::say!(
                        "shmbus-bridge: subscribed to {} broker topic(s)",
                        subscriptions.len()
                    );
                } else {
                    shmbus_toolbox::say!(
                        "shmbus-bridge: the broker did not take the subscription to {}: no message of it can arrive (check the broker's access rules for client id {})",
                        refused.join(", "),
                        s.shown_client_id()
                    );
                }
                core.inbound
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .subscribed(&results);
            }
            // What the broker has, as far as MQTT tells: a QoS 0 PUBLISH
            // (packet id 0) once written, a QoS 1/2 one once acknowledged.
            Ok(Event::Outgoing(Outgoing::Publish(pkid))) => {
                core.stats.written.fetch_add(1, Ordering::Relaxed);
                if pkid == 0 {
                    core.stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => {
                core.stats.acknowledged.fetch_add(1, Ordering::Relaxed);
                core.stats.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                core.stats.connected.store(false, Ordering::Relaxed);
                return Ok(());
            }
            Ok(_) => {}
            Err(e) => {
                // Too large for a message, on a link where one could come.
                let inbound_oversized = oversized(&e).filter(|_| connected && subscribed);
                connected = false;
                subscribed = false;
                let was_up = up_since.take();
                if was_up.is_some_and(|t| t.elapsed() >= STABLE_LINK) {
                    backoff = min;
                }
                // Links the broker closes soon after accepting them, again
                // and again: what two clients with one client id do to each
                // other (two boards with one board id). Said once a streak.
                if let Some(t) = was_up {
                    if closed_by_broker(&e) && t.elapsed() < STABLE_LINK {
                        short_links += 1;
                        if short_links == TAKEOVER_HINT {
                            shmbus_toolbox::say!(
                                "shmbus-bridge: {}: the broker closed {TAKEOVER_HINT} connections in a row soon after accepting them: another client may be connecting with the same client id {} (two boards with one board id, e.g. the same host name?); each connection then takes the other's over, and both boards' messages land under {}/. Give each board its own board_id (or client_id in [bridge.mqtt])",
                                s.broker,
                                s.shown_client_id(),
                                core.names.base()
                            );
                        }
                    } else {
                        short_links = 0;
                    }
                }
                if let Some(n) = inbound_oversized {
                    let why = format!(
                        "the broker sent a message of {n} bytes, over the bridge's limit of {MAX_INCOMING} bytes, on a [[bridge.in]] topic; the [[bridge.in]] subscriptions are left out for {} s so the rest of the link stays up (clear or shrink that message on the broker, e.g. mosquitto_pub -r -n -t TOPIC for a retained one, and cap message_size_limit)",
                        pause.as_secs()
                    );
                    shmbus_toolbox::say!("shmbus-bridge: {why}");
                    core.stats.in_oversized.fetch_add(1, Ordering::Relaxed);
                    core.inbound
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .pause(&why);
                    paused_until = Some(Instant::now() + pause);
                    pause = (pause * 2).min(PAUSE_MAX);
                }
                core.outbox.set_connected(false);
                core.stats.connected.store(false, Ordering::Relaxed);
                core.stats.link_errors.fetch_add(1, Ordering::Relaxed);
                take_back(core, conn);
                if core.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let (why, fatal) = match inbound_oversized {
                    // Said above; the link itself is fine.
                    Some(_) => (
                        "the link broke on that message (the MQTT client cannot skip one)"
                            .to_string(),
                        false,
                    ),
                    None => explain(&e, s),
                };
                if fatal && !ever {
                    return Err(why);
                }
                if down_since.is_none() {
                    down_since = Some(Instant::now());
                }
                shmbus_toolbox::say!(
                    "shmbus-bridge: {}: {why}; retrying in {:.1} s",
                    s.broker,
                    backoff.as_secs_f64()
                );
                let end = Instant::now() + backoff;
                while Instant::now() < end {
                    if core.stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
                }
                backoff = (backoff * 2).min(max);
            }
        }
    }
}

/// How long a stopping bridge waits for the link to take its goodbye
/// (`offline` and DISCONNECT) before it closes the link anyway.
const GOODBYE: Duration = Duration::from_secs(5);

/// How much longer than [`GOODBYE`] a stop waits for a link that gives no
/// event at all (a stalled broker) before leaving it behind.
const STALLED_GRACE: Duration = Duration::from_secs(2);

/// Links in a row closed by the broker soon after its CONNACK before the
/// bridge suggests that another client uses its client id.
const TAKEOVER_HINT: u32 = 3;

/// True if the broker (or the network) closed or reset a link that was up.
fn closed_by_broker(e: &ConnectionError) -> bool {
    use rumqttc::StateError as S;
    use rumqttc::mqttbytes::Error as B;
    let io = |io: &std::io::Error| {
        matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionAborted
        )
    };
    match e {
        ConnectionError::MqttState(S::ConnectionAborted) => true,
        ConnectionError::MqttState(S::Io(e) | S::Deserialization(B::Io(e))) => io(e),
        ConnectionError::Io(e) => io(e),
        _ => false,
    }
}

/// How long a link must stay up before a drop is retried after
/// `reconnect_min_ms` again (rather than the doubled interval).
const STABLE_LINK: Duration = Duration::from_secs(10);

/// The broker's answer to a SUBSCRIBE of `n` topic filters, one result per
/// filter in order: a filter the SUBACK refused (0x80), or for which it has
/// no return code at all (a short SUBACK), is not subscribed.
fn suback_results(codes: &[rumqttc::SubscribeReasonCode], n: usize) -> Vec<Result<(), String>> {
    (0..n)
        .map(|i| match codes.get(i) {
            Some(rumqttc::SubscribeReasonCode::Success(_)) => Ok(()),
            Some(rumqttc::SubscribeReasonCode::Failure) => {
                Err("the broker refused it (SUBACK 0x80)".to_string())
            }
            None => Err(format!(
                "the broker's SUBACK has {} return code(s) for {}, none for this one: taken as refused",
                codes.len(),
                shmbus_core::plural::count(n, "topic filter")
            )),
        })
        .collect()
}

/// The size of an incoming message that was over `MAX_INCOMING`.
fn oversized(e: &ConnectionError) -> Option<usize> {
    match e {
        ConnectionError::MqttState(rumqttc::StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(n),
        )) => Some(*n),
        _ => None,
    }
}

/// Move the messages rumqttc holds for the next session (unacknowledged
/// QoS 1/2 messages and requests not yet written) back into the outbox:
/// with a clean session rumqttc would drop them. State messages are not
/// taken back: all of them are sent again after the connect anyway.
fn take_back(core: &Core, conn: &mut rumqttc::Connection) {
    let pending = std::mem::take(&mut conn.eventloop.pending);
    let state = core.names.state();
    let mut superseded = 0u64;
    let msgs: Vec<Message> = pending
        .into_iter()
        .filter_map(|r| match r {
            Request::Publish(p) if p.topic != state && core.outbox.state_of(&p.topic).is_none() => {
                Some(Message {
                    topic: p.topic,
                    payload: p.payload.to_vec(),
                    qos: from_qos(p.qos),
                    retain: p.retain,
                })
            }
            Request::Publish(_) => {
                superseded += 1;
                None
            }
            _ => None,
        })
        .collect();
    core.stats
        .superseded
        .fetch_add(superseded, Ordering::Relaxed);
    core.outbox.requeue(msgs);
}

/// A short reason for a connection error, and whether it is one that
/// retrying cannot fix (credentials, identity, TLS).
fn explain(e: &ConnectionError, s: &MqttSettings) -> (String, bool) {
    match e {
        ConnectionError::ConnectionRefused(code) => match code {
            // Mosquitto answers a wrong password with "not authorized".
            ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => (
                match &s.credentials_file {
                    Some(f) => format!(
                        "the broker refused the connection as not authorized: check the username and password in {} (and the broker's access rules for client id {})",
                        shmbus_toolbox::printable::printable(&f.display().to_string()),
                        s.shown_client_id()
                    ),
                    None => "the broker refused the connection as not authorized: it wants a username and password; give --credentials FILE (or credentials in [bridge.mqtt])".to_string(),
                },
                true,
            ),
            ConnectReturnCode::BadClientId => (
                format!(
                    "the broker refused the client id {}: set another one (client_id in [bridge.mqtt])",
                    s.shown_client_id()
                ),
                true,
            ),
            ConnectReturnCode::RefusedProtocolVersion => {
                ("the broker does not speak MQTT 3.1.1".to_string(), true)
            }
            other => (
                format!("the broker refused the connection ({other:?})"),
                false,
            ),
        },
        #[cfg(feature = "tls")]
        ConnectionError::Tls(t) => (
            tls_problem(t).unwrap_or_else(|| {
                format!("TLS handshake failed ({t}): is this the broker's TLS port? (mqtts:// is usually 8883, plain mqtt:// 1883)")
            }),
            true,
        ),
        // A TLS alert can also arrive after the handshake, while the
        // CONNECT is read (TLS 1.3): then it is inside an I/O or state error.
        other => match tls_problem(other) {
            Some(t) => (t, true),
            None => (link_problem(other, s), false),
        },
    }
}

/// A broken link or a failed connection that retrying may fix, said
/// plainly: rumqttc's own text ("Mqtt state: Last pingreq isn't acked",
/// "Io error: Os { code: 104, .. }") says nothing a user can act on.
fn link_problem(e: &ConnectionError, s: &MqttSettings) -> String {
    use rumqttc::StateError as S;
    use rumqttc::mqttbytes::Error as B;
    let io = |io: &std::io::Error| {
        match io.kind() {
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
            "the broker reset the connection (restarting, or it dropped this client: its log says why)".to_string()
        }
        std::io::ErrorKind::UnexpectedEof => {
            "the broker closed the connection (restarting, or it dropped this client: its log says why)".to_string()
        }
        // tokio's framing: the peer closed in the middle of a packet.
        _ if io.to_string().contains("bytes remaining on stream") => {
            "the peer closed the connection in the middle of an MQTT packet (it may not be an MQTT broker: is this the broker's port?)".to_string()
        }
        _ => format!("the link broke: {io}"),
    }
    };
    match e {
        // The whole attempt (TCP connect, CONNECT, CONNACK) timed out.
        ConnectionError::NetworkTimeout => format!(
            "no answer to CONNECT within {CONNECT_TIMEOUT_S} s of connecting (the broker is stalled or overloaded, a firewall drops the packets, or this port is not an MQTT broker's)"
        ),
        ConnectionError::FlushTimeout => "the link took nothing for several seconds (the broker is stalled, or the network is too slow)".to_string(),
        ConnectionError::Io(e) => format!("cannot connect: {e}"),
        ConnectionError::NotConnAck(p) => format!(
            "the peer answered the CONNECT with {p:?}, not CONNACK (is this the broker's port?)"
        ),
        ConnectionError::MqttState(st) => match st {
            S::AwaitPingResp => format!(
                "the broker did not answer a ping within keepalive_s = {} s: it is stalled, or the network is down",
                s.keepalive.as_secs()
            ),
            S::ConnectionAborted => {
                "the broker closed the connection (restarting, or it dropped this client: its log says why)".to_string()
            }
            S::Io(e) | S::Deserialization(B::Io(e)) => io(e),
            // Not a message of a [[bridge.in]] topic (the engine says so
            // itself when it can be one): a peer that is not an MQTT
            // broker, whose bytes read as a huge length.
            S::Deserialization(B::PayloadSizeLimitExceeded(n)) => format!(
                "the broker announced a packet of {n} bytes, over the bridge's limit of {MAX_INCOMING} bytes, where no message can come (before CONNACK or with nothing subscribed): it may not be an MQTT broker; is this the broker's port?"
            ),
            S::Deserialization(d) => format!(
                "the broker sent something that is not MQTT 3.1.1 ({d}): is this the broker's port?"
            ),
            other => format!("MQTT protocol error: {other}"),
        },
        other => other.to_string(),
    }
}

/// The TLS reason somewhere in an error's source chain, said plainly.
fn tls_problem(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    #[cfg(feature = "tls")]
    {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            if let Some(r) = err.downcast_ref::<rustls::Error>() {
                return Some(tls::explain(r));
            }
            if let Some(r) = err
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(tls::explain(r));
            }
            cur = err.source();
        }
        None
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = e;
        None
    }
}
#[cfg(feature = "tls")]
mod tls {
    //! The rustls client configuration (ring provider).

    use std::path::Path;
    use std::sync::Arc;

    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::{ClientConfig, RootCertStore};

    use crate::secrets::read_private;

    fn certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
        let shown = path.display();
        let bytes = crate::secrets::read_bounded(path, what)?;
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("the {what} {shown} is not PEM: {e}"))?;
        if certs.is_empty() {
            return Err(format!(
                "the {what} {shown} has no certificate (-----BEGIN CERTIFICATE-----)"
            ));
        }
        Ok(certs)
    }

    /// A client configuration trusting `ca` (or the system's CAs), with a
    /// client certificate if given.
    pub(super) fn client_config(
        ca: Option<&Path>,
        client: Option<(&Path, &Path)>,
    ) -> Result<Arc<ClientConfig>, String> {
        let mut roots = RootCertStore::empty();
        match ca {
            Some(ca) => {
                for c in certs(ca, "CA file")? {
                    roots.add(c).map_err(|e| {
                        format!(
                            "the CA file {} has a certificate rustls refuses: {e}",
                            ca.display()
                        )
                    })?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for c in found.certs {
                    let _ = roots.add(c);
                }
                if roots.is_empty() {
                    return Err("no CA certificate in the system store (/etc/ssl/certs): install ca-certificates, or give --ca FILE".into());
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots);
        let config = match client {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = certs(cert, "client certificate")?;
                let key_bytes = read_private(key, "client key")?;
                let key_der = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
                    format!(
                        "the client key {} has no private key in PEM: {e}",
                        key.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                    format!("the client certificate and key do not go together: {e}")
                })?
            }
        };
        Ok(Arc::new(config))
    }

    /// A rustls error, as a reason with what to check.
    pub(super) fn explain(e: &rustls::Error) -> String {
        use rustls::{AlertDescription as A, CertificateError as C, Error as E};
        match e {
            E::InvalidCertificate(C::UnknownIssuer) => "TLS: the broker's certificate is not signed by a trusted CA (check --ca / ca in [bridge.mqtt])".into(),
            E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => "TLS: the broker's certificate is not valid for this host name or address (connect by a name the certificate lists)".into(),
            E::InvalidCertificate(C::Expired | C::ExpiredContext { .. }) => "TLS: the broker's certificate has expired (or this board's clock is wrong)".into(),
            E::InvalidCertificate(c) => format!("TLS: the broker's certificate is refused: {c:?}"),
            E::AlertReceived(A::CertificateRequired | A::HandshakeFailure | A::BadCertificate | A::UnknownCA) => format!(
                "TLS: the broker refused the handshake ({e}): it may require a client certificate signed by a CA it trusts (client_cert, client_key)"
            ),
            E::InvalidMessage(_) | E::InappropriateMessage { .. } => format!(
                "TLS: the broker did not answer in TLS ({e}): is this the broker's TLS port? (mqtts:// is usually 8883, plain mqtt:// 1883)"
            ),
            other => format!("TLS: {other}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::Mutex;
    use std::sync::atomic::AtomicBool;

    /// A bridge stopped while its link is slow (the request channel full of
    /// frames, so a single try to queue the goodbye fails) must still stop:
    /// it used to keep the link up, and run, for good.
    #[test]
    fn a_stop_on_a_slow_link_ends_the_engine() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let broker = {
            let d = done.clone();
            // A slow link: 1 MiB a second.
            std::thread::spawn(move || fake_broker(listener, d, Some(1 << 20), |_, _| Vec::new()))
        };
        let stats = Arc::new(crate::stats::Stats::default());
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 30, stats.clone()));
        for i in 0..300 {
            outbox.push(Message {
                topic: format!("p/b/t{i}"),
                payload: vec![b'x'; 100_000],
                qos: Qos::AtMostOnce,
                retain: false,
            });
        }
        let (stop, _inbound, rx) = engine_on(port, outbox.clone(), stats.clone(), &[]);
        // Wait until the link is busy: far more handed to rumqttc than the
        // socket buffers hold, so its request channel is full.
        let watchdog = Instant::now() + Duration::from_secs(120);
        while stats.handed.load(Ordering::Relaxed) < 150 {
            assert!(
                Instant::now() < watchdog,
                "the bridge never filled the link"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let r = stop_both(&stop, &rx, &done, broker);
        assert!(
            matches!(r, Ok(Ok(()))),
            "the engine did not end within 90 s of the stop: {r:?}"
        );
        assert!(!stats.connected.load(Ordering::Relaxed));
        assert_accounted(&stats, &outbox, 300);
    }

    /// Every message that entered the outbox (`pushed`), and every one the
    /// bridge sent of its own, is in exactly one place after the stop:
    /// delivered, still queued, dropped, too large, or handed to the link
    /// and never confirmed (`out.unconfirmed`, which the stop line says).
    /// What rumqttc held when a stalled or slow link was given up used to
    /// be in none of them.
    fn assert_accounted(stats: &crate::stats::Stats, outbox: &crate::outbox::Outbox, pushed: u64) {
        let v = stats.to_json((outbox.len().0, 0, 0, 0));
        let n = |k: &str| v["out"][k].as_u64().unwrap();
        let queued = v["queue"]["len"].as_u64().unwrap();
        assert_eq!(
            pushed + n("own"),
            n("delivered") + queued + n("dropped") + n("too_large") + n("unconfirmed"),
            "{v}"
        );
        // The stop was abandoned with messages in rumqttc: some of them
        // are said to be unconfirmed, not silently gone.
        assert!(n("unconfirmed") > 0, "{v}");
    }

    /// A bridge stopped while its broker is stalled (SIGSTOP, a hung
    /// host: it takes the connection and then answers nothing) must still
    /// stop within seconds. With every QoS 1 slot in flight rumqttc takes
    /// no request and the link gives no event until the keep-alive's ping
    /// goes unanswered: the stop used to wait for that, up to twice
    /// `keepalive_s` (here 600 s; up to 36 hours at 65535).
    #[test]
    fn a_stop_with_a_stalled_broker_ends_the_engine_within_seconds() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let broker = {
            let d = done.clone();
            // CONNACK, then nothing: no PUBACK ever.
            std::thread::spawn(move || fake_broker(listener, d, None, |_, _| Vec::new()))
        };
        let stats = Arc::new(crate::stats::Stats::default());
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
        for i in 0..300 {
            outbox.push(Message {
                topic: format!("p/b/t{i}"),
                payload: vec![b'x'; 10],
                qos: Qos::AtLeastOnce,
                retain: false,
            });
        }
        let (stop, _, rx) = engine_with_keepalive(
            port,
            outbox.clone(),
            stats.clone(),
            &[],
            Duration::from_secs(600),
        );
        // Every in-flight slot taken (the birth and INFLIGHT - 1 messages
        // written, none acknowledged), and the request channel full.
        wait_for("the in-flight window full", || {
            stats.written.load(Ordering::Relaxed) >= u64::from(INFLIGHT)
                && stats.handed.load(Ordering::Relaxed) >= u64::from(INFLIGHT) - 1 + CHANNEL as u64
        });
        // Stopped as `stop_both` does, but the count is taken while the
        // broker still holds the link, as when a bridge exits: the engine
        // left its link thread behind, which takes the messages back into
        // the outbox if the broker closes the link later.
        stop.store(true, Ordering::Relaxed);
        let r = rx.recv_timeout(Duration::from_secs(90));
        assert!(
            matches!(r, Ok(Ok(()))),
            "the engine did not end within 90 s of the stop: {r:?}"
        );
        assert!(!stats.connected.load(Ordering::Relaxed));
        assert_eq!(stats.acknowledged.load(Ordering::Relaxed), 0);
        // Nothing was acknowledged: every message taken from the outbox,
        // and the birth, is unconfirmed, the one the pump held in a
        // blocked hand-over included.
        assert_eq!(
            stats.unconfirmed(),
            stats.handed.load(Ordering::Relaxed) + stats.own.load(Ordering::Relaxed)
        );
        assert_accounted(&stats, &outbox, 300);
        done.store(true, Ordering::Relaxed);
        let _ = broker.join();
    }

    /// When the connection loop has returned (a refusal at the first
    /// connection, or a stop while the link was down), no link can carry
    /// the goodbye and the request channel refuses it. The engine used to
    /// retry it for the whole goodbye window all the same: `shmbus bridge`
    /// told "not authorized" exited 5.2 s after the broker's answer, and a
    /// stop while the broker was away took 5 s more about one time in
    /// four. With a window of 600 s here, it did not end within 90 s.
    #[test]
    fn an_engine_whose_link_ended_does_not_wait_for_the_goodbye() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let broker = {
            let d = done.clone();
            std::thread::spawn(move || {
                let Ok((mut sock, _)) = listener.accept() else {
                    return;
                };
                let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = sock.read(&mut [0; 4096]);
                // CONNACK: not authorized (5); then hold the connection.
                let _ = sock.write_all(&[0x20, 2, 0, 5]);
                while !d.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        let stats = Arc::new(crate::stats::Stats::default());
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
        let (_stop, _, rx) = engine_with_goodbye(
            port,
            outbox,
            stats,
            &[],
            Duration::from_secs(10),
            Duration::from_secs(600),
        );
        let r = rx.recv_timeout(Duration::from_secs(90));
        done.store(true, Ordering::Relaxed);
        let _ = broker.join();
        match r {
            Ok(Err(why)) => assert!(why.contains("not authorized"), "{why}"),
            other => panic!("the engine did not end with the refusal within 90 s: {other:?}"),
        }
    }

    /// A broker of our own on 127.0.0.1 for one connection: it answers
    /// CONNECT and PINGREQ, and every other whole packet (type, flags and
    /// body) as `answer` says, until a DISCONNECT or `done`. With
    /// `rate`, it reads at most that many bytes a second (a slow link).
    fn fake_broker(
        listener: std::net::TcpListener,
        done: Arc<AtomicBool>,
        rate: Option<usize>,
        mut answer: impl FnMut(u8, &[u8]) -> Vec<u8>,
    ) {
        let Ok((mut sock, _)) = listener.accept() else {
            return;
        };
        let _ = sock.set_read_timeout(Some(Duration::from_millis(50)));
        let mut buf: Vec<u8> = Vec::new();
        // A slow link reads a twentieth of its rate, then waits 50 ms.
        let mut chunk = vec![0; rate.map_or(1 << 16, |r| (r / 20).max(1))];
        while !done.load(Ordering::Relaxed) {
            match sock.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {}
            }
            if rate.is_some() {
                std::thread::sleep(Duration::from_millis(50));
            }
            loop {
                let (mut len, mut mult, mut i) = (0usize, 1usize, 1);
                while i < buf.len() && i < 5 {
                    len += usize::from(buf[i] & 0x7f) * mult;
                    mult *= 128;
                    i += 1;
                    if buf[i - 1] & 0x80 == 0 {
                        break;
                    }
                }
                if i > buf.len() || buf.len() < 2 || buf.len() < i + len {
                    break;
                }
                let reply = match buf[0] >> 4 {
                    1 => vec![0x20, 2, 0, 0],
                    12 => vec![0xd0, 0],
                    14 => return,
                    _ => answer(buf[0], &buf[i..i + len]),
                };
                if sock.write_all(&reply).is_err() {
                    return;
                }
                buf.drain(..i + len);
            }
        }
    }

    /// The engine against `broker` (started on a listener of 127.0.0.1),
    /// with `inbound` routes and `outbox` filled by the caller. Returns the
    /// core's stop flag and the engine's result channel.
    #[allow(clippy::type_complexity, reason = "a test helper's tuple")]
    fn engine_on(
        port: u16,
        outbox: Arc<crate::outbox::Outbox>,
        stats: Arc<crate::stats::Stats>,
        inbound: &[crate::settings::InTopic],
    ) -> (
        Arc<AtomicBool>,
        Arc<Mutex<crate::inbound::Inbound>>,
        std::sync::mpsc::Receiver<Result<(), String>>,
    ) {
        engine_with_keepalive(port, outbox, stats, inbound, Duration::from_secs(10))
    }

    /// [`engine_on`] with another keep-alive interval.
    #[allow(clippy::type_complexity, reason = "a test helper's tuple")]
    fn engine_with_keepalive(
        port: u16,
        outbox: Arc<crate::outbox::Outbox>,
        stats: Arc<crate::stats::Stats>,
        inbound: &[crate::settings::InTopic],
        keepalive: Duration,
    ) -> (
        Arc<AtomicBool>,
        Arc<Mutex<crate::inbound::Inbound>>,
        std::sync::mpsc::Receiver<Result<(), String>>,
    ) {
        engine_with_goodbye(port, outbox, stats, inbound, keepalive, GOODBYE)
    }

    /// [`engine_with_keepalive`] with another goodbye window.
    #[allow(clippy::type_complexity, reason = "a test helper's tuple")]
    fn engine_with_goodbye(
        port: u16,
        outbox: Arc<crate::outbox::Outbox>,
        stats: Arc<crate::stats::Stats>,
        inbound: &[crate::settings::InTopic],
        keepalive: Duration,
        goodbye: Duration,
    ) -> (
        Arc<AtomicBool>,
        Arc<Mutex<crate::inbound::Inbound>>,
        std::sync::mpsc::Receiver<Result<(), String>>,
    ) {
        let names = crate::names::Names::new("p", "b");
        let inbound = Arc::new(Mutex::new(
            crate::inbound::Inbound::new(inbound, names.clone(), outbox.clone(), stats.clone())
                .unwrap(),
        ));
        let core = Core {
            names,
            outbox,
            stats,
            inbound: inbound.clone(),
            stop: Arc::new(AtomicBool::new(false)),
            reconnect: (Duration::from_millis(100), Duration::from_millis(100)),
        };
        let settings = MqttSettings {
            broker: parse_broker(&format!("127.0.0.1:{port}")).unwrap(),
            client_id: "scripted".into(),
            keepalive,
            credentials: None,
            credentials_file: None,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let stop = core.stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(run_with_goodbye(&core, &settings, goodbye));
        });
        (stop, inbound, rx)
    }

    /// Stop the engine, then the fake broker; the engine's result, given
    /// 90 s to end.
    fn stop_both(
        stop: &AtomicBool,
        rx: &std::sync::mpsc::Receiver<Result<(), String>>,
        done: &AtomicBool,
        broker: std::thread::JoinHandle<()>,
    ) -> Result<Result<(), String>, std::sync::mpsc::RecvTimeoutError> {
        stop.store(true, Ordering::Relaxed);
        let r = rx.recv_timeout(Duration::from_secs(90));
        done.store(true, Ordering::Relaxed);
        let _ = broker.join();
        r
    }

    /// Wait (bounded) until `f` holds.
    fn wait_for(what: &str, f: impl Fn() -> bool) {
        let end = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < end, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `out.delivered` is what the broker has as far as MQTT tells: QoS 1
    /// messages once acknowledged (PUBACK), QoS 0 ones once written. It
    /// used to count every message handed to rumqttc, so a broker that
    /// acknowledged nothing still showed all of them delivered.
    #[test]
    fn delivered_counts_what_the_broker_acknowledged_not_what_was_handed_over() {
        for ack in [false, true] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = listener.local_addr().unwrap().port();
            let done = Arc::new(AtomicBool::new(false));
            let publishes = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let broker = {
                let (d, n) = (done.clone(), publishes.clone());
                std::thread::spawn(move || {
                    fake_broker(listener, d, None, |first, body| {
                        if first >> 4 != 3 {
                            return Vec::new();
                        }
                        n.fetch_add(1, Ordering::Relaxed);
                        let qos = (first >> 1) & 3;
                        let topic_len = usize::from(u16::from_be_bytes([body[0], body[1]]));
                        if !ack || qos == 0 {
                            return Vec::new();
                        }
                        let id = &body[2 + topic_len..4 + topic_len];
                        vec![0x40, 2, id[0], id[1]] // PUBACK
                    })
                })
            };
            let stats = Arc::new(crate::stats::Stats::default());
            let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
            for (i, q) in (0..25).map(|i| {
                (
                    i,
                    if i < 20 {
                        Qos::AtLeastOnce
                    } else {
                        Qos::AtMostOnce
                    },
                )
            }) {
                outbox.push(Message {
                    topic: format!("p/b/t{i}"),
                    payload: vec![b'x'; 10],
                    qos: q,
                    retain: false,
                });
            }
            let (stop, _, rx) = engine_on(port, outbox, stats.clone(), &[]);
            let out = |k: &str| stats.to_json((0, 0, 0, 0))["out"][k].as_u64();
            // The 25 messages and the birth (`online`, QoS 1) reach the broker.
            wait_for("26 PUBLISH at the broker", || {
                publishes.load(Ordering::Relaxed) == 26
            });
            // Each counter is its own atomic, counted one after the other
            // (written, then delivered; acknowledged, then delivered): wait
            // for the last one of each pair.
            wait_for("26 PUBLISH written", || out("written") == Some(26));
            if ack {
                wait_for("21 acknowledged and 26 delivered", || {
                    out("acknowledged") == Some(21) && out("delivered") == Some(26)
                });
                assert_eq!(out("unconfirmed"), Some(0), "{ack}");
            } else {
                // Only the QoS 0 ones are delivered as far as anyone knows.
                wait_for("5 delivered", || out("delivered") == Some(5));
                assert_eq!(out("acknowledged"), Some(0), "{ack}");
                // The 20 QoS 1 messages and the birth wait for a PUBACK.
                assert_eq!(out("unconfirmed"), Some(21), "{ack}");
            }
            assert_eq!(out("handed"), Some(25), "{ack}");
            assert_eq!(out("own"), Some(1), "{ack}: the birth");
            let r = stop_both(&stop, &rx, &done, broker);
            assert!(matches!(r, Ok(Ok(()))), "{r:?}");
        }
    }

    /// A SUBACK with fewer return codes than topic filters leaves the
    /// filters it says nothing about unsubscribed: the route says so in
    /// `$in/<topic>`. It used to read as "all subscribed".
    #[test]
    fn a_short_suback_leaves_the_routes_it_omits_unsubscribed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let broker = {
            let d = done.clone();
            std::thread::spawn(move || {
                fake_broker(listener, d, None, |first, body| match first >> 4 {
                    // SUBSCRIBE: a SUBACK with one return code (QoS 1)
                    // whatever the number of filters; then a message on
                    // the first filter, which the bridge reads after it.
                    8 => {
                        let mut v = vec![0x90, 3, body[0], body[1], 0x01];
                        let topic = b"g/one";
                        v.extend_from_slice(&[
                            0x30,
                            (2 + topic.len() + 1) as u8,
                            0,
                            topic.len() as u8,
                        ]);
                        v.extend_from_slice(topic);
                        v.push(b'x');
                        v
                    }
                    _ => Vec::new(),
                })
            })
        };
        // Nothing is published on the bus here; the guards remove the
        // topics anyway if a change ever makes the bridge open them.
        let mut guards = Vec::new();
        let routes: Vec<crate::settings::InTopic> = ["one", "two"]
            .iter()
            .map(|name| {
                let key = shmbus_testkit::unique_key(&format!("short-suback-{name}"));
                guards.push(shmbus_testkit::Guard(key));
                crate::settings::InTopic::for_test(name, &format!("g/{name}"), key)
            })
            .collect();
        let stats = Arc::new(crate::stats::Stats::default());
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
        let (stop, _, rx) = engine_on(port, outbox.clone(), stats.clone(), &routes);
        // The message on g/one ("x": not JSON, so nothing is published on
        // the bus) came after the SUBACK on the same link. The bridge
        // counts a message before it handles it: wait for the route's
        // report, which comes after.
        let report = |name: &str| -> serde_json::Value {
            outbox
                .state_of(&format!("p/b/$in/{name}"))
                .map(|m| serde_json::from_slice(&m.payload).unwrap())
                .unwrap_or_default()
        };
        wait_for("the message after the SUBACK, reported", || {
            report("one")["received"] == 1
        });
        assert_eq!(stats.in_received.load(Ordering::Relaxed), 1);
        let two = report("two");
        assert_eq!(two["state"], "unsubscribed", "{two}");
        let why = two["last_error"].as_str().unwrap_or_default();
        assert!(
            why.contains("1 return code(s) for 2 topic filters"),
            "{why}"
        );
        assert_eq!(report("one")["state"], "bad");
        let r = stop_both(&stop, &rx, &done, broker);
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    }

    /// A peer that is not an MQTT broker sends bytes that read as a packet
    /// of hundreds of megabytes (random data, another protocol): before
    /// CONNACK, or with nothing subscribed, that cannot be a message of a
    /// `[[bridge.in]]` topic. It used to be reported as one ("the broker
    /// sent a message of 268435457 bytes ... on a [[bridge.in]] topic"),
    /// counted in `in.oversized`, and the inbound routes were paused for
    /// 60 s, doubling up to 15 min at each such link.
    #[test]
    fn a_huge_packet_where_no_message_can_come_is_not_blamed_on_the_inbound_topics() {
        // (CONNACK first, then the bytes, routes): before CONNACK with a
        // route; after CONNACK with no route (nothing subscribed).
        for (connack_first, with_route) in [(false, true), (true, false)] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.set_nonblocking(true).unwrap();
            let port = listener.local_addr().unwrap().port();
            let done = Arc::new(AtomicBool::new(false));
            let broker = {
                let d = done.clone();
                std::thread::spawn(move || {
                    let mut socks = Vec::new();
                    while !d.load(Ordering::Relaxed) {
                        if let Ok((mut sock, _)) = listener.accept() {
                            let _ = sock.set_nonblocking(false);
                            let _ = sock.set_read_timeout(Some(Duration::from_secs(5)));
                            // The CONNECT (or what of it came), then a
                            // fixed header announcing 268,435,455 bytes.
                            let _ = sock.read(&mut [0; 4096]);
                            let mut v = Vec::new();
                            if connack_first {
                                v.extend_from_slice(&[0x20, 2, 0, 0]);
                            }
                            v.extend_from_slice(&[0x20, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3]);
                            let _ = sock.write_all(&v);
                            socks.push(sock);
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                })
            };
            let mut guards = Vec::new();
            let routes: Vec<crate::settings::InTopic> = if with_route {
                let key = shmbus_testkit::unique_key("huge-packet-in");
                guards.push(shmbus_testkit::Guard(key));
                vec![crate::settings::InTopic::for_test("sp", "g/sp", key)]
            } else {
                Vec::new()
            };
            let stats = Arc::new(crate::stats::Stats::default());
            let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
            let (stop, _, rx) = engine_on(port, outbox.clone(), stats.clone(), &routes);
            wait_for("three broken links", || {
                stats.link_errors.load(Ordering::Relaxed) >= 3
            });
            let case = format!("CONNACK first: {connack_first}, route: {with_route}");
            assert_eq!(stats.in_oversized.load(Ordering::Relaxed), 0, "{case}");
            if with_route {
                let report: serde_json::Value = outbox
                    .state_of("p/b/$in/sp")
                    .map(|m| serde_json::from_slice(&m.payload).unwrap())
                    .unwrap_or_default();
                assert_ne!(report["state"], "paused", "{case}: {report}");
            }
            let r = stop_both(&stop, &rx, &done, broker);
            assert!(matches!(r, Ok(Ok(()))), "{case}: {r:?}");
        }
    }

    /// Link errors are said in words a user can act on, not rumqttc's
    /// ("Mqtt state: Last pingreq isn't acked", "Io error: Os { .. }").
    #[test]
    fn link_errors_are_said_plainly() {
        use rumqttc::StateError as S;
        use rumqttc::mqttbytes::Error as B;
        let settings = MqttSettings {
            broker: parse_broker("127.0.0.1:1883").unwrap(),
            client_id: "c".into(),
            keepalive: Duration::from_secs(7),
            credentials: None,
            credentials_file: None,
            #[cfg(feature = "tls")]
            tls: None,
        };
        let reset = || std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let cases = [
            (
                ConnectionError::MqttState(S::AwaitPingResp),
                "did not answer a ping within keepalive_s = 7 s",
            ),
            (
                ConnectionError::MqttState(S::ConnectionAborted),
                "the broker closed the connection",
            ),
            (
                ConnectionError::MqttState(S::Io(reset())),
                "the broker reset the connection",
            ),
            (
                ConnectionError::MqttState(S::Deserialization(B::Io(reset()))),
                "the broker reset the connection",
            ),
            (
                // What an HTTP server on the port gives.
                ConnectionError::MqttState(S::Deserialization(B::Io(std::io::Error::other(
                    "bytes remaining on stream",
                )))),
                "is this the broker's port?",
            ),
            (
                ConnectionError::MqttState(S::Deserialization(B::MalformedPacket)),
                "not MQTT 3.1.1 (Malformed packet): is this the broker's port?",
            ),
            (
                ConnectionError::NotConnAck(rumqttc::Packet::PingResp),
                "not CONNACK (is this the broker's port?)",
            ),
            (ConnectionError::FlushTimeout, "the link took nothing"),
            (
                ConnectionError::MqttState(S::Deserialization(B::PayloadSizeLimitExceeded(
                    268_435_457,
                ))),
                "a packet of 268435457 bytes, over the bridge's limit of 1048576 bytes, where no message can come",
            ),
        ];
        for (e, words) in cases {
            let (why, fatal) = explain(&e, &settings);
            assert!(!fatal, "{why}");
            assert!(why.contains(words), "{e:?}: {why}");
            for raw in ["Mqtt state", "Io error", "Os {", "IO:", "pingreq"] {
                assert!(!why.contains(raw), "{e:?}: {why}");
            }
        }
    }

    /// A retained message the broker sends again (on every reconnect, and
    /// on every new SUBSCRIBE) was published on the bus again: one
    /// setpoint from the ground station became a new frame after each link
    /// drop. A retained copy of the frame the topic already holds is now
    /// counted as `replayed`, not published; a live message with the same
    /// value (the ground station sending it again) still is.
    #[test]
    fn a_retained_message_sent_again_is_not_published_again() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let done = Arc::new(AtomicBool::new(false));
        let publish = |retain: bool, payload: &[u8]| {
            let topic = b"g/ret";
            let mut v = vec![
                0x30 | u8::from(retain),
                (2 + topic.len() + payload.len()) as u8,
                0,
                topic.len() as u8,
            ];
            v.extend_from_slice(topic);
            v.extend_from_slice(payload);
            v
        };
        let broker = {
            let d = done.clone();
            std::thread::spawn(move || {
                fake_broker(listener, d, None, |first, body| match first >> 4 {
                    // SUBSCRIBE: SUBACK, the retained message twice (as after
                    // two subscriptions), another retained value, then the
                    // last value again, live.
                    8 => {
                        let mut v = vec![0x90, 3, body[0], body[1], 0x01];
                        v.extend(publish(true, br#"{"a":1}"#));
                        v.extend(publish(true, br#"{ "a": 1 }"#));
                        v.extend(publish(true, br#"{"a":2}"#));
                        v.extend(publish(false, br#"{"a":2}"#));
                        v
                    }
                    _ => Vec::new(),
                })
            })
        };
        let key = shmbus_testkit::unique_key("retained-replay");
        let _guard = shmbus_testkit::Guard(key);
        let route = crate::settings::InTopic::for_test("ret", "g/ret", key);
        let stats = Arc::new(crate::stats::Stats::default());
        let outbox = Arc::new(crate::outbox::Outbox::new(1000, 1 << 20, stats.clone()));
        let (stop, _, rx) = engine_on(port, outbox, stats.clone(), std::slice::from_ref(&route));
        // The bridge counts a message as received before it handles it:
        // wait until all four are accounted for.
        wait_for("four messages, handled", || {
            let v = stats.to_json((0, 0, 0, 0));
            v["in"]["received"] == 4
                && v["in"]["published"].as_u64().unwrap_or(0)
                    + v["in"]["replayed"].as_u64().unwrap_or(0)
                    + v["in"]["bad"].as_u64().unwrap_or(0)
                    + v["in"]["refused"].as_u64().unwrap_or(0)
                    >= 4
        });
        let v = stats.to_json((0, 0, 0, 0));
        assert_eq!(v["in"]["published"], 3, "{v}");
        assert_eq!(v["in"]["replayed"], 1, "{v}");
        // On the bus: 1, 2, 2 (the live one), the newest generation 3.
        let sub = shmbus_sub::RawSubscriber::attach(&route.topic).unwrap();
        assert_eq!(sub.generation(), 3);
        let r = stop_both(&stop, &rx, &done, broker);
        assert!(matches!(r, Ok(Ok(()))), "{r:?}");
    }

    #[test]
    fn broker_addresses() {
        let b = |s: &str| parse_broker(s).map(|b| b.to_string());
        assert_eq!(b("127.0.0.1:1883").unwrap(), "mqtt://127.0.0.1:1883");
        assert_eq!(b("localhost").unwrap(), "mqtt://localhost:1883");
        assert_eq!(
            b("mqtts://broker.example").unwrap(),
            "mqtts://broker.example:8883"
        );
        assert_eq!(b("ssl://h:1").unwrap(), "mqtts://h:1");
        assert_eq!(b("tcp://h:2/").unwrap(), "mqtt://h:2");
        assert_eq!(b("[::1]:1884").unwrap(), "mqtt://[::1]:1884");
        assert_eq!(b("mqtts://[::1]").unwrap(), "mqtts://[::1]:8883");
        for (bad, words) in [
            ("http://h", "unknown scheme http://"),
            ("h:0", "port \"0\""),
            ("h:x", "port \"x\""),
            ("::1", "IPv6 address in brackets"),
            ("mqtt://user:pw@h", "credentials go in a file"),
            ("mqtt://:1883", "no host"),
            ("[::1", "missing ]"),
            ("[nope]:1883", "no IPv6 address"),
            ("bad host:1883", "' ' cannot be in a host name"),
            ("h\u{1b}[2J", "'\\u{1b}' cannot be in a host name"),
            ("mqtt\u{1b}://h", "unknown scheme mqtt\\u{1b}://"),
            ("h:1\u{7}", "port \"1\\u{7}\""),
        ] {
            let e = parse_broker(bad).unwrap_err();
            assert!(
                e.contains(words) && e.contains("127.0.0.1:1883"),
                "{bad}: {e}"
            );
            assert!(!e.chars().any(char::is_control), "{e:?}");
        }
        let long = "a".repeat(10_000);
        let e = parse_broker(&long).unwrap_err();
        assert!(
            e.contains("longer than 253 bytes") && e.len() < 250,
            "{}",
            &e[..e.len().min(300)]
        );
        let longest = format!("{}.example", "a".repeat(245));
        assert_eq!(longest.len(), 253);
        assert!(parse_broker(&longest).is_ok(), "253 bytes is a valid name");
    }
}
