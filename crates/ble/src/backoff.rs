//! Exponential backoff with jitter for reconnection attempts.

use std::time::Duration;

use rand::Rng;

/// Per-peer reconnection delay: `initial · 2^failures`, capped at `max`, then
/// scaled by a random factor in [0.5, 1.0] ("equal jitter"), so that nodes
/// that lost each other at the same moment do not retry in lockstep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `initial`, never above `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn fail(&mut self, rng: &mut impl Rng) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        let ceiling = exp.min(self.max);
        ceiling.mul_f64(rng.gen_range(0.5..=1.0))
    }

    /// Records a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn grows_caps_and_jitters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
        let delays: Vec<Duration> = (0..10).map(|_| b.fail(&mut rng)).collect();
        for (i, d) in delays.iter().enumerate() {
            let ceiling = Duration::from_secs(1 << i.min(5)).min(Duration::from_secs(30));
            assert!(
                *d >= ceiling / 2 && *d <= ceiling,
                "attempt {i}: {d:?} vs {ceiling:?}"
            );
        }
        assert_eq!(b.failures(), 10);
        b.reset();
        assert!(b.fail(&mut rng) <= Duration::from_secs(1));
    }
}
