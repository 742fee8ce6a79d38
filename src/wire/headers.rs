//! Field-level rules of RFC 9110/9112 that decide framing and persistence: list members,
//! `Connection` options, `Content-Length` and `Transfer-Encoding` validation.
//!
//! Owns the meaning of individual field values. It must not decide what a whole message
//! means (that is [`super::framing`]) and must not touch I/O.

use super::ParseError;

/// Trims optional whitespace (SP / HTAB, RFC 9110 §5.6.3) from both ends.
pub fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The non-empty members of a comma-separated list value, OWS trimmed (RFC 9110 §5.6.1:
/// recipients ignore empty elements).
pub fn list_members(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|member| !member.is_empty())
}

/// `tchar` of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    matches!(b,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// `token` of RFC 9110 §5.6.2: one or more `tchar`.
pub fn is_token(value: &[u8]) -> bool {
    !value.is_empty() && value.iter().all(|&b| is_tchar(b))
}

/// The connection options a message carries in its `Connection` field(s) (RFC 9110 §7.6.1)
/// that matter to the connection itself. Other option names are hop-by-hop field names; the
/// proxy reads those with [`list_members`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// `close`: the sender will close after this message (RFC 9112 §9.6).
    pub close: bool,
    /// `keep-alive`: an HTTP/1.0 sender asks to persist (RFC 9112 Appendix C.2.2).
    pub keep_alive: bool,
    /// `upgrade`: the `Upgrade` field is meant for this hop (RFC 9110 §7.8).
    pub upgrade: bool,
}

impl ConnectionOptions {
    /// Folds one `Connection` field line into the options seen so far.
    pub fn add(&mut self, value: &[u8]) {
        for option in list_members(value) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            }
        }
    }
}

/// Folds one `Content-Length` field line into the value seen so far (RFC 9110 §8.6,
/// RFC 9112 §6.3 rule 5).
///
/// The value must be `1*DIGIT` and fit in a `u64`. Repeated field lines are accepted only
/// when they carry the same value (they collapse to one). A comma list inside one line
/// (`42, 42`) is rejected even when its members agree: RFC 9110 §8.6 allows either choice,
/// and desync classifiers rate such a list as a severe smuggling signal.
pub fn fold_content_length(previous: Option<u64>, value: &[u8]) -> Result<u64, ParseError> {
    let digits = trim_ows(value);
    if digits.is_empty() {
        return Err(ParseError::ContentLength("empty value"));
    }
    let mut length: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return Err(ParseError::ContentLength("not a decimal number"));
        }
        length = length
            .checked_mul(10)
            .and_then(|l| l.checked_add(u64::from(b - b'0')))
            .ok_or(ParseError::ContentLength("value overflows"))?;
    }
    match previous {
        Some(seen) if seen != length => Err(ParseError::ContentLength("conflicting values")),
        _ => Ok(length),
    }
}

/// What the `Transfer-Encoding` field lines of a message add up to (RFC 9112 §6.1).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferCodings {
    /// Number of codings listed over all field lines.
    pub count: usize,
    /// How many of them are `chunked`.
    pub chunked: usize,
    /// Whether the last coding listed is `chunked`.
    pub chunked_last: bool,
    /// A field line with no coding at all, or a member that is not a valid coding.
    pub malformed: bool,
}

impl TransferCodings {
    /// Folds one `Transfer-Encoding` field line into the codings seen so far.
    pub fn add(&mut self, value: &[u8]) {
        let mut any = false;
        for member in list_members(value) {
            any = true;
            self.count += 1;
            // transfer-coding = token *( OWS ";" OWS transfer-parameter ); `chunked` takes
            // no parameters, so only a bare `chunked` member counts as chunked.
            let name = trim_ows(member.split(|&b| b == b';').next().unwrap_or(member));
            if !is_token(name) {
                self.malformed = true;
            }
            let is_chunked = member.eq_ignore_ascii_case(b"chunked");
            if name.eq_ignore_ascii_case(b"chunked") && !is_chunked {
                self.malformed = true;
            }
            if is_chunked {
                self.chunked += 1;
            }
            self.chunked_last = is_chunked;
        }
        if !any {
            self.malformed = true;
        }
    }

    /// `chunked` is applied exactly once and is the final coding: the only shape whose
    /// length a recipient can determine (RFC 9112 §6.3 rule 4, §7: chunked at most once).
    pub fn is_chunked_final(&self) -> bool {
        !self.malformed && self.chunked == 1 && self.chunked_last
    }
}

/// Whether `value` is a valid `Host` field value: `uri-host [ ":" port ]` (RFC 9110 §7.2).
/// An empty value is allowed (a request target without authority, RFC 9112 §3.2). One pass:
/// this runs for every request.
pub fn is_valid_host(value: &[u8]) -> bool {
    let value = trim_ows(value);
    let (host_ok, rest) = match value.first() {
        None => return true,
        // IP-literal: "[" ( IPv6address / IPvFuture ) "]"
        Some(b'[') => match value.iter().position(|&b| b == b']') {
            Some(close) if close > 1 => (
                value[1..close]
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.'),
                &value[close + 1..],
            ),
            _ => return false,
        },
        Some(_) => {
            let host_len = value
                .iter()
                .take_while(|&&b| REG_NAME[usize::from(b)])
                .count();
            (host_len > 0, &value[host_len..])
        }
    };
    host_ok
        && match rest {
            [] => true,
            [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
            _ => false,
        }
}

/// Bytes of a `reg-name` or IPv4 address: unreserved / pct-encoded / sub-delims
/// (RFC 3986 §3.2.2), as a table: checked for every request's Host.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ows_is_trimmed_on_both_sides() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b""), b"");
    }

    #[test]
    fn list_members_skip_empty_elements() {
        let members: Vec<&[u8]> = list_members(b" a, ,b ,,\tc\t,").collect();
        assert_eq!(members, vec![&b"a"[..], b"b", b"c"]);
    }

    #[test]
    fn connection_options_are_case_insensitive_and_accumulate() {
        let mut options = ConnectionOptions::default();
        options.add(b"Keep-Alive, X-Foo");
        assert_eq!(
            options,
            ConnectionOptions {
                keep_alive: true,
                ..Default::default()
            }
        );
        options.add(b"UPGRADE");
        options.add(b"close\t");
        assert!(options.close && options.keep_alive && options.upgrade);
        let mut not_close = ConnectionOptions::default();
        not_close.add(b"closed, keep-alive-ish");
        assert_eq!(not_close, ConnectionOptions::default());
    }

    #[test]
    fn content_length_table() {
        let cases: &[(&[u8], Result<u64, ParseError>)] = &[
            (b"0", Ok(0)),
            (b"003", Ok(3)),
            (b" 42 ", Ok(42)),
            (b"\t42\t", Ok(42)),
            (b"18446744073709551615", Ok(u64::MAX)),
            (
                b"18446744073709551616",
                Err(ParseError::ContentLength("value overflows")),
            ),
            (
                b"1000000000000000000000",
                Err(ParseError::ContentLength("value overflows")),
            ),
            (b"", Err(ParseError::ContentLength("empty value"))),
            (b"  ", Err(ParseError::ContentLength("empty value"))),
            (
                b"+1",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"-1",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"0x10",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"4 2",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"42,42",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"42, 42",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
            (
                b"1e3",
                Err(ParseError::ContentLength("not a decimal number")),
            ),
        ];
        for (value, expected) in cases {
            assert_eq!(
                &fold_content_length(None, value),
                expected,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn repeated_content_length_must_agree() {
        assert_eq!(fold_content_length(Some(5), b"5"), Ok(5));
        assert_eq!(fold_content_length(Some(5), b"005"), Ok(5));
        assert_eq!(
            fold_content_length(Some(5), b"6"),
            Err(ParseError::ContentLength("conflicting values"))
        );
    }

    fn codings(lines: &[&[u8]]) -> TransferCodings {
        let mut codings = TransferCodings::default();
        for line in lines {
            codings.add(line);
        }
        codings
    }

    #[test]
    fn transfer_coding_table() {
        // (field lines, chunked is final and unique, malformed)
        let cases: &[(&[&[u8]], bool, bool)] = &[
            (&[b"chunked"], true, false),
            (&[b"Chunked"], true, false),
            (&[b"gzip, chunked"], true, false),
            (&[b"gzip", b"chunked"], true, false),
            (&[b"chunked, gzip"], false, false),
            (&[b"chunked", b"gzip"], false, false),
            (&[b"chunked, chunked"], false, false),
            (&[b"chunked", b"chunked"], false, false),
            (&[b"gzip"], false, false),
            (&[b"identity"], false, false),
            (&[b"chunkedchunked"], false, false),
            (&[b""], false, true),
            (&[b" , "], false, true),
            (&[b"chunked;foo=bar"], false, true),
            (&[b"chu nked"], false, true),
            (&[b"\"chunked\""], false, true),
        ];
        for (lines, chunked_final, malformed) in cases {
            let folded = codings(lines);
            assert_eq!(folded.is_chunked_final(), *chunked_final, "{lines:?}");
            assert_eq!(folded.malformed, *malformed, "{lines:?}");
        }
    }

    #[test]
    fn host_values() {
        for good in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"127.0.0.1:80",
            b"[::1]:8080",
            b"[::1]",
            b"a_b.example",
        ] {
            assert!(is_valid_host(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"exa mple.com"[..],
            b"example.com:80x",
            b"a@b",
            b"[::1",
            b"[]",
            b":80",
            b"a/b",
            b"a:80:90",
        ] {
            assert!(!is_valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
