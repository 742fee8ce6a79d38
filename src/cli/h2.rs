//! HTTP/2 flags of `serve` and `proxy` (towards clients), over `[downstream.http2]`.

use std::time::Duration;

use clap::Args;

use super::{Given, parse_duration, size};
use hopline::config::Http2File;
use hopline::config::frame_size;
use hopline::conn::h2::Http2Config;

/// HTTP/2 towards clients: h2 by ALPN over TLS, h2c (prior knowledge) on plain TCP.
#[derive(Debug, Args)]
pub struct Http2Args {
    /// Speak HTTP/1.x only: no `h2` in ALPN, the HTTP/2 preface answered as a bad request.
    #[arg(long)]
    pub no_http2: bool,
    /// HTTP/2 streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, default_value_t = 128)]
    pub http2_max_streams: u32,
    /// HTTP/2 flow-control window of each stream (`256k`).
    #[arg(long, default_value_t = 256 * 1024, value_parser = size::<u32>)]
    pub http2_stream_window: u32,
    /// HTTP/2 flow-control window of a whole connection (`1m`).
    #[arg(long, default_value_t = 1024 * 1024, value_parser = size::<u32>)]
    pub http2_connection_window: u32,
    /// Largest HTTP/2 frame payload accepted, 16k to 16m - 1 (16384 to 16777215 bytes).
    #[arg(long, default_value_t = 16 * 1024, value_parser = frame_size)]
    pub http2_max_frame_size: u32,
    /// Largest HTTP/2 header section accepted, decoded (`64k`).
    #[arg(long, default_value_t = 64 * 1024, value_parser = size::<u32>)]
    pub http2_max_header_list: u32,
    /// Send a PING after this long and close the connection if it goes unanswered as
    /// long [default: off].
    #[arg(long, value_parser = parse_duration)]
    pub http2_keepalive: Option<Duration>,
}

impl Http2Args {
    /// The HTTP/2 settings of these flags over `file`.
    pub fn config(&self, given: &Given, file: Option<&Http2File>) -> Http2Config {
        let file = file.cloned().unwrap_or_default();
        let mut config = Http2Config::default();
        config.enabled = if given.typed("no_http2") {
            !self.no_http2
        } else {
            file.enabled.unwrap_or(!self.no_http2)
        };
        config.max_concurrent_streams = given.pick(
            "http2_max_streams",
            self.http2_max_streams,
            file.max_streams,
        );
        config.stream_window = given.pick(
            "http2_stream_window",
            self.http2_stream_window,
            file.stream_window,
        );
        config.connection_window = given.pick(
            "http2_connection_window",
            self.http2_connection_window,
            file.connection_window,
        );
        config.max_frame_size = given.pick(
            "http2_max_frame_size",
            self.http2_max_frame_size,
            file.max_frame_size,
        );
        config.max_header_list_size = given.pick(
            "http2_max_header_list",
            self.http2_max_header_list,
            file.max_header_list,
        );
        config.keepalive_interval = given.pick(
            "http2_keepalive",
            self.http2_keepalive,
            file.keepalive.map(|d| Some(d.0)),
        );
        config
    }
}
