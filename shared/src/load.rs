//! Load that looks like an application's: a steady rate of reads (and a
//! share of writes) over a set of keys, uniform or skewed the way real
//! traffic is (a few keys are hot), for a while. The back end runs it; the
//! page starts and stops it and watches the hit ratio settle.
//!
//! The key distribution is Zipf's law: key `k` (from 1) is drawn with
//! weight `1 / k^s`. With `s = 0` every key is as likely; around `s = 1` the
//! top fifth of a few hundred keys takes most of the reads.

use serde::{Deserialize, Serialize};

use crate::{InputError, Kind};

/// What to run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadSpec {
    pub kind: Kind,
    /// Operations per second, reads and writes together.
    pub per_second: u64,
    /// Share of the operations that are writes (a rename), in percent.
    pub write_percent: u64,
    /// How many keys (ids 1 to `keys`) the operations touch.
    pub keys: u64,
    /// Zipf's exponent: 0 is uniform, higher is more skewed.
    pub skew: f64,
    /// How long it runs, in seconds.
    pub seconds: u64,
    /// The seed of the key sequence: the same seed, the same sequence.
    pub seed: u64,
}

impl Default for LoadSpec {
    fn default() -> Self {
        LoadSpec {
            kind: Kind::Users,
            per_second: 200,
            write_percent: 0,
            keys: 100,
            skew: 1.0,
            seconds: 30,
            seed: 1,
        }
    }
}

impl LoadSpec {
    pub const PER_SECOND: (u64, u64) = (1, 1_000);
    pub const WRITE_PERCENT: (u64, u64) = (0, 20);
    pub const KEYS: (u64, u64) = (1, 500);
    pub const SKEW: (f64, f64) = (0.0, 3.0);
    pub const SECONDS: (u64, u64) = (1, 300);

    /// Checks every field against its range.
    ///
    /// # Errors
    /// [`InputError::BadSetting`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), InputError> {
        let check = crate::settings::check_range;
        check("per_second", self.per_second, Self::PER_SECOND)?;
        check("write_percent", self.write_percent, Self::WRITE_PERCENT)?;
        check("keys", self.keys, Self::KEYS)?;
        check("seconds", self.seconds, Self::SECONDS)?;
        check("seed", self.seed, (0, crate::protocol::MAX_SEED))?;
        crate::settings::check_float_range("skew", self.skew, Self::SKEW)
    }

    /// The cumulative distribution of the keys: entry `i` is the chance of
    /// drawing one of ids 1 to `i + 1`. The last entry is 1.
    pub fn cdf(&self) -> Vec<f64> {
        let weights: Vec<f64> = (1..=self.keys.max(1))
            .map(|k| (k as f64).powf(-self.skew))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut sum = 0.0;
        let mut cdf: Vec<f64> = weights
            .iter()
            .map(|w| {
                sum += w;
                sum / total
            })
            .collect();
        if let Some(last) = cdf.last_mut() {
            *last = 1.0;
        }
        cdf
    }

    /// The id drawn by `unit` (uniform in [0, 1)) under `cdf`.
    pub fn key_at(cdf: &[f64], unit: f64) -> u64 {
        cdf.partition_point(|&p| p <= unit)
            .min(cdf.len().saturating_sub(1)) as u64
            + 1
    }

    /// The share of operations that land on the hottest `fraction` of the
    /// keys (0.2: "80 % of reads on 20 % of keys" reads 0.8).
    pub fn share_of_top(&self, fraction: f64) -> f64 {
        let cdf = self.cdf();
        let top = ((cdf.len() as f64 * fraction).round() as usize).clamp(1, cdf.len());
        cdf[top - 1]
    }
}

/// A load as it runs, told to every watcher when it starts, stops or ends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoadState {
    pub spec: LoadSpec,
    /// When it started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// Operations sent so far.
    pub sent: u64,
    /// Whether it still runs (false: finished or stopped).
    pub running: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_keys_are_equally_likely() {
        let spec = LoadSpec {
            keys: 4,
            skew: 0.0,
            ..LoadSpec::default()
        };
        let cdf = spec.cdf();
        assert_eq!(cdf, vec![0.25, 0.5, 0.75, 1.0]);
        assert_eq!(LoadSpec::key_at(&cdf, 0.0), 1);
        assert_eq!(LoadSpec::key_at(&cdf, 0.3), 2);
        assert_eq!(LoadSpec::key_at(&cdf, 0.999), 4);
        assert!((spec.share_of_top(0.5) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn skew_puts_most_reads_on_few_keys() {
        let skewed = LoadSpec {
            keys: 100,
            skew: 1.2,
            ..LoadSpec::default()
        };
        let top = skewed.share_of_top(0.2);
        assert!(top > 0.75 && top < 0.9, "top fifth takes {top}");
        let cdf = skewed.cdf();
        assert!(cdf.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(*cdf.last().unwrap(), 1.0);
    }

    #[test]
    fn out_of_range_fields_are_named() {
        assert!(LoadSpec::default().validate().is_ok());
        for (bad, name) in [
            (
                LoadSpec {
                    per_second: 5_000,
                    ..LoadSpec::default()
                },
                "per_second",
            ),
            (
                LoadSpec {
                    skew: f64::NAN,
                    ..LoadSpec::default()
                },
                "skew",
            ),
            (
                LoadSpec {
                    keys: 0,
                    ..LoadSpec::default()
                },
                "keys",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
