//! The `hopline` binary: the command line (`serve`, `get`, `bench`, `proxy`, `demo`, `top`,
//! `check-config`) over the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
