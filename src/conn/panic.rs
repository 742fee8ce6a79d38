//! Panics in user code — a service's `poll_ready` or `call`, the future it returns, the
//! response body it hands back — caught where a connection drives them, so that one faulty
//! handler ends its own request, never the server or other clients' requests.
//!
//! Owns the catching ([`CatchPanic`] around a service, [`CatchBody`] around its bodies) and
//! the error a panic becomes ([`Panicked`]). What a connection does with one (a 500 when
//! nothing was sent, a close, a reset stream; counted and logged) is the connection's.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tower_service::Service;

use crate::error::BoxError;

/// A panic caught in user code, as an error: the panic's message.
#[derive(Debug, thiserror::Error)]
#[error("handler panicked: {message}")]
pub struct Panicked {
    /// What the panic said (`panic!`'s text), or a placeholder for other payloads.
    pub message: String,
}

impl Panicked {
    fn from_payload(payload: Box<dyn Any + Send>) -> Self {
        let message = match payload.downcast::<String>() {
            Ok(text) => *text,
            Err(payload) => match payload.downcast::<&'static str>() {
                Ok(text) => (*text).to_string(),
                Err(_) => "a panic without a message".to_string(),
            },
        };
        Panicked { message }
    }

    /// The panic `error` is, if it is one.
    pub fn of(error: &BoxError) -> Option<&Panicked> {
        error.downcast_ref()
    }
}

/// Runs `f`, turning a panic in it into [`Panicked`]. (The code catching is ours: what it
/// touched of the panicking handler is dropped right after, never used again.)
fn catching<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(Panicked::from_payload)
}

/// A service whose panics become errors ([`Panicked`], boxed) and whose response bodies
/// are [`CatchBody`].
#[derive(Debug, Clone)]
pub struct CatchPanic<S> {
    inner: S,
}

impl<S> CatchPanic<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        CatchPanic { inner }
    }
}

impl<S, B> Service<Request<crate::conn::Incoming>> for CatchPanic<S>
where
    S: Service<Request<crate::conn::Incoming>, Response = Response<B>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<CatchBody<B>>;
    type Error = BoxError;
    type Future = CatchFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        match catching(|| self.inner.poll_ready(cx)) {
            Ok(ready) => ready.map_err(Into::into),
            Err(panicked) => Poll::Ready(Err(panicked.into())),
        }
    }

    fn call(&mut self, request: Request<crate::conn::Incoming>) -> Self::Future {
        CatchFuture {
            state: match catching(|| self.inner.call(request)) {
                Ok(future) => CallState::Running { future },
                Err(panicked) => CallState::Panicked {
                    panicked: Some(panicked),
                },
            },
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of a [`CatchPanic`] service.
    pub struct CatchFuture<F> {
        #[pin]
        state: CallState<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = CallStateProj]
    enum CallState<F> {
        Running { #[pin] future: F },
        Panicked { panicked: Option<Panicked> },
    }
}

impl<F, B, E> Future for CatchFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<CatchBody<B>>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            CallStateProj::Running { future } => match catching(|| future.poll(cx)) {
                Ok(Poll::Pending) => Poll::Pending,
                Ok(Poll::Ready(answer)) => Poll::Ready(
                    answer
                        .map(|response| response.map(CatchBody::new))
                        .map_err(Into::into),
                ),
                Err(panicked) => Poll::Ready(Err(panicked.into())),
            },
            CallStateProj::Panicked { panicked } => Poll::Ready(Err(panicked
                .take()
                .expect("a CatchFuture is not polled after it is ready")
                .into())),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body whose panics become errors ([`Panicked`], boxed). After a panic it
    /// ends: it is never polled into the panicking code again.
    pub struct CatchBody<B> {
        #[pin]
        inner: B,
        panicked: bool,
    }
}

impl<B> CatchBody<B> {
    fn new(inner: B) -> Self {
        CatchBody {
            inner,
            panicked: false,
        }
    }
}

impl<B> HttpBody for CatchBody<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.panicked {
            return Poll::Ready(None);
        }
        match catching(|| this.inner.poll_frame(cx)) {
            Ok(frame) => frame.map(|frame| frame.map(|frame| frame.map_err(Into::into))),
            Err(panicked) => {
                *this.panicked = true;
                Poll::Ready(Some(Err(panicked.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.panicked || catching(|| self.inner.is_end_stream()).unwrap_or(true)
    }

    fn size_hint(&self) -> SizeHint {
        catching(|| self.inner.size_hint()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    struct Bomb;

    impl HttpBody for Bomb {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            panic!("body {}", 42)
        }
    }

    #[tokio::test]
    async fn a_panicking_body_fails_once_then_ends() {
        let mut body = CatchBody::new(Bomb);
        let error = body.frame().await.unwrap().unwrap_err();
        assert_eq!(Panicked::of(&error).unwrap().message, "body 42");
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn a_panicking_call_or_future_is_an_error() {
        let mut sync_panic = CatchPanic::new(crate::service::service_fn(
            |_: Request<crate::conn::Incoming>| -> std::future::Ready<Result<Response<Bomb>, BoxError>> {
                panic!("in call")
            },
        ));
        let error = sync_panic
            .call(Request::new(crate::conn::Incoming::empty()))
            .await
            .err()
            .expect("a panic is an error");
        assert_eq!(Panicked::of(&error).unwrap().message, "in call");

        let mut async_panic = CatchPanic::new(crate::service::service_fn(
            |_: Request<crate::conn::Incoming>| async {
                if true {
                    panic!("in the future");
                }
                Ok::<_, BoxError>(Response::new(Bomb))
            },
        ));
        let error = async_panic
            .call(Request::new(crate::conn::Incoming::empty()))
            .await
            .err()
            .expect("a panic is an error");
        assert_eq!(Panicked::of(&error).unwrap().message, "in the future");
    }
}
