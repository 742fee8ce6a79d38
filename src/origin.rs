//! The built-in handler behind `hopline serve`: endpoints for testing and benchmarking,
//! and static files.
//!
//! Owns routing and content. It must not touch framing or persistence: it returns a
//! response with a body, and the connection decides `Content-Length`, chunked, `close`.
//!
//! | path | methods | answer |
//! |---|---|---|
//! | `/` | GET, HEAD | `Hello, world!` (13 bytes, no Content-Type: the benchmark endpoint) |
//! | `/bytes/N` | GET, HEAD | N bytes, streamed; byte i is `b'a' + i % 26` |
//! | `/delay/MS` | GET, HEAD | waits MS milliseconds (at most 60 s), then answers |
//! | `/echo` | any | the request head exactly as received, then the body (≤ 1 MiB) |
//! | `/echo/stream` | any | the request body, streamed back while it arrives (any size: full duplex) |
//! | `/sink` | any | reads the whole body, of any size, and says how long it was and its checksum |
//! | `/page` | GET, HEAD | the synthetic page ([`crate::page`]): `?resources=N&sizes=B1,B2&slow=MS` |
//! | `/page/r/B/NAME.EXT` | GET, HEAD | one of its resources: B bytes with the type of EXT (after MS with `?delay=MS`) |
//! | anything else | GET, HEAD | a file under `--root`, else 404 |
//!
//! With `--root`, the root directory owns every path, and the endpoints move under
//! `/_hopline/` (`/_hopline/bytes/N`, ...). Unknown methods get 501, known but
//! unsupported ones 405 with `Allow`. `OPTIONS *` is answered with the server's methods;
//! CONNECT (this is an origin, not a proxy) gets 405. A file path with an escape that
//! decodes to NUL or `/`, or a `..` above the root, is 400.

use std::convert::Infallible;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Frame;
use tokio::io::{AsyncRead, ReadBuf};

use crate::conn::{Body, Incoming, RequestCtx, error_response};
use crate::error::BoxError;
use crate::page::{PageSpec, parse_resource_path, resource_delay};
use crate::service::Service;
use crate::wire::date::{format_http_date, parse_http_date};

/// The body of `/`.
pub const HELLO: &str = "Hello, world!";

/// Largest body `/echo` returns.
pub const ECHO_MAX_BODY: u64 = 1024 * 1024;

/// Longest `/delay/MS`.
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Bytes per chunk when streaming files.
const FILE_CHUNK: usize = 64 * 1024;

/// The built-in origin, a tower service. Cheap to clone (a server clones it per
/// connection).
#[derive(Debug, Clone, Default)]
pub struct Origin {
    root: Option<Arc<Path>>,
}

impl Origin {
    /// Endpoints only.
    pub fn new() -> Self {
        Origin { root: None }
    }

    /// Static files from `root`, endpoints under `/_hopline/`.
    pub fn with_root(root: impl Into<PathBuf>) -> Self {
        Origin {
            root: Some(Arc::from(root.into())),
        }
    }

    /// Answers one request. The common endpoints answer at once, without an allocation
    /// for the future; everything that waits (files, delays, bodies) is boxed.
    fn answer(&self, request: Request<Incoming>) -> OriginFuture {
        if let Some(answer) = server_wide(request.method(), request.uri()) {
            return OriginFuture::ready(answer);
        }
        let path = request.uri().path();
        let endpoint = match &self.root {
            None => Some(path),
            Some(_) => path
                .strip_prefix("/_hopline")
                .filter(|p| p.starts_with('/')),
        };
        let query = request.uri().query();
        match endpoint.map(|endpoint| self.route(request.method(), endpoint, query)) {
            Some(Route::Ready(response)) => OriginFuture::ready(response),
            Some(Route::Echo) => OriginFuture::boxed(echo(request)),
            Some(Route::StreamEcho) => OriginFuture::ready(stream_echo(request)),
            Some(Route::Sink) => OriginFuture::boxed(sink(request)),
            Some(Route::Later(delay, answer)) => OriginFuture::boxed(later(delay, answer)),
            Some(Route::Other) | None => match &self.root {
                Some(root) => OriginFuture::boxed(static_file(root.clone(), request)),
                None => OriginFuture::ready(
                    refuse_unknown_method(request.method())
                        .unwrap_or_else(|| error_response(StatusCode::NOT_FOUND)),
                ),
            },
        }
    }
}

impl Service<Request<Incoming>> for Origin {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = OriginFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> OriginFuture {
        self.answer(request)
    }
}

/// The answer of the [`Origin`]: ready at once (no allocation), or a boxed future.
pub struct OriginFuture {
    state: AnswerState,
}

enum AnswerState {
    Ready(Option<Response<Body>>),
    Waiting(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
}

impl OriginFuture {
    fn ready(response: Response<Body>) -> Self {
        OriginFuture {
            state: AnswerState::Ready(Some(response)),
        }
    }

    fn boxed(answer: impl Future<Output = Response<Body>> + Send + 'static) -> Self {
        OriginFuture {
            state: AnswerState::Waiting(Box::pin(answer)),
        }
    }
}

impl Future for OriginFuture {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            AnswerState::Ready(response) => {
                Poll::Ready(Ok(response.take().expect("polled after completion")))
            }
            AnswerState::Waiting(answer) => answer.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The methods some resource of this server accepts (`/echo` and `/sink` take any).
const SERVER_METHODS: &str = "GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE";

/// Requests about the server rather than a resource: `OPTIONS *` (RFC 9112 §3.2.4, RFC 9110
/// §9.3.7) is answered with what the server supports; CONNECT (RFC 9110 §9.3.6) asks an
/// origin to act as a proxy, which it is not: 405, never as if a path were requested.
fn server_wide(method: &Method, uri: &http::Uri) -> Option<Response<Body>> {
    if method == Method::CONNECT {
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(SERVER_METHODS));
        return Some(response);
    }
    if method == Method::OPTIONS && uri.path() == "*" {
        let mut response = Response::new(Body::empty());
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(SERVER_METHODS));
        return Some(response);
    }
    None
}

/// Where a request goes.
enum Route {
    /// Answered already.
    Ready(Response<Body>),
    /// `/echo`: reads the body first.
    Echo,
    /// `/echo/stream`: the body back as it arrives.
    StreamEcho,
    /// `/sink`: reads the body, however large, and counts it.
    Sink,
    /// `/delay/MS`, or a page resource with `?delay=MS`: this answer, after this long.
    Later(Duration, Response<Body>),
    /// Not an endpoint: a file, or 404.
    Other,
}

impl Origin {
    /// Routes a built-in endpoint path.
    fn route(&self, method: &Method, path: &str, query: Option<&str>) -> Route {
        if path == "/echo" {
            return Route::Echo;
        }
        if path == "/echo/stream" {
            return Route::StreamEcho;
        }
        if path == "/sink" {
            return Route::Sink;
        }
        let read_only = |answer: Response<Body>| match read_only_method(method) {
            Some(refusal) => Route::Ready(refusal),
            None => Route::Ready(answer),
        };
        if path == "/" && self.root.is_none() {
            // The benchmark endpoint: as minimal as the reference servers' (nginx's
            // `return 200`, hyper's hello) so that it measures the connection engine. A
            // Content-Type would cost a header map allocation per response, about a fifth
            // of the whole per-request cost when pipelining.
            return read_only(Response::new(Body::from(HELLO)));
        }
        if let Some(count) = path.strip_prefix("/bytes/") {
            return match count.parse::<u64>() {
                Ok(count) => read_only(pattern_response(count)),
                Err(_) => Route::Ready(error_response(StatusCode::BAD_REQUEST)),
            };
        }
        if path == "/page" {
            return match PageSpec::from_query(query) {
                Ok(page) => {
                    let mut response = Response::new(Body::from(page.html()));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    read_only(response)
                }
                Err(why) => Route::Ready(text(StatusCode::BAD_REQUEST, Body::from(why + "\n"))),
            };
        }
        if path.starts_with("/page/r/") {
            return match parse_resource_path(path) {
                Some((kind, bytes)) => {
                    let mut response = pattern_response(bytes);
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(kind.content_type()),
                    );
                    match (read_only(response), resource_delay(query)) {
                        (Route::Ready(answer), Some(delay)) if answer.status().is_success() => {
                            Route::Later(delay, answer)
                        }
                        (route, _) => route,
                    }
                }
                None => Route::Ready(error_response(StatusCode::NOT_FOUND)),
            };
        }
        if let Some(millis) = path.strip_prefix("/delay/") {
            return match (millis.parse::<u64>(), read_only_method(method)) {
                (Err(_), _) => Route::Ready(error_response(StatusCode::BAD_REQUEST)),
                (_, Some(refusal)) => Route::Ready(refusal),
                (Ok(millis), None) => {
                    let delay = Duration::from_millis(millis).min(MAX_DELAY);
                    let answer = text(
                        StatusCode::OK,
                        Body::from(format!("delayed {} ms\n", delay.as_millis())),
                    );
                    Route::Later(delay, answer)
                }
            };
        }
        Route::Other
    }
}

/// An answer given after a while (`/delay/MS`, a slow page resource).
async fn later(delay: Duration, answer: Response<Body>) -> Response<Body> {
    tokio::time::sleep(delay).await;
    answer
}

/// `/echo`: the head as received, then the body.
async fn echo(request: Request<Incoming>) -> Response<Body> {
    let Some(ctx) = RequestCtx::of(&request).cloned() else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR);
    };
    let body = match request.into_body().bytes(ECHO_MAX_BODY).await {
        Ok(body) => body,
        // Too large (the connection answers a body that failed to arrive itself).
        Err(_) => return error_response(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let mut all = Vec::with_capacity(ctx.raw_head.len() + body.len());
    all.extend_from_slice(&ctx.raw_head);
    all.extend_from_slice(&body);
    let mut response = text(StatusCode::OK, Body::from(all));
    let headers = response.headers_mut();
    headers.insert("x-connection-id", HeaderValue::from(ctx.conn.id));
    headers.insert("x-connection-requests", HeaderValue::from(ctx.number));
    response
}

/// `/echo/stream`: the request body itself is the response body, so it streams back while
/// it arrives (full duplex), with its length when the request stated one.
fn stream_echo(request: Request<Incoming>) -> Response<Body> {
    let mut response = Response::new(Body::from(request.into_body()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// `/sink`: the body's length and a checksum (FNV-1a, 64 bits), streamed through.
async fn sink(request: Request<Incoming>) -> Response<Body> {
    let mut body = request.into_body();
    let mut length = 0u64;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // The connection answers body errors itself.
            return error_response(StatusCode::BAD_REQUEST);
        };
        if let Ok(data) = frame.into_data() {
            length += data.len() as u64;
            for &byte in data.iter() {
                hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
            }
        }
    }
    text(
        StatusCode::OK,
        Body::from(format!("received {length} bytes, fnv1a64 {hash:016x}\n")),
    )
}

fn text(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// 501 for methods this server does not know at all (RFC 9110 §9.1), `None` otherwise.
fn refuse_unknown_method(method: &Method) -> Option<Response<Body>> {
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    (!known.contains(method)).then(|| error_response(StatusCode::NOT_IMPLEMENTED))
}

/// `None` for GET and HEAD; otherwise 501 (unknown method) or 405 with `Allow`.
fn read_only_method(method: &Method) -> Option<Response<Body>> {
    if method == Method::GET || method == Method::HEAD {
        return None;
    }
    Some(refuse_unknown_method(method).unwrap_or_else(|| {
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        response
    }))
}

/// `/bytes/N`.
fn pattern_response(count: u64) -> Response<Body> {
    let mut response = Response::new(Body::new(PatternSource { remaining: count }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// 65,520 bytes (a multiple of 26) of `abc…zabc…`, so every chunk starts at `a`.
static PATTERN: [u8; 65_520] = {
    let mut pattern = [0u8; 65_520];
    let mut i = 0;
    while i < pattern.len() {
        pattern[i] = b'a' + (i % 26) as u8;
        i += 1;
    }
    pattern
};

/// Streams `remaining` bytes of [`PATTERN`] without copying.
struct PatternSource {
    remaining: u64,
}

impl http_body::Body for PatternSource {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = self.remaining.min(PATTERN.len() as u64) as usize;
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&PATTERN[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

/// Streams exactly `remaining` bytes from a reader; a short read is an error (the file
/// shrank while being sent), which aborts the response rather than truncating it.
struct ReaderSource<R> {
    reader: R,
    remaining: u64,
}

impl<R: AsyncRead + Send + Unpin + 'static> http_body::Body for ReaderSource<R> {
    type Data = Bytes;
    type Error = BoxError;

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = self.remaining.min(FILE_CHUNK as u64) as usize;
        let mut chunk = vec![0u8; want];
        let mut buf = ReadBuf::new(&mut chunk);
        match Pin::new(&mut self.reader).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(error)) => Poll::Ready(Some(Err(error.into()))),
            Poll::Ready(Ok(())) => {
                let filled = buf.filled().len();
                if filled == 0 {
                    return Poll::Ready(Some(Err("file ended before its length".into())));
                }
                chunk.truncate(filled);
                self.remaining -= filled as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
            }
        }
    }
}

/// Maps a request path onto `root`, segment by segment (as nginx does):
/// 1. a malformed escape, or one that decodes to NUL or `/` (which would change the path's
///    meaning: a NUL ends a file name, an encoded `/` joins two segments into one) is 400;
/// 2. `.` and empty segments are skipped; `..` removes the previous segment, and a `..`
///    that would climb above the root is 400;
/// 3. a segment that is not UTF-8 names no file this server has: 404.
fn resolve(root: &Path, path: &str) -> Result<PathBuf, StatusCode> {
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        let decoded = percent_decode_segment(raw).ok_or(StatusCode::BAD_REQUEST)?;
        let segment = String::from_utf8(decoded).map_err(|_| StatusCode::NOT_FOUND)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(StatusCode::BAD_REQUEST)?;
            }
            _ => segments.push(segment),
        }
    }
    let mut resolved = root.to_path_buf();
    resolved.extend(segments);
    Ok(resolved)
}

/// Percent-decodes one path segment; `None` for a malformed escape, or one that decodes to
/// NUL or `/`.
fn percent_decode_segment(segment: &str) -> Option<Vec<u8>> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte == 0 || byte == b'/' {
                return None;
            }
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}

/// GET / HEAD of a file under `root` (a directory serves its `index.html`), with
/// `Last-Modified` and `If-Modified-Since` (RFC 9110 §13.1.3).
async fn static_file(root: Arc<Path>, request: Request<Incoming>) -> Response<Body> {
    if let Some(refusal) = read_only_method(request.method()) {
        return refusal;
    }
    let headers = request.headers();
    let mut file_path = match resolve(&root, request.uri().path()) {
        Ok(path) => path,
        Err(status) => return error_response(status),
    };
    let mut metadata = match tokio::fs::metadata(&file_path).await {
        Ok(metadata) => metadata,
        Err(_) => return error_response(StatusCode::NOT_FOUND),
    };
    if metadata.is_dir() {
        file_path.push("index.html");
        metadata = match tokio::fs::metadata(&file_path).await {
            Ok(metadata) if metadata.is_file() => metadata,
            _ => return error_response(StatusCode::NOT_FOUND),
        };
    }
    let modified = metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let last_modified = modified.map(|secs| {
        HeaderValue::from_bytes(&format_http_date(secs)).expect("an HTTP-date is a valid value")
    });
    let not_modified = match (modified, headers.get(header::IF_MODIFIED_SINCE)) {
        (Some(secs), Some(since)) if !headers.contains_key(header::IF_NONE_MATCH) => {
            parse_http_date(since.as_bytes()).is_some_and(|since| secs <= since)
        }
        _ => false,
    };
    let mut response = if not_modified {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let file = match tokio::fs::File::open(&file_path).await {
            Ok(file) => file,
            Err(_) => return error_response(StatusCode::NOT_FOUND),
        };
        let length = metadata.len();
        let mut response = Response::new(Body::new(ReaderSource {
            reader: file,
            remaining: length,
        }));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(&file_path)),
        );
        response
    };
    if let Some(value) = last_modified {
        response.headers_mut().insert(header::LAST_MODIFIED, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_never_leave_the_root() {
        let root = Path::new("/srv/www");
        let cases: &[(&str, Result<&str, StatusCode>)] = &[
            ("/a/b.txt", Ok("/srv/www/a/b.txt")),
            ("/", Ok("/srv/www")),
            ("/a%20b", Ok("/srv/www/a b")),
            ("/./a", Ok("/srv/www/a")),
            ("/a//b", Ok("/srv/www/a/b")),
            ("/a/../b", Ok("/srv/www/b")),
            ("/a/%2e%2e/b", Ok("/srv/www/b")),
            ("/../etc/passwd", Err(StatusCode::BAD_REQUEST)),
            ("/a/../../x", Err(StatusCode::BAD_REQUEST)),
            ("/%2e%2e/etc", Err(StatusCode::BAD_REQUEST)),
            ("/path%00.html", Err(StatusCode::BAD_REQUEST)),
            ("/a%2fb", Err(StatusCode::BAD_REQUEST)),
            ("/a%2F..%2F..%2Fetc", Err(StatusCode::BAD_REQUEST)),
            ("/%zz", Err(StatusCode::BAD_REQUEST)),
            ("/%4", Err(StatusCode::BAD_REQUEST)),
            ("/%c3", Err(StatusCode::NOT_FOUND)),
        ];
        for (path, expected) in cases {
            assert_eq!(&resolve(root, path), &expected.map(PathBuf::from), "{path}");
        }
    }

    #[test]
    fn pattern_chunks_keep_the_pattern_aligned() {
        assert_eq!(PATTERN.len() % 26, 0);
        assert_eq!(&PATTERN[..3], b"abc");
        assert_eq!(PATTERN[25], b'z');
        assert_eq!(PATTERN[26], b'a');
    }
}
