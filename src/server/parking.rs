//! The parking lot: idle plain-TCP HTTP/1.x connections held outside tasks.
//!
//! A connection idle for [`crate::conn::ServerConfig::park_idle_after`] ends its task and
//! leaves its socket here: a slot of a few hundred bytes in one vector, the socket in this
//! lot's own epoll set (the runtime forgets it), so an idle connection costs neither a task
//! nor a runtime registration. One epoll descriptor, registered with the runtime once, says
//! which parked sockets have input; they are handed back to be served in new tasks. One
//! timer, set to the earliest deadline, closes connections idle too long (the longest idle
//! first, in parking order), at their maximum lifetime, or at their moment in a drain; a
//! connection is closed only when no input waits on it (else it is handed back), so a
//! request that has arrived is never reset.
//!
//! Owns the parked sockets and their deadlines. It must not speak HTTP (the connection
//! layer does, [`ParkedConn`]) nor decide policy (the listener passes the idle timeout in
//! force and decides when to evict).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep};

use crate::conn::h1::server::ParkedConn;
use crate::conn::{CloseReason, ServerConfig, Shutdown};

/// A parked connection, the listener slot it holds and the policy it started with.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) conn: ParkedConn,
    pub(super) permit: OwnedSemaphorePermit,
    pub(super) config: Arc<ServerConfig>,
}

/// What becomes of a connection leaving the lot.
#[derive(Debug)]
pub(super) enum Leaving {
    /// Input arrived: serve it.
    Serve(Entry),
    /// Close it for this reason (no input waits on it).
    Close(Entry, CloseReason),
}

/// Names a slot as it was when a connection was parked there: a slot reused since no
/// longer matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Ticket {
    slot: u32,
    generation: u32,
}

impl Ticket {
    fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    fn from_u64(data: u64) -> Self {
        Ticket {
            slot: data as u32,
            generation: (data >> 32) as u32,
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

/// Events read from the epoll set per call.
const EVENTS: usize = 256;

/// The idle connections of one listener.
pub(super) struct Lot {
    epoll: AsyncFd<OwnedFd>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Tickets in parking order, which is the order of idle age: the front has been idle
    /// longest (pressure closes from there). Stale tickets (their connection left) are
    /// skipped.
    by_age: VecDeque<Ticket>,
    /// Each connection's own deadlines: idle timeout (each keeps the policy it started
    /// with), maximum lifetime, drain moment.
    by_deadline: BinaryHeap<Reverse<(Instant, Ticket, Why)>>,
    parked: usize,
    timer: Pin<Box<Sleep>>,
}

/// Why a deadline in `by_deadline` closes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Why {
    Idle,
    Lifetime,
    Drain,
}

impl Why {
    fn reason(self) -> CloseReason {
        match self {
            Why::Idle => CloseReason::IdleTimeout,
            Why::Lifetime => CloseReason::MaxLifetime,
            Why::Drain => CloseReason::Shutdown,
        }
    }
}

impl Lot {
    /// An empty lot with its epoll set, registered with the current runtime.
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is a new
        // descriptor that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let epoll = unsafe { OwnedFd::from_raw_fd(fd) };
        let interest = tokio::io::Interest::READABLE;
        // SAFETY: the `OwnedFd` keeps the descriptor open, unchanged, as long as the
        // `AsyncFd` that owns it.
        let epoll = unsafe { AsyncFd::register_with_interest(epoll, interest) }
            .map_err(|e| e.into_parts().1)?;
        Ok(Lot {
            epoll,
            slots: Vec::new(),
            free: Vec::new(),
            by_age: VecDeque::new(),
            by_deadline: BinaryHeap::new(),
            parked: 0,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
        })
    }

    /// How many connections are parked.
    pub(super) fn len(&self) -> usize {
        self.parked
    }

    /// Parks a connection (its idle timeout and maximum lifetime under its policy, and the
    /// drain if one has started, set its deadlines); it comes back if its socket cannot be
    /// watched.
    pub(super) fn park(
        &mut self,
        entry: Entry,
        shutdown: &Shutdown,
    ) -> Result<(), Box<(Entry, io::Error)>> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let ticket = Ticket {
            slot,
            generation: self.slots[slot as usize].generation,
        };
        let mut event = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: ticket.to_u64(),
        };
        let fd = entry.conn.fd().as_raw_fd();
        // SAFETY: both descriptors are open; `event` is valid for the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) }
            < 0
        {
            self.free.push(slot);
            return Err(Box::new((entry, io::Error::last_os_error())));
        }
        let idle_end = entry.conn.idle_since() + entry.config.keepalive_timeout;
        self.by_deadline
            .push(Reverse((idle_end, ticket, Why::Idle)));
        if let Some(end) = entry.conn.lifetime_end(&entry.config) {
            self.by_deadline.push(Reverse((end, ticket, Why::Lifetime)));
        }
        if let Some(at) = shutdown.idle_close_at(entry.conn.id()) {
            self.by_deadline.push(Reverse((at, ticket, Why::Drain)));
        }
        self.slots[slot as usize].entry = Some(entry);
        self.by_age.push_back(ticket);
        self.parked += 1;
        self.compact();
        Ok(())
    }

    /// Drops tickets of connections that left, once they outnumber the parked ones: a
    /// connection parked and woken many times leaves a ticket each time.
    fn compact(&mut self) {
        let bound = 2 * self.parked + 64;
        if self.by_age.len() <= bound && self.by_deadline.len() <= bound {
            return;
        }
        let slots = &self.slots;
        let live = |t: &Ticket| {
            let slot = &slots[t.slot as usize];
            slot.generation == t.generation && slot.entry.is_some()
        };
        self.by_age.retain(live);
        self.by_deadline.retain(|Reverse((_, t, _))| live(t));
    }

    /// A drain has started: every parked connection gets its moment to close.
    pub(super) fn drain(&mut self, shutdown: &Shutdown) {
        for (slot, s) in self.slots.iter().enumerate() {
            if let Some(entry) = &s.entry
                && let Some(at) = shutdown.idle_close_at(entry.conn.id())
            {
                let ticket = Ticket {
                    slot: slot as u32,
                    generation: s.generation,
                };
                self.by_deadline.push(Reverse((at, ticket, Why::Drain)));
            }
        }
    }

    /// Takes the connection a ticket names out of the lot, if it is still there.
    fn take(&mut self, ticket: Ticket) -> Option<Entry> {
        let slot = self.slots.get_mut(ticket.slot as usize)?;
        if slot.generation != ticket.generation {
            return None;
        }
        let entry = slot.entry.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(ticket.slot);
        self.parked -= 1;
        let fd = entry.conn.fd().as_raw_fd();
        // SAFETY: both descriptors are open; a null event is allowed for EPOLL_CTL_DEL.
        unsafe {
            libc::epoll_ctl(
                self.epoll.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
        Some(entry)
    }

    /// The connection to leave for `reason` unless input waits on it.
    fn leave(entry: Entry, reason: CloseReason) -> Leaving {
        if entry.conn.input_waiting() {
            Leaving::Serve(entry)
        } else {
            Leaving::Close(entry, reason)
        }
    }

    /// The connection idle longest, to make room for a new one: closed for pressure, or
    /// served if input waits on it. `None` if the lot is empty.
    pub(super) fn evict_oldest(&mut self) -> Option<Leaving> {
        while let Some(ticket) = self.by_age.pop_front() {
            if let Some(entry) = self.take(ticket) {
                return Some(Self::leave(entry, CloseReason::Pressure));
            }
        }
        None
    }

    /// Connections leaving the lot: those with input, and those whose time has come, with
    /// the idle timeout `pressure` allows (if any) in force. Pending while none is; then
    /// woken by input or by the earliest deadline.
    pub(super) fn poll_leaving(
        &mut self,
        cx: &mut Context<'_>,
        pressure: Option<Duration>,
        leaving: &mut Vec<Leaving>,
    ) -> Poll<()> {
        self.read_input(cx, leaving);
        self.expire(pressure, leaving);
        if !leaving.is_empty() {
            return Poll::Ready(());
        }
        let Some(next) = self.next_deadline(pressure) else {
            return Poll::Pending;
        };
        if self.timer.deadline() != next {
            self.timer.as_mut().reset(next);
        }
        ready!(self.timer.as_mut().poll(cx));
        // The deadline has passed: expire on the next poll, straight away.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Reads which parked sockets have input.
    fn read_input(&mut self, cx: &mut Context<'_>, leaving: &mut Vec<Leaving>) {
        loop {
            let Poll::Ready(Ok(mut guard)) = self.epoll.poll_read_ready(cx) else {
                return;
            };
            let mut events = [libc::epoll_event { events: 0, u64: 0 }; EVENTS];
            // SAFETY: `events` is valid for writes of `EVENTS` entries; timeout 0 does not
            // block.
            let n = unsafe {
                libc::epoll_wait(
                    guard.get_inner().as_raw_fd(),
                    events.as_mut_ptr(),
                    EVENTS as i32,
                    0,
                )
            };
            if n <= 0 {
                guard.clear_ready();
                continue;
            }
            drop(guard);
            let events = &events[..n as usize];
            for event in events {
                let data = event.u64;
                if let Some(entry) = self.take(Ticket::from_u64(data)) {
                    leaving.push(Leaving::Serve(entry));
                }
            }
            if events.len() < EVENTS {
                return;
            }
        }
    }

    /// Moves every connection whose time has come to `leaving`: idle longer than pressure
    /// allows (the longest idle first), or at one of its own deadlines.
    fn expire(&mut self, pressure: Option<Duration>, leaving: &mut Vec<Leaving>) {
        let now = Instant::now();
        if let Some(pressure) = pressure {
            while let Some(&ticket) = self.by_age.front() {
                match self.idle_since(ticket) {
                    None => {}
                    Some(since) if since + pressure <= now => {
                        let entry = self.take(ticket).expect("a live ticket");
                        leaving.push(Self::leave(entry, CloseReason::Pressure));
                    }
                    Some(_) => break,
                }
                self.by_age.pop_front();
            }
        }
        while let Some(Reverse((at, ticket, why))) = self.by_deadline.peek().copied() {
            if at > now {
                break;
            }
            self.by_deadline.pop();
            if let Some(entry) = self.take(ticket) {
                leaving.push(Self::leave(entry, why.reason()));
            }
        }
    }

    fn idle_since(&self, ticket: Ticket) -> Option<Instant> {
        let slot = &self.slots[ticket.slot as usize];
        let entry = slot.entry.as_ref()?;
        (slot.generation == ticket.generation).then(|| entry.conn.idle_since())
    }

    /// The earliest deadline of a connection still parked.
    fn next_deadline(&mut self, pressure: Option<Duration>) -> Option<Instant> {
        while let Some(&ticket) = self.by_age.front() {
            if self.idle_since(ticket).is_some() {
                break;
            }
            self.by_age.pop_front();
        }
        while let Some(Reverse((_, ticket, _))) = self.by_deadline.peek() {
            if self.idle_since(*ticket).is_some() {
                break;
            }
            self.by_deadline.pop();
        }
        let pressed = pressure.and_then(|pressure| {
            let front = self.by_age.front()?;
            Some(self.idle_since(*front)? + pressure)
        });
        let own = self.by_deadline.peek().map(|Reverse((at, _, _))| *at);
        match (pressed, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Takes every connection out (the listener is done): each to be closed.
    pub(super) fn empty(&mut self) -> Vec<Entry> {
        let tickets: Vec<Ticket> = self.by_age.drain(..).collect();
        self.by_deadline.clear();
        tickets.into_iter().filter_map(|t| self.take(t)).collect()
    }
}
