//! The `hopline` binary: a thin layer over the library's command line.

use clap::Parser;
use hopline::cli::{self, Cli, Command};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

fn main() {
    let cli = Cli::parse();
    let mut filter = Targets::new().with_default(cli.log);
    if matches!(cli.command, Command::Demo(_)) {
        // The demo starts and stops servers all along; their lifecycle is not news.
        filter = filter.with_target("hopline::server", tracing::Level::WARN);
    }
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(filter)
        .init();
    let result = match cli.command {
        Command::Demo(args) => cli::demo::run(args),
        Command::Serve(args) => cli::serve(args),
        Command::Get(args) => cli::get::run(args),
        Command::Bench(args) => cli::bench::run(args),
        Command::Proxy(args) => cli::proxy::run(args),
    };
    if let Err(error) = result {
        eprintln!("hopline: {error}");
        std::process::exit(1);
    }
}
