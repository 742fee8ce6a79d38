//! The reference peer for `scripts/bench/server.sh`: a minimal hyper HTTP/1.1 server on a
//! current-thread runtime with `pipeline_flush(true)`, answering every request with the same
//! 13-byte body as nginx's `return 200 "Hello, world!"` and `hopline serve`'s `/`.
//!
//! With `h2` after the address it speaks HTTP/2 with prior knowledge instead (hyper's
//! `http2::Builder`, the reference for `scripts/bench/h2.sh`).
//!
//! Usage: cargo run --release --example hyper_hello -- 127.0.0.1:8081 [h2]

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8081".to_string());
    let h2 = std::env::args().nth(2).as_deref() == Some("h2");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(&addr).await.expect("bind");
        eprintln!("hyper_hello listening on http://{addr}");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(|_request: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(
                        b"Hello, world!",
                    ))))
                });
                let io = TokioIo::new(stream);
                if h2 {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = http1::Builder::new()
                        .pipeline_flush(true)
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
}
