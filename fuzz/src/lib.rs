//! What the fuzz targets share: a paused-clock runtime with a loopback listener (for the
//! targets that drive a real connection), and the split-invariance check of the head
//! parsers. Holds no target of its own.

use std::net::SocketAddr;
use std::sync::OnceLock;

use bytes::BytesMut;
use hopline::wire::{HeadParser, HeadStatus};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

/// A current-thread runtime on a paused clock (timeouts pass at once, as soon as the
/// runtime has nothing else to do) and a listener on 127.0.0.1, made once per process.
pub struct Loopback {
    /// The runtime each input runs on.
    pub runtime: Runtime,
    /// The listener the connection under test is accepted from.
    pub listener: TcpListener,
    /// Where the listener listens.
    pub addr: SocketAddr,
}

/// The process's [`Loopback`].
pub fn loopback() -> &'static Loopback {
    static LOOPBACK: OnceLock<Loopback> = OnceLock::new();
    LOOPBACK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        Loopback {
            runtime,
            listener,
            addr,
        }
    })
}

/// The size of the pieces a connection target writes its input in: the first input byte,
/// or the whole input at once when it is 0.
pub fn piece_size(first: u8, input: &[u8]) -> usize {
    if first == 0 {
        input.len().max(1)
    } else {
        usize::from(first)
    }
}

/// A server policy whose every timer is a second (on the paused clock: at once, once
/// nothing else can happen), for the server connection targets.
pub fn quick_server_config() -> hopline::conn::ServerConfig {
    let mut config = hopline::conn::ServerConfig::default();
    let second = std::time::Duration::from_secs(1);
    config.keepalive_timeout = second;
    config.header_timeout = second;
    config.body_timeout = second;
    config.write_timeout = second;
    config
}

/// The connection under test, as accepted from `peer`.
pub fn conn_info(peer: SocketAddr) -> hopline::conn::ConnInfo {
    hopline::conn::ConnInfo {
        id: 1,
        peer,
        local: peer,
        secure: false,
    }
}

/// What a head parser concludes about `input` fed in two pieces cut at `split` and then
/// finished with an empty line (a verdict on a complete message, not on how far an
/// unfinished one had been looked at): the parsed head as `describe` prints it with the
/// bytes left after it, `error`, or `incomplete`.
///
/// Only whether a message is refused is compared, not why: a message with several defects
/// may be refused for a different one depending on where it was cut (unit tests pin the
/// status of each single defect).
pub fn head_verdict<T, E>(
    input: &[u8],
    split: usize,
    mut parse: impl FnMut(&mut HeadParser, &mut BytesMut) -> Result<HeadStatus<T>, E>,
    describe: impl Fn(T) -> String,
) -> String {
    let mut parser = HeadParser::new();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    for piece in [&input[..split], &input[split..], b"\r\n\r\n"] {
        buf.extend_from_slice(piece);
        fed += piece.len();
        match parse(&mut parser, &mut buf) {
            Ok(HeadStatus::Complete(head)) => {
                // What is left after the head: in the buffer, and not yet fed.
                let rest = buf.len() + (input.len() + 4).saturating_sub(fed);
                return format!("{} rest={rest}", describe(head));
            }
            Ok(HeadStatus::Partial { .. }) => {}
            Err(_) => return "error".into(),
        }
    }
    "incomplete".into()
}
