//! Latency distributions: exact percentiles over the first [`EXACT_SAMPLES`] values, log2
//! buckets over all of them (memory stays bounded however long tracing runs), rendered as
//! text in the style of Brendan Gregg's BCC tools.

use std::fmt::Write as _;

/// Values kept for exact percentiles; beyond this, percentiles come from the buckets.
pub const EXACT_SAMPLES: usize = 200_000;

#[derive(Clone, Debug)]
pub struct Distribution {
    samples: Vec<u64>,
    /// `buckets[i]` counts values in `[2^(i-1), 2^i - 1]`; `buckets[0]` counts zeros.
    buckets: [u64; 65],
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            samples: Vec::new(),
            buckets: [0; 65],
            count: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

/// Summary statistics of a [`Distribution`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub count: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
    pub mean: u64,
    /// False when percentiles were estimated from buckets (more than
    /// [`EXACT_SAMPLES`] values).
    pub exact: bool,
}

fn bucket_of(value: u64) -> usize {
    (u64::BITS - value.leading_zeros()) as usize
}

/// Lowest value of bucket `i`.
fn bucket_low(i: usize) -> u64 {
    if i == 0 { 0 } else { 1u64 << (i - 1) }
}

/// Highest value of bucket `i`.
fn bucket_high(i: usize) -> u64 {
    if i == 0 {
        0
    } else if i >= 64 {
        u64::MAX
    } else {
        (1u64 << i) - 1
    }
}

impl Distribution {
    pub fn add(&mut self, value: u64) {
        if self.samples.len() < EXACT_SAMPLES {
            self.samples.push(value);
        }
        self.buckets[bucket_of(value)] += 1;
        self.count += 1;
        self.sum += u128::from(value);
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of all values.
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Cumulative counts at log2 bucket upper bounds: `(highest value in the bucket,
    /// values ≤ it)`, for every bucket up to the last non-empty one.
    /// The buckets, count, sum and extremes without the exact samples: cheap to copy
    /// once a second; its percentiles come from the buckets.
    pub fn without_samples(&self) -> Distribution {
        Distribution {
            samples: Vec::new(),
            ..*self
        }
    }

    /// Cumulative counts at the fixed bounds `2^first - 1 ..= 2^last - 1` (values up to
    /// each bound, smaller values included), whatever has been seen: a Prometheus
    /// histogram's `le` series must not change over time.
    pub fn cumulative_between(&self, first: usize, last: usize) -> Vec<(u64, u64)> {
        let mut seen: u64 = self.buckets[..first.min(self.buckets.len())].iter().sum();
        (first..=last.min(self.buckets.len() - 1))
            .map(|i| {
                seen += self.buckets[i];
                (bucket_high(i), seen)
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn stats(&self) -> Option<Stats> {
        if self.count == 0 {
            return None;
        }
        let exact = self.count as usize == self.samples.len();
        // Sorted once for all three percentiles; empty when estimating from buckets.
        let sorted = if exact {
            let mut sorted = self.samples.clone();
            sorted.sort_unstable();
            sorted
        } else {
            Vec::new()
        };
        let percentile = |p: f64| -> u64 {
            if exact {
                // Nearest rank.
                let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
                sorted[rank - 1]
            } else {
                let target = (p * self.count as f64).ceil().max(1.0) as u64;
                let mut seen = 0;
                for (i, n) in self.buckets.iter().enumerate() {
                    seen += n;
                    if seen >= target {
                        return bucket_high(i).min(self.max);
                    }
                }
                self.max
            }
        };
        Some(Stats {
            count: self.count,
            min: self.min,
            p50: percentile(0.50),
            p90: percentile(0.90),
            p99: percentile(0.99),
            max: self.max,
            mean: (self.sum / u128::from(self.count)) as u64,
            exact,
        })
    }

    /// Text histogram with values divided by `unit_div` and labelled `unit`, e.g.
    /// (1000, "µs") for nanosecond samples shown in microseconds.
    pub fn render(&self, unit_div: u64, unit: &str) -> String {
        let mut scaled = [0u64; 65];
        for (i, n) in self.buckets.iter().enumerate() {
            if *n > 0 {
                let mid = bucket_low(i) / unit_div.max(1);
                scaled[bucket_of(mid)] += n;
            }
        }
        let Some(first) = scaled.iter().position(|n| *n > 0) else {
            return String::new();
        };
        let last = scaled.iter().rposition(|n| *n > 0).unwrap_or(first);
        let peak = *scaled.iter().max().unwrap_or(&1);
        let mut out = String::new();
        let _ = writeln!(out, "{:>21} : {:<8} {:<40}", unit, "count", "distribution");
        for (i, n) in scaled.iter().enumerate().take(last + 1).skip(first) {
            let stars = ((*n as f64 / peak as f64) * 40.0).round() as usize;
            let stars = if *n > 0 { stars.max(1) } else { 0 };
            let _ = writeln!(
                out,
                "{:>10} -> {:<8} : {:<8} |{:<40}|",
                bucket_low(i),
                bucket_high(i),
                n,
                "*".repeat(stars)
            );
        }
        out
    }
}

/// A duration in ns as a short human string: 850ns, 12.3µs, 4.56ms, 1.20s.
pub fn human_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_percentiles_nearest_rank() {
        let mut d = Distribution::default();
        for v in 1..=100 {
            d.add(v);
        }
        let s = d.stats().unwrap();
        assert_eq!((s.count, s.min, s.max, s.mean), (100, 1, 100, 50));
        assert_eq!((s.p50, s.p90, s.p99), (50, 90, 99));
        assert!(s.exact);
        assert_eq!(Distribution::default().stats(), None);
    }

    #[test]
    fn single_value() {
        let mut d = Distribution::default();
        d.add(7);
        let s = d.stats().unwrap();
        assert_eq!((s.p50, s.p99, s.min, s.max), (7, 7, 7, 7));
    }

    #[test]
    fn buckets_are_log2() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 1);
        assert_eq!(bucket_of(2), 2);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(4), 3);
        assert_eq!((bucket_low(3), bucket_high(3)), (4, 7));
        assert_eq!(bucket_of(u64::MAX), 64);
        assert_eq!(bucket_high(64), u64::MAX);
    }

    #[test]
    fn estimated_percentiles_beyond_the_exact_sample() {
        let mut d = Distribution::default();
        for _ in 0..EXACT_SAMPLES {
            d.add(1_000);
        }
        for _ in 0..EXACT_SAMPLES {
            d.add(1_000_000);
        }
        let s = d.stats().unwrap();
        assert!(!s.exact);
        // p50 falls in 1000's bucket [512, 1023], p90 in 1e6's [524288, 1048575]
        // (capped at the max seen).
        assert_eq!(s.p50, 1_023);
        assert_eq!(s.p90, 1_000_000);
        assert_eq!(s.count, 2 * EXACT_SAMPLES as u64);
    }

    #[test]
    fn renders_gregg_style() {
        let mut d = Distribution::default();
        for v in [1_500, 1_600, 3_000, 20_000] {
            d.add(v);
        }
        let text = d.render(1_000, "µs");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("µs") && lines[0].contains("distribution"));
        assert!(lines[1].starts_with("         1 -> 1        : 2"), "{text}");
        assert!(
            lines[1].ends_with(&format!("|{}|", "*".repeat(40))),
            "{text}"
        );
        assert!(lines.last().unwrap().contains("16 -> 31"), "{text}");
        assert_eq!(lines.len(), 1 + 5, "{text}");
    }

    #[test]
    fn human_durations() {
        assert_eq!(human_ns(850), "850ns");
        assert_eq!(human_ns(12_345), "12.3µs");
        assert_eq!(human_ns(4_560_000), "4.56ms");
        assert_eq!(human_ns(1_200_000_000), "1.20s");
    }
}
