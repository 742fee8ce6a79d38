//! Panics in user code — a service's `poll_ready` or `call`, the future it returns, the
//! response body it hands back — caught where a connection drives them, so that one faulty
//! handler ends its own request, never the server or other clients' requests.
//!
//! Owns the catching ([`catching`] for a call, [`CatchUnwind`] for a future: once per poll,
//! nothing per request on the way) and what a panic becomes ([`Panicked`]). What a
//! connection does with one (a 500 when nothing was sent, a close, a reset stream; counted
//! and logged) is the connection's.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A panic caught while serving: its message.
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
}

/// Runs `f`, turning a panic in it into [`Panicked`]. (What it touched is the panicking
/// request's: the caller answers that request and never polls it again.)
pub(crate) fn catching<T>(f: impl FnOnce() -> T) -> Result<T, Panicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(Panicked::from_payload)
}

pin_project_lite::pin_project! {
    /// A future whose panics end it with [`Panicked`] (it must not be polled after that).
    pub(crate) struct CatchUnwind<F> {
        #[pin]
        inner: F,
    }
}

impl<F> CatchUnwind<F> {
    pub(crate) fn new(inner: F) -> Self {
        CatchUnwind { inner }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Panicked>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.project().inner;
        match catching(|| inner.poll(cx)) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panicked) => Poll::Ready(Err(panicked)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_is_an_error_with_its_message() {
        assert_eq!(catching(|| 7).unwrap(), 7);
        let panicked = catching(|| panic!("broke {}", 42)).unwrap_err();
        assert_eq!(panicked.message, "broke 42");
        let panicked = catching(|| std::panic::panic_any(5u8)).unwrap_err();
        assert_eq!(panicked.message, "a panic without a message");
    }

    #[tokio::test]
    async fn a_future_that_panics_ends_with_the_panic() {
        let fine = CatchUnwind::new(async { 1 }).await;
        assert_eq!(fine.unwrap(), 1);
        let broke = CatchUnwind::new(async {
            tokio::task::yield_now().await;
            panic!("later")
        });
        let panicked: Panicked = broke.await.unwrap_err();
        assert_eq!(panicked.message, "later");
    }
}
