//! hopline — an HTTP/1.x connection engine: short-lived, persistent and pipelined
//! connections, hop by hop.
//!
//! Module map (dependencies point one way, down this list):
//!
//! | module | owns | must not |
//! |---|---|---|
//! | [`wire`] | bytes ↔ messages: heads, header rules, framing, chunked, persistence intent | touch sockets, tokio or clocks |
//! | [`conn`] | one connection: buffered I/O, the server loop (keep-alive, pipelining, timeouts, lingering close), the handler interface and bodies | know about listeners, pools or config files |
//! | [`pool`] | idle client connections by (scheme, host, port): most recently used first, per-host caps with a fair queue, expiry, eviction of closed ones | parse HTTP |
//! | [`client`] | the HTTP client: connection types (close, keep-alive, pipeline), safe retries, streamed response bodies | parse HTTP or order the pool |
//! | [`proxy`] | one hop: reverse/forward targets, hop-by-hop header rules, `Via` and forwarded fields, streaming both ways, tunnels, failure mapping | re-implement framing or pooling |
//! | [`bench`] | the load generator behind `hopline bench`: connection types, pacing, HDR latency | — |
//! | [`netem`] | the link emulator: round trip, handshake, slow start, bandwidth, relayed in process | parse HTTP |
//! | [`demo`] | `hopline demo`: every connection type over emulated links, the model's predictions, the report | contain protocol logic |
//! | [`metrics`] | Prometheus metrics and the access log, fed by the connection hooks | decide anything about connections |
//! | [`config`] | the TOML configuration file: model, parsing with file:line:key errors, checks | start anything |
//! | [`admin`] | the admin endpoint: `/metrics`, `/connections` | change anything |
//! | [`server`] | the listener: accept loop, connection limit, accept-error backoff, graceful shutdown | contain protocol logic |
//! | [`page`] | the synthetic page: a median web page's resource mix, its HTML and paths | do I/O |
//! | [`origin`] | the built-in handler behind `hopline serve`: hello, `/bytes/N`, `/delay/MS`, `/echo`, static files | touch framing or persistence |
//! | [`cli`] | the command line: subcommands, flags, runtime, signals | contain protocol logic |
//! | [`error`] | the one error type, carrying which side failed | — |
//!
//! The binary (`src/main.rs`) is a thin command line over these.

#[cfg(feature = "cli")]
pub mod admin;
#[cfg(feature = "cli")]
pub mod bench;
pub mod client;
#[cfg(feature = "cli")]
pub mod config;
pub mod conn;
#[cfg(feature = "cli")]
pub mod demo;
pub mod error;
#[cfg(feature = "cli")]
pub mod metrics;
pub mod netem;
pub mod origin;
pub mod page;
pub mod pool;
pub mod proxy;
pub mod server;
pub mod service;
pub mod wire;

pub use conn::{Body, Incoming};
pub use error::{BoxError, Error, Side};

/// The README's library examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
