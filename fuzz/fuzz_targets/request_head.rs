//! Request heads: arbitrary bytes, fed whole and in two pieces split where the first input
//! byte says, then ended with an empty line. Never a panic; and the split must not change
//! the verdict or the parsed head (a resumable parser that behaves differently depending on
//! how the bytes arrived is a smuggling vector).
#![no_main]

use bytes::BytesMut;
use hopline::wire::{HeadLimits, HeadParser, HeadStatus};
use libfuzzer_sys::fuzz_target;

/// What a parse concluded: the head's parts, an error status, or "incomplete".
fn verdict(input: &[u8], split: usize) -> String {
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
        match parser.parse_request(&mut buf, &limits, true) {
            Ok(HeadStatus::Complete(head)) => {
                return format!(
                    "{} {} {:?} {:?} {:?} rest={}",
                    head.method,
                    head.uri,
                    head.version,
                    head.headers,
                    head.framing,
                    buf.len() + unfed
                );
            }
            Ok(HeadStatus::Partial { .. }) => {}
            // A message with several defects may be refused for a different one (and so
            // with a different status) depending on where it was cut; that it is refused
            // may not depend on it. (Unit tests pin the status of single defects.)
            Err(_) => return "error".into(),
        }
    }
    "incomplete".into()
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let split = if input.is_empty() { 0 } else { usize::from(first) % (input.len() + 1) };
    let whole = verdict(input, input.len());
    let split_verdict = verdict(input, split);
    assert_eq!(whole, split_verdict, "split at {split}");
});
