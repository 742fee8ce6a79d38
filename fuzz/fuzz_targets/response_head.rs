//! Response heads, as a client or proxy reads them: arbitrary bytes after a GET or a HEAD,
//! whole and split. Never a panic; a complete head parses the same however it arrived.
#![no_main]

use hopline::wire::HeadLimits;
use hopline_fuzz::head_verdict;
use http::Method;
use libfuzzer_sys::fuzz_target;

fn verdict(input: &[u8], split: usize, method: &Method) -> String {
    let limits = HeadLimits::default();
    head_verdict(
        input,
        split,
        |parser, buf| parser.parse_response(buf, &limits, method),
        |head| {
            format!(
                "{} {:?} {:?} {:?}",
                head.status, head.version, head.headers, head.framing
            )
        },
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let method = if first & 1 == 0 {
        Method::GET
    } else {
        Method::HEAD
    };
    let split = if input.is_empty() {
        0
    } else {
        usize::from(first >> 1) % (input.len() + 1)
    };
    assert_eq!(
        verdict(input, input.len(), &method),
        verdict(input, split, &method),
        "split at {split}"
    );
});
