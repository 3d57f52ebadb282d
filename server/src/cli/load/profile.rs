//! The load profile: how many sessions of each kind, how fast they type and for how long, and
//! where the gateway and emulator are. Every count and time is bounded; absurd values are
//! refused with the flag named.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// Most gateway sessions (active + idle) one run opens.
pub const MAX_SESSIONS: u64 = 20_000;
/// Most direct sessions one run opens.
pub const MAX_DIRECT: u64 = 10_000;
/// Highest keystroke rate per active session.
pub const MAX_RATE: f64 = 100.0;
/// Longest typing phase (and warm-up).
pub const MAX_SECONDS: f64 = 3_600.0;
/// Most users one run signs in.
pub const MAX_USERS: u64 = 10_000;
/// Most lines an idle session is asked to print.
pub const MAX_IDLE_OUTPUT: u64 = 100_000;
/// Highest session start rate asked for.
pub const MAX_START_RATE: f64 = 5_000.0;
/// Gateway sessions per user when `--users` is not given.
pub const SESSIONS_PER_USER: u64 = 50;

/// Flags of `porthole load`.
#[derive(Debug, Clone, Args)]
pub(crate) struct LoadArgs {
    /// Gateway sessions that type (each with a WebSocket attached).
    #[arg(long, default_value_t = 10)]
    pub(crate) active: u64,
    /// Gateway sessions opened and left alone (no WebSocket attached).
    #[arg(long, default_value_t = 0)]
    pub(crate) idle: u64,
    /// Sessions opened straight against the emulator with the data-channel client, typing at
    /// the same rate, interleaved with the gateway's (default: as many as --active; 0 when no
    /// emulator is known).
    #[arg(long)]
    pub(crate) direct: Option<u64>,
    /// Keystrokes per second per active session.
    #[arg(long, default_value_t = 5.0)]
    pub(crate) rate: f64,
    /// Seconds of measured typing.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Seconds of typing before the measurement starts (not counted).
    #[arg(long, default_value_t = 1.0)]
    pub(crate) warmup: f64,
    /// Users the sessions are spread over (default: one per 50 gateway sessions).
    #[arg(long)]
    pub(crate) users: Option<u64>,
    /// Session starts per second asked of the gateway (and of the emulator for direct ones).
    #[arg(long, default_value_t = 100.0)]
    pub(crate) start_rate: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Self-contained runs: the gateway's database (default: SQLite in the run's temporary
    /// folder). The run's users are named load-<run>-<n>.
    #[arg(long, env = "PORTHOLE_LOAD_DATABASE_URL", hide_env_values = true)]
    pub(crate) database_url: Option<String>,
    /// Keep the self-contained run's temporary folder (configuration, logs, database).
    #[arg(long)]
    pub(crate) keep: bool,
    /// A running gateway to load instead of starting one (needs --users-file and --target).
    #[arg(long, value_name = "URL")]
    pub(crate) gateway: Option<String>,
    /// With --gateway: the emulator (or SSM endpoint in echo mode) for the direct path.
    #[arg(long, value_name = "URL")]
    pub(crate) emulator: Option<String>,
    /// With --gateway: the gateway's process id, for its CPU and memory (else unknown).
    #[arg(long, value_name = "PID")]
    pub(crate) gateway_pid: Option<u32>,
    /// With --gateway: a file of "name password" lines, one user each.
    #[arg(long, value_name = "FILE")]
    pub(crate) users_file: Option<PathBuf>,
    /// With --gateway: node ids in echo mode to open sessions on (repeatable).
    #[arg(long, value_name = "NODE")]
    pub(crate) target: Vec<String>,
    /// The reason given for each session.
    #[arg(long, default_value = "porthole load")]
    pub(crate) reason: String,
    /// Lines each idle session prints before it is left alone (typed into the echo node
    /// through an attach that then closes), as `seq LINES` would print them.
    #[arg(long, default_value_t = 0)]
    pub(crate) idle_output: u64,
    /// Seconds to wait after the sign-ins before the baseline sample, and after every session
    /// is up before the next (with --compact-after, long enough for the idle sessions to
    /// compact).
    #[arg(long, default_value_t = 2.0)]
    pub(crate) settle: f64,
    /// Self-contained runs: the gateway's `sessions.compact_after_seconds` (default: the
    /// gateway's own default, 30).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) compact_after: Option<u64>,
}

/// Where the gateway and emulator come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Child processes on loopback in a temporary folder.
    SelfContained {
        /// `--database-url`, else SQLite in the folder.
        database_url: Option<String>,
        /// Keep the folder.
        keep: bool,
        /// `--compact-after`, else the gateway's default.
        compact_after: Option<u64>,
    },
    /// A running deployment.
    External {
        /// The gateway's URL (its Origin).
        gateway: String,
        /// The emulator's URL, for the direct path.
        emulator: Option<String>,
        /// The gateway's process, for CPU and RSS.
        gateway_pid: Option<u32>,
        /// (name, password) of each user.
        users: Vec<(String, String)>,
    },
}

/// A checked profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Gateway sessions that type.
    pub active: u64,
    /// Gateway sessions left alone.
    pub idle: u64,
    /// Direct sessions (typing).
    pub direct: u64,
    /// Keystrokes per second per typing session.
    pub rate: f64,
    /// Measured typing.
    pub duration: Duration,
    /// Unmeasured typing first.
    pub warmup: Duration,
    /// Users (self-contained) or the users file's count.
    pub users: u64,
    /// Starts asked per second.
    pub start_rate: f64,
    /// The node ids sessions go to, round robin.
    pub targets: Vec<String>,
    /// The session reason.
    pub reason: String,
    /// The wait between every session being up and the sample.
    pub settle: Duration,
    /// Lines each idle session prints first.
    pub idle_output: u64,
    /// Where things run.
    pub mode: Mode,
}

impl Profile {
    /// Gateway sessions in all.
    pub fn gateway_sessions(&self) -> u64 {
        self.active + self.idle
    }

    /// An upper bound on how long the whole run may take: the starts at the asked rate four
    /// times over, the typing, and two minutes for the rest. The run stops itself after it.
    pub fn deadline(&self) -> Duration {
        let starts = (self.gateway_sessions() + self.direct) as f64 / self.start_rate;
        let signins = self.users as f64 * 0.5;
        Duration::from_secs_f64(
            4.0 * starts
                + signins
                + 2.0 * self.settle.as_secs_f64()
                + self.warmup.as_secs_f64()
                + self.duration.as_secs_f64(),
        ) + Duration::from_secs(120)
    }

    /// File descriptors this process needs: a socket per attached or direct session, a few
    /// HTTP connections, and a margin for the runtime and the children's pipes.
    pub fn fds_needed(&self) -> u64 {
        self.active + self.direct + 256
    }
}

/// The node ids of the self-contained emulator's echo nodes.
pub fn echo_nodes() -> Vec<String> {
    (1..=4).map(|i| format!("i-0e0e0e0e0e0e{i:05}")).collect()
}

fn bounded(flag: &str, value: u64, max: u64) -> Result<u64, String> {
    if value > max {
        return Err(format!(
            "--{flag} {value} is more than the most a run opens ({max})"
        ));
    }
    Ok(value)
}

fn seconds(flag: &str, value: f64, min: f64) -> Result<Duration, String> {
    if !value.is_finite() || value < min || value > MAX_SECONDS {
        return Err(format!(
            "--{flag} must be between {min} and {MAX_SECONDS} seconds, got {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value))
}

/// Reads a users file: "name password" per line; blank lines and `#` comments are skipped.
pub fn parse_users(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once(char::is_whitespace) {
            Some((name, password)) if !password.trim().is_empty() => {
                users.push((name.to_owned(), password.trim().to_owned()));
            }
            _ => return Err(format!("line {}: expected \"name password\"", n + 1)),
        }
    }
    if users.is_empty() {
        return Err("no users in it".into());
    }
    Ok(users)
}

impl LoadArgs {
    /// Checks every bound and combination; the error names the flag.
    pub(crate) fn check(self) -> Result<Profile, String> {
        let active = bounded("active", self.active, MAX_SESSIONS)?;
        let idle = bounded("idle", self.idle, MAX_SESSIONS)?;
        if active + idle > MAX_SESSIONS {
            return Err(format!(
                "--active plus --idle is {}, more than the most a run opens ({MAX_SESSIONS})",
                active + idle
            ));
        }
        if active + idle == 0 {
            return Err("--active and --idle are both 0: nothing to load".into());
        }
        if !self.rate.is_finite() || self.rate <= 0.0 || self.rate > MAX_RATE {
            return Err(format!(
                "--rate must be more than 0 and at most {MAX_RATE} keystrokes per second, got {}",
                self.rate
            ));
        }
        let duration = seconds("duration", self.duration, 0.1)?;
        let warmup = seconds("warmup", self.warmup, 0.0)?;
        let settle = seconds("settle", self.settle, 0.0)?;
        let idle_output = bounded("idle-output", self.idle_output, MAX_IDLE_OUTPUT)?;
        if idle_output > 0 && idle == 0 {
            return Err("--idle-output needs --idle sessions to print".into());
        }
        if let Some(n) = self.compact_after
            && !(1..=86_400).contains(&n)
        {
            return Err(format!(
                "--compact-after must be between 1 and 86400 seconds, got {n}"
            ));
        }
        if !self.start_rate.is_finite() || self.start_rate < 1.0 || self.start_rate > MAX_START_RATE
        {
            return Err(format!(
                "--start-rate must be between 1 and {MAX_START_RATE} per second, got {}",
                self.start_rate
            ));
        }
        if self.reason.trim().is_empty() || self.reason.chars().count() > 256 {
            return Err("--reason must be 1 to 256 characters".into());
        }
        let mode = match self.gateway {
            None => {
                for (flag, given) in [
                    ("--emulator", self.emulator.is_some()),
                    ("--gateway-pid", self.gateway_pid.is_some()),
                    ("--users-file", self.users_file.is_some()),
                    ("--target", !self.target.is_empty()),
                ] {
                    if given {
                        return Err(format!("{flag} goes with --gateway URL"));
                    }
                }
                if let Some(url) = &self.database_url
                    && !(url.starts_with("sqlite:")
                        || url.starts_with("postgres://")
                        || url.starts_with("postgresql://"))
                {
                    return Err(
                        "--database-url must be sqlite:… or postgres://… (value not shown)".into(),
                    );
                }
                Mode::SelfContained {
                    database_url: self.database_url,
                    keep: self.keep,
                    compact_after: self.compact_after,
                }
            }
            Some(gateway) => {
                if self.database_url.is_some() || self.keep || self.compact_after.is_some() {
                    return Err("--database-url, --keep and --compact-after are for \
                                self-contained runs, not with --gateway"
                        .into());
                }
                for (flag, url) in [
                    ("--gateway", Some(&gateway)),
                    ("--emulator", self.emulator.as_ref()),
                ] {
                    if let Some(url) = url
                        && !(url.starts_with("http://") || url.starts_with("https://"))
                    {
                        return Err(format!(
                            "{flag} must be an http:// or https:// URL, got {url:?}"
                        ));
                    }
                }
                let Some(path) = &self.users_file else {
                    return Err(
                        "--gateway needs --users-file FILE (\"name password\" lines)".into(),
                    );
                };
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("--users-file {}: {e}", path.display()))?;
                let users = parse_users(&text)
                    .map_err(|e| format!("--users-file {}: {e}", path.display()))?;
                if self.target.is_empty() {
                    return Err(
                        "--gateway needs --target NODE (a node in echo mode), once or more".into(),
                    );
                }
                Mode::External {
                    gateway: gateway.trim_end_matches('/').to_owned(),
                    emulator: self.emulator.map(|u| u.trim_end_matches('/').to_owned()),
                    gateway_pid: self.gateway_pid,
                    users,
                }
            }
        };
        let users = match &mode {
            Mode::External { users, .. } => {
                if self.users.is_some() {
                    return Err("--users is for self-contained runs; with --gateway the users file says who".into());
                }
                users.len() as u64
            }
            Mode::SelfContained { .. } => match self.users {
                Some(0) => return Err("--users must be at least 1".into()),
                Some(n) => bounded("users", n, MAX_USERS)?,
                None => (active + idle).div_ceil(SESSIONS_PER_USER).max(1),
            },
        };
        let has_emulator = match &mode {
            Mode::SelfContained { .. } => true,
            Mode::External { emulator, .. } => emulator.is_some(),
        };
        let direct = match self.direct {
            Some(n) if n > 0 && !has_emulator => {
                return Err(format!("--direct {n} needs --emulator URL with --gateway"));
            }
            Some(n) => bounded("direct", n, MAX_DIRECT)?,
            None if has_emulator => active.min(MAX_DIRECT),
            None => 0,
        };
        let targets = if self.target.is_empty() {
            echo_nodes()
        } else {
            self.target
        };
        Ok(Profile {
            active,
            idle,
            direct,
            rate: self.rate,
            duration,
            warmup,
            users,
            start_rate: self.start_rate,
            targets,
            reason: self.reason,
            settle,
            idle_output,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: LoadArgs,
    }

    fn check(args: &[&str]) -> Result<Profile, String> {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().args.check()
    }

    #[test]
    fn defaults_fit() {
        let p = check(&[]).unwrap();
        assert_eq!((p.active, p.idle, p.direct, p.users), (10, 0, 10, 1));
        let p = check(&["--active", "1000", "--idle", "10000"]).unwrap();
        assert_eq!(p.users, 220);
        assert_eq!(p.direct, 1000);
    }

    #[test]
    fn absurd_values_name_the_flag() {
        for (args, needle) in [
            (&["--active", "1000000"][..], "--active 1000000"),
            (
                &["--active", "15000", "--idle", "15000"],
                "--active plus --idle",
            ),
            (&["--active", "0"], "nothing to load"),
            (&["--rate", "0"], "--rate"),
            (&["--rate", "1e9"], "--rate"),
            (&["--duration", "99999"], "--duration"),
            (&["--duration", "NaN"], "--duration"),
            (&["--warmup=-1"], "--warmup"),
            (&["--start-rate", "0"], "--start-rate"),
            (&["--users", "0"], "--users"),
            (&["--direct", "20000"], "--direct"),
            (&["--target", "i-1"], "--target goes with --gateway"),
            (&["--gateway", "http://x"], "--users-file"),
            (&["--gateway", "ftp://x"], "--gateway must be"),
            (&["--database-url", "mysql://x"], "--database-url"),
            (&["--settle=-1"], "--settle"),
            (
                &["--idle", "5", "--idle-output", "1000000"],
                "--idle-output",
            ),
            (&["--idle-output", "10"], "--idle-output needs --idle"),
            (&["--compact-after", "0"], "--compact-after"),
            (
                &["--gateway", "http://x", "--compact-after", "5"],
                "--compact-after are for self-contained runs",
            ),
        ] {
            let err = check(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn users_files_parse() {
        let users = parse_users("# who\nalice  pw one\n\nbob pw2\n").unwrap();
        assert_eq!(
            users,
            [
                ("alice".into(), "pw one".into()),
                ("bob".into(), "pw2".into())
            ]
        );
        assert!(parse_users("alice\n").unwrap_err().contains("line 1"));
        assert!(parse_users("\n").unwrap_err().contains("no users"));
    }
}
