//! One typing session's bookkeeping, the same for both paths: keystrokes go out one letter at
//! a time on a schedule (open loop: the next one does not wait for the echo), the echo agent
//! sends each back, and the time from sending a letter to its echo arriving is its round trip.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::stats::{Errors, Latencies};

/// How long after the typing ends the last echoes may take before they count as lost.
pub const DRAIN: Duration = Duration::from_secs(5);

/// When a session types.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Time between keystrokes.
    pub period: Duration,
    /// The first keystroke (a per-session phase spreads them out).
    pub first: Instant,
    /// Round trips of keystrokes sent before this are not counted (warm-up).
    pub measure_from: Instant,
    /// No keystroke is sent after this.
    pub end: Instant,
}

impl Plan {
    /// The schedule of session number `i` of `n`: the same period, phases spread evenly.
    pub fn nth(
        i: u64,
        n: u64,
        rate: f64,
        start: Instant,
        warmup: Duration,
        duration: Duration,
    ) -> Self {
        let period = Duration::from_secs_f64(1.0 / rate);
        let phase = period.mul_f64((i % n.max(1)) as f64 / n.max(1) as f64);
        let measure_from = start + warmup;
        Self {
            period,
            first: start + phase,
            measure_from,
            end: measure_from + duration,
        }
    }

    /// The keystroke clock (late ticks are skipped, not bunched).
    pub fn interval(&self) -> Interval {
        let mut tick = tokio::time::interval_at(self.first, self.period);
        tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tick
    }
}

/// Keystrokes in flight and the round trips measured.
#[derive(Debug)]
pub struct Typing {
    pending: VecDeque<(u8, Instant)>,
    next: u8,
    measure_from: Instant,
    /// Round trips of measured keystrokes.
    pub latencies: Latencies,
    /// Keystrokes sent (all, warm-up included).
    pub sent: u64,
    /// Echoes received for them.
    pub echoed: u64,
}

impl Typing {
    /// Nothing sent yet.
    pub fn new(plan: &Plan) -> Self {
        Self {
            pending: VecDeque::new(),
            next: 0,
            measure_from: plan.measure_from,
            latencies: Latencies::default(),
            sent: 0,
            echoed: 0,
        }
    }

    /// The next letter to send, noted as in flight from `now`.
    pub fn key(&mut self, now: Instant) -> u8 {
        let key = b'a' + self.next;
        self.next = (self.next + 1) % 26;
        self.pending.push_back((key, now));
        self.sent += 1;
        key
    }

    /// Whether echoes are still awaited.
    pub fn waiting(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Output arrived: each letter is the echo of the oldest one in flight. Line ends (the
    /// greeting's tail) are skipped; anything else is an `echo_mismatch`.
    pub fn received(&mut self, bytes: &[u8], now: Instant, errors: &Errors, path: &str) {
        for &b in bytes {
            if b == b'\r' || b == b'\n' {
                continue;
            }
            match self.pending.pop_front() {
                Some((key, sent)) if key == b => {
                    self.echoed += 1;
                    if sent >= self.measure_from {
                        self.latencies.record(now.saturating_duration_since(sent));
                    }
                }
                Some((key, _)) => errors.add(
                    &format!("{path}: echo_mismatch"),
                    &format!("expected {:?}, got {:?}", key as char, b as char),
                ),
                None => errors.add(
                    &format!("{path}: unexpected_output"),
                    &format!("{:?} with no keystroke in flight", b as char),
                ),
            }
        }
    }

    /// The keystrokes whose echo never came are `no_echo` errors.
    pub fn finish(self, errors: &Errors, path: &str) -> (Latencies, u64, u64) {
        for _ in &self.pending {
            errors.add(&format!("{path}: no_echo"), "no echo within the drain time");
        }
        (self.latencies, self.sent, self.echoed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn echoes_match_keystrokes_in_order() {
        let start = Instant::now();
        let plan = Plan::nth(0, 1, 10.0, start, Duration::ZERO, Duration::from_secs(1));
        let errors = Errors::default();
        let mut t = Typing::new(&plan);
        let a = t.key(start);
        let b = t.key(start);
        t.received(
            &[a, b'\r', b'\n', b],
            start + Duration::from_millis(3),
            &errors,
            "x",
        );
        let c = t.key(start);
        t.received(&[c + 1], start, &errors, "x");
        let (lat, sent, echoed) = t.finish(&errors, "x");
        assert_eq!((lat.len(), sent, echoed), (2, 3, 2));
        let e = errors.snapshot();
        assert_eq!(e.get("x: echo_mismatch"), Some(&1));
        assert_eq!(e.get("x: no_echo"), None);
    }
}
