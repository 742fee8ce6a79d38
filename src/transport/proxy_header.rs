//! The PROXY protocol header (HAProxy's, versions 1 and 2): what an L4 balancer writes before
//! a connection's first byte to say whose connection it relays, so that the client's address
//! survives the hop. This module is pure: a strict, incremental parser and the two writers,
//! tested whole and split at every byte. Reading the header off a socket is
//! [`super::read_proxy_header`]'s; whom to believe is the listener's.
//!
//! Spec: <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Version 2's first 12 bytes.
pub const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest line, CRLF included (§2.1).
pub const V1_MAX: usize = 107;
/// The longest version 2 header accepted: the fixed 16 bytes and 1 KiB of addresses and
/// TLVs (a balancer's addresses take 36 at most; TLVs are few and short).
pub const V2_MAX: usize = 16 + 1024;

/// What a header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// The balancer's own connection (v2 `LOCAL`, v1 `UNKNOWN`, or an address family other
    /// than TCP over IPv4/IPv6): the socket's addresses stand.
    Local,
    /// A relayed TCP connection: the client's address and the one it connected to.
    Proxied {
        /// The client.
        source: SocketAddr,
        /// Where the client connected (the balancer's front).
        destination: SocketAddr,
    },
}

/// Why bytes are not a PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// They do not start like one (no `PROXY ` and no version 2 signature).
    #[error("no PROXY protocol header")]
    Missing,
    /// They start like one but break its grammar.
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(&'static str),
    /// Longer than [`V1_MAX`] or [`V2_MAX`].
    #[error("PROXY protocol header too long")]
    TooLong,
}

/// Parses a header at the start of `buf`: `Ok(Some((header, length)))` once it is whole
/// (`length` bytes of `buf` are the header), `Ok(None)` while `buf` is a prefix of one.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let v1 = b"PROXY ";
    if buf.len() < v1.len().max(V2_SIGNATURE.len()) {
        let prefix_of = |what: &[u8]| what.starts_with(&buf[..buf.len().min(what.len())]);
        if !prefix_of(v1) && !prefix_of(&V2_SIGNATURE) {
            return Err(ProxyHeaderError::Missing);
        }
        if buf.len() < v1.len() || !buf.starts_with(v1) {
            return Ok(None);
        }
    }
    if buf.starts_with(v1) {
        parse_v1(buf)
    } else if buf.starts_with(&V2_SIGNATURE) {
        parse_v2(buf)
    } else {
        Err(ProxyHeaderError::Missing)
    }
}

/// Version 1 (§2.1): `PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n`, or `PROXY UNKNOWN ...\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        return match buf.len() >= V1_MAX {
            true => Err(ProxyHeaderError::TooLong),
            false => Ok(None),
        };
    };
    match buf.get(cr + 1) {
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(malformed("a CR without its LF")),
    }
    let line = std::str::from_utf8(&buf[6..cr]).map_err(|_| malformed("not ASCII"))?;
    if line.contains('\n') {
        return Err(malformed("a bare LF"));
    }
    let length = cr + 2;
    if line == "UNKNOWN" || line.starts_with("UNKNOWN ") {
        return Ok(Some((ProxyHeader::Local, length)));
    }
    let fields: Vec<&str> = line.split(' ').collect();
    let [proto, source, destination, source_port, destination_port] = fields[..] else {
        return Err(malformed("not five fields after PROXY"));
    };
    let ip = |text: &str| -> Result<IpAddr, ProxyHeaderError> {
        match proto {
            "TCP4" => text.parse::<Ipv4Addr>().map(IpAddr::V4),
            "TCP6" => text.parse::<Ipv6Addr>().map(IpAddr::V6),
            _ => return Err(malformed("the protocol is not TCP4, TCP6 or UNKNOWN")),
        }
        .map_err(|_| malformed("an address that is not the protocol's"))
    };
    let header = ProxyHeader::Proxied {
        source: SocketAddr::new(ip(source)?, port(source_port)?),
        destination: SocketAddr::new(ip(destination)?, port(destination_port)?),
    };
    Ok(Some((header, length)))
}

/// A v1 port: 0 to 65535 in decimal, without a sign or leading zeros.
fn port(text: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits || (text.len() > 1 && text.starts_with('0')) {
        return Err(ProxyHeaderError::Malformed("a port that is not 0 to 65535"));
    }
    text.parse()
        .map_err(|_| ProxyHeaderError::Malformed("a port that is not 0 to 65535"))
}

/// Version 2 (§2.2): the signature, version and command, family and protocol, the length
/// of what follows, then the addresses (and TLVs, skipped).
fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyHeaderError> {
    let malformed = ProxyHeaderError::Malformed;
    let Some(fixed) = buf.get(..16) else {
        return Ok(None);
    };
    let (version, command) = (fixed[12] >> 4, fixed[12] & 0x0f);
    if version != 2 {
        return Err(malformed("version is not 2"));
    }
    let (family, transport) = (fixed[13] >> 4, fixed[13] & 0x0f);
    let rest = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    let length = 16 + rest;
    if length > V2_MAX {
        return Err(ProxyHeaderError::TooLong);
    }
    let local = match command {
        0 => true,
        1 => false,
        _ => return Err(malformed("the command is not LOCAL or PROXY")),
    };
    if family > 3 || transport > 2 {
        return Err(malformed("an unknown address family or protocol"));
    }
    let Some(addresses) = buf.get(16..length) else {
        return Ok(None);
    };
    // A relayed stream over IPv4 or IPv6 says whose it is; anything else keeps the socket's.
    let header = match (local, family, transport) {
        (false, 1, 1) if addresses.len() >= 12 => {
            let ip =
                |at: usize| IpAddr::from(<[u8; 4]>::try_from(&addresses[at..at + 4]).expect("4"));
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(8)),
                destination: SocketAddr::new(ip(4), port(10)),
            }
        }
        (false, 2, 1) if addresses.len() >= 36 => {
            let ip = |at: usize| {
                IpAddr::from(<[u8; 16]>::try_from(&addresses[at..at + 16]).expect("16"))
            };
            let port = |at: usize| u16::from_be_bytes([addresses[at], addresses[at + 1]]);
            ProxyHeader::Proxied {
                source: SocketAddr::new(ip(0), port(32)),
                destination: SocketAddr::new(ip(16), port(34)),
            }
        }
        (false, 1 | 2, 1) => return Err(malformed("addresses shorter than their family")),
        (false, _, 2) => return Err(malformed("a datagram header on a stream")),
        _ => ProxyHeader::Local,
    };
    Ok(Some((header, length)))
}

/// Which header a client writes first (`--upstream-proxy-protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum ProxyVersion {
    /// The text header.
    V1,
    /// The binary header.
    V2,
}

impl ProxyVersion {
    /// The header for a connection relaying `addresses` (the client's, then the one it
    /// connected to); without them, the balancer's own (`UNKNOWN`, `LOCAL`).
    pub fn header(self, addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
        match (self, addresses) {
            (ProxyVersion::V1, Some((source, destination))) => write_v1(source, destination),
            (ProxyVersion::V1, None) => b"PROXY UNKNOWN\r\n".to_vec(),
            (ProxyVersion::V2, addresses) => write_v2(addresses),
        }
    }
}

/// Version 1 for a relayed connection (a mixed pair is written as IPv6, the IPv4 side mapped).
pub fn write_v1(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let (source, destination) = same_family(source, destination);
    let proto = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {proto} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

/// Version 2: `PROXY` with the addresses, or `LOCAL` without any.
pub fn write_v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut out = V2_SIGNATURE.to_vec();
    let Some((source, destination)) = addresses else {
        out.extend_from_slice(&[0x20, 0x00, 0, 0]);
        return out;
    };
    match same_family(source, destination) {
        (SocketAddr::V4(s), SocketAddr::V4(d)) => {
            out.extend_from_slice(&[0x21, 0x11, 0, 12]);
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&d.ip().octets());
        }
        (s, d) => {
            out.extend_from_slice(&[0x21, 0x21, 0, 36]);
            out.extend_from_slice(&v6(s.ip()).octets());
            out.extend_from_slice(&v6(d.ip()).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(ip) => ip.to_ipv6_mapped(),
        IpAddr::V6(ip) => ip,
    }
}

/// Both addresses in one family: as they are if they share one, else both IPv6.
fn same_family(source: SocketAddr, destination: SocketAddr) -> (SocketAddr, SocketAddr) {
    if source.is_ipv4() == destination.is_ipv4() {
        return (source, destination);
    }
    let mapped = |a: SocketAddr| SocketAddr::new(IpAddr::V6(v6(a.ip())), a.port());
    (mapped(source), mapped(destination))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(source: &str, destination: &str) -> ProxyHeader {
        ProxyHeader::Proxied {
            source: source.parse().unwrap(),
            destination: destination.parse().unwrap(),
        }
    }

    /// Parses `header` followed by an HTTP request, whole and split at every byte: the
    /// same header and length every time, `None` for every proper prefix.
    fn parses_split(header: &[u8], expected: ProxyHeader) {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(parse(&bytes), Ok(Some((expected, header.len()))));
        for cut in 0..header.len() {
            assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut} of {header:?}");
        }
    }

    #[test]
    fn version_1_whole_and_split_at_every_byte() {
        parses_split(
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n",
            proxied("192.0.2.1:56324", "198.51.100.2:443"),
        );
        parses_split(
            b"PROXY TCP6 2001:db8::1 2001:db8::2 0 65535\r\n",
            proxied("[2001:db8::1]:0", "[2001:db8::2]:65535"),
        );
        parses_split(b"PROXY UNKNOWN\r\n", ProxyHeader::Local);
        parses_split(
            b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n",
            ProxyHeader::Local,
        );
    }

    #[test]
    fn version_2_whole_and_split_at_every_byte() {
        let v4 = write_v2(Some((
            "192.0.2.1:56324".parse().unwrap(),
            "198.51.100.2:443".parse().unwrap(),
        )));
        parses_split(&v4, proxied("192.0.2.1:56324", "198.51.100.2:443"));
        let v6 = write_v2(Some((
            "[2001:db8::1]:1".parse().unwrap(),
            "[2001:db8::2]:2".parse().unwrap(),
        )));
        parses_split(&v6, proxied("[2001:db8::1]:1", "[2001:db8::2]:2"));
        parses_split(&write_v2(None), ProxyHeader::Local);
        // TLVs after the addresses are skipped; an AF_UNIX or UNSPEC one keeps the socket's.
        let mut with_tlv = v4.clone();
        with_tlv[15] += 7;
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x04, b'n', b'o', b'o', b'p']);
        parses_split(&with_tlv, proxied("192.0.2.1:56324", "198.51.100.2:443"));
        let mut unix = V2_SIGNATURE.to_vec();
        unix.extend_from_slice(&[0x21, 0x31, 0x00, 216]);
        unix.extend_from_slice(&[0u8; 216]);
        parses_split(&unix, ProxyHeader::Local);
        let mut unspec = V2_SIGNATURE.to_vec();
        unspec.extend_from_slice(&[0x21, 0x00, 0x00, 0x00]);
        parses_split(&unspec, ProxyHeader::Local);
    }

    #[test]
    fn writers_and_parser_agree() {
        let s: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let d: SocketAddr = "[::1]:80".parse().unwrap();
        let (mapped, _) = same_family(s, d);
        for bytes in [write_v1(s, d), write_v2(Some((s, d)))] {
            let (header, length) = parse(&bytes).unwrap().unwrap();
            assert_eq!(
                (header, length),
                (
                    ProxyHeader::Proxied {
                        source: mapped,
                        destination: d
                    },
                    bytes.len()
                )
            );
        }
        assert_eq!(
            write_v1(s, "10.0.0.2:80".parse().unwrap()),
            b"PROXY TCP4 10.0.0.1 10.0.0.2 5000 80\r\n"
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let refused: &[&[u8]] = &[
            b"GET / HTTP/1.1\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 443 1\r\n",
            b"PROXY TCP4  192.0.2.1 198.51.100.2 56324 443\r\n",
            b"PROXY TCP4 2001:db8::1 198.51.100.2 56324 443\r\n",
            b"PROXY TCP6 192.0.2.1 2001:db8::2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 0443 443\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 +443 443\r\n",
            b"PROXY TCP4 192.0.2.01 198.51.100.2 1 443\r\n",
            b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
            b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\rX",
            b"PROXY TCP4 192.0.2.1\n198.51.100.2 1 2\r\n",
            b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
        ];
        for bytes in refused {
            assert!(
                parse(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = [b"PROXY UNKNOWN ".as_slice(), &[b'x'; 100], b"\r\n"].concat();
        assert_eq!(parse(&long), Err(ProxyHeaderError::TooLong));
        let mut v2 = write_v2(None);
        v2[12] = 0x31;
        assert!(parse(&v2).is_err(), "version 3");
        v2[12] = 0x22;
        assert!(parse(&v2).is_err(), "command 2");
        let mut short = write_v2(Some((
            "1.2.3.4:1".parse().unwrap(),
            "1.2.3.5:2".parse().unwrap(),
        )));
        short[15] = 8;
        short.truncate(24);
        assert!(parse(&short).is_err(), "IPv4 addresses in 8 bytes");
        let mut huge = write_v2(None);
        huge[14] = 0xff;
        assert_eq!(parse(&huge), Err(ProxyHeaderError::TooLong));
        let mut dgram = write_v2(Some((
            "1.2.3.4:1".parse().unwrap(),
            "1.2.3.5:2".parse().unwrap(),
        )));
        dgram[13] = 0x12;
        assert!(parse(&dgram).is_err(), "UDP on a stream");
    }
}
