//! Message framing (RFC 9112 §6.3) and persistence intent (RFC 9112 §9.3), each one pure
//! function over the framing-relevant fields of a message.
//!
//! Owns the decision "where does this body end" and "does the sender want to keep the
//! connection". It must not read bytes (that is [`super::head`] and [`super::body`]) and
//! must not combine the decision with connection policy (that is `conn`).

use http::{HeaderName, Method, StatusCode, Version};

use super::ParseError;
use super::headers::{
    ConnectionOptions, TransferCodings, fold_content_length, is_valid_host, trim_ows,
};

/// How the body of one message is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// The message has no body.
    Empty,
    /// Exactly this many bytes follow the head (`Content-Length`), never zero.
    Length(u64),
    /// `Transfer-Encoding: chunked` (RFC 9112 §7.1).
    Chunked,
    /// Responses only: the body runs until the server closes the connection.
    CloseDelimited,
}

/// What a request says about `Expect` (RFC 9110 §10.1.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Expectation {
    /// No `Expect` field.
    #[default]
    None,
    /// `Expect: 100-continue`: the client waits for `100 Continue` before the body.
    Continue,
    /// Any other expectation; a server answers 417.
    Unsupported,
}

impl Expectation {
    /// Folds one `Expect` field line into the expectation seen so far: only a lone
    /// `100-continue` is one a server can meet (RFC 9110 §10.1.1).
    pub fn fold(self, value: &[u8]) -> Expectation {
        if value.eq_ignore_ascii_case(b"100-continue") && self != Expectation::Unsupported {
            Expectation::Continue
        } else {
            Expectation::Unsupported
        }
    }

    /// The expectation of a header map (for a message built rather than parsed).
    pub fn of(headers: &http::HeaderMap) -> Expectation {
        headers
            .get_all(http::header::EXPECT)
            .iter()
            .fold(Expectation::None, |seen, value| seen.fold(value.as_bytes()))
    }
}

/// The fields of a header section that framing and persistence depend on, folded in one
/// pass while the head is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFields {
    /// The message's HTTP version.
    pub version: Version,
    /// Options from `Connection` (and `close` from the legacy `Proxy-Connection`).
    pub connection: ConnectionOptions,
    /// `Content-Length`, folded over every field line; `Some(Err)` if any line is invalid.
    pub content_length: Option<Result<u64, ParseError>>,
    /// `Transfer-Encoding`, folded over every field line.
    pub transfer_codings: Option<TransferCodings>,
    /// Number of `Host` field lines.
    pub host_count: u32,
    /// Whether every `Host` value is syntactically valid.
    pub host_valid: bool,
    /// Whether a `Host` value is empty (allowed only when the target names the authority).
    pub host_empty: bool,
    /// The `Expect` field.
    pub expect: Expectation,
    /// Whether an `Upgrade` field is present.
    pub upgrade: bool,
    /// A field whose name reads as `Content-Length` or `Transfer-Encoding` with `_` for
    /// `-` (some servers translate one into the other: a smuggling vector).
    pub framing_lookalike: bool,
}

impl MessageFields {
    /// Fields of a message with the given version and no header lines yet.
    pub fn new(version: Version) -> Self {
        MessageFields {
            version,
            connection: ConnectionOptions::default(),
            content_length: None,
            transfer_codings: None,
            host_count: 0,
            host_valid: true,
            host_empty: false,
            expect: Expectation::None,
            upgrade: false,
            framing_lookalike: false,
        }
    }

    /// Folds one header field line in. One dispatch on the (lowercase) name: this runs
    /// for every field of every message.
    pub fn add(&mut self, name: &HeaderName, value: &[u8]) {
        match name.as_str() {
            "content-length" => {
                self.content_length = Some(match self.content_length.take() {
                    None => fold_content_length(None, value),
                    Some(Ok(previous)) => fold_content_length(Some(previous), value),
                    Some(Err(error)) => Err(error),
                });
            }
            "transfer-encoding" => self
                .transfer_codings
                .get_or_insert_with(TransferCodings::default)
                .add(value),
            "connection" => self.connection.add(value),
            "host" => {
                self.host_count += 1;
                self.host_valid &= is_valid_host(value);
                self.host_empty |= trim_ows(value).is_empty();
            }
            "expect" => self.expect = self.expect.fold(value),
            "upgrade" => self.upgrade = true,
            // Proxy-Connection is not in any RFC, but clients and old proxies still send
            // it; only its `close` option is honoured (closing is always safe). The proxy
            // strips it as hop-by-hop.
            "proxy-connection" => {
                let mut legacy = ConnectionOptions::default();
                legacy.add(value);
                self.connection.close |= legacy.close;
            }
            other if other.contains('_') => {
                let dashed = other.replace('_', "-");
                self.framing_lookalike |=
                    dashed == "content-length" || dashed == "transfer-encoding";
            }
            _ => {}
        }
    }

    /// Whether transfer codings other than `chunked` were applied (e.g. `gzip, chunked`).
    /// The framing is still chunked, but the decoded body is gzip data: a server that does
    /// not implement the coding answers 501 (RFC 9112 §6.1) rather than hand it on as the
    /// body.
    pub fn has_other_codings(&self) -> bool {
        self.transfer_codings
            .is_some_and(|codings| codings.count > codings.chunked)
    }

    /// Whether the request asks to switch protocols on this connection (RFC 9110 §7.8):
    /// an `Upgrade` field named in `Connection`, in HTTP/1.1.
    pub fn wants_upgrade(&self) -> bool {
        self.upgrade && self.connection.upgrade && self.version == Version::HTTP_11
    }
}

/// The body framing of a request, per RFC 9112 §6.3 (the rules that apply to requests).
pub fn request_framing(method: &Method, fields: &MessageFields) -> Result<BodyFraming, ParseError> {
    // 0. A field that another hop may take for a framing field (`Transfer_Encoding`) would
    //    let two hops frame this request differently: refused, like the real conflicts.
    if fields.framing_lookalike {
        return Err(ParseError::Syntax(
            "a field name that reads as Content-Length or Transfer-Encoding",
        ));
    }
    match (&fields.transfer_codings, &fields.content_length) {
        // 3. Transfer-Encoding and Content-Length together are a smuggling signal; a server
        //    MAY reject and MUST close afterwards either way (§6.1). We reject.
        (Some(_), Some(_)) => Err(ParseError::TransferEncodingWithContentLength),
        // 4. Transfer-Encoding: the length is known only if chunked is the final coding,
        //    applied once; otherwise 400 and close. Codings before a final chunked do not
        //    change the framing (see `MessageFields::has_other_codings` for who refuses
        //    them); a field with only codings we do not implement is 501 (§6.1).
        (Some(codings), None) => {
            if codings.is_chunked_final() {
                Ok(BodyFraming::Chunked)
            } else if codings.malformed {
                Err(ParseError::TransferEncoding("malformed transfer coding"))
            } else if codings.chunked > 0 {
                Err(ParseError::TransferEncoding(
                    "chunked is not the final coding",
                ))
            } else {
                Err(ParseError::TransferCodingNotImplemented)
            }
        }
        // 5. An invalid Content-Length is unrecoverable: 400 and close.
        (None, Some(Err(error))) => Err(error.clone()),
        // 6. A valid Content-Length is the body length, except that a CONNECT request has
        //    no content: what follows its head is the tunnel (RFC 9110 §9.3.6).
        (None, Some(Ok(_))) if method == Method::CONNECT => Ok(BodyFraming::Empty),
        (None, Some(Ok(0))) => Ok(BodyFraming::Empty),
        (None, Some(Ok(length))) => Ok(BodyFraming::Length(*length)),
        // 7. Neither: a request has no body.
        (None, None) => Ok(BodyFraming::Empty),
    }
}

/// The body framing of a response to a request with `request_method`, per RFC 9112 §6.3.
///
/// A 2xx response to CONNECT is [`BodyFraming::Empty`]: the connection becomes a tunnel
/// right after the head, which the caller decides. So is 101 Switching Protocols.
pub fn response_framing(
    request_method: &Method,
    status: StatusCode,
    fields: &MessageFields,
) -> Result<BodyFraming, ParseError> {
    // 1. HEAD, 1xx, 204 and 304 responses end at the head, whatever their fields say.
    if request_method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(BodyFraming::Empty);
    }
    // 2. A 2xx response to CONNECT switches to a tunnel.
    if request_method == Method::CONNECT && status.is_success() {
        return Ok(BodyFraming::Empty);
    }
    match (&fields.transfer_codings, &fields.content_length) {
        // 3. + 4. Transfer-Encoding overrides Content-Length. Chunked last → chunked;
        //    otherwise the body runs to close. (Persistence is refused for both cases in
        //    `keep_alive_intent`.)
        (Some(codings), _) => Ok(if codings.is_chunked_final() {
            BodyFraming::Chunked
        } else {
            BodyFraming::CloseDelimited
        }),
        // 5. An invalid Content-Length makes the response unusable.
        (None, Some(Err(error))) => Err(error.clone()),
        // 6. A valid Content-Length.
        (None, Some(Ok(0))) => Ok(BodyFraming::Empty),
        (None, Some(Ok(length))) => Ok(BodyFraming::Length(*length)),
        // 7. Neither: the body is delimited by the close of the connection.
        (None, None) => Ok(BodyFraming::CloseDelimited),
    }
}

/// Whether the sender of a message intends the connection to persist after it
/// (RFC 9112 §9.3), in this order:
/// 1. a `close` connection option ends it;
/// 2. Transfer-Encoding in an HTTP/1.0 message means faulty framing: close (§6.1);
/// 3. Transfer-Encoding together with Content-Length: close after the message (§6.1);
/// 4. HTTP/1.1 (and later 1.x) persists by default;
/// 5. HTTP/1.0 persists only with the `keep-alive` option (Appendix C.2.2).
///
/// A close-delimited body also ends the connection; the caller combines that with the
/// framing it already has.
pub fn keep_alive_intent(fields: &MessageFields) -> bool {
    if fields.connection.close {
        return false;
    }
    if fields.transfer_codings.is_some()
        && (fields.version == Version::HTTP_10 || fields.content_length.is_some())
    {
        return false;
    }
    match fields.version {
        Version::HTTP_11 => true,
        Version::HTTP_10 => fields.connection.keep_alive,
        _ => false,
    }
}

/// How the body of a message this side sends is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingFraming {
    /// No body and no length field.
    None,
    /// `Content-Length: n`, then the n body bytes (n may be 0).
    Length(u64),
    /// `Content-Length: n` for a body that is not sent (the answer to HEAD, a 304).
    Declared(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// No length field; the body ends when the connection closes (an HTTP/1.0 client).
    CloseDelimited,
}

impl OutgoingFraming {
    /// Whether body bytes follow the head.
    pub fn sends_body(self) -> bool {
        matches!(
            self,
            OutgoingFraming::Length(_) | OutgoingFraming::Chunked | OutgoingFraming::CloseDelimited
        )
    }
}

/// How a response is framed (RFC 9112 §6, RFC 9110 §8.6), from the request's method, the
/// response's status, the client's version, the body's exact length if known, and the
/// `Content-Length` the handler stated, in order:
/// 1. 1xx and 204 carry no body and no `Content-Length` (RFC 9110 §8.6: MUST NOT);
/// 2. a 2xx answer to CONNECT is a tunnel: no body, no length;
/// 3. HEAD and 304 carry no body, but may state the length of the one they stand for: the
///    body's length when it has one, else the handler's `Content-Length`;
/// 4. a body of known length is sent with `Content-Length`;
/// 5. a body of unknown length is chunked for an HTTP/1.1 client,
/// 6. and runs to the close of the connection for an HTTP/1.0 one.
pub fn outgoing_response_framing(
    method: &Method,
    status: StatusCode,
    client: Version,
    body_length: Option<u64>,
    stated_length: Option<u64>,
) -> OutgoingFraming {
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        return OutgoingFraming::None;
    }
    if method == Method::CONNECT && status.is_success() {
        return OutgoingFraming::None;
    }
    if method == Method::HEAD || status == StatusCode::NOT_MODIFIED {
        return match body_length.filter(|&n| n > 0).or(stated_length) {
            Some(length) => OutgoingFraming::Declared(length),
            None => OutgoingFraming::None,
        };
    }
    match body_length {
        Some(length) => OutgoingFraming::Length(length),
        None if client == Version::HTTP_10 => OutgoingFraming::CloseDelimited,
        None => OutgoingFraming::Chunked,
    }
}

/// How a request is framed (RFC 9112 §6, RFC 9110 §8.6), from its method, the hop's
/// version and the body's exact length if known, in order:
/// 1. an empty body is stated as `Content-Length: 0` for methods that usually carry one
///    (POST, PUT, PATCH), and not at all otherwise;
/// 2. a body of known length is sent with `Content-Length`;
/// 3. a body of unknown length is chunked on an HTTP/1.1 hop;
/// 4. an HTTP/1.0 hop cannot take chunked: `None`, and the caller must learn the length
///    first (buffer the body).
pub fn outgoing_request_framing(
    method: &Method,
    hop: Version,
    body_length: Option<u64>,
) -> Option<OutgoingFraming> {
    match body_length {
        Some(0) if matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            Some(OutgoingFraming::Length(0))
        }
        Some(0) => Some(OutgoingFraming::None),
        Some(length) => Some(OutgoingFraming::Length(length)),
        None if hop == Version::HTTP_10 => None,
        None => Some(OutgoingFraming::Chunked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderName;

    /// Header field lines of a test case.
    type Lines<'a> = &'a [(&'a str, &'a str)];

    fn fields(version: Version, lines: Lines<'_>) -> MessageFields {
        let mut fields = MessageFields::new(version);
        for (name, value) in lines {
            fields.add(
                &HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.as_bytes(),
            );
        }
        fields
    }

    #[test]
    fn request_framing_table() {
        use BodyFraming::*;
        let h11 = Version::HTTP_11;
        let cases: &[(Lines<'_>, Result<BodyFraming, ParseError>)] = &[
            (&[], Ok(Empty)),
            (&[("content-length", "0")], Ok(Empty)),
            (&[("content-length", "10")], Ok(Length(10))),
            (
                &[("content-length", "10"), ("Content-Length", "10")],
                Ok(Length(10)),
            ),
            (
                &[("content-length", "10"), ("content-length", "11")],
                Err(ParseError::ContentLength("conflicting values")),
            ),
            (
                &[("content-length", "1x")],
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (&[("transfer-encoding", "chunked")], Ok(Chunked)),
            (&[("transfer-encoding", "gzip, chunked")], Ok(Chunked)),
            (
                &[("content-length", "5"), ("transfer_encoding", "chunked")],
                Err(ParseError::Syntax(
                    "a field name that reads as Content-Length or Transfer-Encoding",
                )),
            ),
            (
                &[("content_length", "5")],
                Err(ParseError::Syntax(
                    "a field name that reads as Content-Length or Transfer-Encoding",
                )),
            ),
            (&[("x_forwarded_for", "1.2.3.4")], Ok(Empty)),
            (
                &[("transfer-encoding", "chunked"), ("content-length", "3")],
                Err(ParseError::TransferEncodingWithContentLength),
            ),
            (
                &[("content-length", "3"), ("transfer-encoding", "identity")],
                Err(ParseError::TransferEncodingWithContentLength),
            ),
            (
                &[("transfer-encoding", "chunked, gzip")],
                Err(ParseError::TransferEncoding(
                    "chunked is not the final coding",
                )),
            ),
            (
                &[
                    ("transfer-encoding", "chunked"),
                    ("transfer-encoding", "chunked"),
                ],
                Err(ParseError::TransferEncoding(
                    "chunked is not the final coding",
                )),
            ),
            (
                &[("transfer-encoding", "gzip")],
                Err(ParseError::TransferCodingNotImplemented),
            ),
            (
                &[("transfer-encoding", "pigeons")],
                Err(ParseError::TransferCodingNotImplemented),
            ),
            (
                &[("transfer-encoding", "")],
                Err(ParseError::TransferEncoding("malformed transfer coding")),
            ),
        ];
        for (lines, expected) in cases {
            assert_eq!(
                &request_framing(&Method::POST, &fields(h11, lines)),
                expected,
                "{lines:?}"
            );
        }
    }

    #[test]
    fn connect_requests_have_no_content() {
        let with_length = fields(Version::HTTP_11, &[("content-length", "10")]);
        assert_eq!(
            request_framing(&Method::CONNECT, &with_length),
            Ok(BodyFraming::Empty)
        );
    }

    #[test]
    fn response_framing_table() {
        use BodyFraming::*;
        let get = Method::GET;
        let ok = StatusCode::OK;
        let chunked: Lines<'_> = &[("transfer-encoding", "chunked")];
        let length: Lines<'_> = &[("content-length", "5")];
        let cases: &[(
            &Method,
            StatusCode,
            Lines<'_>,
            Result<BodyFraming, ParseError>,
        )] = &[
            (&get, ok, &[], Ok(CloseDelimited)),
            (&get, ok, length, Ok(Length(5))),
            (&get, ok, &[("content-length", "0")], Ok(Empty)),
            (&get, ok, chunked, Ok(Chunked)),
            (&Method::HEAD, ok, length, Ok(Empty)),
            (&Method::HEAD, ok, chunked, Ok(Empty)),
            (&get, StatusCode::NO_CONTENT, length, Ok(Empty)),
            (&get, StatusCode::NOT_MODIFIED, chunked, Ok(Empty)),
            (&get, StatusCode::CONTINUE, &[], Ok(Empty)),
            (&get, StatusCode::SWITCHING_PROTOCOLS, length, Ok(Empty)),
            (&Method::CONNECT, ok, length, Ok(Empty)),
            (
                &Method::CONNECT,
                StatusCode::FORBIDDEN,
                length,
                Ok(Length(5)),
            ),
            (
                &get,
                ok,
                &[("transfer-encoding", "chunked"), ("content-length", "5")],
                Ok(Chunked),
            ),
            (
                &get,
                ok,
                &[("transfer-encoding", "gzip")],
                Ok(CloseDelimited),
            ),
            (
                &get,
                ok,
                &[("transfer-encoding", "chunked, gzip")],
                Ok(CloseDelimited),
            ),
            (
                &get,
                ok,
                &[("content-length", "5, 5")],
                Err(ParseError::ContentLength("not a decimal number")),
            ),
        ];
        for (method, status, lines, expected) in cases {
            assert_eq!(
                &response_framing(method, *status, &fields(Version::HTTP_11, lines)),
                expected,
                "{method} {status} {lines:?}"
            );
        }
    }

    #[test]
    fn keep_alive_intent_table() {
        let h10 = Version::HTTP_10;
        let h11 = Version::HTTP_11;
        let cases: &[(Version, Lines<'_>, bool)] = &[
            (h11, &[], true),
            (h11, &[("connection", "close")], false),
            (h11, &[("connection", "Keep-Alive, CLOSE")], false),
            (h11, &[("connection", "keep-alive")], true),
            (h11, &[("connection", "upgrade")], true),
            (h11, &[("proxy-connection", "close")], false),
            (h11, &[("transfer-encoding", "chunked")], true),
            (
                h11,
                &[("transfer-encoding", "chunked"), ("content-length", "1")],
                false,
            ),
            (h10, &[], false),
            (h10, &[("connection", "keep-alive")], true),
            (h10, &[("connection", "Keep-Alive")], true),
            (h10, &[("proxy-connection", "keep-alive")], false),
            (
                h10,
                &[
                    ("connection", "keep-alive"),
                    ("transfer-encoding", "chunked"),
                ],
                false,
            ),
            (h10, &[("connection", "keep-alive, close")], false),
        ];
        for (version, lines, expected) in cases {
            assert_eq!(
                keep_alive_intent(&fields(*version, lines)),
                *expected,
                "{version:?} {lines:?}"
            );
        }
    }

    #[test]
    fn other_codings_are_reported() {
        let v = Version::HTTP_11;
        assert!(!fields(v, &[("transfer-encoding", "chunked")]).has_other_codings());
        assert!(fields(v, &[("transfer-encoding", "gzip, chunked")]).has_other_codings());
        assert!(
            fields(
                v,
                &[
                    ("transfer-encoding", "gzip"),
                    ("transfer-encoding", "chunked")
                ]
            )
            .has_other_codings()
        );
        assert!(!fields(v, &[]).has_other_codings());
    }

    #[test]
    fn expectations() {
        let v = Version::HTTP_11;
        assert_eq!(fields(v, &[]).expect, Expectation::None);
        assert_eq!(
            fields(v, &[("expect", "100-Continue")]).expect,
            Expectation::Continue
        );
        assert_eq!(
            fields(v, &[("expect", "200-ok")]).expect,
            Expectation::Unsupported
        );
        assert_eq!(
            fields(v, &[("expect", "200-ok"), ("expect", "100-continue")]).expect,
            Expectation::Unsupported
        );
    }

    #[test]
    fn outgoing_response_framing_table() {
        use OutgoingFraming as F;
        let (get, head, connect) = (Method::GET, Method::HEAD, Method::CONNECT);
        let (h11, h10) = (Version::HTTP_11, Version::HTTP_10);
        let status = |n| StatusCode::from_u16(n).unwrap();
        /// Method, status, client version, body length, stated length, framing.
        type Case<'a> = (&'a Method, u16, Version, Option<u64>, Option<u64>, F);
        let cases: &[Case<'_>] = &[
            (&get, 200, h11, Some(13), None, F::Length(13)),
            (&get, 200, h11, Some(0), None, F::Length(0)),
            (&get, 200, h11, None, None, F::Chunked),
            (&get, 200, h10, None, None, F::CloseDelimited),
            (&get, 200, h10, Some(5), None, F::Length(5)),
            (&get, 204, h11, Some(0), None, F::None),
            (&get, 204, h11, None, Some(9), F::None),
            (&get, 101, h11, Some(0), None, F::None),
            (&get, 103, h11, Some(0), None, F::None),
            (&connect, 200, h11, Some(0), None, F::None),
            (&connect, 407, h11, Some(3), None, F::Length(3)),
            (&head, 200, h11, Some(1000), None, F::Declared(1000)),
            (&head, 200, h11, Some(0), Some(1000), F::Declared(1000)),
            (&head, 200, h11, Some(0), None, F::None),
            (&head, 200, h11, None, None, F::None),
            (&get, 304, h11, Some(0), Some(42), F::Declared(42)),
            (&get, 304, h11, Some(0), None, F::None),
            (&get, 404, h11, Some(10), Some(99), F::Length(10)),
        ];
        for &(method, code, version, body, stated, expected) in cases {
            assert_eq!(
                outgoing_response_framing(method, status(code), version, body, stated),
                expected,
                "{method} {code} {version:?} body {body:?} stated {stated:?}"
            );
        }
    }

    #[test]
    fn outgoing_request_framing_table() {
        use OutgoingFraming as F;
        let (h11, h10) = (Version::HTTP_11, Version::HTTP_10);
        let cases: &[(Method, Version, Option<u64>, Option<F>)] = &[
            (Method::GET, h11, Some(0), Some(F::None)),
            (Method::HEAD, h11, Some(0), Some(F::None)),
            (Method::DELETE, h11, Some(0), Some(F::None)),
            (Method::POST, h11, Some(0), Some(F::Length(0))),
            (Method::PUT, h10, Some(0), Some(F::Length(0))),
            (Method::PATCH, h11, Some(0), Some(F::Length(0))),
            (Method::POST, h11, Some(7), Some(F::Length(7))),
            (Method::GET, h11, Some(7), Some(F::Length(7))),
            (Method::POST, h11, None, Some(F::Chunked)),
            (Method::POST, h10, None, None),
            (Method::POST, h10, Some(7), Some(F::Length(7))),
        ];
        for (method, version, body, expected) in cases {
            assert_eq!(
                outgoing_request_framing(method, *version, *body),
                *expected,
                "{method} {version:?} {body:?}"
            );
        }
    }

    #[test]
    fn expectations_fold_over_lines() {
        let fold = |lines: &[&str]| {
            lines
                .iter()
                .fold(Expectation::None, |seen, line| seen.fold(line.as_bytes()))
        };
        assert_eq!(fold(&[]), Expectation::None);
        assert_eq!(fold(&["100-continue"]), Expectation::Continue);
        assert_eq!(fold(&["100-Continue"]), Expectation::Continue);
        assert_eq!(fold(&["100-continue", "x"]), Expectation::Unsupported);
        assert_eq!(fold(&["x", "100-continue"]), Expectation::Unsupported);
        assert_eq!(fold(&["100-continue, x"]), Expectation::Unsupported);
    }

    #[test]
    fn upgrade_needs_the_connection_option_and_http_11() {
        let upgrade = &[("connection", "upgrade"), ("upgrade", "websocket")];
        assert!(fields(Version::HTTP_11, upgrade).wants_upgrade());
        assert!(!fields(Version::HTTP_10, upgrade).wants_upgrade());
        assert!(!fields(Version::HTTP_11, &[("upgrade", "websocket")]).wants_upgrade());
    }
}
