//! The `hopline` binary: a thin layer over the library's command line.

fn main() {
    std::process::exit(hopline::cli::main());
}
