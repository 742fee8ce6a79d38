//! A server from a closure: `service_fn` answers every request, reading what the server
//! parsed about it from its context.
//!
//! ```sh
//! cargo run --example server              # then: curl http://127.0.0.1:3000/hello
//! ```

use std::convert::Infallible;

use hopline::conn::{RequestCtx, ServerConfig};
use hopline::server::{ListenerConfig, Server};
use hopline::service::service_fn;
use hopline::{Body, Incoming};
use http::{Request, Response};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let hello = service_fn(|request: Request<Incoming>| async move {
        let peer = RequestCtx::of(&request).map(|ctx| ctx.conn.peer);
        let text = format!("hello {peer:?}, you asked for {}\n", request.uri().path());
        Ok::<_, Infallible>(Response::new(Body::from(text)))
    });
    let server = Server::bind(
        "127.0.0.1:3000".parse().expect("an address"),
        hello,
        ServerConfig::default(),
        ListenerConfig::default(),
    )?;
    println!("listening on http://{}", server.local_addr()?);
    server
        .run(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await;
    Ok(())
}
