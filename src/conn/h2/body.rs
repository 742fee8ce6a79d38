//! Bodies over HTTP/2 streams, with backpressure both ways: [`RecvBody`] hands a received
//! body out as `http_body::Body` and reopens the peer's window only for what was handed
//! out; [`send_body`] sends a body's frames only as the peer's window allows, waiting for
//! capacity at most the write timeout (a peer that never opens its window is a slow
//! reader, not a reason to buffer).

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use h2::{RecvStream, SendStream};
use http_body::{Body as HttpBody, Frame, SizeHint};

use crate::conn::status::{ConnSide, Http2Event, Observer};
use crate::error::{BoxError, Error, ErrorKind, Side};
use crate::wire::ParseError;

/// A body received on an HTTP/2 stream: a server's request body, a client's response
/// body. Errors are the peer's (`side`); more than `limit` bytes fails with 413's error.
pub(crate) struct RecvBody {
    stream: RecvStream,
    side: Side,
    /// The exact length, when `Content-Length` said it (`h2` holds the peer to it).
    length: Option<u64>,
    received: u64,
    limit: Option<u64>,
    data_done: bool,
    /// Longest wait for the next frame, and its timer (made at the first wait).
    timeout: Option<(Duration, Option<Pin<Box<tokio::time::Sleep>>>)>,
    /// Counts the stream as in flight until the body is done with.
    in_flight: Option<InFlight>,
}

/// One request in flight on a shared client connection: counted off when dropped, and
/// once its stream is open, the stream's end reported to the observer (a reset, by whom).
pub(crate) struct InFlight {
    count: Arc<AtomicUsize>,
    /// Set when the stream opened, if anything observes.
    observer: Option<Arc<dyn Observer>>,
    end: StreamEnd,
}

/// How a client's stream ended, as far as it is known when it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamEnd {
    /// Not ended: dropping it resets the stream (`h2` sends `CANCEL`).
    Open,
    /// The response ended whole.
    Complete,
    /// The server reset the stream, or went away without processing it.
    PeerReset,
    /// The connection failed under it: no reset on either side.
    Failed,
}

impl InFlight {
    pub(crate) fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        InFlight {
            count: count.clone(),
            observer: None,
            end: StreamEnd::Open,
        }
    }

    /// The request's stream is open: it is reported now, and its end when dropped.
    pub(crate) fn opened(&mut self, observer: Option<&Arc<dyn Observer>>) {
        if let Some(observer) = observer {
            observer.http2(ConnSide::Upstream, Http2Event::StreamOpened);
            self.observer = Some(observer.clone());
        }
    }

    /// The response ended whole.
    pub(crate) fn completed(&mut self) {
        self.end = StreamEnd::Complete;
    }

    /// The stream failed with `error`: reset by the server, or lost with its connection.
    pub(crate) fn failed(&mut self, error: &h2::Error) {
        // Any other error is this side's (a timeout, a limit): the stream stays open, and
        // dropping it resets it.
        if self.end != StreamEnd::Open {
            return;
        }
        if error.is_remote() && (error.is_reset() || error.is_go_away()) {
            self.end = StreamEnd::PeerReset;
        } else if error.is_io() || error.is_go_away() {
            self.end = StreamEnd::Failed;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        let Some(observer) = &self.observer else {
            return;
        };
        match self.end {
            StreamEnd::Open => {
                observer.http2(ConnSide::Upstream, Http2Event::Reset { by_peer: false })
            }
            StreamEnd::PeerReset => {
                observer.http2(ConnSide::Upstream, Http2Event::Reset { by_peer: true })
            }
            StreamEnd::Complete | StreamEnd::Failed => {}
        }
        observer.http2(ConnSide::Upstream, Http2Event::StreamClosed);
    }
}

impl RecvBody {
    pub(crate) fn new(
        stream: RecvStream,
        side: Side,
        length: Option<u64>,
        limit: Option<u64>,
    ) -> Self {
        RecvBody {
            stream,
            side,
            length,
            received: 0,
            limit,
            data_done: false,
            timeout: None,
            in_flight: None,
        }
    }

    /// Keeps `in_flight` until the body is done with.
    pub(crate) fn counting(mut self, in_flight: InFlight) -> Self {
        self.in_flight = Some(in_flight);
        self
    }

    /// Fails the body if the peer sends nothing for `timeout` while it is being read (a
    /// stalled upload is a slowloris too).
    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some((timeout, None));
        self
    }

    /// Ready with the timeout's error once the peer has been silent too long.
    fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Poll<Error> {
        let Some((timeout, timer)) = &mut self.timeout else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::now() + *timeout;
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Error::new(
            self.side,
            ErrorKind::Timeout("reading the body"),
        ))
    }

    /// The peer sent something: the silence timer starts again at the next wait.
    fn progressed(&mut self) {
        if let Some((timeout, Some(timer))) = &mut self.timeout {
            timer.as_mut().reset(tokio::time::Instant::now() + *timeout);
        }
    }

    fn fail(&self, error: h2::Error) -> Error {
        Error::new(self.side, ErrorKind::Http2(error))
    }
}

impl HttpBody for RecvBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let polled = if self.data_done {
            self.stream.poll_trailers(cx).map(Received::Trailers)
        } else {
            self.stream.poll_data(cx).map(Received::Data)
        };
        let Poll::Ready(polled) = polled else {
            return self.poll_stalled(cx).map(|error| Some(Err(error)));
        };
        self.progressed();
        Poll::Ready(match polled {
            Received::Data(Some(Ok(data))) => {
                // The window reopens only for what the reader takes: backpressure.
                let _ = self.stream.flow_control().release_capacity(data.len());
                self.received += data.len() as u64;
                // A reader may stop at the last byte (`is_end_stream`) without polling on.
                let this = &mut *self;
                if let Some(in_flight) = &mut this.in_flight
                    && this.stream.is_end_stream()
                {
                    in_flight.completed();
                }
                match self.limit {
                    Some(limit) if self.received > limit => {
                        let error = ParseError::BodyTooLarge { limit };
                        Some(Err(Error::new(self.side, error)))
                    }
                    _ => Some(Ok(Frame::data(data))),
                }
            }
            Received::Data(Some(Err(error))) | Received::Trailers(Err(error)) => {
                if let Some(in_flight) = &mut self.in_flight {
                    in_flight.failed(&error);
                }
                Some(Err(self.fail(error)))
            }
            Received::Data(None) => {
                self.data_done = true;
                return self.poll_frame(cx);
            }
            Received::Trailers(Ok(trailers)) => {
                if let Some(in_flight) = &mut self.in_flight {
                    in_flight.completed();
                }
                trailers.map(|t| Ok(Frame::trailers(t)))
            }
        })
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(length) => SizeHint::with_exact(length.saturating_sub(self.received)),
            None => SizeHint::default(),
        }
    }
}

/// What one poll of the stream gave.
enum Received {
    Data(Option<Result<Bytes, h2::Error>>),
    Trailers(Result<Option<http::HeaderMap>, h2::Error>),
}

/// Why a body could not be sent whole.
#[derive(Debug)]
pub(crate) enum SendFailure {
    /// The body's source failed; the stream was reset (`INTERNAL_ERROR`), so the peer never
    /// takes a truncated body for a whole one.
    Source(BoxError),
    /// The peer reset the stream or the connection went away.
    Peer(h2::Error),
    /// The peer's window stayed shut for the write timeout; the stream was reset (`CANCEL`).
    Stalled,
}

/// A body frame as polled: `None` at the end of the body.
pub(crate) type Polled = Option<Result<Frame<Bytes>, BoxError>>;

/// What [`finish_now`] did.
pub(crate) enum Finished {
    /// The body is sent whole: its data bytes.
    Sent(u64),
    /// It failed (the stream is reset or gone).
    Failed(SendFailure),
    /// Not the last frame, or no window for it yet: [`send_body`] goes on with it.
    NotYet(Polled),
}

/// Ends the stream at once if `frame` is the body's last (`last`) and the window has
/// room for it: a body in memory answered without a task or a wait.
pub(crate) fn finish_now(send: &mut SendStream<Bytes>, frame: Polled, last: bool) -> Finished {
    let frame = match frame {
        None => {
            return match send.send_data(Bytes::new(), true) {
                Ok(()) => Finished::Sent(0),
                Err(error) => Finished::Failed(SendFailure::Peer(error)),
            };
        }
        Some(Err(error)) => {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            return Finished::Failed(SendFailure::Source(error));
        }
        Some(Ok(frame)) if last => frame,
        other => return Finished::NotYet(other),
    };
    match frame.into_data() {
        Ok(data) => {
            send.reserve_capacity(data.len());
            if send.capacity() < data.len() {
                return Finished::NotYet(Some(Ok(Frame::data(data))));
            }
            let length = data.len() as u64;
            match send.send_data(data, true) {
                Ok(()) => Finished::Sent(length),
                Err(error) => Finished::Failed(SendFailure::Peer(error)),
            }
        }
        Err(frame) => Finished::NotYet(Some(Ok(frame))),
    }
}

/// Sends `body` on `send` to its end (trailers included), each piece only when the peer's
/// window has room for it, starting with `first` if a frame was already taken from it;
/// returns the data bytes sent.
pub(crate) async fn send_body<B>(
    send: &mut SendStream<Bytes>,
    body: B,
    mut first: Option<Polled>,
    write_timeout: Duration,
) -> Result<u64, SendFailure>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut sent = 0;
    loop {
        if let Some(frame) = first.take() {
            let last = body.is_end_stream();
            if let Some(done) = send_frame(send, frame, last, write_timeout, &mut sent).await? {
                return Ok(done);
            }
            continue;
        }
        let frame = poll_fn(|cx| match body.as_mut().poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(Ok(frame.map(|f| f.map_err(Into::<BoxError>::into)))),
            // While the body has nothing, watch for the peer giving up on the stream.
            Poll::Pending => match send.poll_reset(cx) {
                Poll::Ready(reset) => Poll::Ready(Err(peer_failure(reset))),
                Poll::Pending => Poll::Pending,
            },
        })
        .await?;
        let last = body.is_end_stream();
        if let Some(done) = send_frame(send, frame, last, write_timeout, &mut sent).await? {
            return Ok(done);
        }
    }
}

/// Sends one polled frame (`last`: the body has nothing after it), counting data bytes
/// into `sent`; `Some(total)` once the stream has ended.
async fn send_frame(
    send: &mut SendStream<Bytes>,
    frame: Polled,
    last: bool,
    write_timeout: Duration,
    sent: &mut u64,
) -> Result<Option<u64>, SendFailure> {
    let frame = match frame {
        None => {
            send.send_data(Bytes::new(), true)
                .map_err(SendFailure::Peer)?;
            return Ok(Some(*sent));
        }
        Some(Err(error)) => {
            send.send_reset(h2::Reason::INTERNAL_ERROR);
            return Err(SendFailure::Source(error));
        }
        Some(Ok(frame)) => frame,
    };
    match frame.into_data() {
        Ok(data) => {
            *sent += data.len() as u64;
            send_data(send, data, last, write_timeout).await?;
            Ok(last.then_some(*sent))
        }
        Err(frame) => match frame.into_trailers() {
            Ok(trailers) => {
                send.send_trailers(trailers).map_err(SendFailure::Peer)?;
                Ok(Some(*sent))
            }
            Err(_) => Ok(None),
        },
    }
}

/// Sends one piece of data as the window opens, `end` on its last frame.
async fn send_data(
    send: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    write_timeout: Duration,
) -> Result<(), SendFailure> {
    if data.is_empty() {
        return send.send_data(data, end).map_err(SendFailure::Peer);
    }
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        // Usually the window has room at once: no wait, no timer (the wait is boxed, so
        // that every response's future does not keep room for it).
        let capacity = match send.capacity() {
            0 => Box::pin(wait_for_capacity(send, write_timeout)).await?,
            n => n,
        };
        if capacity == 0 {
            continue;
        }
        let piece = data.split_to(capacity.min(data.len()));
        send.send_data(piece, end && data.is_empty())
            .map_err(SendFailure::Peer)?;
    }
    Ok(())
}

/// Waits at most `write_timeout` for the peer's window to open; the capacity it gave.
async fn wait_for_capacity(
    send: &mut SendStream<Bytes>,
    write_timeout: Duration,
) -> Result<usize, SendFailure> {
    let capacity = tokio::time::timeout(write_timeout, poll_fn(|cx| send.poll_capacity(cx)))
        .await
        .map_err(|_| {
            send.send_reset(h2::Reason::CANCEL);
            SendFailure::Stalled
        })?;
    match capacity {
        Some(Ok(n)) => Ok(n),
        Some(Err(error)) => Err(SendFailure::Peer(error)),
        None => Err(peer_failure(Ok(h2::Reason::CANCEL))),
    }
}

fn peer_failure(reset: Result<h2::Reason, h2::Error>) -> SendFailure {
    SendFailure::Peer(match reset {
        Ok(reason) => h2::Error::from(reason),
        Err(error) => error,
    })
}
