//! The `porthole` command line: everything is in the library's `cli` module.

use std::process::ExitCode;

/// mimalloc returns freed pages to the system, so a compacted idle session's memory leaves the
/// resident set (feature `mimalloc`, on by default; see Cargo.toml).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    porthole::cli::run()
}
