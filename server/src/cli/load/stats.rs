//! What a run measures: keystroke round trips (a sorted list, read at percentiles), errors by
//! kind, and a process's CPU time and resident memory from `/proc`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;

/// Round trips of one path, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    micros: Vec<u64>,
}

impl Latencies {
    /// Adds one round trip.
    pub fn record(&mut self, rtt: Duration) {
        self.micros
            .push(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds another list's round trips.
    pub fn merge(&mut self, other: Latencies) {
        self.micros.extend(other.micros);
    }

    /// How many were recorded.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether none was recorded.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// The summary (percentiles by the nearest-rank method), `None` when empty.
    pub fn summary(mut self) -> Option<Summary> {
        if self.micros.is_empty() {
            return None;
        }
        self.micros.sort_unstable();
        let at = |p: f64| -> f64 {
            let n = self.micros.len();
            // In tenths of a percent, in integers: 99.9 % of 1,000 is rank 999, not 1,000.
            let tenths = (p * 10.0).round() as usize;
            let rank = (tenths * n).div_ceil(1000);
            let i = rank.clamp(1, n) - 1;
            self.micros[i] as f64 / 1000.0
        };
        let sum: u64 = self.micros.iter().sum();
        Some(Summary {
            count: self.micros.len() as u64,
            mean_ms: sum as f64 / self.micros.len() as f64 / 1000.0,
            p50_ms: at(50.0),
            p99_ms: at(99.0),
            p999_ms: at(99.9),
            max_ms: at(100.0),
        })
    }
}

/// Percentiles of one path's round trips, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// Round trips measured.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Slowest.
    pub max_ms: f64,
}

/// Errors by kind, shared by every task of a run.
#[derive(Debug, Clone, Default)]
pub struct Errors(Arc<Mutex<BTreeMap<String, u64>>>);

impl Errors {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, u64>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one error of `kind`; the first of each kind is logged with its detail.
    pub fn add(&self, kind: &str, detail: &str) {
        let mut map = self.lock();
        let n = map.entry(kind.to_owned()).or_insert(0);
        if *n == 0 {
            tracing::warn!(kind, detail, "first error of this kind");
        }
        *n += 1;
    }

    /// The counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.lock().clone()
    }
}

/// A process's CPU time and resident memory at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcSample {
    /// User plus system CPU seconds since the process started.
    pub cpu_seconds: f64,
    /// Resident memory (VmRSS), in KiB.
    pub rss_kib: u64,
}

/// The clock ticks per second of `/proc/PID/stat`'s times (USER_HZ: 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Reads `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS).
pub fn sample(pid: u32) -> Result<ProcSample, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    parse(&stat, &status).ok_or_else(|| format!("cannot parse /proc/{pid}/stat or status"))
}

fn parse(stat: &str, status: &str) -> Option<ProcSample> {
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 of stat (state) is fields[0]; utime is field 14, stime field 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(ProcSample {
        cpu_seconds: (utime + stime) as f64 / USER_HZ,
        rss_kib,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut l = Latencies::default();
        for ms in 1..=1000 {
            l.record(Duration::from_millis(ms));
        }
        let s = l.summary().unwrap();
        assert_eq!(
            (s.count, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms),
            (1000, 500.0, 990.0, 999.0, 1000.0)
        );
        assert!(Latencies::default().summary().is_none());
    }

    #[test]
    fn proc_files_parse() {
        let stat = "123 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        let status = "Name:\tx\nVmRSS:\t  2048 kB\n";
        let s = parse(stat, status).unwrap();
        assert_eq!(s.rss_kib, 2048);
        assert!((s.cpu_seconds - 3.0).abs() < 1e-9);
        let own = sample(std::process::id()).unwrap();
        assert!(own.rss_kib > 0);
    }
}
