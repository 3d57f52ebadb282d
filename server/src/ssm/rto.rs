//! Retransmission timeout estimation, the RFC 6298-shaped estimator both the official client
//! and agent use: start with RTT 100 ms, RTTVAR 0, RTO 200 ms; on each acknowledgement with a
//! sample `r` (now minus the message's last send), `RTTVAR = ¾·RTTVAR + ¼·|RTT − r|`,
//! `RTT = ⅞·RTT + ⅛·r`, `RTO = RTT + max(10 ms, 4·RTTVAR)`, capped at 1 s.

use std::time::Duration;

/// The RTO before any sample.
pub const INITIAL_RTO: Duration = Duration::from_millis(200);
/// The smoothed RTT before any sample.
pub const INITIAL_RTT: Duration = Duration::from_millis(100);
/// The upper bound of the RTO.
pub const MAX_RTO: Duration = Duration::from_secs(1);
/// The clock granularity term's floor.
pub const CLOCK_GRANULARITY: Duration = Duration::from_millis(10);

/// Smoothed RTT state. Plain data, so it can be carried across sockets and processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttEstimator {
    rtt_us: u64,
    rttvar_us: u64,
    rto: Duration,
}

impl Default for RttEstimator {
    fn default() -> Self {
        Self {
            rtt_us: INITIAL_RTT.as_micros() as u64,
            rttvar_us: 0,
            rto: INITIAL_RTO,
        }
    }
}

impl RttEstimator {
    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        self.rto
    }

    /// The smoothed round-trip time.
    pub fn srtt(&self) -> Duration {
        Duration::from_micros(self.rtt_us)
    }

    /// The smoothed round-trip variation.
    pub fn rttvar(&self) -> Duration {
        Duration::from_micros(self.rttvar_us)
    }

    /// An estimator carried on from [`RttEstimator::srtt`], [`RttEstimator::rttvar`] and
    /// [`RttEstimator::rto`] of another one (a frozen channel). The RTO is kept within
    /// [`CLOCK_GRANULARITY`]..=[`MAX_RTO`], whatever it is given.
    pub fn restored(srtt: Duration, rttvar: Duration, rto: Duration) -> Self {
        let us = |d: Duration| {
            u64::try_from(d.as_micros())
                .unwrap_or(u64::MAX / 8)
                .min(u64::MAX / 8)
        };
        Self {
            rtt_us: us(srtt),
            rttvar_us: us(rttvar),
            rto: rto.clamp(CLOCK_GRANULARITY, MAX_RTO),
        }
    }

    /// Folds in one round-trip sample.
    pub fn on_sample(&mut self, sample: Duration) {
        let r = u64::try_from(sample.as_micros()).unwrap_or(u64::MAX / 8);
        let diff = self.rtt_us.abs_diff(r);
        self.rttvar_us = (3 * self.rttvar_us + diff) / 4;
        self.rtt_us = (7 * self.rtt_us + r.min(u64::MAX / 8)) / 8;
        let var_term = Duration::from_micros(4 * self.rttvar_us).max(CLOCK_GRANULARITY);
        self.rto = (Duration::from_micros(self.rtt_us) + var_term).min(MAX_RTO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_at_200ms() {
        assert_eq!(RttEstimator::default().rto(), Duration::from_millis(200));
    }

    #[test]
    fn one_sample_follows_the_formula() {
        let mut e = RttEstimator::default();
        e.on_sample(Duration::from_millis(20));
        // RTTVAR = ¼·|100−20| = 20 ms; RTT = (7·100 + 20)/8 = 90 ms; RTO = 90 + 80 = 170 ms.
        assert_eq!(e.srtt(), Duration::from_millis(90));
        assert_eq!(e.rto(), Duration::from_millis(170));
    }

    #[test]
    fn steady_small_rtt_converges_to_rtt_plus_granularity() {
        let mut e = RttEstimator::default();
        for _ in 0..200 {
            e.on_sample(Duration::from_millis(1));
        }
        assert!(e.rto() <= Duration::from_millis(12), "{:?}", e.rto());
        assert!(e.rto() >= Duration::from_millis(11), "{:?}", e.rto());
    }

    #[test]
    fn a_restored_estimator_continues_like_the_original() {
        let mut a = RttEstimator::default();
        a.on_sample(Duration::from_millis(20));
        let mut b = RttEstimator::restored(a.srtt(), a.rttvar(), a.rto());
        assert_eq!(a, b);
        a.on_sample(Duration::from_millis(7));
        b.on_sample(Duration::from_millis(7));
        assert_eq!(a, b);
        let wild = RttEstimator::restored(Duration::MAX, Duration::MAX, Duration::ZERO);
        assert_eq!(wild.rto(), CLOCK_GRANULARITY);
    }

    #[test]
    fn capped_at_one_second() {
        let mut e = RttEstimator::default();
        e.on_sample(Duration::from_secs(30));
        assert_eq!(e.rto(), MAX_RTO);
        e.on_sample(Duration::MAX);
        assert_eq!(e.rto(), MAX_RTO);
    }
}
