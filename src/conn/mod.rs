//! `conn`: one connection at a time.
//!
//! | module | owns |
//! |---|---|
//! | [`h1`] | HTTP/1.x: the server loop (requests to a tower `Service`) and the client connection |
//! | [`h2`] | HTTP/2 (the `h2` crate): the server connection (streams to the same `Service`), the shared client connection, settings and defences |
//! | [`body`] | the bodies at the boundary, as `http_body::Body`: [`Body`] to send, [`Incoming`] received |
//! | `pipe` | the one-frame channel that hands body frames to an [`Incoming`], with a "want" signal |
//! | [`shutdown`] | the graceful-shutdown signal connections listen to |
//! | [`status`] | the live registry of open connections, `TCP_INFO`, the observer hooks |
//! | [`lifetime`] | maximum lifetimes spread over a jitter window |
//! | [`panic`] | panics while serving caught (once per poll of a connection's work) and turned into [`panic::Panicked`] |
//! | [`upgrade`] | protocol switches and CONNECT tunnels: the socket handed over, the splice |
//! | `io` | syscall loops and a connection's pending output |
//!
//! It must not know about listeners, pools, upstream choice or configuration files.

pub mod body;
pub mod h1;
pub mod h2;
mod io;
pub mod lifetime;
pub mod panic;
pub(crate) mod pipe;
pub mod shutdown;
pub mod status;
pub mod upgrade;

pub use body::{Body, BodyClosed, BodySender, Exchange, Incoming};
pub use h1::client::{
    self as client, ClientConfig, ClientConn, ContinueOutcome, NotReusable, Persistence,
};
pub use h1::server::{
    self as server, CloseReason, ConnInfo, ConnSummary, RequestCtx, ServerConfig, error_response,
    serve_connection,
};
pub use shutdown::{Shutdown, ShutdownListener};
pub use status::{
    ClosedRecord, ConnSide, ConnState, ConnView, Grouped, Hooks, Http2Event, LiveConns, Observer,
    Protocol, RequestFields, RequestRecord, TcpInfo, UpstreamNote,
};
pub use upgrade::{OnUpgrade, UpgradeSlot, Upgraded, splice, upgrade_channel};
