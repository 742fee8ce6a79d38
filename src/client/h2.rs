//! The client's HTTP/2 hops: requests over shared connections from the shared pool, a
//! request the server left unprocessed (refused stream, above a `GOAWAY`'s last stream)
//! sent again on another connection when its body is in memory, and [`HopProtocol::Auto`]
//! learning per origin whether ALPN gives HTTP/2.
//!
//! Owns the HTTP/2 branch of the connection choice; the exchange itself is
//! [`crate::conn::h2::client`]'s. It must not parse HTTP.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use http::{Request, Response, Uri};

use super::outgoing::{Outgoing, RequestBody, Upload};
use super::{Client, HopProtocol, Mode};
use crate::conn::Incoming;
use crate::conn::client::ClientConn;
use crate::conn::h2::client::{H2Client, H2Failure};
use crate::error::{Error, ErrorKind, Side};
use crate::pool::Key;
use crate::pool::shared::{Shareable, SharedCheckout, SharedConfig, SharedPool};

impl Shareable for H2Client {
    fn is_open(&self) -> bool {
        H2Client::is_open(self)
    }

    fn in_flight(&self) -> usize {
        H2Client::in_flight(self)
    }

    fn has_capacity(&self) -> bool {
        H2Client::has_capacity(self)
    }
}

/// The client's HTTP/2 state: the shared connections, and the origins that answered
/// ALPN with HTTP/1.1 (auto mode).
pub(crate) struct H2Hops {
    pub pool: SharedPool<Key, H2Client>,
    http1_only: Mutex<HashSet<Key>>,
}

impl H2Hops {
    pub fn new(config: SharedConfig) -> Self {
        H2Hops {
            pool: SharedPool::new(config),
            http1_only: Mutex::new(HashSet::new()),
        }
    }

    fn learned_http1(&self, key: &Key) -> bool {
        self.http1_only
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(key)
    }

    fn learn_http1(&self, key: &Key) {
        self.http1_only
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.clone());
    }
}

/// A connection that did not become HTTP/2.
pub(crate) enum NotH2 {
    /// ALPN chose HTTP/1.1 (auto mode: send over HTTP/1.1 from now on, starting with this
    /// connection, so that learning costs no second handshake).
    Http1(Box<ClientConn>),
    /// It failed.
    Failed(Error),
}

impl From<Error> for NotH2 {
    fn from(error: Error) -> Self {
        NotH2::Failed(error)
    }
}

impl Client {
    /// Whether this request goes over HTTP/2: the client's protocol, and in auto mode an
    /// `https://` origin not known to answer with HTTP/1.1. Protocol switches and tunnels
    /// stay on HTTP/1.1 (HTTP/2 has neither `Upgrade` nor a plain CONNECT).
    pub(super) fn goes_h2(&self, head: &Outgoing) -> bool {
        !head.upgrade
            && match self.inner.options.protocol {
                HopProtocol::Http1 => false,
                HopProtocol::Http2 => true,
                HopProtocol::Auto => head.key.is_tls() && !self.inner.h2.learned_http1(&head.key),
            }
    }

    /// Sends over HTTP/2. A body in memory is sent again once, on another connection, if
    /// the server did not process it; a streamed one never is. Gives the body back when
    /// the origin speaks HTTP/1.1 only (auto mode) for it to go that way, with the
    /// connection that found it out.
    pub(super) async fn send_h2(&self, head: &Outgoing, body: RequestBody) -> H2Outcome {
        let conn = match self.h2_conn(&head.key).await {
            Ok(conn) => conn,
            Err(NotH2::Http1(conn)) => return H2Outcome::Http1(body, conn),
            Err(NotH2::Failed(error)) => return H2Outcome::Done(Box::new(Err(error))),
        };
        let bytes = match body {
            RequestBody::Stream(upload) => {
                let sent = self.send_on(&conn, head, upload, false).await;
                return H2Outcome::Done(Box::new(sent.map_err(|f| f.error)));
            }
            RequestBody::Whole(bytes) => bytes,
        };
        let error = match self.send_on(&conn, head, bytes.clone().into(), false).await {
            Err(H2Failure {
                unprocessed: true,
                error,
            }) => error,
            sent => return H2Outcome::Done(Box::new(sent.map_err(|f| f.error))),
        };
        // RFC 9113 §8.7: not processed, so safe to send again; not on this connection,
        // which is going away.
        tracing::debug!(%error, "HTTP/2 request unprocessed; retrying");
        conn.retire();
        self.inner.stats.retries.fetch_add(1, Ordering::Relaxed);
        let again = match self.h2_conn(&head.key).await {
            Ok(conn) => self.send_on(&conn, head, bytes.into(), true).await,
            Err(NotH2::Http1(conn)) => return H2Outcome::Http1(RequestBody::Whole(bytes), conn),
            Err(NotH2::Failed(error)) => return H2Outcome::Done(Box::new(Err(error))),
        };
        H2Outcome::Done(Box::new(again.map_err(|f| f.error)))
    }

    async fn send_on(
        &self,
        conn: &H2Client,
        head: &Outgoing,
        upload: Upload,
        retried: bool,
    ) -> Result<Response<Incoming>, H2Failure> {
        self.inner.stats.requests.fetch_add(1, Ordering::Relaxed);
        let request = h2_request(head, upload).map_err(|error| H2Failure {
            error,
            unprocessed: false,
        })?;
        conn.send(request, retried).await
    }

    /// A shared connection to `key` (a new one per request in close mode).
    async fn h2_conn(&self, key: &Key) -> Result<H2Client, NotH2> {
        if self.inner.options.mode == Mode::Close {
            return Box::pin(self.open_h2(key)).await;
        }
        match self.inner.h2.pool.checkout(key).await {
            SharedCheckout::Ready(conn) => Ok(conn),
            SharedCheckout::Connect(slot) => Ok(slot.fill(Box::pin(self.open_h2(key)).await?)),
        }
    }

    /// Opens an HTTP/2 connection: ALPN must agree on `h2` over TLS; plaintext speaks it
    /// with prior knowledge.
    async fn open_h2(&self, key: &Key) -> Result<H2Client, NotH2> {
        let (stream, addr, id) = self.dial(key).await?;
        let alpn = stream.tls_info().map(|info| info.alpn);
        if let Some(alpn) = alpn
            && alpn.as_deref() != Some("h2")
        {
            if self.inner.options.protocol == HopProtocol::Auto {
                self.inner.h2.learn_http1(key);
                let conn =
                    ClientConn::from_stream(stream, addr, id, self.inner.options.conn.clone());
                self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
                return Err(NotH2::Http1(Box::new(conn)));
            }
            // As if the server had refused HTTP/2: it needs HTTP/1.1 (RFC 9113 §7).
            let refused = h2::Error::from(h2::Reason::HTTP_1_1_REQUIRED);
            return Err(Error::new(Side::Upstream, refused).into());
        }
        let options = &self.inner.options;
        let conn = H2Client::handshake(
            stream,
            id,
            addr,
            &options.http2,
            options.conn.write_timeout,
            &options.conn.hooks,
        )
        .await?;
        self.inner.stats.connections.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }
}

/// What sending over HTTP/2 came to.
pub(super) enum H2Outcome {
    /// Sent (or failed). Boxed: the response is large, and this is the common case of a
    /// rarely taken branch.
    Done(Box<Result<Response<Incoming>, Error>>),
    /// The origin answered ALPN with HTTP/1.1: send the body that way, on this connection
    /// (its TLS handshake is done).
    Http1(RequestBody, Box<ClientConn>),
}

/// The request as the HTTP/2 connection takes it: the absolute URI back together from
/// the key, the URI's authority and the target.
fn h2_request(head: &Outgoing, body: Upload) -> Result<Request<Upload>, Error> {
    let invalid = |e: http::Error| Error::new(Side::Local, ErrorKind::Body(e.into()));
    let authority = head.authority.as_ref().map_or_else(
        || format!("{}:{}", head.key.host(), head.key.port()),
        |a| a.to_string(),
    );
    let uri = Uri::builder()
        .scheme(head.key.scheme())
        .authority(authority)
        .path_and_query(head.target.as_ref())
        .build()
        .map_err(invalid)?;
    let mut request = Request::builder()
        .method(head.method.clone())
        .uri(uri)
        .body(body)
        .map_err(invalid)?;
    *request.headers_mut() = head.headers.clone();
    Ok(request)
}
