//! Latency summaries: nearest-rank percentiles over every sample, no sampling or histograms,
//! so a reported p99 is a latency some request really had.

use std::time::Duration;

/// Sorted samples.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Latencies(samples)
    }

    /// The nearest-rank `q`-quantile (`0 < q <= 1`): the smallest sample with at least `q` of
    /// all samples at or below it. Zero when there are no samples.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (q * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn p50_ms(&self) -> f64 {
        ms(self.quantile(0.50))
    }

    pub fn p99_ms(&self) -> f64 {
        ms(self.quantile(0.99))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// MiB per second.
pub fn mib_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / took.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_list(v: &[u64]) -> Latencies {
        Latencies::new(v.iter().map(|&m| Duration::from_millis(m)).collect())
    }

    #[test]
    fn nearest_rank_percentiles() {
        // 1..=100 ms, shuffled order must not matter.
        let mut v: Vec<u64> = (1..=100).rev().collect();
        v.swap(3, 70);
        let l = ms_list(&v);
        assert_eq!(l.quantile(0.50), Duration::from_millis(50));
        assert_eq!(l.quantile(0.99), Duration::from_millis(99));
        assert_eq!(l.quantile(1.0), Duration::from_millis(100));
        assert_eq!(l.quantile(0.001), Duration::from_millis(1));
    }

    #[test]
    fn small_and_empty_sets() {
        let l = ms_list(&[7, 3]);
        assert_eq!(l.quantile(0.5), Duration::from_millis(3));
        assert_eq!(l.quantile(0.99), Duration::from_millis(7));
        assert_eq!(ms_list(&[]).quantile(0.5), Duration::ZERO);
    }

    #[test]
    fn throughput_in_mib() {
        let r = mib_per_s(64 << 20, Duration::from_secs(2));
        assert!((r - 32.0).abs() < 1e-9, "{r}");
    }
}
