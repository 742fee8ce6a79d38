//! Pipelined connections: one dispatcher task per connection writes requests as they come
//! and reads the responses strictly in order, streaming each body to its requester.
//!
//! Owns which pipelined connection takes a request and what happens to requests in flight
//! when a connection ends. Rules:
//! - a new connection carries one request until its first response shows the server keeps
//!   connections; then up to `depth` requests are in flight;
//! - only idempotent requests are pipelined; a non-idempotent one waits for an empty
//!   connection and holds it alone;
//! - when a connection ends, requests never written are re-queued; after a response with
//!   `Connection: close` every later request is re-queued too (the server does not process
//!   them, RFC 9112 §9.6). Those re-queues are certain to be safe and are not retries; only
//!   a cap of [`MAX_REQUEUES`] guards against a pathological server;
//! - after an unexpected close, unanswered idempotent requests are re-queued once (a retry
//!   in the sense of RFC 9110 §9.2.2) and the others fail.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http::Response;
use tokio::sync::{Notify, mpsc, oneshot};

use super::outgoing::Whole;
use super::{Client, ClientOptions, Exchange};
use crate::conn::Incoming;
use crate::conn::client::{ClientConn, Persistence};
use crate::conn::pipe;
use crate::error::{Error, ErrorKind, Side};
use crate::pool::Key;
use crate::wire::{BodyFraming, ResponseHead, outgoing_request_framing};

/// Counters of the pipelined connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    /// Requests sent again because their connection ended before answering them.
    pub requeued: u64,
}

/// The pipelined connections of a client, by key.
pub(crate) struct Pipelines {
    hosts: Mutex<HashMap<Key, Host>>,
    /// Signalled whenever a connection gains room or closes.
    changed: Arc<Notify>,
    max_per_host: Option<usize>,
    requeued: Arc<AtomicU64>,
}

#[derive(Default)]
struct Host {
    conns: Vec<Handle>,
    /// Connections being opened (they count against the cap).
    connecting: usize,
}

#[derive(Clone)]
struct Handle {
    jobs: mpsc::UnboundedSender<Job>,
    load: Arc<Load>,
}

/// What a connection's dispatcher shares with the pickers.
#[derive(Default)]
struct Load {
    /// Requests assigned and not yet answered (or re-queued).
    in_flight: AtomicUsize,
    /// The server showed it keeps the connection (first response persisted).
    confirmed: AtomicBool,
    /// A non-idempotent request holds the connection alone.
    exclusive: AtomicBool,
    /// The connection ended: take no more requests.
    closed: AtomicBool,
}

impl Host {
    /// The oldest open connection that may take another request now. Oldest first, so
    /// requests pack onto few connections (pipelining wants few; the rest fall idle and
    /// retire), and a pick looks only past the full ones at the front, not at every
    /// connection (a burst can open hundreds).
    fn first_with_room(&self, depth: usize, idempotent: bool) -> Option<&Handle> {
        self.conns.iter().find(|h| h.accepts(depth, idempotent))
    }
}

impl Handle {
    /// Whether this connection may take another request now.
    fn accepts(&self, depth: usize, idempotent: bool) -> bool {
        let load = &self.load;
        let in_flight = load.in_flight.load(Ordering::Acquire);
        !load.closed.load(Ordering::Acquire)
            && !load.exclusive.load(Ordering::Acquire)
            && in_flight < depth
            && (in_flight == 0 || (idempotent && load.confirmed.load(Ordering::Acquire)))
    }
}

/// Most times one request is sent back by connections that never answered it.
pub const MAX_REQUEUES: u32 = 16;

struct Job {
    whole: Arc<Whole>,
    /// Whether it was sent back before (shown as `retried` in its [`Exchange`]).
    requeued: bool,
    reply: oneshot::Sender<Result<Response<Incoming>, JobError>>,
}

enum JobError {
    /// Never processed by the server (never written, or written after its last answer):
    /// safe to send again.
    NotProcessed,
    /// Unanswered after an unexpected close; idempotent, so it may be sent again once.
    Unanswered,
    /// Failed for good.
    Failed(Error),
}

impl Pipelines {
    pub(crate) fn new(options: &ClientOptions) -> Self {
        Pipelines {
            hosts: Mutex::new(HashMap::new()),
            changed: Arc::new(Notify::new()),
            max_per_host: options.pool.max_connections_per_host,
            requeued: Arc::new(AtomicU64::new(0)),
        }
    }

    pub(crate) fn stats(&self) -> PipelineStats {
        PipelineStats {
            requeued: self.requeued.load(Ordering::Relaxed),
        }
    }

    /// A connection with room for the request (counted in flight on it), opening one if
    /// the host is under its cap, else waiting for room.
    async fn pick(
        &self,
        client: &Client,
        key: &Key,
        idempotent: bool,
        depth: usize,
    ) -> Result<Handle, Error> {
        loop {
            let changed = self.changed.notified();
            let mut changed = std::pin::pin!(changed);
            changed.as_mut().enable();
            let connect = {
                let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
                let host = match hosts.get_mut(key) {
                    Some(host) => host,
                    None => hosts.entry(key.clone()).or_default(),
                };
                if let Some(handle) = host.first_with_room(depth, idempotent) {
                    handle.load.in_flight.fetch_add(1, Ordering::AcqRel);
                    if !idempotent {
                        handle.load.exclusive.store(true, Ordering::Release);
                    }
                    return Ok(handle.clone());
                }
                // No room: the ended connections leave the list, and do not count
                // against the cap.
                host.conns
                    .retain(|h| !h.load.closed.load(Ordering::Acquire));
                let open = host.conns.len() + host.connecting;
                let room = self.max_per_host.is_none_or(|cap| open < cap);
                if room {
                    host.connecting += 1;
                }
                room
            };
            if !connect {
                changed.await;
                continue;
            }
            let opened = client.connect(key).await;
            let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
            let host = hosts.entry(key.clone()).or_default();
            host.connecting -= 1;
            let conn = match opened {
                Ok(conn) => conn,
                Err(error) => {
                    self.changed.notify_waiters();
                    return Err(error);
                }
            };
            let (jobs, receiver) = mpsc::unbounded_channel();
            let load = Arc::new(Load::default());
            load.in_flight.store(1, Ordering::Release);
            if !idempotent {
                load.exclusive.store(true, Ordering::Release);
            }
            let handle = Handle { jobs, load };
            host.conns.push(handle.clone());
            tokio::spawn(
                Dispatcher::new(
                    conn,
                    receiver,
                    handle.load.clone(),
                    self.changed.clone(),
                    depth,
                )
                .run(),
            );
            return Ok(handle);
        }
    }
}

/// Sends a request on a pipelined connection of `client`.
pub(crate) async fn send(
    client: &Client,
    pipelines: &Pipelines,
    whole: Arc<Whole>,
    depth: usize,
) -> Result<Response<Incoming>, Error> {
    let depth = depth.max(1);
    let mut requeues = 0;
    let mut retried = false;
    loop {
        let requeued = requeues > 0;
        let handle = pipelines
            .pick(client, &whole.head.key, whole.head.idempotent, depth)
            .await?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            whole: whole.clone(),
            requeued,
            reply,
        };
        if handle.jobs.send(job).is_err() {
            // The dispatcher ended between the pick and the send: nothing was written.
            handle.load.in_flight.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let again = match answer.await {
            Ok(Ok(response)) => return Ok(response),
            Ok(Err(JobError::Failed(error))) => return Err(error),
            Ok(Err(JobError::NotProcessed)) => true,
            Ok(Err(JobError::Unanswered)) if !retried => {
                retried = true;
                true
            }
            Ok(Err(JobError::Unanswered)) | Err(_) => false,
        };
        requeues += 1;
        if !again || requeues > MAX_REQUEUES {
            return Err(Error::new(
                Side::Upstream,
                ErrorKind::Closed("before answering a pipelined request"),
            ));
        }
        pipelines.requeued.fetch_add(1, Ordering::Relaxed);
    }
}

/// Ends a job without an answer from this connection.
fn give_back(job: Job, load: &Load, outcome: JobError) {
    load.in_flight.fetch_sub(1, Ordering::AcqRel);
    if !job.whole.head.idempotent {
        load.exclusive.store(false, Ordering::Release);
    }
    let _ = job.reply.send(Err(outcome));
}

/// What becomes of a written, unanswered request when its connection ends.
#[derive(Clone, Copy)]
enum Ending {
    /// The server said it closes (or went away while idle): it did not process later
    /// requests.
    Announced,
    /// The connection failed: idempotent requests may go again once, others fail.
    Unexpected,
}

impl Ending {
    fn outcome(self, job: &Job) -> JobError {
        match self {
            Ending::Announced => JobError::NotProcessed,
            Ending::Unexpected if job.whole.head.idempotent => JobError::Unanswered,
            Ending::Unexpected => JobError::Failed(unanswered()),
        }
    }
}

/// The dispatcher of one pipelined connection: writes requests as they come (while
/// earlier responses are still awaited) and hands out the responses in order.
struct Dispatcher {
    conn: Box<ClientConn>,
    receiver: mpsc::UnboundedReceiver<Job>,
    /// Every handle is gone (the client was dropped): no job will come.
    orphaned: bool,
    load: Arc<Load>,
    changed: Arc<Notify>,
    depth: usize,
    /// Written, awaiting their responses, oldest first.
    waiting: VecDeque<Job>,
    /// Received, not yet written.
    queued: VecDeque<Job>,
    /// Responses read so far.
    answered: u64,
}

impl Dispatcher {
    fn new(
        conn: Box<ClientConn>,
        receiver: mpsc::UnboundedReceiver<Job>,
        load: Arc<Load>,
        changed: Arc<Notify>,
        depth: usize,
    ) -> Self {
        Dispatcher {
            conn,
            receiver,
            orphaned: false,
            load,
            changed,
            depth,
            waiting: VecDeque::new(),
            queued: VecDeque::new(),
            answered: 0,
        }
    }

    async fn run(mut self) {
        let ending = self.serve().await;
        self.shut(ending).await;
    }

    /// Serves jobs until the connection ends; returns how it ended.
    async fn serve(&mut self) -> Ending {
        loop {
            while let Ok(job) = self.receiver.try_recv() {
                self.queued.push_back(job);
            }
            if self.waiting.is_empty() && self.queued.is_empty() {
                // Idle: the next job, or the server closing the connection meanwhile.
                tokio::select! {
                    job = self.receiver.recv() => match job {
                        Some(job) => self.queued.push_back(job),
                        // Nothing in flight and nothing to come.
                        None => return Ending::Announced,
                    },
                    () = poll_fn(|cx| self.conn.poll_closed(cx)) => return Ending::Announced,
                }
                continue;
            }
            let head = match self.write_queued().await {
                Ok(()) => self.read_head().await,
                Err(error) => Err(error),
            };
            let Some(job) = self.waiting.pop_front() else {
                // Unreachable: a queued request always fits an empty connection.
                return Ending::Unexpected;
            };
            let head = match head {
                Ok(head) => head,
                Err(error) => {
                    tracing::debug!(%error, "pipelined exchange failed");
                    // The oldest request fails for good if the server began answering it
                    // or may have acted on it; the rest as the rules say.
                    let outcome = if self.conn.response_started() || !job.whole.head.idempotent {
                        JobError::Failed(error)
                    } else {
                        JobError::Unanswered
                    };
                    give_back(job, &self.load, outcome);
                    return Ending::Unexpected;
                }
            };
            let persists = self.conn.persists();
            if persists {
                self.load.confirmed.store(true, Ordering::Release);
                self.changed.notify_waiters();
            }
            let body_failed = self.answer(job, head).await;
            self.answered += 1;
            self.changed.notify_waiters();
            if let Some(error) = body_failed {
                tracing::debug!(%error, "pipelined response body failed");
                return Ending::Unexpected;
            }
            if !persists || self.conn.reusable().is_err() {
                // The server closes after this response and does not process the requests
                // written after it: they all go back.
                return Ending::Announced;
            }
        }
    }

    /// Whether `job` may be written now: alone on a connection not yet known to persist
    /// or after a non-idempotent request; else while fewer than `depth` are in flight.
    fn has_room_for(&self, job: &Job) -> bool {
        self.waiting.is_empty()
            || (self.load.confirmed.load(Ordering::Acquire)
                && self.waiting.len() < self.depth
                && job.whole.head.idempotent
                && self.waiting.iter().all(|j| j.whole.head.idempotent))
    }

    /// Writes the queued requests that may go now, then flushes them in one write.
    async fn write_queued(&mut self) -> Result<(), Error> {
        let mut wrote = false;
        while let Some(job) = self.queued.front() {
            if !self.has_room_for(job) {
                break;
            }
            let job = self.queued.pop_front().expect("front exists");
            let written = write(&mut self.conn, &job.whole);
            // Even a failed write may have reached the server in part.
            self.waiting.push_back(job);
            written?;
            wrote = true;
        }
        if wrote {
            self.conn.flush().await?;
        }
        Ok(())
    }

    /// Reads the head of the oldest response. Requests that arrive meanwhile are written
    /// at once when there is room, rather than waiting behind that response (reading
    /// resumes where it stopped; its timeout restarts, at most `depth` times).
    async fn read_head(&mut self) -> Result<ResponseHead, Error> {
        loop {
            let room = !self.orphaned
                && self.waiting.len() < self.depth
                && self.load.confirmed.load(Ordering::Acquire);
            tokio::select! {
                biased;
                head = self.conn.read_head() => return head,
                job = self.receiver.recv(), if room => match job {
                    Some(job) => {
                        self.queued.push_back(job);
                        while let Ok(job) = self.receiver.try_recv() {
                            self.queued.push_back(job);
                        }
                        self.write_queued().await?;
                    }
                    None => self.orphaned = true,
                },
            }
        }
    }

    /// Hands `job` its response and reads the body to its end, streaming it to the
    /// requester (or draining it if they stopped listening: the next response follows it
    /// on the wire). Returns the error that cut the body short, if one did.
    async fn answer(&mut self, job: Job, head: ResponseHead) -> Option<Error> {
        let exchange = Exchange {
            connection: self.conn.id(),
            reused: self.answered > 0,
            retried: job.requeued,
            peer: self.conn.peer(),
        };
        let length = match head.framing {
            BodyFraming::Empty => Some(0),
            BodyFraming::Length(n) => Some(n),
            _ => None,
        };
        let done = |load: &Load| {
            load.in_flight.fetch_sub(1, Ordering::AcqRel);
            if !job.whole.head.idempotent {
                load.exclusive.store(false, Ordering::Release);
            }
        };
        let respond = |body: Incoming| {
            let mut response = Response::new(body.with_exchange(exchange));
            *response.status_mut() = head.status;
            *response.version_mut() = head.version;
            *response.headers_mut() = head.headers;
            job.reply.send(Ok(response)).is_ok()
        };
        // A body already received whole (the common small response) goes as it is.
        if length == Some(0) {
            done(&self.load);
            respond(Incoming::empty());
            return None;
        }
        if let Some(whole) = self.conn.take_whole_body() {
            done(&self.load);
            respond(Incoming::full(whole));
            return None;
        }
        let (mut sender, receiver) = pipe::channel(length, Side::Upstream);
        let mut listening = respond(Incoming::from_pipe(receiver));
        let mut failed = None;
        loop {
            match self.conn.read_frame().await {
                Ok(Some(frame)) => {
                    let trailers = frame.is_trailers();
                    if listening && sender.send(frame).await.is_err() {
                        listening = false;
                    }
                    if trailers {
                        sender.finish();
                        break;
                    }
                }
                Ok(None) => {
                    sender.finish();
                    break;
                }
                Err(error) => {
                    // `sender` is dropped unfinished: the requester sees the body abort.
                    failed = Some(error);
                    break;
                }
            }
        }
        done(&self.load);
        failed
    }

    /// Ends the connection: no more jobs; written, unanswered ones go back as `ending`
    /// says, unwritten ones are re-queued.
    async fn shut(mut self, ending: Ending) {
        let load = &self.load;
        load.closed.store(true, Ordering::Release);
        for job in std::mem::take(&mut self.waiting) {
            let outcome = ending.outcome(&job);
            give_back(job, load, outcome);
        }
        for job in std::mem::take(&mut self.queued) {
            give_back(job, load, JobError::NotProcessed);
        }
        self.receiver.close();
        while let Some(job) = self.receiver.recv().await {
            give_back(job, load, JobError::NotProcessed);
        }
        self.changed.notify_waiters();
    }
}

fn unanswered() -> Error {
    Error::new(
        Side::Upstream,
        ErrorKind::Closed("before answering a pipelined non-idempotent request"),
    )
}

/// Writes one request (head and whole body) into the connection's buffer.
fn write(conn: &mut ClientConn, whole: &Whole) -> Result<(), Error> {
    let head = &whole.head;
    let length = Some(whole.body.len() as u64);
    let framing = outgoing_request_framing(&head.method, conn.version(), length)
        .expect("a body of known length can always be framed");
    conn.write_head(
        &head.method,
        &head.target,
        head.authority.as_ref().map(|a| a.as_str()),
        &head.headers,
        framing,
        Persistence::KeepAlive,
    )?;
    if !whole.body.is_empty() {
        conn.push_body(whole.body.clone())?;
    }
    conn.finish_body(None);
    Ok(())
}
