//! Porthole's own binary as child processes (`porthole serve`, `porthole emulator`, …), for the
//! tests of what crosses a process boundary: signals, crashes, several gateways.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::unistd::Pid;

/// How long a process may take to start or stop, and an SSM state to show.
pub const BOUND: Duration = Duration::from_secs(20);

/// The `porthole` binary, with no `PORTHOLE_*` variable of the test's own environment.
pub fn porthole() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    // Only what a test sets reaches the commands.
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    command
}

/// A child process, killed (and reaped) when dropped.
pub struct Proc {
    pub child: std::process::Child,
    /// Lines of its standard output, read by a thread (so a silent child never blocks a test).
    lines: mpsc::Receiver<String>,
    /// Where its standard error goes (shown when it fails).
    stderr: PathBuf,
}

impl Proc {
    pub fn spawn(mut command: Command, stderr: PathBuf) -> Self {
        let file = std::fs::File::create(&stderr).unwrap();
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(file))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        // The commands print a few lines (logs go to stderr); 64 is plenty.
        let (tx, lines) = mpsc::sync_channel(64);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The first line of standard output that contains `needle`, within [`BOUND`].
    pub fn line_with(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + BOUND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(e) => panic!(
                    "no line with {needle:?} ({e}); exit status {:?}; stderr:\n{}",
                    self.child.try_wait(),
                    self.stderr()
                ),
            }
        }
    }

    /// Waits (polling, within `bound`) for the process to exit.
    pub async fn exit_within(&mut self, bound: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {bound:?} later; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
