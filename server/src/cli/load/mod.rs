//! `porthole load`: a load generator that measures the gateway against the direct path in one
//! run (issue 18). It signs users in, opens sessions through the gateway on echo nodes (no
//! PTY per session), attaches a WebSocket to the active ones and types on them at a fixed
//! rate, and at the same time types on sessions opened straight against the emulator with the
//! data-channel client. It reports round trips side by side, session starts per second, the
//! gateway's CPU and memory, and errors by kind.
//!
//! - [`profile`]: the flags and their bounds.
//! - [`spawn`]: the self-contained run's children (emulator, gateway) and users.
//! - [`gateway`] and [`direct`]: the two paths.
//! - [`typing`]: one session's keystrokes and echoes.
//! - [`run`]: the phases of a run.
//! - [`stats`] and [`report`]: what is measured and how it is shown.

pub mod direct;
pub mod gateway;
pub mod profile;
pub mod report;
pub mod run;
pub mod spawn;
pub mod stats;
pub mod typing;

use std::process::ExitCode;

pub(crate) use self::profile::LoadArgs;

/// Runs `porthole load`: 0 when the run had no error, 1 when it had some (the report says
/// which), 2 for bad flags or a limit too low to run.
pub(crate) fn run_load(args: LoadArgs) -> ExitCode {
    super::init_logging();
    let json = args.json;
    let profile = match args.check() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let needed = run::fds_needed(&profile);
    let limits = match super::nofile::raise_to(needed) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "open files: this run needs {needed} per process, the limit is {} (hard limit {})",
        limits.soft, limits.hard
    );
    if limits.soft < needed {
        eprintln!(
            "error: the open-file limit ({}) is below the {needed} this run needs, and the hard \
             limit could not be raised (that takes root): raise it (ulimit -Hn, LimitNOFILE= \
             in systemd, nofile in /etc/security/limits.conf) or ask for fewer sessions",
            limits.soft
        );
        return ExitCode::from(2);
    }
    let Some(runtime) = super::runtime() else {
        return ExitCode::FAILURE;
    };
    let report = runtime.block_on(run::run(profile, limits.soft));
    match report {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("error: cannot write the report: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.text());
            }
            if report.errors_total == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
