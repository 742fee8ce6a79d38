//! HTTP/1.x connections, one at a time, on both sides of a hop.
//!
//! | module | owns |
//! |---|---|
//! | [`server`] | the server loop: keep-alive, pipelining, timers, limits, 100-continue, lingering close; requests to a tower `Service` |
//! | `feed` | a request body on its way from the socket to whoever reads it |
//! | [`client`] | one client connection: requests out (bodies streamed), responses in order, 1xx and 100-continue, the reuse decision with its reason |
//!
//! It must not know about listeners, pools, upstream choice or configuration files.

pub mod client;
mod feed;
pub mod server;
