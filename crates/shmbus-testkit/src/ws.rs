//! A WebSocket client written by hand, for tests of the Foxglove server
//! that must speak below a WebSocket library: a handshake sent before the
//! server is full, a client that stops reading, a first message read from
//! a server whose log cannot be written.

use std::io::{self, Read, Write};
use std::net::TcpStream;

/// The upgrade request of a Foxglove viewer (subprotocol
/// `foxglove.websocket.v1`, the RFC 6455 sample key).
pub const UPGRADE_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: foxglove.websocket.v1\r\n\r\n";

/// Read an HTTP response head, up to and including its blank line, a byte
/// at a time (nothing after it is consumed). An end of stream before the
/// blank line is an `UnexpectedEof` error naming what was read.
pub fn read_head(stream: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("stream ended after {:?}", String::from_utf8_lossy(&head)),
            ));
        }
        head.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// Send [`UPGRADE_REQUEST`] and read the answer's head; panics, naming
/// `what`, unless it is `101 Switching Protocols`.
pub fn handshake(stream: &mut TcpStream, what: &str) {
    stream
        .write_all(UPGRADE_REQUEST)
        .unwrap_or_else(|e| panic!("{what}: sending the handshake: {e}"));
    let head = read_head(stream).unwrap_or_else(|e| panic!("{what}: no answer: {e}"));
    assert!(head.starts_with("HTTP/1.1 101"), "{what}: {head}");
}

/// Read one whole unmasked text frame (what a server sends) and return its
/// text; panics, naming `what`, on anything else or a frame over 1 MiB.
pub fn read_text(stream: &mut impl Read, what: &str) -> String {
    let mut read = |buf: &mut [u8]| {
        stream
            .read_exact(buf)
            .unwrap_or_else(|e| panic!("{what}: reading a frame: {e}"))
    };
    let mut h = [0u8; 2];
    read(&mut h);
    assert_eq!(h[0], 0x81, "{what}: a whole text frame");
    let len = match h[1] & 0x7f {
        126 => {
            let mut b = [0u8; 2];
            read(&mut b);
            u64::from(u16::from_be_bytes(b))
        }
        127 => {
            let mut b = [0u8; 8];
            read(&mut b);
            u64::from_be_bytes(b)
        }
        n => u64::from(n),
    };
    assert!(len < 1 << 20, "{what}: a frame of {len} bytes");
    let mut payload = vec![0u8; len as usize];
    read(&mut payload);
    String::from_utf8(payload).unwrap_or_else(|e| panic!("{what}: not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_head_stops_at_the_blank_line_and_names_a_short_stream() {
        let mut r: &[u8] = b"HTTP/1.1 101 OK\r\nA: b\r\n\r\n\x81\x01x";
        assert_eq!(
            read_head(&mut r).unwrap(),
            "HTTP/1.1 101 OK\r\nA: b\r\n\r\n"
        );
        assert_eq!(read_text(&mut r, "rest"), "x");
        let mut short: &[u8] = b"HTTP/1.1 503";
        let e = read_head(&mut short).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(e.to_string().contains("HTTP/1.1 503"), "{e}");
    }

    #[test]
    fn read_text_reads_the_two_longer_length_forms() {
        let mut f = vec![0x81, 126, 0, 200];
        f.extend([b'a'; 200]);
        let mut f8 = vec![0x81, 127, 0, 0, 0, 0, 0, 0, 1, 0];
        f8.extend([b'b'; 256]);
        assert_eq!(read_text(&mut f.as_slice(), "16-bit"), "a".repeat(200));
        assert_eq!(read_text(&mut f8.as_slice(), "64-bit"), "b".repeat(256));
    }
}
