//! The `hopline` binary: a thin layer over the library's command line.

use clap::Parser;
use hopline::cli::{self, Cli, Command};

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_max_level(cli.log)
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
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
