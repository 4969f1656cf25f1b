//! The server loop: one thread, non-blocking sockets and `poll(2)`.
//!
//! Each turn it accepts connections, advances WebSocket handshakes, reads
//! what clients sent, and every [`TICK`] reads new frames of the subscribed
//! topics and hands each client its share. Nothing in the loop waits for a
//! client or a publisher: sockets never block, reads of a slot that is
//! mid-write give up after a few retries, and each client's output is a
//! bounded queue ([`crate::client`]). Every [`Config::scan_interval`] it
//! looks for topics that appeared or went; every [`HEALTH_INTERVAL`] it
//! checks publisher liveness and staleness.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use shmbus_core::sys;
use tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{ServerHandshake, http};

use crate::client::{Client, Incoming, Socket};
use crate::protocol::{self, ClientMessage, ServerMessage, level};
use crate::publish::Publish;
use crate::topics::{HealthChange, Topics, Unserved};
use crate::{Config, Summary};

/// How often subscribed topics are read.
pub const TICK: Duration = Duration::from_millis(10);
/// How often publisher liveness and staleness are checked.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(1);
/// A WebSocket handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; more connections are closed at once.
const MAX_PENDING: usize = 16;
/// After `accept` fails (no descriptors left), wait this long before the
/// next try.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// A slow client is told about dropped frames at most this often.
const SLOW_NOTICE_EVERY: Duration = Duration::from_secs(5);
/// The status id of the slow-client notice. The server's own status ids
/// use `shmbus:`, which no topic name holds: a topic's are `shmbus/NAME`
/// ([`crate::topics::status_id`]), and a topic may be named `slow-client`.
const SLOW_STATUS_ID: &str = "shmbus:slow-client";
/// Status id of the notice that frames are larger than a client's queue.
const OVERSIZE_STATUS_ID: &str = "shmbus:frame-too-large";
/// Refused-topic notes kept for clients that connect later (the newest).
pub const MAX_NOTES: usize = 32;
/// Largest message a client may send (a Publish panel message is small).
pub const MAX_CLIENT_MESSAGE: usize = 256 * 1024;
/// Bytes the kernel buffers per client socket (`SO_SNDBUF`). Fixed, so a
/// stuck client cannot make the kernel grow it (Linux doubles the value).
const SOCKET_SEND_BUFFER: usize = 128 * 1024;

/// Chooses the subprotocol during the handshake, or refuses the client.
struct Negotiate {
    chosen: Rc<Cell<Option<&'static str>>>,
    /// Clients connected now ([`Server::seats`]), read when the request
    /// comes: a count taken at `accept` let every handshake in progress
    /// in, up to `--max-clients` + the pending handshakes.
    seats: Rc<Cell<usize>>,
    /// `--max-clients`.
    max: usize,
}

/// Why a client is refused when `clients` of `max` are connected.
fn full(clients: usize, max: usize) -> String {
    format!(
        "shmbus foxglove already serves {clients} clients (--max-clients {max}): close one, or restart the server with a higher --max-clients\n"
    )
}

impl Callback for Negotiate {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        let refusal = |status: u16, text: String| {
            let mut r = ErrorResponse::new(Some(text));
            *r.status_mut() =
                http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
            r
        };
        if self.seats.get() >= self.max {
            return Err(refusal(503, full(self.seats.get(), self.max)));
        }
        let offers = request
            .headers()
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        match protocol::choose_subprotocol(offers) {
            Some(p) => {
                response.headers_mut().insert(
                    http::header::SEC_WEBSOCKET_PROTOCOL,
                    http::HeaderValue::from_static(p),
                );
                self.chosen.set(Some(p));
                Ok(response)
            }
            None => Err(refusal(
                400,
                format!(
                    "this is a Foxglove WebSocket server: offer the subprotocol {} or {}\n",
                    protocol::WEBSOCKET_V1,
                    protocol::SDK_V1
                ),
            )),
        }
    }
}

struct Pending {
    peer: SocketAddr,
    since_ns: u64,
    chosen: Rc<Cell<Option<&'static str>>>,
    hs: MidHandshake<ServerHandshake<Socket, Negotiate>>,
}

/// The server's state.
pub struct Server {
    cfg: Config,
    listener: TcpListener,
    topics: Topics,
    clients: Vec<Client>,
    pending: Vec<Pending>,
    publish: Publish,
    next_client: u64,
    session: String,
    metadata: BTreeMap<String, String>,
    /// Topics that cannot be shown, told to every client as warnings.
    notes: VecDeque<(String, String)>,
    /// Notes made so far (their ids stay unique when old ones go).
    notes_made: u64,
    summary: Summary,
    /// `CLOCK_MONOTONIC` before which the listener is not watched.
    accept_paused_until: u64,
    /// The named topics not served at the last scan, with why.
    unserved: Vec<Unserved>,
    /// Named topics (selector indexes) already warned about: once each.
    warned: HashSet<usize>,
    /// Serving (`run` started): a named topic not there yet is waited for.
    running: bool,
    /// `clients.len()`, shared with the handshakes in progress
    /// ([`Negotiate`]); set wherever a client comes or goes.
    seats: Rc<Cell<usize>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .field("clients", &self.clients.len())
            .finish_non_exhaustive()
    }
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(crate::client::BATCH * 2)
        .max_message_size(Some(MAX_CLIENT_MESSAGE))
        .max_frame_size(Some(MAX_CLIENT_MESSAGE))
}

impl Server {
    /// Listen on `cfg.bind` and find the topics.
    pub fn bind(cfg: Config) -> Result<Server, crate::ServeError> {
        let listener = TcpListener::bind(cfg.bind).map_err(|e| crate::ServeError::Bind {
            addr: cfg.bind,
            error: e,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|e| crate::ServeError::Bind {
                addr: cfg.bind,
                error: e,
            })?;
        let topics = Topics::new(
            cfg.topics.clone(),
            cfg.bus.clone(),
            cfg.max_rate,
            cfg.topic_rates.clone(),
        );
        let mut metadata = BTreeMap::new();
        metadata.insert("shmbus".to_string(), env!("CARGO_PKG_VERSION").to_string());
        if let Some(b) = &cfg.bus {
            metadata.insert("bus".to_string(), b.clone());
        }
        let mut s = Server {
            publish: Publish::new(cfg.allow_publish),
            cfg,
            listener,
            topics,
            clients: Vec::new(),
            pending: Vec::new(),
            next_client: 1,
            session: sys::realtime_ns().to_string(),
            metadata,
            notes: VecDeque::new(),
            notes_made: 0,
            summary: Summary::default(),
            accept_paused_until: 0,
            unserved: Vec::new(),
            warned: HashSet::new(),
            running: false,
            seats: Rc::new(Cell::new(0)),
        };
        s.scan();
        Ok(s)
    }

    /// The address it listens on (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.cfg.bind)
    }

    /// Number of topics served now.
    pub fn topic_count(&self) -> usize {
        self.topics.by_id.len()
    }

    /// The topic names (as their segments carry them) of the topics
    /// served now, sorted, each once: what a `--rate TOPIC=HZ` must name.
    pub fn topic_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .topics
            .by_id
            .values()
            .map(|t| t.segment().info().name.clone())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The topics named in [`Config::topics`] that were not served at the
    /// last scan, each with why.
    pub fn unserved(&self) -> &[Unserved] {
        &self.unserved
    }

    /// One `shmbus: warning:` line on stderr for each topic of
    /// [`Self::unserved`] not warned about before, saying why; `waiting`:
    /// the server runs, so one not there yet is served once it appears.
    /// Serving warns by itself (at the start and at each scan).
    pub fn warn_unserved(&mut self, waiting: bool) {
        for u in &self.unserved {
            if self.warned.insert(u.index) {
                let then = match (waiting, u.may_appear) {
                    (false, _) => "",
                    (true, true) => "; it is served once it appears",
                    (true, false) => "; not served",
                };
                let what = if u.not_found { "not found: " } else { "" };
                shmbus_toolbox::say!(
                    "shmbus: warning: {}: {what}{}{then}",
                    shmbus_toolbox::printable::printable(&u.label),
                    u.why
                );
            }
        }
    }

    /// Serve until `stop` is set.
    pub fn run(self, stop: &AtomicBool) -> Summary {
        self.run_for(stop, None)
    }

    /// [`Self::run`], ending by itself after `duration` if it is given
    /// (`--duration`: no timer thread, so nothing to fail under a process
    /// limit).
    pub fn run_for(mut self, stop: &AtomicBool, duration: Option<Duration>) -> Summary {
        self.running = true;
        self.warn_unserved(true);
        let now = sys::monotonic_ns();
        let end = duration.map(|d| now.saturating_add(ns(d)));
        let mut next_scan = now + ns(self.cfg.scan_interval);
        let mut next_health = now;
        let mut next_tick = now;
        let mut incoming = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let now = sys::monotonic_ns();
            if end.is_some_and(|e| now >= e) {
                break;
            }
            if now >= next_scan {
                self.scan();
                next_scan = now + ns(self.cfg.scan_interval);
            }
            if now >= next_health {
                let changes = self.topics.check_health(self.cfg.stale_after);
                self.tell_health(&changes);
                next_health = now + ns(HEALTH_INTERVAL);
            }
            let subscribed = self.topics.any_subscribed();
            if subscribed && now >= next_tick {
                self.tick(now);
                // Keep the cadence; after a long turn, start again from now.
                next_tick = (next_tick + ns(TICK)).max(now);
            }
            self.housekeeping(now);

            let mut deadline = next_scan.min(next_health).min(end.unwrap_or(u64::MAX));
            if subscribed {
                deadline = deadline.min(next_tick);
            }
            // Rounded up: a wait of 0 ms for a deadline 0.4 ms away would
            // spin until it passes.
            let wait_ms = deadline
                .saturating_sub(sys::monotonic_ns())
                .div_ceil(1_000_000)
                .min(1000) as u16;
            let ready = self.wait(wait_ms);
            self.summary.turns += 1;
            let now = sys::monotonic_ns();
            if ready.listener {
                self.accept(now);
            }
            // Every pending handshake is tried each turn (a non-blocking
            // read that finds nothing costs one system call).
            self.advance_handshakes(now);
            for (i, (readable, writable)) in ready.clients.iter().enumerate() {
                if *readable {
                    incoming.clear();
                    self.clients[i].read(&mut incoming, now);
                    for m in incoming.drain(..) {
                        self.handle(i, m);
                    }
                }
                if *writable || *readable {
                    self.clients[i].pump(now);
                }
            }
        }
        for c in &mut self.clients {
            if c.gone.is_none() {
                c.gone = Some("shmbus foxglove stopped".into());
                c.farewell = Some(CloseCode::Away);
            }
        }
        self.housekeeping(sys::monotonic_ns());
        let mut topics: Vec<(String, u64, u64, u64)> = self
            .topics
            .channels()
            .iter()
            .filter_map(|c| self.topics.by_id.get(&c.id))
            .map(|t| (t.name().to_string(), t.frames, t.missed, t.undecodable))
            .collect();
        // Topics that went, or whose publisher came back on a new segment:
        // their counts stay in the summary, under their name.
        for (name, (frames, missed, bad)) in std::mem::take(&mut self.topics.gone) {
            match topics.iter_mut().find(|t| t.0 == name) {
                Some(t) => {
                    t.1 += frames;
                    t.2 += missed;
                    t.3 += bad;
                }
                None => topics.push((name, frames, missed, bad)),
            }
        }
        self.summary.topics = topics;
        self.summary
    }

    fn wait(&self, timeout_ms: u16) -> Ready {
        let mut fds = Vec::with_capacity(1 + self.pending.len() + self.clients.len());
        // While accepting fails (no descriptors left), the listener is not
        // watched: it would be ready at once, every time.
        let listen = if sys::monotonic_ns() >= self.accept_paused_until {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        fds.push(PollFd::new(self.listener.as_fd(), listen));
        // Only POLLIN: a socket is writable almost always, and a handshake
        // waiting for its request would make poll return at once. The
        // short response goes out right after the request is read; if the
        // kernel ever refuses it, the next turn (10 ms to 1 s) retries.
        for p in &self.pending {
            fds.push(PollFd::new(
                p.hs.get_ref().get_ref().stream().as_fd(),
                PollFlags::POLLIN,
            ));
        }
        for c in &self.clients {
            let mut ev = PollFlags::POLLIN;
            if c.blocked() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.socket().as_fd(), ev));
        }
        // A client whose messages wait in its WebSocket's buffer is read
        // again at once: poll(2) sees only the socket, already drained.
        let timeout_ms = if self.clients.iter().any(|c| c.more_to_read) {
            0
        } else {
            timeout_ms
        };
        // EINTR (a signal) only ends the wait early; the loop checks `stop`.
        let _ = poll(&mut fds, PollTimeout::from(timeout_ms));
        let got = |i: usize| fds[i].revents().unwrap_or(PollFlags::empty());
        let any_in = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        let np = self.pending.len();
        Ready {
            listener: got(0).intersects(PollFlags::POLLIN),
            clients: (0..self.clients.len())
                .map(|i| {
                    let r = got(1 + np + i);
                    (
                        r.intersects(any_in) || self.clients[i].more_to_read,
                        r.intersects(PollFlags::POLLOUT),
                    )
                })
                .collect(),
        }
    }

    fn accept(&mut self, now: u64) {
        loop {
            let (stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and the like: the connection waits in the
                    // backlog; try again in a while, and say so once.
                    if now >= self.accept_paused_until + ns(ACCEPT_PAUSE) * 100 {
                        shmbus_toolbox::say!(
                            "shmbus foxglove: cannot accept a connection: {e} (new connections wait until this clears; raise `ulimit -n` or --max-clients less)"
                        );
                    }
                    self.accept_paused_until = now + ns(ACCEPT_PAUSE);
                    return;
                }
            };
            if self.pending.len() >= MAX_PENDING {
                // Too many handshakes at once (a scan, a flood, or sockets
                // that never speak): the oldest makes room. Refusing the
                // new one instead let MAX_PENDING idle sockets lock every
                // real client out for the handshake timeout, again and
                // again.
                drop(self.pending.remove(0));
            }
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let _ = stream.set_nodelay(true);
            let _ = nix::sys::socket::setsockopt(
                &stream,
                nix::sys::socket::sockopt::SndBuf,
                &SOCKET_SEND_BUFFER,
            );
            let chosen = Rc::new(Cell::new(None));
            let cb = Negotiate {
                chosen: chosen.clone(),
                seats: self.seats.clone(),
                max: self.cfg.max_clients,
            };
            let result =
                tungstenite::accept_hdr_with_config(Socket::new(stream), cb, Some(ws_config()));
            self.handshake_result(result, peer, chosen, now, now);
        }
    }

    fn handshake_result(
        &mut self,
        result: Result<
            tungstenite::WebSocket<Socket>,
            HandshakeError<ServerHandshake<Socket, Negotiate>>,
        >,
        peer: SocketAddr,
        chosen: Rc<Cell<Option<&'static str>>>,
        since_ns: u64,
        now: u64,
    ) {
        match result {
            // Full, though it was not when its request was read (its
            // answer waited for the socket meanwhile, and another
            // handshake finished first): upgraded already, so told in a
            // close frame, 1013 (try again later), instead of the 503.
            Ok(mut ws) if self.clients.len() >= self.cfg.max_clients => {
                let why = full(self.clients.len(), self.cfg.max_clients);
                // A close frame's reason holds at most 123 bytes.
                let _ = ws.close(Some(tungstenite::protocol::CloseFrame {
                    code: CloseCode::Again,
                    reason: format!(
                        "shmbus foxglove is full (--max-clients {}); try again later",
                        self.cfg.max_clients
                    )
                    .into(),
                }));
                let _ = ws.flush();
                if !self.cfg.quiet {
                    shmbus_toolbox::say!("shmbus foxglove: {peer}: refused: {}", why.trim_end());
                }
            }
            Ok(ws) => {
                let protocol = chosen.get().unwrap_or(protocol::WEBSOCKET_V1);
                let id = self.next_client;
                self.next_client += 1;
                let client = Client::new(id, peer, protocol, ws, self.cfg.client_queue, now);
                self.welcome(client, now);
            }
            Err(HandshakeError::Interrupted(hs)) => self.pending.push(Pending {
                peer,
                since_ns,
                chosen,
                hs,
            }),
            Err(HandshakeError::Failure(e)) => {
                if !self.cfg.quiet {
                    shmbus_toolbox::say!("shmbus foxglove: {peer}: {}", handshake_error(&e));
                }
            }
        }
    }

    fn advance_handshakes(&mut self, now: u64) {
        for p in std::mem::take(&mut self.pending) {
            let Pending {
                peer,
                since_ns,
                chosen,
                hs,
            } = p;
            let result = hs.handshake();
            self.handshake_result(result, peer, chosen, since_ns, now);
        }
    }

    /// A new client: server info, every channel, and the standing statuses.
    fn welcome(&mut self, mut c: Client, now: u64) {
        let mut caps = Vec::new();
        let mut encodings = Vec::new();
        if self.cfg.allow_publish {
            caps.push("clientPublish");
            encodings.push("json");
        }
        c.send_text(
            ServerMessage::ServerInfo {
                name: &self.cfg.name,
                capabilities: caps,
                supported_encodings: encodings,
                metadata: &self.metadata,
                session_id: &self.session,
            }
            .to_text(),
        );
        let channels = self.topics.channels();
        c.welcomed = channels.iter().map(|ch| ch.id).collect();
        c.first_new_channel = self.topics.next_channel_id();
        c.send_text(
            ServerMessage::Advertise {
                channels: &channels,
            }
            .to_text(),
        );
        // Into the WebSocket's buffer before the statuses: the channels of
        // a big bus can exceed the control budget by themselves.
        c.pump(now);
        for ch in &channels {
            if let Some((lvl, msg)) = self.topics.by_id.get(&ch.id).and_then(|t| t.status.clone()) {
                c.send_text(status(lvl, msg, Some(crate::topics::status_id(&ch.topic))));
            }
        }
        for (id, msg) in &self.notes {
            c.send_text(status(level::WARNING, msg.clone(), Some(id.clone())));
        }
        if !self.cfg.quiet {
            shmbus_toolbox::say!(
                "shmbus foxglove: client #{} {} connected ({})",
                c.id,
                c.peer,
                c.protocol
            );
        }
        self.summary.clients += 1;
        c.pump(now);
        self.clients.push(c);
        self.seats.set(self.clients.len());
    }

    fn scan(&mut self) {
        let r = self.topics.scan();
        self.unserved = self.topics.unserved();
        if self.running {
            self.warn_unserved(true);
        }
        for msg in r.refused {
            shmbus_toolbox::say!("shmbus foxglove: {msg}");
            let id = format!("shmbus:refused/{}", self.notes_made);
            self.notes_made += 1;
            // The newest MAX_NOTES stay: a publisher that keeps coming back
            // with an unusable schema (a new segment each time) must not
            // grow the list every new client is sent without end.
            let old = (self.notes.len() >= MAX_NOTES).then(|| self.notes.pop_front());
            for c in &mut self.clients {
                if let Some(Some((old_id, _))) = &old {
                    c.send_text(
                        ServerMessage::RemoveStatus {
                            status_ids: vec![old_id.clone()],
                        }
                        .to_text(),
                    );
                }
                c.send_text(status(level::WARNING, msg.clone(), Some(id.clone())));
            }
            self.notes.push_back((id, msg));
        }
        if !r.removed.is_empty() {
            for c in &mut self.clients {
                // The last frames of a subscribed channel that went, read
                // by the scan, then every queued frame of it ahead of the
                // unadvertise: a subscriber gets what was published before
                // the topic went, and nothing of it after.
                for f in &self.topics.frames {
                    if let Some(&sub) = c.by_channel.get(&f.channel) {
                        let payload = &self.topics.json[f.start..f.end];
                        c.send_frame(f.channel, protocol::message_data(sub, f.real_ns, payload));
                    }
                }
                for ch in &r.removed {
                    if let Some(sub) = c.by_channel.remove(ch) {
                        c.subs.remove(&sub);
                        c.end_subscription(sub);
                    }
                    c.queue.promote_channel(*ch);
                }
                c.send_text(
                    ServerMessage::Unadvertise {
                        channel_ids: r.removed.clone(),
                    }
                    .to_text(),
                );
            }
            if !self.cfg.quiet {
                shmbus_toolbox::say!("shmbus foxglove: {} topic(s) went away", r.removed.len());
            }
        }
        if !r.statuses_gone.is_empty() {
            let text = ServerMessage::RemoveStatus {
                status_ids: r.statuses_gone,
            }
            .to_text();
            for c in &mut self.clients {
                c.send_text(text.clone());
            }
        }
        if !r.added.is_empty() {
            let channels: Vec<_> = r
                .added
                .iter()
                .filter_map(|id| self.topics.by_id.get(id).map(|t| t.channel.clone()))
                .collect();
            let text = ServerMessage::Advertise {
                channels: &channels,
            }
            .to_text();
            for c in &mut self.clients {
                c.send_text(text.clone());
            }
            if !self.cfg.quiet {
                let names: Vec<&str> = channels.iter().map(|c| c.topic.as_str()).collect();
                shmbus_toolbox::say!("shmbus foxglove: serving {}", names.join(", "));
            }
        }
    }

    fn tell_health(&mut self, changes: &[HealthChange]) {
        for ch in changes {
            let text = match &ch.status {
                Some((lvl, msg)) => status(*lvl, msg.clone(), Some(ch.id.clone())),
                None => ServerMessage::RemoveStatus {
                    status_ids: vec![ch.id.clone()],
                }
                .to_text(),
            };
            for c in &mut self.clients {
                c.send_text(text.clone());
            }
        }
    }

    /// Read subscribed topics and queue their frames for each subscriber.
    fn tick(&mut self, now: u64) {
        self.topics.poll();
        if self.topics.frames.is_empty() {
            return;
        }
        for c in &mut self.clients {
            if c.by_channel.is_empty() {
                continue;
            }
            for f in &self.topics.frames {
                if let Some(&sub) = c.by_channel.get(&f.channel) {
                    let payload = &self.topics.json[f.start..f.end];
                    c.send_frame(f.channel, protocol::message_data(sub, f.real_ns, payload));
                }
            }
            c.pump(now);
        }
    }

    /// Stuck and slow clients, gone clients, stale handshakes.
    fn housekeeping(&mut self, now: u64) {
        let stall = ns(self.cfg.stall_timeout);
        for c in &mut self.clients {
            // Nothing waits for it: however long ago it was last sent
            // something, it is not behind. The stall clock runs only while
            // output waits; it ran through quiet spells, and the keepalive's
            // ping after one (nothing sent for 10 s, nothing heard for 30 s)
            // had a reading client reset as "stuck" at once.
            if !c.has_output() {
                c.last_progress_ns = now;
            }
            c.keepalive(now, ns(self.cfg.keepalive), stall);
            // Messages queued this turn (advertise, status, the ping) go out
            // now; a blocked client is pumped when its socket turns writable.
            if !c.blocked() && c.has_output() {
                c.pump(now);
            }
            c.note_drain(now);
            if c.gone.is_none() && c.has_output() && now.saturating_sub(c.last_progress_ns) > stall
            {
                c.stuck = true;
                c.gone = Some(format!(
                    "stuck: took no data for {} s with {} KiB waiting",
                    self.cfg.stall_timeout.as_secs(),
                    c.queue.bytes() / 1024
                ));
            }
            if c.gone.is_some() {
                continue;
            }
            let every = ns(SLOW_NOTICE_EVERY);
            // A frame larger than the whole queue is dropped however fast
            // the client reads: say so, and what to raise, not "too slow".
            if c.queue.oversize > c.oversize_noticed
                && (c.oversize_notice_ns == 0 || now.saturating_sub(c.oversize_notice_ns) >= every)
            {
                let n = c.queue.oversize - c.oversize_noticed;
                c.oversize_noticed = c.queue.oversize;
                c.oversize_notice_ns = now;
                let largest_kib = c.queue.largest_oversize.div_ceil(1024);
                c.send_text(status(
                    level::ERROR,
                    format!(
                        "{n} frame{} dropped: larger than this connection's whole queue ({} KiB; the largest frame was {largest_kib} KiB as JSON); restart the server with --client-queue {} or more",
                        if n == 1 { "" } else { "s" },
                        c.queue.data_budget() / 1024,
                        largest_kib.max(16)
                    ),
                    Some(OVERSIZE_STATUS_ID.into()),
                ));
                c.pump(now);
            }
            let slow = c.queue.dropped - c.queue.oversize;
            if slow > c.dropped_noticed && now.saturating_sub(c.slow_notice_ns) >= every {
                let n = slow - c.dropped_noticed;
                c.dropped_noticed = slow;
                c.slow_notice_ns = now;
                c.send_text(status(
                    level::WARNING,
                    format!(
                        "this connection is too slow for the subscribed topics: {} dropped (oldest first) since the last notice; subscribe to fewer topics, or restart the server with --max-rate HZ",
                        shmbus_core::plural::count(n, "frame")
                    ),
                    Some(SLOW_STATUS_ID.into()),
                ));
                c.pump(now);
            } else if c.slow_notice_ns != 0
                && c.queue.dropped - c.queue.oversize == c.dropped_noticed
                && now.saturating_sub(c.slow_notice_ns) >= 2 * every
            {
                c.slow_notice_ns = 0;
                c.send_text(
                    ServerMessage::RemoveStatus {
                        status_ids: vec![SLOW_STATUS_ID.into()],
                    }
                    .to_text(),
                );
                c.pump(now);
            }
        }
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].gone.is_none() {
                i += 1;
                continue;
            }
            let mut c = self.clients.swap_remove(i);
            self.seats.set(self.clients.len());
            // A client dropped for not reading gets no goodbye: it would
            // only wait behind what the client does not read.
            if let (false, Some(code)) = (c.stuck, c.farewell) {
                c.say_goodbye(code, now);
            }
            for ch in c.subs.values() {
                self.topics.unsubscribe(*ch);
            }
            self.publish.client_gone(c.id);
            c.shutdown(c.stuck);
            self.summary.dropped_frames += c.queue.dropped;
            if !self.cfg.quiet {
                shmbus_toolbox::say!(
                    "shmbus foxglove: client #{} {} disconnected: {} (sent {}, dropped {})",
                    c.id,
                    c.peer,
                    c.gone.as_deref().unwrap_or("?"),
                    shmbus_core::plural::count(c.frames_sent, "frame"),
                    c.queue.dropped
                );
            }
        }
        let limit = ns(HANDSHAKE_TIMEOUT);
        self.pending
            .retain(|p| now.saturating_sub(p.since_ns) < limit);
    }

    /// One message from client `i`. Whatever it holds (a subscribe of
    /// thousands of entries, an unsubscribe of 100,000 ids), it gets at
    /// most one status back: its first error, and how many more there
    /// were. One status per entry let a 256 KiB message queue megabytes
    /// of answers (64 such messages per turn), and a client that asked
    /// too much at once was dropped as "not reading".
    fn handle(&mut self, i: usize, m: Incoming) {
        // Handled even when the client is being disconnected: a message
        // read with the client's close (a publish, then the close) still
        // counts; nothing more is sent to it ([`Client::send_text`]).
        let c = &mut self.clients[i];
        let mut answer = Answer::default();
        match m {
            Incoming::Text(text) => {
                match protocol::parse_client_message(&text) {
                    Ok(ClientMessage::Subscribe(subs)) => {
                        answer.op = "subscribe";
                        for s in subs {
                            if c.subs.contains_key(&s.id) {
                                answer.error(
                                level::ERROR,
                                || format!("subscription id {} is already in use: unsubscribe it first", s.id),
                            );
                            } else if !self.topics.by_id.contains_key(&s.channel_id)
                                && c.was_advertised(s.channel_id, self.topics.next_channel_id())
                            {
                                // Advertised to this client, and gone: the
                                // subscribe crossed the unadvertise on the
                                // way, which says it all. The unsubscribe
                                // that follows is taken quietly, as for a
                                // subscription that ended.
                                c.end_subscription(s.id);
                            } else if !self.topics.by_id.contains_key(&s.channel_id) {
                                answer.error(level::ERROR, || {
                                    format!(
                                        "channel {} was never advertised on this connection",
                                        s.channel_id
                                    )
                                });
                            } else if c.by_channel.contains_key(&s.channel_id) {
                                answer.error(level::ERROR, || {
                                    format!(
                                        "channel {} is already subscribed by this client",
                                        s.channel_id
                                    )
                                });
                            } else {
                                c.take_ended(s.id);
                                c.subs.insert(s.id, s.channel_id);
                                c.by_channel.insert(s.channel_id, s.id);
                                self.topics.subscribe(s.channel_id);
                            }
                        }
                    }
                    Ok(ClientMessage::Unsubscribe(ids)) => {
                        answer.op = "unsubscribe";
                        for id in ids {
                            match c.subs.remove(&id) {
                                Some(ch) => {
                                    c.by_channel.remove(&ch);
                                    c.queue.purge_channel(ch);
                                    self.topics.unsubscribe(ch);
                                }
                                // Its channel went: Foxglove unsubscribes it
                                // when it sees the unadvertise.
                                None if c.take_ended(id) => {}
                                None => answer.error(level::WARNING, || {
                                    format!("no subscription with id {id} to unsubscribe")
                                }),
                            }
                        }
                    }
                    Ok(ClientMessage::Advertise(channels)) => {
                        answer.op = "advertise";
                        for ch in channels {
                            if let Err(e) = self.publish.advertise(c.id, &ch, &self.topics) {
                                answer.error(level::ERROR, || e);
                            }
                        }
                    }
                    Ok(ClientMessage::Unadvertise(ids)) => {
                        for id in ids {
                            self.publish.unadvertise(c.id, id);
                        }
                    }
                    Err(e) => answer.error(level::ERROR, || e),
                }
            }
            Incoming::Binary(b) => match protocol::parse_client_message_data(&b) {
                Ok((channel, payload)) => {
                    if let Err(e) = self.publish.message(c.id, channel, payload, &self.topics) {
                        answer.error(level::ERROR, || e);
                    } else {
                        self.summary.published += 1;
                    }
                }
                Err(e) => answer.error(level::ERROR, || e),
            },
        }
        if let Some(text) = answer.status() {
            c.send_text(text);
        }
    }
}

/// The answer to one client message: its first error, the highest level,
/// and how many errors there were.
#[derive(Default)]
struct Answer {
    op: &'static str,
    first: Option<String>,
    level: u8,
    count: u64,
}

impl Answer {
    /// One more error; its text is made only for the first.
    fn error(&mut self, lvl: u8, text: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(text());
        }
        self.level = self.level.max(lvl);
        self.count += 1;
    }

    /// The one status to send, if any error.
    fn status(self) -> Option<String> {
        let first = self.first?;
        let message = match self.count {
            1 => first,
            n => format!(
                "{first} (and {} more error{} in the same '{}' message)",
                n - 1,
                if n == 2 { "" } else { "s" },
                self.op
            ),
        };
        Some(status(self.level, message, None))
    }
}

struct Ready {
    listener: bool,
    /// (readable or hung up, writable) per client.
    clients: Vec<(bool, bool)>,
}

fn status(lvl: u8, message: String, id: Option<String>) -> String {
    ServerMessage::Status {
        level: lvl,
        message,
        id,
    }
    .to_text()
}

/// What became of a handshake that failed, for the log.
fn handshake_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Http(r) => format!(
            "refused: HTTP {} {}",
            r.status().as_u16(),
            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default()).trim_end()
        ),
        // The peer closed or reset the connection mid-handshake (a port
        // scan, a viewer that quit): nothing was refused. A reset was
        // "refused: Connection reset by peer (os error 104)".
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete) => {
            "the connection ended during the handshake".to_string()
        }
        tungstenite::Error::Protocol(p) => format!("refused: not a WebSocket handshake ({p})"),
        tungstenite::Error::Io(io) if crate::client::ended_under_us(io) => {
            "the connection ended during the handshake".to_string()
        }
        other => format!("refused: {other}"),
    }
}
