//! The HTTP/2 server connection fed the preface and then arbitrary bytes (frames, or not),
//! in pieces whose size the first input byte sets, over a real loopback socket, on a paused
//! clock (timeouts pass at once). Never a panic, never a hang: the connection ends by
//! itself (the client half-closes after sending); and what the server sends back starts
//! with its SETTINGS frame (RFC 9113 §3.4).
#![no_main]

use std::time::Duration;

use hopline::conn::h2::PREFACE;
use hopline::conn::h2::server::serve_h2;
use hopline::conn::{Hooks, Shutdown};
use hopline::origin::Origin;
use hopline_fuzz::{conn_info, loopback, piece_size, quick_server_config};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The frame type of SETTINGS.
const SETTINGS: u8 = 4;

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
            serve_h2(
                stream.into(),
                info,
                Origin::new(),
                &config,
                shutdown.listener(),
                &Hooks::default(),
            )
            .await
        });
        let _ = client.write_all(PREFACE).await;
        for chunk in input.chunks(piece) {
            if client.write_all(chunk).await.is_err() {
                break;
            }
        }
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(600), client.read_to_end(&mut out)).await;
        tokio::time::timeout(Duration::from_secs(600), server)
            .await
            .expect("the connection ends by itself")
            .expect("no panic");
        if out.len() >= 9 {
            assert_eq!(out[3], SETTINGS, "the server's preface is a SETTINGS frame");
        }
    });
});
