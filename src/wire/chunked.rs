//! The chunked transfer coding (RFC 9112 §7.1): a resumable decoder with bounded chunk
//! extensions and trailer section, and the encoder's framing bytes.
//!
//! Owns chunk-size lines, chunk data boundaries and trailers. Sizes are read with
//! `httparse::parse_chunk_size`; the line around them is validated here first, because
//! httparse accepts an empty size and arbitrary bytes in extensions. It must not do I/O:
//! input arrives in whatever pieces the caller has.

use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

use super::head::{check_line_endings, find_empty_line, headers_from_httparse};
use super::{BodyEvent, ParseError};

/// Limits of the chunked decoder, each with its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChunkedLimits {
    /// Longest chunk-size line including extensions, without CRLF. Default 4 KiB.
    pub max_line: usize,
    /// Largest trailer section in bytes. Default 8 KiB.
    pub max_trailer_bytes: usize,
    /// Most trailer field lines. Default 32.
    pub max_trailer_fields: usize,
}

impl Default for ChunkedLimits {
    fn default() -> Self {
        ChunkedLimits {
            max_line: 4096,
            max_trailer_bytes: 8192,
            max_trailer_fields: 32,
        }
    }
}

/// Where the decoder is in the chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside the data of a chunk, with this many bytes still to come.
    Data {
        /// Bytes of this chunk not yet returned.
        remaining: u64,
    },
    /// Expecting the CRLF that ends a chunk's data.
    DataEnd,
    /// After the last chunk: expecting the trailer section and its final CRLF.
    Trailers,
    /// The body is complete; nothing more belongs to it.
    Done,
}

/// A resumable decoder for one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
    limits: ChunkedLimits,
}

impl ChunkedDecoder {
    /// A decoder at the start of a chunked body.
    pub fn new(limits: ChunkedLimits) -> Self {
        ChunkedDecoder {
            state: State::Size,
            limits,
        }
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the next event from `buf`, consuming the bytes it used.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete event yet (read more and call again);
    /// data is returned as soon as any of it is available, without waiting for the chunk to
    /// complete.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<BodyEvent>, ParseError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(size) = self.chunk_size(buf)? else {
                        return Ok(None);
                    };
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data { remaining: size }
                    };
                }
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(buf.len());
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data { remaining: left }
                    };
                    return Ok(Some(BodyEvent::Data(buf.split_to(take).freeze())));
                }
                State::DataEnd => match buf.get(..2) {
                    None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(None),
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = State::Size;
                    }
                    _ => return Err(ParseError::Chunk("chunk data not followed by CRLF")),
                },
                State::Trailers => {
                    let Some(trailers) = self.trailers(buf)? else {
                        return Ok(None);
                    };
                    self.state = State::Done;
                    return Ok(Some(match trailers {
                        Some(fields) => BodyEvent::Trailers(fields),
                        None => BodyEvent::End,
                    }));
                }
                State::Done => return Ok(Some(BodyEvent::End)),
            }
        }
    }

    /// Parses one chunk-size line (RFC 9112 §7.1):
    /// `chunk-size [ chunk-ext ] CRLF`, with `chunk-size = 1*HEXDIG` and
    /// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`.
    fn chunk_size(&self, buf: &mut BytesMut) -> Result<Option<u64>, ParseError> {
        let window = &buf[..buf.len().min(self.limits.max_line + 2)];
        let Some(lf) = window.iter().position(|&b| b == b'\n') else {
            if buf.len() > self.limits.max_line + 1 {
                return Err(ParseError::ChunkExtensionTooLong {
                    limit: self.limits.max_line,
                });
            }
            return Ok(None);
        };
        if lf == 0 || buf[lf - 1] != b'\r' {
            return Err(ParseError::Chunk("chunk-size line not ended by CRLF"));
        }
        let line = &buf[..lf - 1];
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 {
            return Err(ParseError::Chunk("missing chunk size"));
        }
        if !is_chunk_ext(&line[digits..]) {
            return Err(ParseError::Chunk("malformed chunk extension"));
        }
        let size = match httparse::parse_chunk_size(&buf[..=lf]) {
            Ok(httparse::Status::Complete((_, size))) => size,
            _ => return Err(ParseError::Chunk("chunk size out of range")),
        };
        buf.advance(lf + 1);
        Ok(Some(size))
    }

    /// Parses the trailer section after the last chunk: `*( field-line CRLF ) CRLF`.
    /// Returns `Some(None)` when the section is empty.
    fn trailers(&self, buf: &mut BytesMut) -> Result<Option<Option<HeaderMap>>, ParseError> {
        match buf.get(..2) {
            Some(b"\r\n") => {
                buf.advance(2);
                return Ok(Some(None));
            }
            None if buf.first().is_none_or(|&b| b == b'\r') => return Ok(None),
            _ => {}
        }
        let limit = self.limits.max_trailer_bytes;
        let Some(end) = find_empty_line(&buf[..buf.len().min(limit)], 0) else {
            if buf.len() >= limit {
                return Err(ParseError::Trailer("trailer section too large"));
            }
            return Ok(None);
        };
        let section = buf.split_to(end).freeze();
        check_line_endings(&section).map_err(|_| ParseError::Trailer("bare CR or LF"))?;
        let mut fields = vec![httparse::EMPTY_HEADER; self.limits.max_trailer_fields];
        let parsed = match httparse::parse_headers(&section, &mut fields) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            Err(httparse::Error::TooManyHeaders) => {
                return Err(ParseError::Trailer("too many trailer fields"));
            }
            _ => return Err(ParseError::Trailer("malformed trailer field")),
        };
        let map = headers_from_httparse(&section, parsed)
            .map_err(|_| ParseError::Trailer("malformed trailer field"))?;
        Ok(Some(Some(map)))
    }
}

/// Validates `chunk-ext` (everything after the hex size, without CRLF).
fn is_chunk_ext(mut rest: &[u8]) -> bool {
    use super::headers::is_tchar;
    let skip_bws =
        |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    loop {
        if rest.is_empty() {
            return true;
        }
        // BWS is only allowed before a ";": trailing whitespace alone is invalid.
        rest = &rest[skip_bws(rest)..];
        match rest.split_first() {
            Some((b';', after)) => rest = after,
            _ => return false,
        }
        rest = &rest[skip_bws(rest)..];
        let name = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if name == 0 {
            return false;
        }
        rest = &rest[name..];
        let ws = skip_bws(rest);
        if rest.get(ws) != Some(&b'=') {
            // No value: whatever follows must be BWS ";" (checked at the top of the loop).
            continue;
        }
        rest = &rest[ws + 1..];
        rest = &rest[skip_bws(rest)..];
        if rest.first() == Some(&b'"') {
            let Some(len) = quoted_string_len(rest) else {
                return false;
            };
            rest = &rest[len..];
        } else {
            let value = rest.iter().take_while(|&&b| is_tchar(b)).count();
            if value == 0 {
                return false;
            }
            rest = &rest[value..];
        }
    }
}

/// Length of the `quoted-string` (RFC 9110 §5.6.4) at the start of `s`, quotes included.
fn quoted_string_len(s: &[u8]) -> Option<usize> {
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                let escaped = *s.get(i + 1)?;
                if !(escaped == b'\t' || escaped == b' ' || escaped >= 0x21 && escaped != 0x7f) {
                    return None;
                }
                i += 2;
            }
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
    None
}

/// Appends the framing that precedes `len` bytes of chunk data: `HEX(len) CRLF`.
/// `len` must not be zero (a zero-size chunk ends the body; use [`write_last_chunk`]).
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    debug_assert!(len > 0, "a zero-length chunk would end the body");
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// The CRLF that follows every chunk's data.
pub const CHUNK_DATA_END: &[u8] = b"\r\n";

/// Appends the last chunk, the trailer fields (if any) and the final CRLF.
pub fn write_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    if let Some(trailers) = trailers {
        for (name, value) in trailers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Encodes a whole body as chunks of at most `chunk` bytes (used by tests and small bodies).
pub fn encode_chunked(body: &[u8], chunk: usize, trailers: Option<&HeaderMap>) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 32);
    for piece in body.chunks(chunk.max(1)) {
        write_chunk_header(&mut out, piece.len());
        out.extend_from_slice(piece);
        out.extend_from_slice(CHUNK_DATA_END);
    }
    write_last_chunk(&mut out, trailers);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// Feeds `input` to a fresh decoder in pieces cut at `splits`, returning the body, the
    /// trailers and how many bytes were left over after the end.
    fn decode_split(
        input: &[u8],
        splits: &[usize],
    ) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ParseError> {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut trailers = None;
        let mut fed = 0;
        let mut cuts = splits.to_vec();
        cuts.push(input.len());
        for cut in cuts {
            buf.extend_from_slice(&input[fed..cut]);
            fed = cut;
            while !decoder.is_done() {
                match decoder.decode(&mut buf)? {
                    None => break,
                    Some(BodyEvent::Data(data)) => body.extend_from_slice(&data),
                    Some(BodyEvent::Trailers(map)) => trailers = Some(map),
                    Some(BodyEvent::End) => {}
                }
            }
        }
        if !decoder.is_done() {
            return Err(ParseError::Chunk("incomplete"));
        }
        Ok((body, trailers, buf.len()))
    }

    /// Decodes whole, then split at every single byte position, then split at every pair
    /// of positions; every way of cutting the input must give the same answer.
    fn decode_all_ways(input: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ParseError> {
        let whole = decode_split(input, &[]);
        for i in 0..=input.len() {
            assert_eq!(decode_split(input, &[i]), whole, "split at {i}");
        }
        for i in 0..=input.len().min(64) {
            for j in i..=input.len().min(64) {
                assert_eq!(decode_split(input, &[i, j]), whole, "split at {i},{j}");
            }
        }
        whole
    }

    #[test]
    fn decodes_chunks_and_leaves_the_next_message() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        let (body, trailers, left) = decode_all_ways(input).unwrap();
        assert_eq!(body, b"hello world");
        assert!(trailers.is_none());
        assert_eq!(left, b"GET / HTTP/1.1\r\n".len());
    }

    #[test]
    fn decodes_trailers() {
        let input = b"3\r\nabc\r\n0\r\nVary: *\r\nX-Sum: 42\r\n\r\n";
        let (body, trailers, left) = decode_all_ways(input).unwrap();
        assert_eq!(body, b"abc");
        let trailers = trailers.unwrap();
        assert_eq!(trailers["x-sum"], "42");
        assert_eq!(trailers["vary"], "*");
        assert_eq!(left, 0);
    }

    #[test]
    fn accepts_extensions_leading_zeros_and_uppercase_hex() {
        let input = b"A;name=value ; flag ;q=\"a \\\" b;c\"\r\n0123456789\r\n000\r\n\r\n";
        let (body, _, _) = decode_all_ways(input).unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn rejects_malformed_chunk_lines() {
        let bad: &[&[u8]] = &[
            b"\r\nabc\r\n0\r\n\r\n",           // empty size
            b"3\r\nfoo\r\n\r\n",               // missing last chunk
            b"a \r\n0123456789\r\n0\r\n\r\n",  // BWS without extension
            b"3\nfoo\r\n0\r\n\r\n",            // bare LF
            b"3\r\r\nfoo\r\n0\r\n\r\n",        // CR CR
            b"3;\r\nfoo\r\n0\r\n\r\n",         // empty extension name
            b"3;a=\r\nfoo\r\n0\r\n\r\n",       // empty extension value
            b"3;a=\"b\r\nfoo\r\n0\r\n\r\n",    // unterminated quoted string
            b"3 x\r\nfoo\r\n0\r\n\r\n",        // junk after size
            b"-3\r\nfoo\r\n0\r\n\r\n",         // sign
            b"0x3\r\nfoo\r\n0\r\n\r\n",        // 0x prefix
            b"3\r\nfooX\r\n0\r\n\r\n",         // data longer than size
            b"3\r\nfo\r\n0\r\n\r\n",           // data shorter than size
            b"3;a\x00b\r\nfoo\r\n0\r\n\r\n",   // NUL in extension
            b"3;a\nb\r\nfoo\r\n0\r\n\r\n",     // LF in extension
            b"11111111111111111\r\n",          // 17 hex digits: overflow
            b"3\r\nfoo\r\n0\r\nX: y\n\r\n",    // bare LF in trailers
            b"3\r\nfoo\r\n0\r\nX : y\r\n\r\n", // space before colon in trailer
        ];
        for input in bad {
            assert!(
                decode_split(input, &[]).is_err(),
                "accepted {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let limits = ChunkedLimits::default();
        let mut long_ext = b"1;x=".to_vec();
        long_ext.resize(limits.max_line + 10, b'a');
        let mut buf = BytesMut::from(&long_ext[..]);
        let mut decoder = ChunkedDecoder::new(limits);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ParseError::ChunkExtensionTooLong {
                limit: limits.max_line
            })
        );

        let mut big_trailer = b"0\r\nX: ".to_vec();
        big_trailer.resize(limits.max_trailer_bytes + 10, b'a');
        let mut buf = BytesMut::from(&big_trailer[..]);
        let mut decoder = ChunkedDecoder::new(limits);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ParseError::Trailer("trailer section too large"))
        );

        let mut many = b"0\r\n".to_vec();
        for i in 0..=limits.max_trailer_fields {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            decode_split(&many, &[]),
            Err(ParseError::Trailer("too many trailer fields"))
        );
    }

    #[test]
    fn huge_declared_chunk_streams_without_buffering() {
        let mut decoder = ChunkedDecoder::new(ChunkedLimits::default());
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Some(BodyEvent::Data(Bytes::from_static(b"abc"))))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }

    #[test]
    fn encoder_writes_lowercase_hex_sizes() {
        let mut out = Vec::new();
        write_chunk_header(&mut out, 255);
        write_chunk_header(&mut out, 1);
        write_chunk_header(&mut out, 0x10000);
        assert_eq!(out, b"ff\r\n1\r\n10000\r\n");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", HeaderValue::from_static("1"));
        let mut last = Vec::new();
        write_last_chunk(&mut last, Some(&trailers));
        assert_eq!(last, b"0\r\nx-sum: 1\r\n\r\n");
    }

    mod roundtrip {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn encode_then_decode_is_identity(
                body in proptest::collection::vec(any::<u8>(), 0..2048),
                chunk in 1usize..300,
                cut in 0usize..4096,
            ) {
                let encoded = encode_chunked(&body, chunk, None);
                let cut = cut.min(encoded.len());
                let (decoded, trailers, left) = decode_split(&encoded, &[cut]).unwrap();
                prop_assert_eq!(decoded, body);
                prop_assert!(trailers.is_none());
                prop_assert_eq!(left, 0);
            }

            #[test]
            fn decoder_never_panics(input in proptest::collection::vec(any::<u8>(), 0..512)) {
                let _ = decode_split(&input, &[input.len() / 2]);
            }
        }
    }
}
