//! The chunked decoder: arbitrary bytes fed in pieces whose sizes come from the input.
//! Never a panic, never a loop without progress, and the decoded data and the outcome do
//! not depend on how the input was split.
#![no_main]

use bytes::BytesMut;
use hopline::wire::{BodyEvent, ChunkedDecoder, ChunkedLimits};
use libfuzzer_sys::fuzz_target;

/// Decodes `input` fed in pieces of the given sizes (cycled); returns the data, how it
/// ended, and the bytes left over.
fn decode(input: &[u8], pieces: &[u8]) -> (Vec<u8>, String, usize) {
    let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut fed = 0;
    let mut piece = 0;
    loop {
        // Decode all that the buffer allows.
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(BodyEvent::Data(bytes))) => {
                    assert!(!bytes.is_empty() || buf.len() < before, "no progress");
                    data.extend_from_slice(&bytes);
                }
                Ok(Some(BodyEvent::Trailers(trailers))) => {
                    return (
                        data,
                        format!("trailers {}", trailers.len()),
                        buf.len() + input.len() - fed,
                    );
                }
                Ok(Some(BodyEvent::End)) => {
                    return (data, "end".into(), buf.len() + input.len() - fed);
                }
                Ok(None) => break,
                Err(error) => return (data, format!("error {error}"), 0),
            }
        }
        if fed == input.len() {
            return (data, "incomplete".into(), 0);
        }
        let size = pieces
            .get(piece % pieces.len().max(1))
            .map_or(input.len(), |&s| usize::from(s).max(1));
        piece += 1;
        let end = (fed + size).min(input.len());
        buf.extend_from_slice(&input[fed..end]);
        fed = end;
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = usize::from(data[0] % 8);
    let (pieces, input) = data[1..].split_at(n.min(data.len() - 1));
    let whole = decode(input, &[]);
    let split = decode(input, pieces);
    assert_eq!(whole, split, "splits {pieces:?}");
});
