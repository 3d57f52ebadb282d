//! The `porthole` command line: everything is in the library's `cli` module.

use std::process::ExitCode;

fn main() -> ExitCode {
    porthole::cli::run()
}
