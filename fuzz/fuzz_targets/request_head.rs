//! Request heads: arbitrary bytes, fed whole and in two pieces split where the first input
//! byte says, then ended with an empty line. Never a panic; and the split must not change
//! the verdict or the parsed head (a resumable parser that behaves differently depending on
//! how the bytes arrived is a smuggling vector).
#![no_main]

use hopline::wire::HeadLimits;
use hopline_fuzz::head_verdict;
use libfuzzer_sys::fuzz_target;

fn verdict(input: &[u8], split: usize) -> String {
    let limits = HeadLimits::default();
    head_verdict(
        input,
        split,
        |parser, buf| parser.parse_request(buf, &limits, true),
        |head| {
            format!(
                "{} {} {:?} {:?} {:?}",
                head.method, head.uri, head.version, head.headers, head.framing
            )
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let split = if input.is_empty() {
        0
    } else {
        usize::from(first) % (input.len() + 1)
    };
    assert_eq!(
        verdict(input, input.len()),
        verdict(input, split),
        "split at {split}"
    );
});
