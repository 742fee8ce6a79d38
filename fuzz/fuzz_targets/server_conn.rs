//! The server side of a connection fed arbitrary bytes, in pieces whose size the first
//! input byte sets, over a real loopback socket, on a paused clock (timeouts pass at once).
//! Never a panic, never a hang: the connection ends by itself (the client half-closes after
//! sending); a request is counted at most once per input byte; and what the server sends
//! back, if anything, starts with an HTTP/1.1 status line.
#![no_main]

use std::time::Duration;

use hopline::conn::{Hooks, Shutdown, serve_connection};
use hopline::origin::Origin;
use hopline_fuzz::{conn_info, loopback, piece_size, quick_server_config};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let piece = piece_size(first, input);
    let h = loopback();
    h.runtime.block_on(async {
        let mut client = TcpStream::connect(h.addr).await.unwrap();
        let (stream, peer) = h.listener.accept().await.unwrap();
        let config = quick_server_config();
        let server = tokio::spawn(async move {
            let shutdown = Shutdown::new();
            let info = conn_info(peer);
            serve_connection(
                stream.into(),
                info,
                Origin::new(),
                &config,
                shutdown.listener(),
                &Hooks::default(),
            )
            .await
        });
        for chunk in input.chunks(piece) {
            if client.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(600), client.read_to_end(&mut out)).await;
        let summary = tokio::time::timeout(Duration::from_secs(600), server)
            .await
            .expect("the connection ends by itself")
            .expect("no panic");
        assert!(summary.requests <= input.len() as u64 + 1);
        if !out.is_empty() {
            assert!(
                out.starts_with(b"HTTP/1.1 "),
                "{:?}",
                String::from_utf8_lossy(&out[..out.len().min(80)])
            );
        }
    });
});
