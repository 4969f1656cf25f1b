//! One connected client: its WebSocket on a non-blocking socket, its
//! subscriptions, and its bounded output queue.
//!
//! ## Backpressure
//! The server never waits for a client. Messages for a client go into its
//! [`OutQueue`]; the queue is handed to the socket in batches of at most
//! [`BATCH`] bytes, and the next batch only after the kernel took the whole
//! previous one. So a client that reads slowly holds at most its queue, one
//! batch in the WebSocket's buffer and the kernel's socket buffer.
//! - Frames (Message Data) are bounded by the queue budget in bytes: when
//!   a new frame does not fit, the oldest queued frames are dropped (a
//!   live plot wants the newest) and counted.
//! - Control messages (advertise, status, ...) are never dropped; more than
//!   [`CONTROL_BUDGET`] bytes of them waiting means the client is not
//!   reading at all, and it is disconnected.
//! - A client that has had output waiting without the kernel taking a
//!   single byte for the stall timeout is disconnected (by the server).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;

use tungstenite::protocol::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::{Message, WebSocket};

use crate::protocol::ClientChannel;

/// Bytes handed to the socket at once.
pub const BATCH: usize = 32 * 1024;
/// Control messages waiting beyond this many bytes: the client is not
/// reading; it is disconnected.
pub const CONTROL_BUDGET: usize = 1024 * 1024;
/// Incoming messages handled per client per loop turn (fairness).
const READS_PER_TURN: usize = 64;
/// Why a client whose TCP connection ended without a WebSocket close
/// frame is gone.
pub const ENDED_WITHOUT_CLOSE: &str = "the connection ended without a WebSocket close (the viewer quit or crashed, or the network or SSH tunnel dropped)";
/// Subscriptions ended by the server remembered per client (see
/// [`Client::ended`]); past this many the oldest are forgotten.
const MAX_ENDED: usize = 4096;

/// A client's socket, counting the bytes the kernel took from it: a
/// client that reads slowly but steadily makes progress even while one
/// message larger than the socket buffers is still going out.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    written: u64,
}

impl Socket {
    /// Wrap an accepted connection.
    pub fn new(stream: TcpStream) -> Socket {
        Socket { stream, written: 0 }
    }

    /// The connection.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Bytes the kernel still holds for this connection, sent and not yet
    /// acknowledged or not sent yet (`SIOCOUTQ`); `None` if it cannot
    /// tell. It falls as the client reads, in steps of a TCP window
    /// update, so it shows a slow reader's progress long before the socket
    /// is writable again (poll(2) reports that only once about a third of
    /// the send buffer, some 64-98 KB, has drained).
    pub fn unsent(&self) -> Option<u32> {
        let mut n: nix::libc::c_int = 0;
        // SAFETY: SIOCOUTQ on a TCP socket writes one `int` through the
        // pointer, which points to `n`, alive for the whole call; the
        // descriptor belongs to `self.stream`, open for as long as `self`.
        let r = unsafe { siocoutq(self.stream.as_raw_fd(), &mut n) };
        r.ok().and_then(|_| u32::try_from(n).ok())
    }
}

mod ioctl {
    nix::ioctl_read_bad!(
        /// `ioctl(fd, SIOCOUTQ, &mut int)`: `SIOCOUTQ` is `TIOCOUTQ` on
        /// Linux (`man 7 tcp`).
        ///
        /// # Safety
        /// `data` must point to a writable `c_int`.
        siocoutq,
        nix::libc::TIOCOUTQ,
        nix::libc::c_int
    );
}
use ioctl::siocoutq;

impl std::io::Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        std::io::Read::read(&mut self.stream, buf)
    }
}

impl std::io::Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = std::io::Write::write(&mut self.stream, buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::Write::flush(&mut self.stream)
    }
}

/// A client's bounded queue of outgoing messages: control first, then
/// frames in order.
#[derive(Debug)]
pub struct OutQueue {
    /// Control messages, and frames of a channel that went (`true`), which
    /// must reach the client before the channel's unadvertise.
    control: VecDeque<(bool, Message)>,
    control_bytes: usize,
    /// Bytes of the frames among `control` (not judged against
    /// [`CONTROL_BUDGET`]: they were within the frame budget).
    promoted_bytes: usize,
    data: VecDeque<(u32, Message)>,
    data_bytes: usize,
    data_budget: usize,
    /// Frames dropped since the queue was made (all causes).
    pub dropped: u64,
    /// Of those, frames larger than the whole budget: no reading speed
    /// would have let them through.
    pub oversize: u64,
    /// The largest of those, bytes.
    pub largest_oversize: usize,
}

impl OutQueue {
    /// A queue holding at most `data_budget` bytes of frames.
    pub fn new(data_budget: usize) -> OutQueue {
        OutQueue {
            control: VecDeque::new(),
            control_bytes: 0,
            promoted_bytes: 0,
            data: VecDeque::new(),
            data_bytes: 0,
            data_budget,
            dropped: 0,
            oversize: 0,
            largest_oversize: 0,
        }
    }

    /// The frame budget, bytes.
    pub fn data_budget(&self) -> usize {
        self.data_budget
    }

    /// Queue a control message. `false` if the control messages already
    /// waiting reached [`CONTROL_BUDGET`] (the client must be dropped).
    /// The budget is judged before the message: one larger than the whole
    /// budget (the channels of a big bus) still goes to a client that
    /// keeps up.
    pub fn push_control(&mut self, m: Message) -> bool {
        let room = self.control_bytes < CONTROL_BUDGET;
        self.control_bytes += m.len();
        self.control.push_back((false, m));
        room
    }

    /// Move the queued frames of `channel` (it went) among the control
    /// messages, in order, so that they go out before the control message
    /// queued next (its unadvertise) instead of being overtaken by it.
    pub fn promote_channel(&mut self, channel: u32) {
        let mut keep = VecDeque::with_capacity(self.data.len());
        for (c, m) in self.data.drain(..) {
            if c == channel {
                self.data_bytes -= m.len();
                self.promoted_bytes += m.len();
                self.control.push_back((true, m));
            } else {
                keep.push_back((c, m));
            }
        }
        self.data = keep;
    }

    /// Queue a frame of `channel`, dropping the oldest frames if it does
    /// not fit the budget (or the frame itself, if it is larger than the
    /// whole budget). Returns how many frames were dropped.
    pub fn push_data(&mut self, channel: u32, m: Message) -> u64 {
        let len = m.len();
        let mut dropped = 0;
        if len > self.data_budget {
            self.dropped += 1;
            self.oversize += 1;
            self.largest_oversize = self.largest_oversize.max(len);
            return 1;
        }
        while self.data_bytes + len > self.data_budget {
            match self.data.pop_front() {
                Some((_, old)) => {
                    self.data_bytes -= old.len();
                    dropped += 1;
                }
                None => break,
            }
        }
        self.data_bytes += len;
        self.data.push_back((channel, m));
        self.dropped += dropped;
        dropped
    }

    /// Forget queued frames of `channel` (it was unsubscribed or is gone:
    /// none may follow its unsubscribe or unadvertise).
    pub fn purge_channel(&mut self, channel: u32) {
        let mut freed = 0;
        self.data.retain(|(c, m)| {
            if *c == channel {
                freed += m.len();
                false
            } else {
                true
            }
        });
        self.data_bytes -= freed;
    }

    /// The next message to send: control messages first.
    pub fn pop(&mut self) -> Option<Message> {
        if let Some((frame, m)) = self.control.pop_front() {
            if frame {
                self.promoted_bytes -= m.len();
            } else {
                self.control_bytes -= m.len();
            }
            return Some(m);
        }
        let (_, m) = self.data.pop_front()?;
        self.data_bytes -= m.len();
        Some(m)
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.control.is_empty() && self.data.is_empty()
    }

    /// Bytes queued (control and frames).
    pub fn bytes(&self) -> usize {
        self.control_bytes + self.promoted_bytes + self.data_bytes
    }
}

/// What a client sent.
#[derive(Debug)]
pub enum Incoming {
    /// A JSON message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

/// A connected client.
#[derive(Debug)]
pub struct Client {
    /// Server-wide id, for logs.
    pub id: u64,
    /// Its address.
    pub peer: SocketAddr,
    /// The subprotocol agreed.
    pub protocol: &'static str,
    ws: WebSocket<Socket>,
    /// [`Socket`]'s count at the last progress.
    written_seen: u64,
    /// Subscription id to channel id.
    pub subs: HashMap<u32, u32>,
    /// Channel id to subscription id (one subscription per channel).
    pub by_channel: HashMap<u32, u32>,
    /// Channels the client advertised for publishing, by its ids.
    pub adverts: HashMap<u32, ClientChannel>,
    /// Subscription ids the server ended because their channel went
    /// (oldest first): Foxglove and Lichtblick unsubscribe each one when
    /// they see the unadvertise, which is then no error.
    ended: VecDeque<u32>,
    /// The channels advertised to this client: those of its welcome, and
    /// every one from [`Self::first_new_channel`] up (each new channel is
    /// advertised to every client). One no longer served that is among
    /// them went while it was connected; any other id was never
    /// advertised to it. A range from the welcome's lowest id took in
    /// the channels that went before the client connected.
    pub welcomed: HashSet<u32>,
    /// The id the next new channel had when this client was welcomed.
    pub first_new_channel: u32,
    /// Outgoing messages.
    pub queue: OutQueue,
    /// The WebSocket holds bytes the kernel has not taken yet.
    blocked: bool,
    /// `CLOCK_MONOTONIC` when the client last had nothing waiting, the
    /// kernel last took bytes from it, or the bytes the kernel holds for
    /// it last fell.
    pub last_progress_ns: u64,
    /// [`Socket::unsent`] at the last check while blocked.
    unsent_seen: Option<u32>,
    /// Frames handed to the socket.
    pub frames_sent: u64,
    /// Frames dropped for slowness (`dropped - oversize`) at the last
    /// slow-client notice.
    pub dropped_noticed: u64,
    /// `oversize` at the last frame-too-large notice.
    pub oversize_noticed: u64,
    /// When the last frame-too-large notice was sent.
    pub oversize_notice_ns: u64,
    /// When the last slow-client notice was sent (0: none standing).
    pub slow_notice_ns: u64,
    /// Why the client is to be disconnected, once it is.
    pub gone: Option<String>,
    /// The close frame to send it first, when the server ends a
    /// connection that still works (the server stops, the client broke
    /// the protocol or sent too much): the code and the reason, so the
    /// client can tell this from a network failure.
    pub farewell: Option<CloseCode>,
    /// It is disconnected for not reading: reset the connection.
    pub stuck: bool,
    /// Bytes of pongs owed to the client's pings since its WebSocket last
    /// handed everything to the kernel (an upper bound: tungstenite answers
    /// each ping it reads, and while the socket is full it keeps every
    /// answer in its write buffer, which has no bound of its own).
    pong_bytes: usize,
    /// `CLOCK_MONOTONIC` when the client last sent anything (a message, a
    /// ping, a pong), or connected.
    pub last_heard_ns: u64,
    /// When the keepalive ping went, while its answer is awaited.
    ping_sent_ns: Option<u64>,
    /// The last [`Self::read`] stopped at its per-turn bound: more
    /// messages may wait in the WebSocket's buffer, already taken from the
    /// socket, where poll(2) cannot see them.
    pub more_to_read: bool,
}

impl Client {
    /// A client whose handshake completed.
    pub fn new(
        id: u64,
        peer: SocketAddr,
        protocol: &'static str,
        ws: WebSocket<Socket>,
        data_budget: usize,
        now_ns: u64,
    ) -> Client {
        Client {
            id,
            peer,
            protocol,
            ws,
            written_seen: 0,
            subs: HashMap::new(),
            by_channel: HashMap::new(),
            adverts: HashMap::new(),
            ended: VecDeque::new(),
            welcomed: HashSet::new(),
            first_new_channel: u32::MAX,
            queue: OutQueue::new(data_budget),
            blocked: false,
            last_progress_ns: now_ns,
            unsent_seen: None,
            frames_sent: 0,
            dropped_noticed: 0,
            oversize_noticed: 0,
            oversize_notice_ns: 0,
            slow_notice_ns: 0,
            gone: None,
            farewell: None,
            stuck: false,
            pong_bytes: 0,
            last_heard_ns: now_ns,
            ping_sent_ns: None,
            more_to_read: false,
        }
    }

    /// The socket, for poll(2).
    pub fn socket(&self) -> &TcpStream {
        self.ws.get_ref().stream()
    }

    /// True while bytes wait for the socket to become writable.
    pub fn blocked(&self) -> bool {
        self.blocked
    }

    /// While the socket is not writable: if the bytes the kernel holds
    /// for this client fell since the last look, the client is reading,
    /// so that is progress for the stall timeout. A client that reads
    /// nothing closes its TCP window and the count stays put.
    pub fn note_drain(&mut self, now_ns: u64) {
        if !self.blocked {
            self.unsent_seen = None;
            return;
        }
        let now = self.ws.get_ref().unsent();
        if let (Some(was), Some(is)) = (self.unsent_seen, now) {
            if is < was {
                self.last_progress_ns = now_ns;
            }
        }
        self.unsent_seen = now;
    }

    /// True if output is waiting (queued or in the WebSocket's buffer).
    pub fn has_output(&self) -> bool {
        self.blocked || !self.queue.is_empty()
    }

    /// The server ended subscription `id` (its channel went).
    pub fn end_subscription(&mut self, id: u32) {
        if self.ended.len() >= MAX_ENDED {
            self.ended.pop_front();
        }
        self.ended.push_back(id);
    }

    /// Whether channel `id` was advertised to this client (`next`: the id
    /// the next new channel gets).
    pub fn was_advertised(&self, id: u32, next: u32) -> bool {
        self.welcomed.contains(&id) || (self.first_new_channel..next).contains(&id)
    }

    /// Forget that the server ended subscription `id`; true if it had.
    pub fn take_ended(&mut self, id: u32) -> bool {
        match self.ended.iter().position(|e| *e == id) {
            Some(i) => {
                self.ended.remove(i);
                true
            }
            None => false,
        }
    }

    /// Queue a JSON message (nothing, once the client is being
    /// disconnected: it would never be sent, only held).
    pub fn send_text(&mut self, text: String) {
        if self.gone.is_some() {
            return;
        }
        if !self.queue.push_control(Message::text(text)) {
            self.stuck = true;
            self.gone = Some(format!(
                "not reading: more than {} KiB of control messages waiting",
                CONTROL_BUDGET / 1024
            ));
        }
    }

    /// The keepalive: a ping to a client heard nothing from for `idle_ns`,
    /// and a disconnect if nothing answers it within `answer_ns`. Every
    /// WebSocket client answers a ping by itself (browsers, Foxglove's
    /// libraries, tungstenite), so only a connection that went without
    /// closing, whose client slot would otherwise stay taken for good, or a
    /// client that reads nothing at all, is dropped.
    pub fn keepalive(&mut self, now_ns: u64, idle_ns: u64, answer_ns: u64) {
        if self.gone.is_some() {
            return;
        }
        match self.ping_sent_ns {
            None if now_ns.saturating_sub(self.last_heard_ns) >= idle_ns => {
                self.ping_sent_ns = Some(now_ns);
                if !self.queue.push_control(Message::Ping(Vec::new().into())) {
                    self.stuck = true;
                    self.gone = Some(format!(
                        "not reading: more than {} KiB of control messages waiting",
                        CONTROL_BUDGET / 1024
                    ));
                }
            }
            Some(sent) if now_ns.saturating_sub(sent) >= answer_ns => {
                self.stuck = true;
                self.gone = Some(format!(
                    "no answer to a keepalive ping in {:.0} s, after {:.0} s without a word (the viewer's machine slept, or the network or SSH tunnel dropped without closing)",
                    answer_ns as f64 / 1e9,
                    idle_ns as f64 / 1e9
                ));
            }
            _ => {}
        }
    }

    /// Queue a frame of `channel`.
    pub fn send_frame(&mut self, channel: u32, message: Vec<u8>) {
        if self.gone.is_some() {
            return;
        }
        self.queue.push_data(channel, Message::binary(message));
    }

    /// Read what the client sent, up to a bound per turn. Sets
    /// [`Self::gone`] when the connection ends or breaks, and
    /// [`Self::more_to_read`] when it stopped at the bound.
    pub fn read(&mut self, out: &mut Vec<Incoming>, now_ns: u64) {
        self.more_to_read = false;
        for _ in 0..READS_PER_TURN {
            let m = self.ws.read();
            if m.is_ok() {
                // Anything at all answers the keepalive.
                self.last_heard_ns = now_ns;
                self.ping_sent_ns = None;
            }
            match m {
                Ok(Message::Text(t)) => out.push(Incoming::Text(t.as_str().to_string())),
                Ok(Message::Binary(b)) => out.push(Incoming::Binary(b.to_vec())),
                Ok(Message::Close(_)) => {
                    // tungstenite queued the reply; send it, then drop.
                    let _ = self.ws.flush();
                    self.gone
                        .get_or_insert_with(|| "closed by the client".into());
                    return;
                }
                Ok(Message::Ping(p)) => {
                    // Its pong: the payload and a 2-byte header.
                    self.pong_bytes += p.len() + 2;
                    if self.pong_bytes > CONTROL_BUDGET {
                        // Pings it does not read the answers to: they
                        // would grow the server's memory as fast as the
                        // client can send (1.2 GB in 16 s on loopback).
                        self.stuck = true;
                        self.gone = Some(format!(
                            "not reading: more than {} KiB of answers to its pings waiting",
                            CONTROL_BUDGET / 1024
                        ));
                        return;
                    }
                }
                Ok(Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    // Hand the pongs to the kernel now; if it takes them
                    // all, none is owed any more.
                    if self.pong_bytes > 0 && self.ws.flush().is_ok() {
                        self.pong_bytes = 0;
                    }
                    return;
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::Interrupted => {}
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    self.gone
                        .get_or_insert_with(|| "closed by the client".into());
                    return;
                }
                // The TCP connection ended without a close frame: the
                // viewer was killed or crashed, or the network or an SSH
                // tunnel went. Not a protocol error of the client's (it
                // used to be said so, and answered with a close frame
                // 1002 that nobody could read).
                Err(tungstenite::Error::Protocol(
                    tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                )) => {
                    self.gone.get_or_insert_with(|| ENDED_WITHOUT_CLOSE.into());
                    return;
                }
                Err(e) => {
                    if self.gone.is_none() {
                        self.gone = Some(connection_error(&e));
                        self.farewell = close_code(&e);
                    }
                    return;
                }
            }
        }
        // Stopped at the bound: the same for the pongs of what was read.
        if self.pong_bytes > 0 && self.ws.flush().is_ok() {
            self.pong_bytes = 0;
        }
        self.more_to_read = true;
    }

    /// Hand queued messages to the socket without blocking.
    pub fn pump(&mut self, now_ns: u64) {
        if self.gone.is_some() {
            return;
        }
        loop {
            if self.blocked {
                match self.ws.flush() {
                    Ok(()) => {
                        self.blocked = false;
                        self.pong_bytes = 0;
                        self.last_progress_ns = now_ns;
                    }
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) =>
                    {
                        // Part of it went: the client reads.
                        let w = self.ws.get_ref().written;
                        if w != self.written_seen {
                            self.written_seen = w;
                            self.last_progress_ns = now_ns;
                        }
                        return;
                    }
                    Err(e) => {
                        self.gone = Some(connection_error(&e));
                        return;
                    }
                }
            }
            if self.queue.is_empty() {
                self.last_progress_ns = now_ns;
                return;
            }
            let mut batch = 0;
            while batch < BATCH {
                let Some(m) = self.queue.pop() else { break };
                batch += m.len();
                if m.is_binary() {
                    self.frames_sent += 1;
                }
                match self.ws.write(m) {
                    Ok(()) => {}
                    // Kept in the WebSocket's buffer; flushed below.
                    Err(tungstenite::Error::Io(e))
                        if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                    Err(e) => {
                        self.gone = Some(connection_error(&e));
                        return;
                    }
                }
            }
            self.blocked = true;
        }
    }

    /// The server ends a connection that still works: hand what is queued
    /// to the socket, then a close frame with `code` and [`Self::gone`] as
    /// its reason (cut to the 123 bytes a close frame holds). Never waits:
    /// what the kernel does not take now is lost with the connection.
    pub fn say_goodbye(&mut self, code: CloseCode, now_ns: u64) {
        let why = self.gone.take().unwrap_or_default();
        self.pump(now_ns);
        let mut cut = why.len().min(123);
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        let frame = CloseFrame {
            code,
            reason: why[..cut].into(),
        };
        // WouldBlock: the frame waits in the WebSocket's buffer, behind
        // what the kernel has not taken; one more try below.
        let _ = self.ws.close(Some(frame));
        let _ = self.ws.flush();
        self.gone = Some(why);
    }

    /// Close the TCP connection now (no close handshake: the client may
    /// not be reading). With `abort`, reset it (`SO_LINGER` 0): what the
    /// kernel still holds for a client that stopped reading is freed at
    /// once, instead of lingering with the closed socket, and the client
    /// sees the reset on its next read or write.
    pub fn shutdown(&self, abort: bool) {
        let s = self.ws.get_ref().stream();
        if abort {
            let reset = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            let _ = nix::sys::socket::setsockopt(s, nix::sys::socket::sockopt::Linger, &reset);
        } else {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The close code that tells a client why the server ends its connection
/// after error `e` (`None`: the connection itself failed, nothing can be
/// sent).
fn close_code(e: &tungstenite::Error) -> Option<CloseCode> {
    match e {
        tungstenite::Error::Capacity(_) => Some(CloseCode::Size),
        tungstenite::Error::Protocol(_) => Some(CloseCode::Protocol),
        tungstenite::Error::Utf8(_) => Some(CloseCode::Invalid),
        _ => None,
    }
}

/// The peer ended the TCP connection under us (a reset: the viewer was
/// killed with data unread, its machine or the SSH tunnel dropped): no
/// WebSocket close came, as for [`ENDED_WITHOUT_CLOSE`].
pub(crate) fn ended_under_us(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        ErrorKind::ConnectionReset | ErrorKind::BrokenPipe | ErrorKind::ConnectionAborted
    )
}

fn connection_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) if ended_under_us(io) => ENDED_WITHOUT_CLOSE.to_string(),
        tungstenite::Error::Io(io) => format!("connection error: {io}"),
        tungstenite::Error::Capacity(c) => format!("message too large: {c}"),
        tungstenite::Error::Protocol(p) => format!("WebSocket protocol error: {p}"),
        tungstenite::Error::Utf8(_) => "text message is not UTF-8".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize) -> Message {
        Message::binary(vec![0u8; n])
    }

    #[test]
    fn frames_beyond_the_budget_drop_the_oldest() {
        let mut q = OutQueue::new(100);
        assert_eq!(q.push_data(1, frame(40)), 0);
        assert_eq!(q.push_data(2, frame(40)), 0);
        assert_eq!(q.bytes(), 80);
        // 40 more do not fit: the oldest goes.
        assert_eq!(q.push_data(1, Message::binary(vec![7u8; 40])), 1);
        assert_eq!(q.bytes(), 80);
        assert_eq!(q.dropped, 1);
        // A frame larger than the whole budget is dropped itself.
        assert_eq!(q.push_data(1, frame(101)), 1);
        assert_eq!(q.dropped, 2);
        assert_eq!(q.bytes(), 80);
        // The newest is still there, last.
        assert_eq!(q.pop().map(|m| m.len()), Some(40));
        assert_eq!(q.pop().map(|m| m.into_data()[0]), Some(7));
        assert!(q.pop().is_none());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn control_messages_go_first_and_are_never_dropped() {
        let mut q = OutQueue::new(10);
        q.push_data(1, frame(10));
        assert!(q.push_control(Message::text("advertise")));
        q.push_data(1, frame(10));
        assert_eq!(q.dropped, 1);
        assert!(q.pop().is_some_and(|m| m.is_text()));
        assert!(q.pop().is_some_and(|m| m.is_binary()));
        assert!(q.is_empty());
        // Past the control budget the caller is told to drop the client.
        let big = "x".repeat(CONTROL_BUDGET / 2);
        assert!(q.push_control(Message::text(big.clone())));
        assert!(q.push_control(Message::text(big)));
        assert!(!q.push_control(Message::text("one more")));
        // One message larger than the budget goes when little waits.
        let mut q = OutQueue::new(10);
        assert!(q.push_control(Message::text("x".repeat(2 * CONTROL_BUDGET))));
        assert!(!q.push_control(Message::text("one more")));
    }

    #[test]
    fn frames_of_a_channel_that_went_go_before_its_unadvertise() {
        let mut q = OutQueue::new(1000);
        q.push_data(1, frame(10));
        q.push_data(2, frame(20));
        q.push_data(1, frame(30));
        q.promote_channel(1);
        assert!(q.push_control(Message::text("unadvertise")));
        assert_eq!(q.bytes(), 60 + "unadvertise".len());
        let order: Vec<usize> = std::iter::from_fn(|| q.pop()).map(|m| m.len()).collect();
        assert_eq!(order, [10, 30, "unadvertise".len(), 20]);
        assert_eq!(q.bytes(), 0);
        // Promoted frames do not count against the control budget.
        let mut q = OutQueue::new(CONTROL_BUDGET * 2);
        q.push_data(1, frame(CONTROL_BUDGET + 1));
        q.promote_channel(1);
        assert!(q.push_control(Message::text("unadvertise")));
    }

    /// A viewer that goes without a close frame (killed, or its network
    /// or SSH tunnel dropped) is said to be gone as such, and nothing is
    /// sent to it. It was "WebSocket protocol error: Connection reset
    /// without closing handshake", answered with a close frame 1002.
    #[test]
    fn a_connection_that_ends_without_a_close_frame_is_not_a_protocol_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let stream = TcpStream::connect(addr).unwrap();
            let (ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
            // Gone without a close frame: only the TCP connection ends.
            drop(ws);
        });
        let (stream, peer_addr) = listener.accept().unwrap();
        let ws = tungstenite::accept(Socket::new(stream)).unwrap();
        peer.join().unwrap();
        ws.get_ref().stream().set_nonblocking(true).unwrap();
        let mut c = Client::new(1, peer_addr, "foxglove.websocket.v1", ws, 1 << 20, 0);
        let mut out = Vec::new();
        read_until_gone(&mut c, &mut out);
        assert!(out.is_empty());
        assert_eq!(c.gone.as_deref(), Some(ENDED_WITHOUT_CLOSE));
        assert!(c.farewell.is_none(), "{:?}", c.farewell);
    }

    /// Read until the client is gone; bounded (60 s): the end of the
    /// connection is there already, a few turns at most on a busy machine.
    fn read_until_gone(c: &mut Client, out: &mut Vec<Incoming>) {
        for _ in 0..6000 {
            c.read(out, 0);
            if c.gone.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A client whose peer resets the connection (killed with data
    /// unread, SO_LINGER 0) and a client written to after that.
    fn reset_by_peer() -> Client {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let stream = TcpStream::connect(addr).unwrap();
            let (ws, _) = tungstenite::client(format!("ws://{addr}/"), stream).unwrap();
            let reset = nix::libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            nix::sys::socket::setsockopt(ws.get_ref(), nix::sys::socket::sockopt::Linger, &reset)
                .unwrap();
            drop(ws);
        });
        let (stream, peer_addr) = listener.accept().unwrap();
        let ws = tungstenite::accept(Socket::new(stream)).unwrap();
        peer.join().unwrap();
        ws.get_ref().stream().set_nonblocking(true).unwrap();
        Client::new(1, peer_addr, "foxglove.websocket.v1", ws, 1 << 20, 0)
    }

    /// A viewer killed mid-stream resets the connection (ECONNRESET on
    /// the read, EPIPE or ECONNRESET on the write): that too is a
    /// connection that ended without a WebSocket close, not "connection
    /// error: Connection reset by peer (os error 104)".
    #[test]
    fn a_connection_reset_by_the_viewer_is_an_end_without_a_close() {
        // Read.
        let mut c = reset_by_peer();
        let mut out = Vec::new();
        read_until_gone(&mut c, &mut out);
        let gone = c.gone.clone().unwrap_or_default();
        assert_eq!(gone, ENDED_WITHOUT_CLOSE);
        assert!(c.farewell.is_none(), "{:?}", c.farewell);
        // Write.
        let mut c = reset_by_peer();
        for _ in 0..6000 {
            c.send_text("{\"op\":\"status\"}".to_string());
            c.pump(0);
            if c.gone.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let gone = c.gone.clone().unwrap_or_default();
        assert_eq!(gone, ENDED_WITHOUT_CLOSE);
    }

    #[test]
    fn purging_a_channel_keeps_the_others_and_the_count() {
        let mut q = OutQueue::new(1000);
        q.push_data(1, frame(10));
        q.push_data(2, frame(20));
        q.push_data(1, frame(30));
        q.purge_channel(1);
        assert_eq!(q.bytes(), 20);
        assert_eq!(q.pop().map(|m| m.len()), Some(20));
        assert!(q.is_empty());
    }
}
