//! Seeded fault injection on a stream of frames: drop, duplicate, reorder.
//!
//! Used by the in-memory client ⇄ agent tests and by the emulator's `--drop/--dup/--reorder`
//! flags. Pure and deterministic for a given seed: it decides the fate of each frame handed to
//! it and never holds more than one frame back.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Probabilities, each in `0.0..=1.0`, applied independently to every frame.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FaultConfig {
    /// Chance a frame is lost.
    pub drop: f64,
    /// Chance a frame is delivered twice.
    pub duplicate: f64,
    /// Chance a frame is held back and delivered after the next one.
    pub reorder: f64,
}

impl FaultConfig {
    /// No faults.
    pub const NONE: Self = Self {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
    };

    /// The same probability for all three faults.
    pub fn uniform(p: f64) -> Self {
        Self {
            drop: p,
            duplicate: p,
            reorder: p,
        }
    }

    /// Whether any fault can happen.
    pub fn is_active(&self) -> bool {
        self.drop > 0.0 || self.duplicate > 0.0 || self.reorder > 0.0
    }

    /// Checks every probability is within `0.0..=1.0`, naming the one that is not.
    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("drop", self.drop),
            ("dup", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("--{name} must be between 0 and 1, got {p}"));
            }
        }
        Ok(())
    }
}

/// Counts of what the injector did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames handed in.
    pub frames: u64,
    /// Frames dropped.
    pub dropped: u64,
    /// Frames duplicated.
    pub duplicated: u64,
    /// Frames held back for reordering.
    pub reordered: u64,
}

/// Decides the fate of each frame.
#[derive(Debug)]
pub struct FaultInjector<T> {
    config: FaultConfig,
    rng: StdRng,
    held: Option<T>,
    stats: FaultStats,
}

impl<T: Clone> FaultInjector<T> {
    /// A new injector with its own seeded generator.
    pub fn new(config: FaultConfig, seed: u64) -> Self {
        Self {
            config,
            rng: StdRng::seed_from_u64(seed),
            held: None,
            stats: FaultStats::default(),
        }
    }

    /// Passes one frame through, appending what is to be delivered now to `out`, in order.
    pub fn apply(&mut self, frame: T, out: &mut Vec<T>) {
        self.stats.frames += 1;
        if self.config.drop > 0.0 && self.rng.random_bool(self.config.drop) {
            self.stats.dropped += 1;
            return;
        }
        let copies = if self.config.duplicate > 0.0 && self.rng.random_bool(self.config.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        if self.held.is_none()
            && self.config.reorder > 0.0
            && self.rng.random_bool(self.config.reorder)
        {
            self.stats.reordered += 1;
            if copies == 2 {
                out.push(frame.clone());
            }
            self.held = Some(frame);
            return;
        }
        for _ in 1..copies {
            out.push(frame.clone());
        }
        out.push(frame);
        if let Some(held) = self.held.take() {
            out.push(held);
        }
    }

    /// Releases a held-back frame (when the stream goes quiet).
    pub fn flush(&mut self, out: &mut Vec<T>) {
        if let Some(held) = self.held.take() {
            out.push(held);
        }
    }

    /// Whether a frame is held back.
    pub fn is_holding(&self) -> bool {
        self.held.is_some()
    }

    /// What the injector did so far.
    pub fn stats(&self) -> FaultStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_faults_passes_everything_in_order() {
        let mut f = FaultInjector::new(FaultConfig::NONE, 1);
        let mut out = Vec::new();
        for i in 0..100 {
            f.apply(i, &mut out);
        }
        assert_eq!(out, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn faults_happen_at_roughly_the_configured_rate_and_are_seeded() {
        let run = |seed| {
            let mut f = FaultInjector::new(FaultConfig::uniform(0.1), seed);
            let mut out = Vec::new();
            for i in 0..10_000 {
                f.apply(i, &mut out);
            }
            f.flush(&mut out);
            (out, f.stats())
        };
        let (a, stats) = run(7);
        assert_eq!(a, run(7).0);
        for n in [stats.dropped, stats.duplicated, stats.reordered] {
            assert!((700..1300).contains(&n), "{stats:?}");
        }
        assert!(
            a.windows(2).any(|w| w[0] > w[1]),
            "some frames were reordered"
        );
        assert!(
            a.windows(2).any(|w| w[0] == w[1]),
            "some frames were duplicated"
        );
    }

    #[test]
    fn validation_names_the_flag() {
        let err = FaultConfig {
            drop: 1.5,
            ..FaultConfig::NONE
        }
        .validate()
        .unwrap_err();
        assert!(err.contains("--drop"), "{err}");
    }
}
