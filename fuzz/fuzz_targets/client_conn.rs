//! The client side of a connection fed arbitrary responses over a real loopback socket, on
//! a paused clock: up to three requests (GET or HEAD) and whatever the "server" sends back.
//! Never a panic, never a hang; a body read to its end has exactly its declared length; a
//! connection is reused only when it says it may be.
#![no_main]

use std::time::Duration;

use hopline::conn::client::{ClientConfig, ClientConn, Persistence};
use hopline::wire::BodyFraming;
use hopline_fuzz::loopback;
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let input = input.to_vec();
    let h = loopback();
    h.runtime.block_on(async {
        let config = {
            let mut client_config = ClientConfig::default();
            client_config.response_timeout = Duration::from_secs(1);
            client_config.read_timeout = Duration::from_secs(1);
            client_config.write_timeout = Duration::from_secs(1);
            client_config
        };
        let connect = ClientConn::connect(h.addr, 1, config, Duration::from_secs(1));
        let (conn, accepted) = tokio::join!(connect, h.listener.accept());
        let mut conn = conn.unwrap();
        let (mut server, _) = accepted.unwrap();
        // The "server": takes whatever comes, sends the input, closes.
        let serving = tokio::spawn(async move {
            let _ = server.write_all(&input).await;
            let _ = server.shutdown().await;
            let mut sink = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(5), server.read_to_end(&mut sink)).await;
        });
        let work = async {
            for i in 0..3u8 {
                let method = if (first >> i) & 1 == 0 {
                    Method::GET
                } else {
                    Method::HEAD
                };
                if conn
                    .send_request(
                        &method,
                        b"/",
                        Some("fuzz"),
                        &HeaderMap::new(),
                        &bytes::Bytes::new(),
                        Persistence::KeepAlive,
                    )
                    .await
                    .is_err()
                {
                    return;
                }
                let head = match conn.read_head().await {
                    Ok(head) => head,
                    Err(_) => return,
                };
                let declared = match head.framing {
                    BodyFraming::Length(n) => Some(n),
                    BodyFraming::Empty => Some(0),
                    _ => None,
                };
                let mut got = 0u64;
                loop {
                    match conn.read_frame().await {
                        Ok(Some(frame)) => match frame.into_data() {
                            Ok(data) => got += data.len() as u64,
                            Err(_) => break,
                        },
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                if let Some(declared) = declared {
                    assert_eq!(got, declared, "a complete body has its declared length");
                }
                if conn.reusable().is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(600), work)
            .await
            .expect("the client finishes by itself");
        let _ = serving.await;
    });
});
