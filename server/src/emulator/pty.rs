//! The shell in a pseudo-terminal: spawning it with a clean environment in a scratch home,
//! resizing, and killing its whole process group.
//!
//! The shell runs as the emulator's own user, never with more privilege; its environment is
//! built from scratch (no AWS credentials or other secrets of the emulator leak into it).

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill as kill_pid};
use nix::unistd::{Pid, getsid};
use tokio::process::Child;

/// The smallest and largest terminal sizes applied to the PTY; Size messages outside are
/// refused (a huge size would make full-screen programs allocate huge screens).
pub const MIN_DIMENSION: u32 = 1;
/// See [`MIN_DIMENSION`].
pub const MAX_DIMENSION: u32 = 1000;

/// The PATH given to shells.
const SHELL_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The scratch home, also the working directory.
    pub home: PathBuf,
}

impl ShellSpec {
    /// The login shell for a node: `shell` if given, else `bash -l` (or `sh -l` without bash).
    pub fn login(shell: Option<&[String]>, home: PathBuf) -> Self {
        let argv = match shell {
            Some(argv) if !argv.is_empty() => argv.to_vec(),
            _ if Path::new("/bin/bash").exists() => vec!["/bin/bash".into(), "-l".into()],
            _ => vec!["/bin/sh".into(), "-l".into()],
        };
        Self { argv, home }
    }

    /// `sh -c COMMAND` (AWS-StartInteractiveCommand).
    pub fn command(command: &str, home: PathBuf) -> Self {
        Self {
            argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
            home,
        }
    }
}

/// A running shell.
pub struct Shell {
    /// The PTY's master side.
    pub pty: pty_process::Pty,
    /// The shell process (the session leader of its process group).
    pub child: Child,
}

impl std::fmt::Debug for Shell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shell")
            .field("pid", &self.child.id())
            .finish_non_exhaustive()
    }
}

/// Whether `cols` × `rows` is a size the PTY accepts.
pub fn valid_size(cols: u32, rows: u32) -> bool {
    (MIN_DIMENSION..=MAX_DIMENSION).contains(&cols)
        && (MIN_DIMENSION..=MAX_DIMENSION).contains(&rows)
}

/// Converts a checked size.
pub fn pty_size(cols: u32, rows: u32) -> pty_process::Size {
    let clamp = |v: u32| u16::try_from(v.clamp(MIN_DIMENSION, MAX_DIMENSION)).unwrap_or(80);
    pty_process::Size::new(clamp(rows), clamp(cols))
}

/// Spawns the shell in a new PTY of `cols` × `rows`.
pub fn spawn(spec: &ShellSpec, cols: u32, rows: u32) -> std::io::Result<Shell> {
    std::fs::create_dir_all(&spec.home)?;
    let (pty, pts) = pty_process::open().map_err(std::io::Error::other)?;
    pty.resize(pty_size(cols, rows))
        .map_err(std::io::Error::other)?;
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| std::io::Error::other("empty shell command"))?;
    let user = std::env::var("USER").unwrap_or_else(|_| "porthole".into());
    let child = pty_process::Command::new(program)
        .args(args)
        .env_clear()
        .env("PATH", SHELL_PATH)
        .env("HOME", &spec.home)
        .env("TERM", "xterm-256color")
        .env("LANG", "C.UTF-8")
        .env("SHELL", program)
        .env("USER", &user)
        .current_dir(&spec.home)
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(std::io::Error::other)?;
    Ok(Shell { pty, child })
}

/// Kills the shell and everything it started: every process in the shell's session (`sid`, the
/// shell's pid recorded at spawn), including background jobs that job control moved to their
/// own process groups. Then reaps the shell, so its PID is gone when this returns. Processes
/// that left the session with `setsid` are out of reach.
pub async fn kill(sid: Option<i32>, child: &mut Child) {
    if let Some(sid) = sid {
        kill_session(sid);
    }
    let _ = child.kill().await; // already dead is fine
    let _ = child.wait().await;
}

/// Sends SIGKILL to every process of session `sid`.
pub fn kill_session(sid: i32) {
    for pid in session_members(sid) {
        // A member may exit between the listing and the signal; that is fine.
        let _ = kill_pid(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// The processes whose session id is `sid` (Linux: read from /proc).
fn session_members(sid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![sid];
    };
    let mut members: Vec<i32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| getsid(Some(Pid::from_raw(pid))).is_ok_and(|s| s.as_raw() == sid))
        .collect();
    if !members.contains(&sid) {
        members.push(sid);
    }
    members
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_bounded() {
        assert!(valid_size(80, 24));
        assert!(!valid_size(0, 24));
        assert!(!valid_size(100_000, 24));
        assert!(!valid_size(80, u32::MAX));
    }

    #[tokio::test]
    async fn a_shell_runs_in_its_home_with_a_clean_environment() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let home = std::env::temp_dir().join(format!("porthole-pty-{}", std::process::id()));
        let spec = ShellSpec::command(
            "echo \"$HOME|$TERM|${AWS_SECRET_ACCESS_KEY:-none}\"; stty size",
            home.clone(),
        );
        let mut shell = spawn(&spec, 100, 30).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match shell.pty.read(&mut buf).await {
                Ok(0) | Err(_) => break, // EIO once the shell has exited
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains(&format!("{}|xterm-256color|none", home.display())),
            "{text}"
        );
        assert!(text.contains("30 100"), "{text}");
        let _ = shell.pty.write_all(b"").await;
        assert!(shell.child.wait().await.unwrap().success());
    }
}
