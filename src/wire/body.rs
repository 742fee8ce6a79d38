//! Body decoding for every framing: a resumable decoder that turns buffered bytes into body
//! events and knows where the body ends.
//!
//! Owns "which bytes of the input belong to this body". It must not read from sockets: the
//! caller feeds what it has and reports end of input with [`BodyDecoder::eof`].

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::ParseError;
use super::chunked::{ChunkedDecoder, ChunkedLimits};
use super::framing::BodyFraming;

/// One step of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyEvent {
    /// Body bytes, in order.
    Data(Bytes),
    /// The trailer section of a chunked body; the body is complete after it.
    Trailers(HeaderMap),
    /// The body is complete (returned once after the last data, unless trailers were).
    End,
}

/// A resumable decoder for one message body.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// A `Content-Length` body with this many bytes still to come.
    Length {
        /// Bytes not yet returned.
        remaining: u64,
    },
    /// A chunked body.
    Chunked(ChunkedDecoder),
    /// A response body that ends when the connection closes.
    CloseDelimited,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// A decoder for a body with the given framing.
    pub fn new(framing: BodyFraming, limits: ChunkedLimits) -> Self {
        match framing {
            BodyFraming::Empty => BodyDecoder::Done,
            BodyFraming::Length(remaining) => BodyDecoder::Length { remaining },
            BodyFraming::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new(limits)),
            BodyFraming::CloseDelimited => BodyDecoder::CloseDelimited,
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Done => true,
            BodyDecoder::Chunked(chunked) => chunked.is_done(),
            _ => false,
        }
    }

    /// Bytes of a `Content-Length` body still expected, if that is the framing.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            BodyDecoder::Length { remaining } => Some(*remaining),
            BodyDecoder::Done => Some(0),
            _ => None,
        }
    }

    /// Decodes the next event from `buf`, consuming what it used; `Ok(None)` means more
    /// input is needed. After the body is complete every call returns [`BodyEvent::End`]
    /// without consuming anything (the rest of `buf` belongs to the next message).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, ParseError> {
        match self {
            BodyDecoder::Done => Ok(Some(BodyEvent::End)),
            BodyDecoder::Length { remaining } => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let take = usize::try_from(*remaining)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                *remaining -= take as u64;
                if *remaining == 0 {
                    *self = BodyDecoder::Done;
                }
                Ok(Some(BodyEvent::Data(buf.split_to(take).freeze())))
            }
            BodyDecoder::Chunked(chunked) => chunked.decode(buf),
            BodyDecoder::CloseDelimited => {
                if buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(BodyEvent::Data(buf.split().freeze())))
            }
        }
    }

    /// The input ended (the peer closed). A close-delimited body is complete now; any other
    /// unfinished body is truncated, and must never be presented as complete.
    pub fn eof(&mut self) -> Result<BodyEvent, BodyTruncated> {
        match self {
            BodyDecoder::CloseDelimited | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(BodyEvent::End)
            }
            BodyDecoder::Chunked(chunked) if chunked.is_done() => Ok(BodyEvent::End),
            _ => Err(BodyTruncated),
        }
    }
}

/// The connection closed before the body was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("connection closed before the body was complete")]
pub struct BodyTruncated;

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces cut at `cut`, returning the body, whether it ended and
    /// the bytes left for the next message.
    fn run(framing: BodyFraming, input: &[u8], cut: usize, eof: bool) -> (Vec<u8>, bool, Vec<u8>) {
        let mut decoder = BodyDecoder::new(framing, ChunkedLimits::default());
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut ended = false;
        for piece in [&input[..cut], &input[cut..]] {
            buf.extend_from_slice(piece);
            while !ended {
                match decoder.decode(&mut buf).unwrap() {
                    None => break,
                    Some(BodyEvent::Data(data)) => body.extend_from_slice(&data),
                    Some(_) => ended = true,
                }
            }
        }
        if eof && !ended {
            ended = decoder.eof().is_ok();
        }
        (body, ended, buf.to_vec())
    }

    #[test]
    fn length_bodies_stop_at_their_length_for_every_split() {
        let input = b"hello worldNEXT";
        for cut in 0..=input.len() {
            assert_eq!(
                run(BodyFraming::Length(11), input, cut, false),
                (b"hello world".to_vec(), true, b"NEXT".to_vec()),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn empty_bodies_end_at_once() {
        assert_eq!(
            run(BodyFraming::Empty, b"NEXT", 2, false),
            (vec![], true, b"NEXT".to_vec())
        );
    }

    #[test]
    fn close_delimited_bodies_end_only_at_eof() {
        let input = b"all of it";
        for cut in 0..=input.len() {
            assert_eq!(
                run(BodyFraming::CloseDelimited, input, cut, false),
                (input.to_vec(), false, vec![])
            );
            assert_eq!(
                run(BodyFraming::CloseDelimited, input, cut, true),
                (input.to_vec(), true, vec![])
            );
        }
    }

    #[test]
    fn truncated_bodies_are_errors_at_eof() {
        let mut length = BodyDecoder::new(BodyFraming::Length(5), ChunkedLimits::default());
        let mut buf = BytesMut::from(&b"abc"[..]);
        length.decode(&mut buf).unwrap();
        assert_eq!(length.eof(), Err(BodyTruncated));
        let mut chunked = BodyDecoder::new(BodyFraming::Chunked, ChunkedLimits::default());
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n"[..]);
        while let Some(BodyEvent::Data(_)) = chunked.decode(&mut buf).unwrap() {}
        assert_eq!(chunked.eof(), Err(BodyTruncated));
    }
}
