//! Porthole's own binary as child processes (`porthole serve`, `porthole emulator`, …), for the
//! tests of what crosses a process boundary: signals, crashes, several gateways.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
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

/// `porthole emulator` on a free loopback port with `flags`, its data in `dir/emulator` and its
/// standard error in `dir/emulator.stderr`; and its endpoint URL.
pub fn spawn_emulator(dir: &Path, flags: &[&str]) -> (Proc, String) {
    let data = dir.join("emulator");
    std::fs::create_dir_all(&data).unwrap();
    let mut command = porthole();
    command
        .args(["emulator", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .args(flags);
    let mut emulator = Proc::spawn(command, dir.join("emulator.stderr"));
    let line = emulator.line_with("http://127.0.0.1:");
    let endpoint = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap()
        .to_owned();
    (emulator, endpoint)
}

/// `porthole users add NAME --role ROLE` against `config`, the password given on stdin.
pub fn add_user(config: &Path, name: &str, role: &str, password: &str) {
    let mut add = porthole()
        .args(["users", "add", name, "--role", role, "--config"])
        .arg(config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(format!("{password}\n").as_bytes())
        .unwrap();
    let out = add.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The audit log of `config`'s database, as `porthole audit export --format jsonl` prints it.
pub fn audit_log(config: &Path) -> Vec<serde_json::Value> {
    let out = porthole()
        .args(["audit", "export", "--format", "jsonl", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
