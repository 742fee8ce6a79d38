//! The PROXY protocol header parser: arbitrary bytes. Never a panic; a header found is the
//! same whatever follows it, no proper prefix of it is a header (the parser waits instead),
//! and what it names is written back and parsed again to the same thing.
#![no_main]

use hopline::transport::proxy_header::{ProxyHeader, ProxyVersion, parse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(Some((header, length))) = parse(input) else {
        return;
    };
    assert!(length <= input.len());
    assert_eq!(parse(&input[..length]), Ok(Some((header, length))));
    for cut in 0..length {
        assert_eq!(parse(&input[..cut]), Ok(None), "a prefix of {cut} bytes");
    }
    let addresses = match header {
        ProxyHeader::Local => None,
        ProxyHeader::Proxied {
            source,
            destination,
        } => Some((source, destination)),
    };
    for version in [ProxyVersion::V1, ProxyVersion::V2] {
        let written = version.header(addresses);
        let (again, used) = parse(&written).expect("valid").expect("whole");
        assert_eq!(used, written.len());
        if source_family_matches(addresses) {
            assert_eq!(again, header, "{version:?}");
        }
    }
});

/// Whether writing keeps the addresses as they are (a mixed pair is written as IPv6).
fn source_family_matches(addresses: Option<(std::net::SocketAddr, std::net::SocketAddr)>) -> bool {
    addresses.is_none_or(|(s, d)| s.is_ipv4() == d.is_ipv4())
}
