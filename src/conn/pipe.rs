//! A one-frame channel for body frames with a "want" signal: the receiver asking for a
//! frame is visible to the sender, so a connection reads a request body from its socket
//! only when someone reads the body (and sends `100 Continue` only then), and at most one
//! frame is ever in transit (backpressure, bounded memory).
//!
//! Owns the hand-over between whoever produces frames (a server connection's loop, a
//! pipelined client's dispatcher, a [`super::body::BodySender`]) and the [`Incoming`] body
//! that reads them. It must not know where frames come from.
//!
//! [`Incoming`]: super::body::Incoming

use std::future::poll_fn;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::body::BodyClosed;
use crate::error::{Error, ErrorKind, Side};

/// A channel for one body; `length` is its exact length if known (the receiver's size
/// hint), `side` the side blamed if the sender goes away without finishing.
pub(crate) fn channel(length: Option<u64>, side: Side) -> (Sender, Receiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(Slot {
            slot: None,
            end: End::Open,
            wanted: false,
            receiver_gone: false,
            rx_waker: None,
            tx_waker: None,
        }),
    });
    (
        Sender {
            shared: shared.clone(),
            ended: false,
        },
        Receiver {
            shared,
            length,
            received: 0,
            side,
        },
    )
}

struct Shared {
    state: Mutex<Slot>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Slot {
    /// The frame in transit.
    slot: Option<Frame<Bytes>>,
    /// How the sender ended, if it did.
    end: End,
    /// The receiver asked for a frame and found the slot empty.
    wanted: bool,
    receiver_gone: bool,
    rx_waker: Option<Waker>,
    tx_waker: Option<Waker>,
}

/// How the sending side ended.
enum End {
    Open,
    /// Every frame was sent.
    Finished,
    /// Cut short with this error (taken when the receiver sees it).
    Failed(Option<Error>),
    /// The sender was dropped without finishing.
    Dropped,
}

fn wake(waker: &mut Option<Waker>) {
    if let Some(waker) = waker.take() {
        waker.wake();
    }
}

/// The producing half.
pub(crate) struct Sender {
    shared: Arc<Shared>,
    ended: bool,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl Sender {
    /// Ready once the receiver wants a frame and the slot is free; `Err` once the receiver
    /// is gone (nobody will read the body).
    pub(crate) fn poll_want(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyClosed>> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Poll::Ready(Err(BodyClosed));
        }
        if state.wanted && state.slot.is_none() {
            return Poll::Ready(Ok(()));
        }
        state.tx_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Ready once the slot is free (whether or not the receiver is asking yet).
    fn poll_free(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BodyClosed>> {
        let mut state = self.shared.lock();
        if state.receiver_gone {
            return Poll::Ready(Err(BodyClosed));
        }
        if state.slot.is_none() {
            return Poll::Ready(Ok(()));
        }
        state.tx_waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.lock().receiver_gone
    }

    /// Puts a frame in the slot (call when [`Sender::poll_want`] is ready; a frame already
    /// there is replaced only by a caller that did not ask).
    pub(crate) fn put(&mut self, frame: Frame<Bytes>) {
        let mut state = self.shared.lock();
        state.slot = Some(frame);
        state.wanted = false;
        wake(&mut state.rx_waker);
    }

    /// Sends a frame, waiting for the slot to be free.
    pub(crate) async fn send(&mut self, frame: Frame<Bytes>) -> Result<(), BodyClosed> {
        poll_fn(|cx| self.poll_free(cx)).await?;
        self.put(frame);
        Ok(())
    }

    /// Ends the body normally.
    pub(crate) fn finish(mut self) {
        self.end(End::Finished);
    }

    /// Ends the body with an error.
    pub(crate) fn abort(mut self, error: Error) {
        self.end(End::Failed(Some(error)));
    }

    fn end(&mut self, end: End) {
        self.ended = true;
        let mut state = self.shared.lock();
        state.end = end;
        wake(&mut state.rx_waker);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if !self.ended {
            self.end(End::Dropped);
        }
    }
}

/// The consuming half (inside an [`Incoming`](super::body::Incoming)).
pub(crate) struct Receiver {
    shared: Arc<Shared>,
    length: Option<u64>,
    received: u64,
    side: Side,
}

impl Receiver {
    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut state = self.shared.lock();
        if let Some(frame) = state.slot.take() {
            if let Some(data) = frame.data_ref() {
                self.received += data.len() as u64;
            }
            wake(&mut state.tx_waker);
            return Poll::Ready(Some(Ok(frame)));
        }
        match &mut state.end {
            End::Finished => Poll::Ready(None),
            End::Failed(error) => Poll::Ready(error.take().map(Err)),
            End::Dropped => {
                state.end = End::Failed(None);
                Poll::Ready(Some(Err(Error::new(
                    self.side,
                    ErrorKind::Closed("before the body was complete"),
                ))))
            }
            End::Open => {
                state.wanted = true;
                state.rx_waker = Some(cx.waker().clone());
                wake(&mut state.tx_waker);
                Poll::Pending
            }
        }
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        let state = self.shared.lock();
        state.slot.is_none() && matches!(state.end, End::Finished)
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.received)),
            None => SizeHint::default(),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.slot = None;
        wake(&mut state.tx_waker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn the_sender_sees_the_receiver_want_and_go() {
        let (mut tx, mut rx) = channel(Some(5), Side::Client);
        assert!(tx.poll_want(&mut cx()).is_pending(), "nobody asked yet");
        assert!(rx.poll_frame(&mut cx()).is_pending());
        assert!(tx.poll_want(&mut cx()).is_ready());
        tx.put(Frame::data(Bytes::from_static(b"hello")));
        assert!(tx.poll_want(&mut cx()).is_pending(), "the slot is full");
        let Poll::Ready(Some(Ok(frame))) = rx.poll_frame(&mut cx()) else {
            panic!("a frame");
        };
        assert_eq!(frame.into_data().unwrap(), "hello");
        assert_eq!(rx.size_hint().exact(), Some(0));
        tx.finish();
        assert!(matches!(rx.poll_frame(&mut cx()), Poll::Ready(None)));
        let (mut tx, rx) = channel(None, Side::Client);
        drop(rx);
        assert!(matches!(
            tx.poll_want(&mut cx()),
            Poll::Ready(Err(BodyClosed))
        ));
    }

    #[test]
    fn a_sender_dropped_unfinished_is_an_error_on_its_side() {
        let (tx, mut rx) = channel(None, Side::Upstream);
        drop(tx);
        let Poll::Ready(Some(Err(error))) = rx.poll_frame(&mut cx()) else {
            panic!("an error");
        };
        assert_eq!(error.side, Side::Upstream);
        assert!(matches!(rx.poll_frame(&mut cx()), Poll::Ready(None)));
    }
}
