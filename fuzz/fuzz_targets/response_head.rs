//! Response heads, as a client or proxy reads them: arbitrary bytes after a GET or a HEAD,
//! whole and split. Never a panic; a complete head parses the same however it arrived.
#![no_main]

use bytes::BytesMut;
use hopline::wire::{HeadLimits, HeadParser, HeadStatus};
use http::Method;
use libfuzzer_sys::fuzz_target;

fn verdict(input: &[u8], split: usize, method: &Method) -> String {
    let limits = HeadLimits::default();
    let mut parser = HeadParser::new();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    // The sender finishes its head: a verdict on a complete message, not on how far an
    // unfinished one had been looked at.
    for piece in [&input[..split], &input[split..], b"\r\n\r\n"] {
        buf.extend_from_slice(piece);
        fed += piece.len();
        // What is left after a head: in the buffer, and not yet fed.
        let unfed = (input.len() + 4).saturating_sub(fed);
        match parser.parse_response(&mut buf, &limits, method) {
            Ok(HeadStatus::Complete(head)) => {
                return format!(
                    "{} {:?} {:?} {:?} rest={}",
                    head.status, head.version, head.headers, head.framing, buf.len() + unfed
                );
            }
            Ok(HeadStatus::Partial { .. }) => {}
            // Which rule a bad message breaks first may depend on where it was cut; that it
            // is refused may not.
            Err(_) => return "error".into(),
        }
    }
    "incomplete".into()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let method = if first & 1 == 0 { Method::GET } else { Method::HEAD };
    let split = if input.is_empty() { 0 } else { usize::from(first >> 1) % (input.len() + 1) };
    let whole = verdict(input, input.len(), &method);
    let split_verdict = verdict(input, split, &method);
    assert_eq!(whole, split_verdict, "split at {split}");
});
