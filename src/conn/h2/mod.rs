//! HTTP/2 connections, with the `h2` crate doing the framing, HPACK, flow control and
//! stream states: the server side ([`server`]) runs the same tower `Service` as HTTP/1.x;
//! the client side ([`client`]) is one connection many requests share.
//!
//! This module owns what `h2` leaves to its user: the settings ([`Http2Config`]), bodies
//! moved with backpressure in both directions (`body`), the HTTP/1.x-only fields removed
//! from a message that moves to HTTP/2 and a request carrying them refused (`fields`), and
//! the defences `h2` does not have on its own (work started for streams reset at once,
//! stalled windows). It must not know about listeners, pools or configuration files.

pub(crate) mod body;
pub mod client;
pub(crate) mod fields;
pub mod server;

use std::time::Duration;

/// The HTTP/2 connection preface a client opens with (RFC 9113 §3.4); a server that sees
/// it on a plaintext connection speaks HTTP/2 with prior knowledge (h2c).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The ALPN name of HTTP/2 over TLS.
pub const ALPN_H2: &[u8] = b"h2";

/// HTTP/2 settings of one side of a hop, each with its default. Build it from
/// `Http2Config::default()` and set the fields that differ.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Http2Config {
    /// Speak HTTP/2: a server offers `h2` by ALPN over TLS and answers the preface on
    /// plaintext connections (h2c with prior knowledge). Default `true`.
    pub enabled: bool,
    /// Streams the peer may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    /// Default 128 (nginx's and Envoy's defaults are 128 and 100).
    pub max_concurrent_streams: u32,
    /// Flow-control window of each stream, bytes: how much of a body the peer may send
    /// before it is read. Default 256 KiB.
    pub stream_window: u32,
    /// Flow-control window of the whole connection, bytes. Default 1 MiB.
    pub connection_window: u32,
    /// Largest frame payload accepted (`SETTINGS_MAX_FRAME_SIZE`), 16 KiB to 16 MiB − 1.
    /// Default 16 KiB.
    pub max_frame_size: u32,
    /// Largest header section accepted, decoded (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    /// Default 64 KiB.
    pub max_header_list_size: u32,
    /// Send a PING after this long without any frame from the peer, and close if its
    /// answer does not come within the same time. Default off.
    pub keepalive_interval: Option<Duration>,
    /// Streams the peer reset before they were served, tolerated per connection at once
    /// (`h2`'s pending-accept limit); more is a rapid-reset attack and ends the connection
    /// with `ENHANCE_YOUR_CALM`. Default 20.
    pub max_pending_reset_streams: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            enabled: true,
            max_concurrent_streams: 128,
            stream_window: 256 * 1024,
            connection_window: 1024 * 1024,
            max_frame_size: 16 * 1024,
            max_header_list_size: 64 * 1024,
            keepalive_interval: None,
            max_pending_reset_streams: 20,
        }
    }
}

/// What `h2` reports as a reason code, as a metric label (`RST_STREAM` and `GOAWAY`).
pub fn reason_label(reason: h2::Reason) -> &'static str {
    match reason {
        h2::Reason::NO_ERROR => "no_error",
        h2::Reason::PROTOCOL_ERROR => "protocol_error",
        h2::Reason::INTERNAL_ERROR => "internal_error",
        h2::Reason::FLOW_CONTROL_ERROR => "flow_control_error",
        h2::Reason::SETTINGS_TIMEOUT => "settings_timeout",
        h2::Reason::STREAM_CLOSED => "stream_closed",
        h2::Reason::FRAME_SIZE_ERROR => "frame_size_error",
        h2::Reason::REFUSED_STREAM => "refused_stream",
        h2::Reason::CANCEL => "cancel",
        h2::Reason::COMPRESSION_ERROR => "compression_error",
        h2::Reason::CONNECT_ERROR => "connect_error",
        h2::Reason::ENHANCE_YOUR_CALM => "enhance_your_calm",
        h2::Reason::INADEQUATE_SECURITY => "inadequate_security",
        h2::Reason::HTTP_1_1_REQUIRED => "http_1_1_required",
        _ => "other",
    }
}
