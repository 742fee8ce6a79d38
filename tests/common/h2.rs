//! HTTP/2 written by hand, frame by frame (RFC 9113 §4, §6; HPACK literals only, RFC 7541
//! §6.2.2), so defence tests can send what no well-behaved library would, and scripted
//! peers can misbehave on purpose.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's (last stream id, error code).
    pub fn goaway(&self) -> Option<(u32, u32)> {
        (self.kind == GOAWAY).then(|| {
            (
                be32(&self.payload[0..4]) & 0x7fff_ffff,
                be32(&self.payload[4..8]),
            )
        })
    }

    /// A RST_STREAM's error code.
    pub fn reset(&self) -> Option<u32> {
        (self.kind == RST_STREAM).then(|| be32(&self.payload[0..4]))
    }
}

fn be32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
}

/// The status of a HEADERS frame whose block starts with an indexed `:status` from the
/// static table (RFC 7541 Appendix A: 8–14), as servers send common statuses.
pub fn status(frame: &Frame) -> Option<u16> {
    if frame.kind != HEADERS {
        return None;
    }
    let statuses = [200, 204, 206, 304, 400, 404, 500];
    let index = usize::from(frame.payload.first()? & 0x7f);
    (frame.payload[0] & 0x80 != 0 && (8..=14).contains(&index)).then(|| statuses[index - 8])
}

/// A frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `first` holds the pattern bits.
fn integer(out: &mut Vec<u8>, first: u8, n: u32, mut value: usize) {
    let max = (1usize << n) - 1;
    if value < max {
        out.push(first | value as u8);
        return;
    }
    out.push(first | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A header block of literal fields without indexing (no Huffman), any bytes allowed.
pub fn block(fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        integer(&mut out, 0, 7, name.len());
        out.extend_from_slice(name);
        integer(&mut out, 0, 7, value.len());
        out.extend_from_slice(value);
    }
    out
}

/// The block of a `GET` for `path` at `authority`, plus `extra` fields.
pub fn get_block(path: &str, extra: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut fields: Vec<(&[u8], &[u8])> = vec![
        (b":method", b"GET"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", path.as_bytes()),
    ];
    fields.extend_from_slice(extra);
    block(&fields)
}

/// The block of a `POST /` at `localhost` saying its body is `content_length` bytes.
pub fn post_block(content_length: &[u8]) -> Vec<u8> {
    block(&[
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":authority", b"localhost"),
        (b":path", b"/"),
        (b"content-length", content_length),
    ])
}

/// A raw HTTP/2 peer over any stream.
pub struct RawH2<S> {
    pub io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> RawH2<S> {
    /// Over `io`, nothing sent yet.
    pub fn new(io: S) -> Self {
        RawH2 {
            io,
            buf: Vec::new(),
        }
    }

    /// A client: the preface and an empty SETTINGS sent.
    pub async fn client(io: S) -> Self {
        let mut raw = RawH2::new(io);
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        raw.send(&hello).await;
        raw
    }

    /// A server: the client's preface read, an empty SETTINGS sent.
    pub async fn server(mut io: S) -> Self {
        let mut preface = [0u8; 24];
        io.read_exact(&mut preface).await.expect("a preface");
        assert_eq!(&preface[..], PREFACE);
        let mut raw = RawH2::new(io);
        raw.send(&frame(SETTINGS, 0, 0, &[])).await;
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("write");
    }

    /// Writes, ignoring failure (the peer may have closed on purpose).
    pub async fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.io.write_all(bytes).await.is_ok()
    }

    /// The next frame; `None` at end of stream, on an error, or after 10 s of silence.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 9 {
                let len = (usize::from(self.buf[0]) << 16)
                    | (usize::from(self.buf[1]) << 8)
                    | usize::from(self.buf[2]);
                if self.buf.len() >= 9 + len {
                    let head: Vec<u8> = self.buf.drain(..9 + len).collect();
                    return Some(Frame {
                        kind: head[3],
                        flags: head[4],
                        stream: be32(&head[5..9]) & 0x7fff_ffff,
                        payload: head[9..].to_vec(),
                    });
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk));
            match read.await {
                Ok(Ok(n)) if n > 0 => self.buf.extend_from_slice(&chunk[..n]),
                _ => return None,
            }
        }
    }

    /// Reads frames until one matches; `None` if the connection ended first.
    pub async fn until(&mut self, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        while let Some(frame) = self.next().await {
            if wanted(&frame) {
                return Some(frame);
            }
        }
        None
    }

    /// Reads until the server's GOAWAY; its (last stream id, error code).
    pub async fn goaway(&mut self) -> Option<(u32, u32)> {
        self.until(|f| f.kind == GOAWAY)
            .await
            .and_then(|f| f.goaway())
    }

    /// Reads to the end of the connection; whether it ended (rather than stalled).
    pub async fn closes(&mut self) -> bool {
        loop {
            let mut chunk = [0u8; 16 * 1024];
            let read = tokio::time::timeout(Duration::from_secs(10), self.io.read(&mut chunk));
            match read.await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}
