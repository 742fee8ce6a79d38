//! Header rules of an intermediary (RFC 9110 §7.6): what is hop-by-hop and removed, what is
//! added (`Via`, `X-Forwarded-For`, `Forwarded`, each written per its grammar so that no
//! value the client chose can add entries of its own), and loop detection.
//!
//! Pure functions over header maps. They must not decide framing (the connection re-frames
//! every body for the next hop) or pick targets.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue, Version, header};

use crate::wire::headers::{is_tchar, is_token, is_valid_host, list_members, trim_ows};

/// Fields that are always hop-by-hop (RFC 9110 §7.6.1; `Proxy-Connection` is the legacy
/// spelling of `Connection`; `Proxy-Authorization` and `Proxy-Authenticate` are addressed
/// to this proxy, §11.7). `Content-Length` is removed with them: the body is re-framed for
/// the next hop.
fn is_always_hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "content-length"
    )
}

/// Fields a `Connection` option may never remove: removing `Host` would change the target,
/// a known abuse of hop-by-hop lists.
const NEVER_STRIPPED: [&str; 1] = ["host"];

/// Removes the hop-by-hop fields of a message before it is forwarded: `Connection` and
/// every field it names, and the fixed list above. `Upgrade` survives when the proxy
/// forwards a protocol switch end to end (`keep_upgrade`).
///
/// One pass over the names finds what is present; only those are removed (most messages
/// carry none, and a removal costs a name parse and a hash lookup).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        if is_always_hop_by_hop(name.as_str()) && !(keep_upgrade && name == header::UPGRADE) {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    if doomed.contains(&header::CONNECTION) {
        for option in headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| list_members(value.as_bytes()))
        {
            // Only a name the message carries needs removing: found among its names (no
            // parse of the option, no lookup of an absent field such as `keep-alive`).
            let present = headers
                .keys()
                .find(|name| name.as_str().as_bytes().eq_ignore_ascii_case(option));
            if let Some(name) = present
                && !NEVER_STRIPPED.contains(&name.as_str())
                && !(keep_upgrade && name == header::UPGRADE)
                && !doomed.contains(name)
            {
                doomed.push(name.clone());
            }
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// Whether a `Via` field already names this proxy: the request went around in a loop.
pub fn via_names(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get_all(header::VIA)
        .iter()
        .flat_map(|value| list_members(value.as_bytes()))
        .any(|member| {
            // via-entry = received-protocol RWS received-by [ RWS comment ]
            let mut parts = member
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|p| !p.is_empty());
            let _protocol = parts.next();
            parts
                .next()
                .is_some_and(|by| by.eq_ignore_ascii_case(name.as_bytes()))
        })
}

/// Whether `name` may stand in `Via` as the proxy's `received-by` (RFC 9110 §7.6.3): a
/// pseudonym (a token) or `host[:port]`. Anything else could add entries of its own.
pub fn is_valid_via_name(name: &str) -> bool {
    let name = name.as_bytes();
    // A host may hold sub-delims (`,` `;` `(`) that would end the entry early: only token
    // characters, and the colon and brackets of `host:port` / `[v6]:port`.
    is_token(name)
        || (is_valid_host(name)
            && !name.is_empty()
            && name
                .iter()
                .all(|&b| is_tchar(b) || matches!(b, b':' | b'[' | b']')))
}

/// This proxy's `Via` entries, made once: `1.1 name`, `1.0 name` and `2 name`.
#[derive(Debug, Clone)]
pub struct ViaEntries {
    http11: HeaderValue,
    http10: HeaderValue,
    http2: HeaderValue,
}

impl ViaEntries {
    /// The entries for a proxy named `name` (a token or `host:port`); a name that is
    /// neither ([`is_valid_via_name`]) is replaced by `hopline`.
    pub fn new(name: &str) -> Self {
        let name = if is_valid_via_name(name) {
            name
        } else {
            tracing::warn!(
                name,
                "not a token or host:port; `hopline` stands in Via instead"
            );
            "hopline"
        };
        let entry = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {name}"))
                .expect("a token or host:port is a valid field value")
        };
        ViaEntries {
            http11: entry("1.1"),
            http10: entry("1.0"),
            http2: entry("2"),
        }
    }

    /// Appends this proxy to `Via` (RFC 9110 §7.6.3) for a message received in `version`.
    pub fn add(&self, headers: &mut HeaderMap, received: Version) {
        let entry = match received {
            Version::HTTP_10 => &self.http10,
            Version::HTTP_2 => &self.http2,
            _ => &self.http11,
        };
        match headers.entry(header::VIA) {
            // The usual case, no Via yet: the entry is shared, not copied.
            Entry::Vacant(vacant) => {
                vacant.insert(entry.clone());
            }
            Entry::Occupied(_) => append_member(headers, header::VIA, entry.as_bytes()),
        }
    }
}

/// What this hop knows about the request it forwards, for `X-Forwarded-For` and the
/// `Forwarded` element it appends (RFC 7239 §5).
#[derive(Debug, Clone, Copy)]
pub struct ForwardedFor<'a> {
    /// The client's address (`for=`).
    pub client: SocketAddr,
    /// The protocol the request arrived with: `http` or `https` (`proto=`).
    pub proto: &'static str,
    /// The host the client asked for (`host=`), if any.
    pub host: Option<&'a str>,
}

/// Appends the client's address to `X-Forwarded-For` and this hop's element to
/// `Forwarded` (RFC 7239), and sets `X-Forwarded-Proto` to the protocol the request arrived
/// with (replacing a received one, as nginx's `$scheme` and Envoy's edge do: a client must
/// not claim `https` over plain HTTP). Every value is written per the field's grammar (a token, or a
/// quoted-string with `"` and `\` escaped), so no value can add elements or parameters of
/// its own; a value no quoted-string can carry is left out. A received `Forwarded` that
/// does not parse is dropped rather than extended: appended to, an unterminated quote in it
/// could swallow this hop's element.
pub fn add_forwarded(headers: &mut HeaderMap, hop: ForwardedFor<'_>) {
    let mut ip = Vec::with_capacity(40);
    write_ip(&mut ip, hop.client.ip());
    let mut element = Vec::with_capacity(64 + hop.host.map_or(0, str::len));
    element.extend_from_slice(b"for=");
    if hop.client.is_ipv6() {
        // RFC 7239 §6: an IPv6 address is bracketed (and so quoted).
        element.extend_from_slice(b"\"[");
        element.extend_from_slice(&ip);
        element.extend_from_slice(b"]\"");
    } else {
        write_forwarded_value(&mut element, &ip);
    }
    element.extend_from_slice(b";proto=");
    write_forwarded_value(&mut element, hop.proto.as_bytes());
    if let Some(host) = hop.host.filter(|h| !h.is_empty()) {
        let before = element.len();
        element.extend_from_slice(b";host=");
        if !write_forwarded_value(&mut element, host.as_bytes()) {
            element.truncate(before);
        }
    }
    let received_ok = headers
        .get_all(header::FORWARDED)
        .iter()
        .all(|value| parse_forwarded(value.as_bytes()).is_some());
    if !received_ok {
        tracing::debug!("dropping a malformed Forwarded field received from the client");
        headers.remove(header::FORWARDED);
    }
    append_member_owned(headers, HeaderName::from_static("x-forwarded-for"), ip);
    append_member_owned(headers, header::FORWARDED, element);
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(hop.proto),
    );
}

/// Appends `value` as a `Forwarded` parameter value (RFC 7239 §4: `token / quoted-string`):
/// as it is when it is a token, else quoted, with `"` and `\` escaped. Returns `false`
/// (having written nothing) when no quoted-string can carry it: a control character other
/// than HTAB.
fn write_forwarded_value(out: &mut Vec<u8>, value: &[u8]) -> bool {
    if is_token(value) {
        out.extend_from_slice(value);
        return true;
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return false;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    true
}

/// One element of a `Forwarded` field: its parameters in order, names lowercased, values
/// unquoted.
pub type ForwardedElement = Vec<(String, Vec<u8>)>;

/// Parses a `Forwarded` field value (RFC 7239 §4) into its elements, or `None` if it is
/// malformed:
///
/// ```text
/// Forwarded         = 1#forwarded-element
/// forwarded-element = [ forwarded-pair ] *( ";" [ forwarded-pair ] )
/// forwarded-pair    = token "=" value
/// value             = token / quoted-string
/// ```
///
/// Whitespace is accepted around `,` (the list rule) and `;`; empty elements are skipped
/// (RFC 9110 §5.6.1); a parameter named twice in one element is malformed (§4).
pub fn parse_forwarded(value: &[u8]) -> Option<Vec<ForwardedElement>> {
    let mut elements = Vec::new();
    let mut element: ForwardedElement = Vec::new();
    let mut rest = value;
    loop {
        rest = trim_ows(rest);
        match rest.first() {
            None => break,
            Some(b',') => {
                if !element.is_empty() {
                    elements.push(std::mem::take(&mut element));
                }
                rest = &rest[1..];
            }
            Some(b';') => rest = &rest[1..],
            Some(_) => {
                let (name, value, after) = forwarded_pair(rest)?;
                if element.iter().any(|(seen, _)| *seen == name) {
                    return None;
                }
                element.push((name, value));
                rest = trim_ows(after);
                if !matches!(rest.first(), None | Some(b',' | b';')) {
                    return None;
                }
            }
        }
    }
    if !element.is_empty() {
        elements.push(element);
    }
    Some(elements)
}

/// `token "=" value` at the start of `input`: the name (lowercased), the unquoted value,
/// and what follows.
fn forwarded_pair(input: &[u8]) -> Option<(String, Vec<u8>, &[u8])> {
    let name_len = input.iter().take_while(|&&b| is_tchar(b)).count();
    if name_len == 0 || input.get(name_len) != Some(&b'=') {
        return None;
    }
    let name = String::from_utf8(input[..name_len].to_ascii_lowercase()).ok()?;
    let rest = &input[name_len + 1..];
    if rest.first() != Some(&b'"') {
        let value_len = rest.iter().take_while(|&&b| is_tchar(b)).count();
        if value_len == 0 {
            return None;
        }
        return Some((name, rest[..value_len].to_vec(), &rest[value_len..]));
    }
    // quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 §5.6.4)
    let text_ok = |b: u8| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80;
    let mut value = Vec::new();
    let mut i = 1;
    loop {
        match *rest.get(i)? {
            b'"' => return Some((name, value, &rest[i + 1..])),
            b'\\' => {
                let escaped = *rest.get(i + 1)?;
                if !text_ok(escaped) {
                    return None;
                }
                value.push(escaped);
                i += 2;
            }
            b if text_ok(b) => {
                value.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
}

/// Writes an IP address; IPv4 without the formatting machinery (this runs per request).
fn write_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                if octet >= 100 {
                    out.push(b'0' + octet / 100);
                }
                if octet >= 10 {
                    out.push(b'0' + octet / 10 % 10);
                }
                out.push(b'0' + octet % 10);
            }
        }
        IpAddr::V6(v6) => out.extend_from_slice(v6.to_string().as_bytes()),
    }
}

/// Appends `member` to the list in field `name`, folding existing lines into one.
fn append_member(headers: &mut HeaderMap, name: HeaderName, member: &[u8]) {
    append_member_owned(headers, name, member.to_vec());
}

/// [`append_member`] with a member the caller built: when the field is new, its bytes
/// become the value without a copy.
fn append_member_owned(headers: &mut HeaderMap, name: HeaderName, member: Vec<u8>) {
    let mut existing = headers.get_all(&name).iter().peekable();
    if existing.peek().is_none() {
        if let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from(member)) {
            headers.insert(name, value);
        }
        return;
    }
    let member = &member[..];
    let mut folded = Vec::with_capacity(128);
    for value in existing {
        let value = trim_ows(value.as_bytes());
        if !value.is_empty() {
            folded.extend_from_slice(value);
            folded.extend_from_slice(b", ");
        }
    }
    folded.extend_from_slice(member);
    if let Ok(value) = HeaderValue::from_bytes(&folded) {
        headers.insert(name, value);
    }
}

/// Whether the request accepts trailer fields in the response (`TE: trailers`, RFC 9110
/// §10.1.4).
pub fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .flat_map(|v| list_members(v.as_bytes()))
        .any(|member| {
            let name = member.split(|&b| b == b';').next().unwrap_or(member);
            trim_ows(name).eq_ignore_ascii_case(b"trailers")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(fields: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in fields {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_fields_and_those_connection_names_are_removed() {
        let mut headers = map(&[
            ("host", "example.com"),
            ("connection", "keep-alive, X-Secret, x-other"),
            ("connection", "Upgrade"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("x-kept", "3"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("content-length", "10"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
        ]);
        strip_hop_by_hop(&mut headers, false);
        let left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, vec!["host", "x-kept"]);
    }

    #[test]
    fn upgrade_survives_an_end_to_end_switch_and_host_is_never_stripped() {
        let mut headers = map(&[
            ("host", "example.com"),
            ("connection", "Upgrade, host"),
            ("upgrade", "websocket"),
        ]);
        strip_hop_by_hop(&mut headers, true);
        assert_eq!(headers["upgrade"], "websocket");
        assert_eq!(headers["host"], "example.com");
        assert!(!headers.contains_key("connection"));
    }

    #[test]
    fn via_is_appended_and_loops_are_seen() {
        let mut headers = map(&[("via", "1.1 edge (cache)"), ("via", "1.0 other")]);
        assert!(!via_names(&headers, "hopline"));
        ViaEntries::new("hopline").add(&mut headers, Version::HTTP_11);
        assert_eq!(headers["via"], "1.1 edge (cache), 1.0 other, 1.1 hopline");
        assert!(via_names(&headers, "hopline"));
        assert!(via_names(&headers, "HOPLINE"));
        assert!(!via_names(&headers, "hop"));
        let mut old = HeaderMap::new();
        ViaEntries::new("p").add(&mut old, Version::HTTP_10);
        assert_eq!(old["via"], "1.0 p");
    }

    fn hop<'a>(client: &str, host: Option<&'a str>) -> ForwardedFor<'a> {
        ForwardedFor {
            client: client.parse().unwrap(),
            proto: "http",
            host,
        }
    }

    #[test]
    fn forwarded_fields() {
        let mut headers = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarded(
            &mut headers,
            hop("127.0.0.1:5000", Some("example.com:8080")),
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(
            headers["forwarded"],
            "for=127.0.0.1;proto=http;host=\"example.com:8080\""
        );
        assert_eq!(headers["x-forwarded-proto"], "http");
        let mut claimed = map(&[("x-forwarded-proto", "https")]);
        let secure = ForwardedFor {
            proto: "https",
            ..hop("127.0.0.1:5000", None)
        };
        add_forwarded(&mut claimed, hop("127.0.0.1:5000", None));
        assert_eq!(
            claimed["x-forwarded-proto"], "http",
            "a client's claim is replaced"
        );
        add_forwarded(&mut claimed, secure);
        assert_eq!(claimed.get_all("x-forwarded-proto").iter().count(), 1);
        assert_eq!(claimed["x-forwarded-proto"], "https");
        assert!(
            claimed["forwarded"]
                .to_str()
                .unwrap()
                .ends_with("for=127.0.0.1;proto=https")
        );
        let mut v6 = HeaderMap::new();
        add_forwarded(&mut v6, hop("[::1]:80", Some("a")));
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http;host=a");
    }

    #[test]
    fn forwarded_values_cannot_add_elements_or_parameters() {
        // Issue 10: `Host: a,for=6.6.6.6` must not become a second element with a spoofed
        // client, nor `a;proto=https` a second parameter; an empty host is left out.
        let cases = [
            (
                "a,for=6.6.6.6",
                "for=127.0.0.1;proto=http;host=\"a,for=6.6.6.6\"",
            ),
            (
                "a;proto=https",
                "for=127.0.0.1;proto=http;host=\"a;proto=https\"",
            ),
            ("a\"b\\c", "for=127.0.0.1;proto=http;host=\"a\\\"b\\\\c\""),
            ("", "for=127.0.0.1;proto=http"),
            ("a\u{1}b", "for=127.0.0.1;proto=http"),
        ];
        for (host, expected) in cases {
            let mut headers = HeaderMap::new();
            add_forwarded(&mut headers, hop("127.0.0.1:1", Some(host)));
            assert_eq!(headers["forwarded"], expected, "{host:?}");
            let elements = parse_forwarded(headers["forwarded"].as_bytes()).unwrap();
            assert_eq!(elements.len(), 1, "{host:?}");
        }
    }

    #[test]
    fn a_malformed_received_forwarded_is_dropped_not_extended() {
        let mut headers = map(&[("forwarded", "for=\"unterminated")]);
        add_forwarded(&mut headers, hop("127.0.0.1:1", None));
        assert_eq!(headers["forwarded"], "for=127.0.0.1;proto=http");
        let mut headers = map(&[
            ("forwarded", "for=1.2.3.4; proto=https"),
            ("forwarded", "for=5.6.7.8"),
        ]);
        add_forwarded(&mut headers, hop("127.0.0.1:1", None));
        assert_eq!(
            headers["forwarded"],
            "for=1.2.3.4; proto=https, for=5.6.7.8, for=127.0.0.1;proto=http"
        );
    }

    #[test]
    fn forwarded_parser_table() {
        let pairs = |list: &[&[(&str, &str)]]| -> Option<Vec<ForwardedElement>> {
            Some(
                list.iter()
                    .map(|e| {
                        e.iter()
                            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                            .collect()
                    })
                    .collect(),
            )
        };
        let cases: &[(&str, Option<Vec<ForwardedElement>>)] = &[
            ("for=a", pairs(&[&[("for", "a")]])),
            (
                "For=a;PROTO=http",
                pairs(&[&[("for", "a"), ("proto", "http")]]),
            ),
            ("for=a , for=b", pairs(&[&[("for", "a")], &[("for", "b")]])),
            ("for=\"[::1]:80\"", pairs(&[&[("for", "[::1]:80")]])),
            ("for=\"a\\\"b\"", pairs(&[&[("for", "a\"b")]])),
            (",, for=a,", pairs(&[&[("for", "a")]])),
            ("for=a;;by=b", pairs(&[&[("for", "a"), ("by", "b")]])),
            ("", pairs(&[])),
            ("for=", None),
            ("=a", None),
            ("for", None),
            ("for=a b", None),
            ("for=a;for=b", None),
            ("for=\"open", None),
            ("for=\"a\"b", None),
            ("for=[::1]", None),
        ];
        for (value, expected) in cases {
            assert_eq!(&parse_forwarded(value.as_bytes()), expected, "{value:?}");
        }
    }

    #[test]
    fn via_names_are_tokens_or_host_ports() {
        for good in ["hopline", "proxy.example:8080", "[::1]:80", "127.0.0.1"] {
            assert!(is_valid_via_name(good), "{good}");
        }
        for bad in ["", "a b", "a, 1.1 evil", "a;b", "a(b)"] {
            assert!(!is_valid_via_name(bad), "{bad}");
        }
        let mut headers = HeaderMap::new();
        ViaEntries::new("a, 1.1 evil").add(&mut headers, Version::HTTP_11);
        assert_eq!(headers["via"], "1.1 hopline");
    }

    mod property {
        use super::*;
        use proptest::prelude::*;

        fn element() -> impl Strategy<Value = String> {
            // Well-formed received elements, with values that need quoting and escaping.
            proptest::collection::vec(("[a-z]{1,5}", "[ -~]{0,8}"), 1..3).prop_map(|pairs| {
                let mut seen = std::collections::HashSet::new();
                let mut out = Vec::new();
                for (name, value) in pairs {
                    if seen.insert(name.clone()) {
                        let mut v = Vec::new();
                        write_forwarded_value(&mut v, value.as_bytes());
                        out.push(format!("{name}={}", String::from_utf8(v).unwrap()));
                    }
                }
                out.join(";")
            })
        }

        proptest! {
            /// For arbitrary host values and arbitrary received `Forwarded` fields (well
            /// formed or not), the emitted field parses to the elements received (when they
            /// parse) followed by exactly this hop's element, with the host as sent.
            #[test]
            fn the_emitted_forwarded_holds_exactly_the_elements_meant(
                host in proptest::collection::vec(any::<u8>(), 0..24),
                received in proptest::collection::vec(
                    prop_oneof![element(), "[ -~]{0,24}"],
                    0..3,
                ),
                v6 in any::<bool>(),
            ) {
                let mut headers = HeaderMap::new();
                for value in &received {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        headers.append(header::FORWARDED, value);
                    }
                }
                let before: Option<Vec<ForwardedElement>> = headers
                    .get_all(header::FORWARDED)
                    .iter()
                    .map(|v| parse_forwarded(v.as_bytes()))
                    .collect::<Option<Vec<_>>>()
                    .map(|lists| lists.concat());
                let host = String::from_utf8_lossy(&host).into_owned();
                let client = if v6 { "[2001:db8::1]:9" } else { "192.0.2.7:9" };
                add_forwarded(&mut headers, hop(client, Some(&host)));
                let emitted = parse_forwarded(headers[header::FORWARDED].as_bytes()).unwrap();
                let mut expected = before.unwrap_or_default();
                let mut ours: ForwardedElement = vec![
                    ("for".into(), if v6 { b"[2001:db8::1]".to_vec() } else { b"192.0.2.7".to_vec() }),
                    ("proto".into(), b"http".to_vec()),
                ];
                let carriable = host.bytes().all(|b| b >= 0x20 && b != 0x7f || b == b'\t');
                if !host.is_empty() && carriable {
                    ours.push(("host".into(), host.as_bytes().to_vec()));
                }
                expected.push(ours);
                prop_assert_eq!(emitted, expected);
            }
        }
    }

    #[test]
    fn trailers_acceptance() {
        assert!(accepts_trailers(&map(&[("te", "trailers")])));
        assert!(accepts_trailers(&map(&[("te", "gzip;q=0.5, Trailers")])));
        assert!(!accepts_trailers(&map(&[("te", "gzip")])));
        assert!(!accepts_trailers(&HeaderMap::new()));
    }
}
