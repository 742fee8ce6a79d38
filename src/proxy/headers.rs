//! Header rules of an intermediary (RFC 9110 §7.6): what is hop-by-hop and removed, what is
//! added (`Via`, `X-Forwarded-For`, `Forwarded`), and loop detection.
//!
//! Pure functions over header maps. They must not decide framing (the connection re-frames
//! every body for the next hop) or pick targets.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue, Version, header};

use crate::wire::headers::{list_members, trim_ows};

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
            if let Ok(name) = HeaderName::from_bytes(option)
                && !NEVER_STRIPPED.contains(&name.as_str())
                && !(keep_upgrade && name == header::UPGRADE)
            {
                doomed.push(name);
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

/// This proxy's `Via` entries, made once: `1.1 name` and `1.0 name`.
#[derive(Debug, Clone)]
pub struct ViaEntries {
    http11: HeaderValue,
    http10: HeaderValue,
}

impl ViaEntries {
    /// The entries for a proxy named `name` (a token or `host:port`).
    pub fn new(name: &str) -> Self {
        let entry = |protocol: &str| {
            HeaderValue::from_str(&format!("{protocol} {name}"))
                .unwrap_or_else(|_| HeaderValue::from_static("1.1 hopline"))
        };
        ViaEntries {
            http11: entry("1.1"),
            http10: entry("1.0"),
        }
    }

    /// Appends this proxy to `Via` (RFC 9110 §7.6.3) for a message received in `version`.
    pub fn add(&self, headers: &mut HeaderMap, received: Version) {
        let entry = if received == Version::HTTP_10 {
            &self.http10
        } else {
            &self.http11
        };
        append_member(headers, header::VIA, entry.as_bytes());
    }
}

/// Appends the client's address to `X-Forwarded-For` and a `Forwarded` element
/// (RFC 7239) with it, the protocol and the host the client asked for.
pub fn add_forwarded(headers: &mut HeaderMap, client: SocketAddr, host: Option<&str>) {
    let mut ip = Vec::with_capacity(48);
    write_ip(&mut ip, client.ip());
    append_member(headers, HeaderName::from_static("x-forwarded-for"), &ip);
    // RFC 7239 §6: IPv6 addresses are bracketed and quoted; a host with a port is quoted.
    let mut element = Vec::with_capacity(64);
    element.extend_from_slice(b"for=");
    if client.is_ipv6() {
        element.extend_from_slice(b"\"[");
        element.extend_from_slice(&ip);
        element.extend_from_slice(b"]\"");
    } else {
        element.extend_from_slice(&ip);
    }
    element.extend_from_slice(b";proto=http");
    if let Some(host) = host.filter(|h| h.bytes().all(|b| b.is_ascii_graphic() && b != b'"')) {
        element.extend_from_slice(b";host=");
        if host.contains(':') {
            element.push(b'"');
            element.extend_from_slice(host.as_bytes());
            element.push(b'"');
        } else {
            element.extend_from_slice(host.as_bytes());
        }
    }
    append_member(headers, header::FORWARDED, &element);
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
    let mut existing = headers.get_all(&name).iter().peekable();
    if existing.peek().is_none() {
        if let Ok(value) = HeaderValue::from_bytes(member) {
            headers.insert(name, value);
        }
        return;
    }
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

    #[test]
    fn forwarded_fields() {
        let mut headers = map(&[("x-forwarded-for", "10.0.0.1")]);
        add_forwarded(
            &mut headers,
            "127.0.0.1:5000".parse().unwrap(),
            Some("example.com:8080"),
        );
        assert_eq!(headers["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(
            headers["forwarded"],
            "for=127.0.0.1;proto=http;host=\"example.com:8080\""
        );
        let mut v6 = HeaderMap::new();
        add_forwarded(&mut v6, "[::1]:80".parse().unwrap(), Some("a"));
        assert_eq!(v6["forwarded"], "for=\"[::1]\";proto=http;host=a");
    }

    #[test]
    fn trailers_acceptance() {
        assert!(accepts_trailers(&map(&[("te", "trailers")])));
        assert!(accepts_trailers(&map(&[("te", "gzip;q=0.5, Trailers")])));
        assert!(!accepts_trailers(&map(&[("te", "gzip")])));
        assert!(!accepts_trailers(&HeaderMap::new()));
    }
}
