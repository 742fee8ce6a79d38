//! The server boundary: a tower [`Service`] from `Request<Incoming>` to `Response<B>`, as
//! hyper has it, and [`service_fn`] to make one from a closure. Everything that serves
//! requests (the listener, [`crate::conn::serve_connection`]) takes a service; an axum
//! `Router` or a tower layer stack plugs in as it is.
//!
//! Owns only the adapter; it must not know about connections.

use std::future::Future;
use std::task::{Context, Poll};

use http::{Request, Response};
pub use tower_service::Service;

use crate::conn::Incoming;

/// A service made from a closure: `service_fn(|request| async { Ok(response) })`.
///
/// ```
/// use hopline::{Body, Incoming, service::service_fn};
/// use http::{Request, Response};
///
/// let hello = service_fn(|_request: Request<Incoming>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Body::from("hello")))
/// });
/// # let _ = hello;
/// ```
pub fn service_fn<F, Fut, B, E>(f: F) -> ServiceFn<F>
where
    F: FnMut(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    ServiceFn { f }
}

/// The service [`service_fn`] makes.
#[derive(Debug, Clone, Copy)]
pub struct ServiceFn<F> {
    f: F,
}

impl<F, Fut, B, E> Service<Request<Incoming>> for ServiceFn<F>
where
    F: FnMut(Request<Incoming>) -> Fut,
    Fut: Future<Output = Result<Response<B>, E>>,
{
    type Response = Response<B>;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), E>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Incoming>) -> Fut {
        (self.f)(request)
    }
}

/// What a [`crate::server::Server`] can run, in one bound: a service from
/// `Request<Incoming>` to `Response<B>` with any `http_body::Body` `B`, its errors boxable,
/// cloned for each connection and moved across threads. Every such service has it (a
/// blanket implementation); write `S: HttpService` instead of spelling the bounds out.
pub trait HttpService:
    Service<
        Request<Incoming>,
        Response = Response<Self::ResponseBody>,
        Error = Self::Failure,
        Future: Send,
    > + Clone
    + Send
    + 'static
{
    /// The response body.
    type ResponseBody: http_body::Body<Data = bytes::Bytes, Error = Self::BodyError>
        + Send
        + 'static;
    /// What the response body fails with.
    type BodyError: Into<crate::error::BoxError>;
    /// What the service fails with (answered 500).
    type Failure: Into<crate::error::BoxError>;
}

impl<S, B> HttpService for S
where
    S: Service<Request<Incoming>, Response = Response<B>, Future: Send> + Clone + Send + 'static,
    S::Error: Into<crate::error::BoxError>,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<crate::error::BoxError>,
{
    type ResponseBody = B;
    type BodyError = B::Error;
    type Failure = S::Error;
}
