//! Jobs: one pipeline instance per set of variables.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A job's variables (`product`, `channel`, `locale`...). Ordered, so that their
/// canonical JSON, and so the job key, does not depend on insertion order.
pub type Vars = BTreeMap<String, serde_json::Value>;

/// One unit of work: the pipeline run once with these variables.
///
/// Its key is derived from the variables (and a run index when a campaign asks for
/// several runs of the same combination), never from its position in a list, so a
/// campaign can be sharded by key and a resumed run finds its own finished work.
///
/// ```
/// use creative_core::Job;
/// let a = Job::new([("product", "mug"), ("locale", "fr")]);
/// let b = Job::new([("locale", "fr"), ("product", "mug")]);
/// assert_eq!(a.key(), b.key());
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    key: String,
    vars: Arc<Vars>,
}

impl Job {
    /// A job from variable pairs; the key is derived from them.
    pub fn new<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<serde_json::Value>,
    {
        Self::from_vars(vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    /// A job from a variable map; the key is derived from it.
    pub fn from_vars(vars: Vars) -> Self {
        let key = Self::key_of(&vars);
        Job {
            key,
            vars: Arc::new(vars),
        }
    }

    /// A job with an explicit key (a spec that names its jobs, a shard replay).
    pub fn with_key(key: impl Into<String>, vars: Vars) -> Self {
        Job {
            key: key.into(),
            vars: Arc::new(vars),
        }
    }

    /// The stable key: the first 16 hex digits of BLAKE3 over the canonical JSON of
    /// the variables ([`crate::canonical`]: objects inside values sorted by key,
    /// whatever serde_json's features in the build).
    pub fn key_of(vars: &Vars) -> String {
        let json = crate::canonical::to_vec(vars).unwrap_or_default();
        let hash = blake3::hash(&json);
        hash.to_hex()[..16].to_string()
    }

    /// The key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The variables.
    pub fn vars(&self) -> &Arc<Vars> {
        &self.vars
    }

    /// A variable rendered as text (strings without quotes).
    pub fn var_str(&self, name: &str) -> Option<String> {
        self.vars.get(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The shard (0..n) this job belongs to when a campaign is split `n` ways.
    pub fn shard(&self, n: u32) -> u32 {
        let h = blake3::hash(self.key.as_bytes());
        let b = h.as_bytes();
        let x = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        (x % u64::from(n.max(1))) as u32
    }
}

/// How a generate step chooses its seed. Whichever it is, the seed sent is
/// recorded in every asset's provenance.
///
/// ```
/// use creative_core::SeedPolicy;
/// assert_eq!(SeedPolicy::Fixed(7).choose(|| 1), 7);
/// assert_eq!(SeedPolicy::Derived.choose(|| 1), 1);
/// assert!(SeedPolicy::Random.choose(|| 1) <= u64::from(u32::MAX));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SeedPolicy {
    /// This seed, for every job.
    Fixed(u64),
    /// Derived from the job key and step name (or the job's `seed` variable):
    /// reproducible, different per job. The default.
    #[default]
    Derived,
    /// A fresh random seed for every run of the step.
    Random,
}

impl SeedPolicy {
    /// The seed to use, given the step's derived one.
    pub fn choose(self, derived: impl FnOnce() -> u64) -> u64 {
        match self {
            SeedPolicy::Fixed(s) => s,
            SeedPolicy::Derived => derived(),
            // 32 bits, as derived seeds: every provider accepts them.
            SeedPolicy::Random => u64::from(fastrand::u32(..)),
        }
    }
}

/// Derive a reproducible 64-bit seed from a base and any number of labels.
///
/// Used for per-job seeds (from the job key and step name) and for the new seed
/// of each regeneration round.
pub fn derive_seed(base: u64, labels: &[&str]) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(&base.to_le_bytes());
    for l in labels {
        h.update(l.as_bytes());
        h.update(&[0xff]);
    }
    let b = h.finalize();
    let b = b.as_bytes();
    // Keep seeds within 2^32 so every provider (some take 32-bit seeds) accepts them.
    u64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_values() {
        assert_ne!(Job::new([("a", 1)]).key(), Job::new([("a", 2)]).key());
    }

    #[test]
    fn shards_cover_range() {
        for i in 0..100 {
            assert!(Job::new([("i", i)]).shard(7) < 7);
        }
    }

    #[test]
    fn derived_seeds_are_stable_and_distinct() {
        assert_eq!(derive_seed(1, &["x"]), derive_seed(1, &["x"]));
        assert_ne!(derive_seed(1, &["x"]), derive_seed(1, &["y"]));
        assert_ne!(derive_seed(1, &["x"]), derive_seed(2, &["x"]));
    }
}
