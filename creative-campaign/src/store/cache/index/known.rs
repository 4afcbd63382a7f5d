//! What this process knows the index cannot hold, so a miss costs no query.
//!
//! A campaign's first run looks up every generation and finds none: on 10,000
//! jobs those point queries (a read transaction each, its locks and its pages
//! read back from the log the writer keeps appending to) were 6% of the run's
//! CPU. A cache opened as the only writer of its folder (the campaign's own,
//! inside the output folder its run holds locked) holds the entries its index
//! had at open and those it puts. Both go into a Bloom filter (the first read
//! at open, up to 250,000 of them; the others before they are visible
//! anywhere), so a key the filter has never seen is a miss without a query.
//!
//! Should another connection write the index all the same, the writer
//! notices (SQLite's `data_version` changes on its connection exactly when
//! another connection commits) after each of its own commits, at a flush and
//! every [`WATCH_EVERY`] while idle; from then on every lookup queries the
//! index, as a shared cache's always do. A lookup in between is a miss, which
//! costs only the generation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// How often an idle writer checks whether another connection wrote.
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(50);

/// Knowing nothing: every lookup queries.
impl Default for Known {
    fn default() -> Known {
        Known::new(false)
    }
}

/// Bits of the filter: 1 MiB, allocated zeroed (pages the kernel maps as
/// they are first set). With three probes, a false "maybe" (a query, as
/// before) comes once in 25,000 lookups at 100,000 keys and once in 37 at a
/// million; only its speed degrades past that, never its answers.
const BITS: u64 = 1 << 23;

/// The filter and whether it may be trusted.
#[derive(Debug)]
pub(super) struct Known {
    words: Box<[AtomicU64]>,
    trusted: AtomicBool,
}

impl Known {
    /// A filter to fill and trust (`enabled`), or none: every lookup queries.
    pub(super) fn new(enabled: bool) -> Known {
        let words = if enabled {
            (0..BITS / 64).map(|_| AtomicU64::new(0)).collect()
        } else {
            Box::default()
        };
        Known {
            words,
            trusted: AtomicBool::new(enabled),
        }
    }

    /// Note a key the index holds, or one this process is about to put (before
    /// it is visible to any lookup, so the filter never says "absent" of a key
    /// the index holds).
    pub(super) fn put(&self, key: &str) {
        if self.words.is_empty() {
            return;
        }
        for bit in probes(key) {
            self.words[(bit / 64) as usize].fetch_or(1 << (bit % 64), Ordering::Release);
        }
    }

    /// Whether the index certainly holds no entry for `key`.
    pub(super) fn absent(&self, key: &str) -> bool {
        if !self.trusted.load(Ordering::Acquire) {
            return false;
        }
        probes(key).any(|bit| self.words[(bit / 64) as usize].load(Ordering::Acquire) & (1 << (bit % 64)) == 0)
    }

    /// Whether lookups still answer from the filter.
    pub(super) fn trusted(&self) -> bool {
        self.trusted.load(Ordering::Acquire)
    }

    /// Another connection wrote the index: query it from now on.
    pub(super) fn distrust(&self) {
        self.trusted.store(false, Ordering::Release);
    }
}

/// The filter's three bit positions for `key`. Cache keys are hex digests
/// (uniform already); any other text is hashed first.
fn probes(key: &str) -> impl Iterator<Item = u64> {
    let (a, b) = match (
        key.get(..16).and_then(|h| u64::from_str_radix(h, 16).ok()),
        key.get(16..32).and_then(|h| u64::from_str_radix(h, 16).ok()),
    ) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            let h = blake3::hash(key.as_bytes());
            let h = h.as_bytes();
            (
                u64::from_le_bytes(h[..8].try_into().unwrap_or_default()),
                u64::from_le_bytes(h[8..16].try_into().unwrap_or_default()),
            )
        }
    };
    // Double hashing (Kirsch and Mitzenmacher); an odd step visits distinct bits.
    let step = b | 1;
    (0..3u64).map(move |i| a.wrapping_add(i.wrapping_mul(step)) % BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> String {
        blake3::hash(&i.to_le_bytes()).to_hex().to_string()
    }

    #[test]
    fn a_key_put_is_never_reported_absent() {
        let k = Known::new(true);
        for i in 0..100_000 {
            k.put(&key(i));
        }
        assert!((0..100_000).all(|i| !k.absent(&key(i))));
        for odd in ["ab", "not hex at all", "0123456789abcdef0123456789abcdeg"] {
            assert!(k.absent(odd));
            k.put(odd);
            assert!(!k.absent(odd));
        }
    }

    #[test]
    fn keys_never_put_are_mostly_known_absent() {
        let k = Known::new(true);
        for i in 0..100_000 {
            k.put(&key(i));
        }
        let absent = (100_000..200_000).filter(|&i| k.absent(&key(i))).count();
        assert!(absent > 99_900, "{absent} of 100,000 known absent");
    }

    #[test]
    fn nothing_is_known_absent_of_an_index_that_had_entries_or_once_distrusted() {
        assert!(!Known::new(false).absent(&key(1)));
        let k = Known::new(true);
        assert!(k.absent(&key(1)));
        k.distrust();
        assert!(!k.absent(&key(1)));
    }
}
