//! Memory bounds of the proxy: bodies stream through with bounded memory, and a stalled
//! client holds the body upstream instead of in the proxy. Resident memory is read from
//! /proc, so these tests live in their own binary and run one at a time (tests in a binary
//! share a process).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{RawClient, TestServer};
use hopline::client::{Client, ClientOptions};
use hopline::conn::ServerConfig;
use hopline::origin::Origin;
use hopline::proxy::upstream::Upstreams;
use hopline::proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One memory test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn proxy_to(upstream: SocketAddr) -> TestServer {
    let config = ProxyConfig::reverse(Upstreams::single(upstream));
    TestServer::start(Proxy::new(config), ServerConfig::default()).await
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test]
async fn a_gigabyte_streams_through_with_bounded_memory() {
    let _serial = SERIAL.lock().await;
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_to(origin.addr).await;
    let client = Client::new(ClientOptions::default());
    let before = rss_kib();
    let size: u64 = 1 << 30;
    let response = client
        .get(&format!("http://{}/bytes/{size}", proxy.addr))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-length"],
        size.to_string().as_str()
    );
    let mut body = response.into_body();
    let mut received = 0u64;
    let mut peak = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            // Spot-check the pattern where each chunk lands.
            assert_eq!(data[0], b'a' + (received % 26) as u8);
            received += data.len() as u64;
            if received % (64 << 20) < data.len() as u64 {
                peak = peak.max(rss_kib());
            }
        }
    }
    assert_eq!(received, size);
    let growth_mib = peak.saturating_sub(before) / 1024;
    assert!(
        growth_mib < 64,
        "memory grew {growth_mib} MiB while 1 GiB passed"
    );
}

#[tokio::test]
async fn a_100_mib_chunked_upload_streams_through() {
    let _serial = SERIAL.lock().await;
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_to(origin.addr).await;
    let total: usize = 100 << 20;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let before = rss_kib();
    let writer = tokio::spawn(async move {
        stream
            .write_all(b"POST /sink HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .await
            .unwrap();
        let block: Vec<u8> = (0..65_536).map(|i| (i % 251) as u8).collect();
        let mut sent = 0;
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        while sent < total {
            stream
                .write_all(format!("{:x}\r\n", block.len()).as_bytes())
                .await
                .unwrap();
            stream.write_all(&block).await.unwrap();
            stream.write_all(b"\r\n").await.unwrap();
            for &b in &block {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
            sent += block.len();
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
        (stream, hash)
    });
    let (stream, hash) = writer.await.unwrap();
    let mut client = RawClient::from_stream(stream);
    let response = client.response().await;
    assert_eq!(response.status, 200);
    assert_eq!(
        response.text(),
        format!("received {total} bytes, fnv1a64 {hash:016x}\n")
    );
    let growth_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        growth_mib < 64,
        "memory grew {growth_mib} MiB for a 100 MiB upload"
    );
}

#[tokio::test]
async fn a_slow_client_slows_the_upstream_instead_of_filling_memory() {
    let _serial = SERIAL.lock().await;
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_to(origin.addr).await;
    let before = rss_kib();
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /bytes/209715200 HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    // Read only 1 MiB, then stall: the 200 MiB body must stay upstream, not in the proxy.
    let mut buf = vec![0u8; 64 * 1024];
    let mut read = 0;
    while read < (1 << 20) {
        read += stream.read(&mut buf).await.unwrap();
    }
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let growth_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        growth_mib < 32,
        "memory grew {growth_mib} MiB behind a stalled client"
    );
}

/// The upload of [`echo_while_sending`]: byte i is `i % 251`; twice a block, so any run of
/// up to a block can be compared with one slice (a memcmp, fast even unoptimised).
fn echo_pattern() -> Vec<u8> {
    (0..2 * ECHO_BLOCK)
        .map(|i| ((i % ECHO_BLOCK) % 251) as u8)
        .collect()
}

const ECHO_BLOCK: usize = 65_536 / 251 * 251;

/// Sends `total` pattern bytes to `path` as a Content-Length body while reading the
/// response as it comes; checks every byte echoed is the byte sent and returns how many
/// came back and the peak resident memory seen meanwhile.
async fn echo_while_sending(addr: SocketAddr, path: &str, total: u64) -> (u64, u64) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!("POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {total}\r\n\r\n");
    let pattern = echo_pattern();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        let block = &echo_pattern()[..ECHO_BLOCK];
        let mut sent = 0u64;
        while sent < total {
            let n = (total - sent).min(block.len() as u64) as usize;
            write.write_all(&block[..n]).await.unwrap();
            sent += n as u64;
        }
        write
    });
    // The head, then the body as it comes back.
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    let body_start = loop {
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response head");
        pending.extend_from_slice(&buf[..n]);
        if let Some(at) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&pending[..body_start]).into_owned();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains(&format!("content-length: {total}")), "{head}");
    let mut received = 0u64;
    let mut peak = 0u64;
    let check = |bytes: &[u8], received: &mut u64| {
        for piece in bytes.chunks(ECHO_BLOCK) {
            let at = (*received % ECHO_BLOCK as u64) as usize;
            assert!(
                piece == &pattern[at..at + piece.len()],
                "the echo differs from the upload near byte {received}"
            );
            *received += piece.len() as u64;
        }
    };
    check(&pending[body_start..], &mut received);
    while received < total {
        let n = read.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed after {received} of {total} bytes");
        check(&buf[..n], &mut received);
        if received % (64 << 20) < n as u64 {
            peak = peak.max(rss_kib());
        }
    }
    drop(writer.await.unwrap());
    (received, peak)
}

#[tokio::test]
async fn a_gigabyte_echoed_while_it_arrives_keeps_memory_bounded_directly_and_through_the_proxy() {
    let _serial = SERIAL.lock().await;
    let origin = TestServer::start(Origin::new(), ServerConfig::default()).await;
    let proxy = proxy_to(origin.addr).await;
    let total: u64 = 1 << 30;
    for entry in [origin.addr, proxy.addr] {
        let before = rss_kib();
        let (received, peak) = echo_while_sending(entry, "/echo/stream", total).await;
        assert_eq!(received, total);
        let growth_mib = peak.saturating_sub(before) / 1024;
        assert!(
            growth_mib < 64,
            "memory grew {growth_mib} MiB while 1 GiB was echoed"
        );
    }
}
