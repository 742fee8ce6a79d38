//! hopline — an HTTP connection engine: short-lived, persistent, pipelined and HTTP/2
//! connections, hop by hop. Its boundary is the Rust HTTP ecosystem's: a server runs any
//! tower `Service<Request<Incoming>>` ([`service`]), bodies are `http_body::Body` both ways
//! ([`Body`], [`Incoming`]), and [`client::Client::send`] takes any request body.
//!
//! Module map (dependencies point one way, down this list):
//!
//! | module | owns | must not |
//! |---|---|---|
//! | [`wire`] | bytes ↔ messages: heads, header rules, framing, chunked, persistence intent | touch sockets, tokio or clocks |
//! | [`transport`] | the byte streams: TCP, TLS over TCP (rustls); certificates, SNI, ALPN, resumption, handshakes in bounded time | know HTTP |
//! | [`conn`] | one connection: the HTTP/1.x server loop (keep-alive, pipelining, timeouts, lingering close, full-duplex bodies) and client connection, HTTP/2 on the `h2` crate (server streams to the same service, a shared client connection, the defences), the bodies at the boundary | know about listeners, pools or config files |
//! | [`service`] | the server boundary: tower `Service`, `service_fn` | know about connections |
//! | [`pool`] | idle client connections by (scheme, host, port, TLS settings): most recently used first, per-host caps with a fair queue, expiry, eviction of closed ones; shared (HTTP/2) connections: the least loaded with a free stream, one negotiation per origin | parse HTTP |
//! | [`client`] | the HTTP client: `Client::send` owns the exchange; connection types (close, keep-alive, pipeline) and the protocol (HTTP/1.1, HTTP/2, ALPN's choice), safe retries | parse HTTP or order the pool |
//! | [`proxy`] | one hop as a service: reverse/forward targets, hop-by-hop header rules, `Via` and forwarded fields, tunnels, failure mapping, over `Client::send` | touch connections, re-implement framing or pooling |
//! | [`bench`] | the load generator behind `hopline bench`: connection types, pacing, HDR latency | — |
//! | [`netem`] | the link emulator: round trip, handshake, slow start, bandwidth, relayed in process | parse HTTP |
//! | [`demo`] | `hopline demo`: every connection type over emulated links, the model's predictions, the report | contain protocol logic |
//! | [`metrics`] | Prometheus metrics, fed by the connection hooks | decide anything about connections |
//! | [`access_log`] | the access log (text, JSON, nginx's combined) to standard output or a reopenable file, off the request path | decide anything about connections |
//! | [`config`] | the TOML configuration file: model, parsing with file:line:key errors, checks | start anything |
//! | [`admin`] | the admin endpoint: `/metrics`, `/connections` | change anything |
//! | [`server`] | the listener: accept loop, connection limit, accept-error backoff, graceful shutdown | contain protocol logic |
//! | [`page`] | the synthetic page: a median web page's resource mix, its HTML and paths | do I/O |
//! | [`origin`] | the built-in handler behind `hopline serve`: hello, `/bytes/N`, `/delay/MS`, `/echo`, static files | touch framing or persistence |
//! | [`error`] | the one error type, carrying which side failed | — |
//! | [`words`] | English for what is printed to people (counts in the right number) | — |
//!
//! `config`, `metrics`, `access_log`, `admin`, `bench` and `demo` need the `cli` feature (default); without
//! it the crate is the engine alone. The binary (`src/main.rs`, `src/cli/`) is the command
//! line over these; it is not part of the library.

#[cfg(feature = "cli")]
pub mod access_log;
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
pub mod transport;
pub mod wire;
pub mod words;

pub use conn::{Body, Incoming};
pub use error::{BoxError, Error, Side};

/// The README's library examples, compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeExamples;
