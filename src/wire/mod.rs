//! `wire`: HTTP/1.x bytes ↔ messages, with no I/O, no tokio and no clocks.
//!
//! | module | owns |
//! |---|---|
//! | [`head`] | request/response heads: parse (httparse + strict line endings), limits, serialise |
//! | [`headers`] | field rules: list members, `Connection` options, `Content-Length`, `Transfer-Encoding`, `Host` |
//! | [`framing`] | RFC 9112 §6.3 body framing for requests and responses; §9.3 persistence intent |
//! | [`chunked`] | chunked decoder (bounded extensions and trailers) and encoder |
//! | [`body`] | one resumable decoder for every framing |
//! | [`date`] | HTTP-date formatting and parsing |
//!
//! Everything here is a pure function or a resumable state machine fed by the caller, so
//! every decoder is tested whole and split at every byte.

pub mod body;
pub mod chunked;
pub mod date;
mod error;
pub mod framing;
pub mod head;
pub mod headers;

pub use body::{BodyDecoder, BodyEvent, BodyTruncated};
pub use chunked::{ChunkedDecoder, ChunkedLimits};
pub use error::ParseError;
pub use framing::{
    BodyFraming, Expectation, MessageFields, OutgoingFraming, keep_alive_intent,
    outgoing_request_framing, outgoing_response_framing, request_framing, response_framing,
};
pub use head::{HeadLimits, HeadParser, HeadStatus, RequestHead, ResponseHead, TargetForm};
pub use headers::ConnectionOptions;
