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
