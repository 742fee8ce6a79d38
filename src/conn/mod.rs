//! `conn`: one connection at a time.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | the server loop: keep-alive, pipelining, timers, limits, 100-continue, lingering close; the [`Handler`] interface |
//! | [`client`] | one client connection: requests out (bodies streamed), responses in order, 1xx and 100-continue, the reuse decision with its reason |
//! | [`body`] | request and response bodies at the handler boundary, streamed both ways |
//! | [`shutdown`] | the graceful-shutdown signal connections listen to |
//! | [`status`] | the live registry of open connections, `TCP_INFO`, the observer hooks |
//! | [`upgrade`] | protocol switches and CONNECT tunnels: the socket handed over, the splice |
//! | `io` | syscall loops on a shared `&TcpStream` |
//!
//! It must not know about listeners, pools, upstream choice or configuration files.

pub mod body;
pub mod client;
mod io;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod upgrade;

pub use body::{Body, BodyClosed, BodySender, BodySource, BodyStream, Frame, RequestBody};
pub use client::{ClientConfig, ClientConn, ContinueOutcome, NotReusable, RequestFraming};
pub use server::{
    CloseReason, ConnInfo, ConnSummary, Handler, RequestCtx, ServerConfig, error_response,
    serve_connection,
};
pub use shutdown::{Shutdown, ShutdownListener};
pub use status::{
    ClosedRecord, ConnSide, ConnState, ConnView, Hooks, LiveConns, Observer, RequestRecord,
    TcpInfo, UpstreamNote,
};
pub use upgrade::{OnUpgrade, UpgradeSlot, Upgraded, splice, upgrade_channel};
