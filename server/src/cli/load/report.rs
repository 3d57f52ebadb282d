//! The report of a run: everything side by side from the same run, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::stats::{ProcSample, Summary};

/// The profile as run.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileReport {
    /// Typing gateway sessions.
    pub active: u64,
    /// Idle gateway sessions.
    pub idle: u64,
    /// Typing direct sessions.
    pub direct: u64,
    /// Keystrokes per second per typing session.
    pub rate: f64,
    /// Measured seconds.
    pub duration_seconds: f64,
    /// Warm-up seconds.
    pub warmup_seconds: f64,
    /// Seconds between every session being up and the "sessions up" sample.
    pub settle_seconds: f64,
    /// Lines each idle session printed before it was left alone.
    pub idle_output: u64,
    /// Users signed in.
    pub users: u64,
    /// Starts per second asked.
    pub start_rate: f64,
}

/// Sessions asked for and started.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sessions {
    /// Gateway sessions asked for (active + idle).
    pub gateway_asked: u64,
    /// Gateway sessions started.
    pub gateway_started: u64,
    /// Active ones attached and greeted.
    pub gateway_attached: u64,
    /// Direct sessions asked for.
    pub direct_asked: u64,
    /// Direct sessions started and greeted.
    pub direct_started: u64,
}

/// One path's keystrokes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PathReport {
    /// Keystrokes sent (warm-up included).
    pub sent: u64,
    /// Echoes received.
    pub echoed: u64,
    /// Round trips of the measured keystrokes.
    pub round_trip: Option<Summary>,
}

/// What the gateway adds: gateway minus direct, per percentile, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Added {
    /// At the median.
    pub p50_ms: f64,
    /// At the 99th percentile.
    pub p99_ms: f64,
    /// At the 99.9th percentile.
    pub p999_ms: f64,
}

/// A process's CPU and memory across the run.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessReport {
    /// Its pid.
    pub pid: u32,
    /// Before any session (users signed in).
    pub baseline: ProcSample,
    /// With every session up, before typing.
    pub sessions_up: ProcSample,
    /// After the typing.
    pub end: ProcSample,
    /// CPU seconds spent during the typing phase (warm-up included).
    pub typing_cpu_seconds: f64,
    /// The same per second of typing: cores busy.
    pub typing_cores: f64,
    /// (RSS with sessions − baseline) / sessions, in KiB.
    pub rss_per_session_kib: f64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `self-contained` or `external`.
    pub mode: &'static str,
    /// `sqlite`, `postgres` or `unknown` (external).
    pub database: &'static str,
    /// `debug` or `release`: how this binary (and the children) was built.
    pub build: &'static str,
    /// The profile.
    pub profile: ProfileReport,
    /// Open files needed and the soft limit this process has.
    pub open_files: OpenFiles,
    /// Sessions.
    pub sessions: Sessions,
    /// Gateway session starts per second (started / time of the start phase).
    pub gateway_starts_per_second: Option<f64>,
    /// Direct session starts per second.
    pub direct_starts_per_second: Option<f64>,
    /// Keystrokes through the gateway.
    pub gateway: PathReport,
    /// Keystrokes straight to the emulator.
    pub direct: PathReport,
    /// Gateway round trip minus direct, per percentile.
    pub gateway_adds: Option<Added>,
    /// The gateway process (unknown without its pid).
    pub gateway_process: Option<ProcessReport>,
    /// The emulator process (self-contained runs).
    pub emulator_process: Option<ProcessReport>,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// All errors.
    pub errors_total: u64,
    /// Self-contained runs: what `porthole audit verify` said of the gateway's audit chain
    /// after the run (its first line), or why it could not be checked.
    pub audit_chain: Option<String>,
}

/// Open files.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpenFiles {
    /// What this run needs in this process.
    pub needed: u64,
    /// The soft limit after raising it.
    pub limit: u64,
}

/// What the gateway adds, when both paths measured something.
pub fn added(gateway: Option<&Summary>, direct: Option<&Summary>) -> Option<Added> {
    let (g, d) = (gateway?, direct?);
    Some(Added {
        p50_ms: g.p50_ms - d.p50_ms,
        p99_ms: g.p99_ms - d.p99_ms,
        p999_ms: g.p999_ms - d.p999_ms,
    })
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"))
}

fn process(out: &mut String, name: &str, p: Option<&ProcessReport>, sessions: u64) {
    let Some(p) = p else {
        let _ = writeln!(out, "{name} process: unknown (give --gateway-pid)");
        return;
    };
    let _ = writeln!(
        out,
        "{name} process {}: CPU {:.2} s baseline, {:.2} s with sessions up, {:.2} s in the typing \
         ({:.2} cores)",
        p.pid,
        p.baseline.cpu_seconds,
        p.sessions_up.cpu_seconds,
        p.typing_cpu_seconds,
        p.typing_cores
    );
    let _ = writeln!(
        out,
        "{name} RSS: {} KiB baseline, {} KiB with {sessions} sessions up, {} KiB at the end; \
         {:.1} KiB per session",
        p.baseline.rss_kib, p.sessions_up.rss_kib, p.end.rss_kib, p.rss_per_session_kib
    );
}

impl Report {
    /// The text report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let p = &self.profile;
        let _ = writeln!(
            out,
            "porthole load ({}, {}, {} build): {} active + {} idle gateway sessions, {} direct, \
             {} keystrokes/s each, {} s measured after {} s warm-up, {} users, idle ones \
             printed {} lines first, sampled {} s after the sessions were up",
            self.mode,
            self.database,
            self.build,
            p.active,
            p.idle,
            p.direct,
            p.rate,
            p.duration_seconds,
            p.warmup_seconds,
            p.users,
            p.idle_output,
            p.settle_seconds
        );
        let _ = writeln!(
            out,
            "open files: need {}, have {}",
            self.open_files.needed, self.open_files.limit
        );
        let s = &self.sessions;
        let _ = writeln!(
            out,
            "sessions: gateway {}/{} started ({} attached), {}/s; direct {}/{} started, {}/s",
            s.gateway_started,
            s.gateway_asked,
            s.gateway_attached,
            ms(self.gateway_starts_per_second),
            s.direct_started,
            s.direct_asked,
            ms(self.direct_starts_per_second),
        );
        let _ = writeln!(
            out,
            "keystroke round trip (ms)     p50      p99    p99.9      max    count"
        );
        for (name, path) in [("gateway", &self.gateway), ("direct", &self.direct)] {
            let r = path.round_trip.as_ref();
            let _ = writeln!(
                out,
                "  {name:<26}{:>8} {:>8} {:>8} {:>8} {:>8}",
                ms(r.map(|r| r.p50_ms)),
                ms(r.map(|r| r.p99_ms)),
                ms(r.map(|r| r.p999_ms)),
                ms(r.map(|r| r.max_ms)),
                r.map_or(0, |r| r.count),
            );
        }
        let a = self.gateway_adds;
        let _ = writeln!(
            out,
            "  {:<26}{:>8} {:>8} {:>8}",
            "gateway adds",
            ms(a.map(|a| a.p50_ms)),
            ms(a.map(|a| a.p99_ms)),
            ms(a.map(|a| a.p999_ms)),
        );
        process(
            &mut out,
            "gateway",
            self.gateway_process.as_ref(),
            s.gateway_started,
        );
        if let Some(e) = &self.emulator_process {
            process(
                &mut out,
                "emulator",
                Some(e),
                s.gateway_started + s.direct_started,
            );
        }
        if let Some(chain) = &self.audit_chain {
            let _ = writeln!(out, "audit chain: {chain}");
        }
        if self.errors.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let _ = writeln!(out, "errors: {}", self.errors_total);
            for (kind, n) in &self.errors {
                let _ = writeln!(out, "  {kind}: {n}");
            }
        }
        out
    }
}
