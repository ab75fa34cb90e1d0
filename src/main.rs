//! The `dit` command line: a thin layer of argument parsing, progress bars
//! and messages over the `dit` library.

mod cli;

// candle allocates a fresh buffer per op; mimalloc keeps freed pages for
// reuse instead of returning them to the OS and faulting them back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    dit::ops::runtime::init();
    cli::main()
}
