//! A streaming echo: the response body is the request body itself, so each piece goes back
//! while the rest is still arriving (full duplex), with backpressure both ways and bounded
//! memory whatever the size.
//!
//! ```sh
//! cargo run --example echo_stream &
//! head -c 100M /dev/urandom | curl -sT - http://127.0.0.1:3001/ | wc -c
//! ```

use std::convert::Infallible;

use hopline::conn::ServerConfig;
use hopline::server::{ListenerConfig, Server};
use hopline::service::service_fn;
use hopline::{Body, Incoming};
use http::{Request, Response};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let echo = service_fn(|request: Request<Incoming>| async move {
        Ok::<_, Infallible>(Response::new(Body::from(request.into_body())))
    });
    let server = Server::bind(
        "127.0.0.1:3001".parse().expect("an address"),
        echo,
        ServerConfig::default(),
        ListenerConfig::default(),
    )?;
    println!("echoing on http://{}", server.local_addr()?);
    server
        .run(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await;
    Ok(())
}
