//! An axum `Router` served by hopline's server: a router is a tower service, so it plugs in
//! as it is (hopline's connection engine underneath: keep-alive, pipelining, timeouts,
//! limits, graceful shutdown).
//!
//! ```sh
//! cargo run --example axum_router         # then: curl http://127.0.0.1:3002/hello/you
//! ```

use axum::extract::Path;
use axum::routing::get;
use hopline::conn::ServerConfig;
use hopline::server::{ListenerConfig, Server};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let router = axum::Router::new()
        .route("/", get(|| async { "hopline serving axum\n" }))
        .route(
            "/hello/{name}",
            get(|Path(name): Path<String>| async move { format!("hello, {name}\n") }),
        );
    let server = Server::bind(
        "127.0.0.1:3002".parse().expect("an address"),
        router,
        ServerConfig::default(),
        ListenerConfig::default(),
    )?;
    println!("axum on hopline at http://{}", server.local_addr()?);
    server
        .run(async { tokio::signal::ctrl_c().await.unwrap_or(()) })
        .await;
    Ok(())
}
