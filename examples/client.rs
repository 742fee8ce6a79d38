//! The client: pooled keep-alive connections, a streamed upload, and how each response was
//! obtained (which connection, reused or new).
//!
//! ```sh
//! cargo run --release -- serve --listen 127.0.0.1:8080 &
//! cargo run --example client -- http://127.0.0.1:8080
//! ```

use std::time::Duration;

use bytes::Bytes;
use hopline::Body;
use hopline::client::{Client, ClientOptions};
use http::Request;
use http_body_util::BodyExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let client = Client::new(ClientOptions::default());
    for path in ["/", "/bytes/10"] {
        let response = client.get(&format!("{base}{path}")).await?;
        let exchange = response.body().exchange().expect("an exchange");
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        println!(
            "{path}: {status}, {} bytes, connection {} (reused: {})",
            body.len(),
            exchange.connection,
            exchange.reused
        );
    }
    // An upload produced while it is sent (here, a piece every 10 ms).
    let (mut sender, body) = Body::channel(None);
    tokio::spawn(async move {
        for i in 0..5 {
            let _ = sender.send(Bytes::from(format!("piece {i}\n"))).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sender.finish();
    });
    let request = Request::post(format!("{base}/sink")).body(body)?;
    let response = client.send(request).await?;
    let text = response.into_body().collect().await?.to_bytes();
    print!("/sink: {}", String::from_utf8_lossy(&text));
    Ok(())
}
