//! Why a message could not be read, and the status code a server answers with.
//!
//! Owns the classification of wire errors only; it does not decide whether a connection
//! closes (every parse error closes it: the framing of whatever follows is unknown).

use http::StatusCode;

/// A message that violates HTTP/1.x syntax or one of hopline's limits.
///
/// Every variant maps to exactly one status code ([`ParseError::status`]), so the server's
/// answer follows from the type and never from string matching.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Malformed start line, header field or line ending (RFC 9112 §2, §5).
    #[error("malformed message: {0}")]
    Syntax(&'static str),
    /// A request line longer than the configured limit (RFC 9112 §3).
    #[error("request line longer than {limit} bytes")]
    RequestLineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A header section longer than the configured limit (RFC 6585 §5).
    #[error("header section larger than {limit} bytes")]
    HeadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// More header field lines than the configured limit (RFC 6585 §5).
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The limit in fields.
        limit: usize,
    },
    /// An HTTP version other than 1.0 or 1.1 (RFC 9110 §15.6.6).
    #[error("unsupported HTTP version")]
    Version,
    /// A Content-Length that is not a plain decimal number, overflows, or repeats with a
    /// different value (RFC 9112 §6.3 rule 5).
    #[error("invalid Content-Length: {0}")]
    ContentLength(&'static str),
    /// Transfer-Encoding together with Content-Length in a request (RFC 9112 §6.1, §6.3 rule 3).
    #[error("request carries both Transfer-Encoding and Content-Length")]
    TransferEncodingWithContentLength,
    /// A Transfer-Encoding whose final coding is not `chunked`, or that applies `chunked`
    /// twice (RFC 9112 §6.3 rule 4, §7).
    #[error("invalid Transfer-Encoding: {0}")]
    TransferEncoding(&'static str),
    /// A request transfer coding this server does not implement (RFC 9112 §6.1: 501).
    #[error("transfer coding not implemented")]
    TransferCodingNotImplemented,
    /// A Host field that is missing from an HTTP/1.1 request, repeated, or invalid
    /// (RFC 9112 §3.2).
    #[error("invalid Host: {0}")]
    Host(&'static str),
    /// An `Expect` value other than `100-continue` (RFC 9110 §10.1.1).
    #[error("unsupported expectation")]
    Expectation,
    /// A chunk-size line that is malformed (RFC 9112 §7.1).
    #[error("invalid chunk: {0}")]
    Chunk(&'static str),
    /// Chunk extensions longer than the configured limit.
    #[error("chunk extensions longer than {limit} bytes")]
    ChunkExtensionTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// A trailer section larger than the configured limit, or malformed (RFC 9112 §7.1.2).
    #[error("invalid trailer section: {0}")]
    Trailer(&'static str),
    /// A body larger than the configured limit (RFC 9110 §15.5.14).
    #[error("body larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

impl ParseError {
    /// The status code a server answers this error with before closing the connection.
    pub fn status(&self) -> StatusCode {
        match self {
            ParseError::RequestLineTooLong { .. } => StatusCode::URI_TOO_LONG,
            ParseError::HeadTooLarge { .. } | ParseError::TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            ParseError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            ParseError::TransferCodingNotImplemented => StatusCode::NOT_IMPLEMENTED,
            ParseError::Expectation => StatusCode::EXPECTATION_FAILED,
            ParseError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ParseError::Syntax(_)
            | ParseError::ContentLength(_)
            | ParseError::TransferEncodingWithContentLength
            | ParseError::TransferEncoding(_)
            | ParseError::Host(_)
            | ParseError::Chunk(_)
            | ParseError::ChunkExtensionTooLong { .. }
            | ParseError::Trailer(_) => StatusCode::BAD_REQUEST,
        }
    }
}
