//! Decoded pixels kept beside an artifact in memory, so that the steps, gates
//! and contact sheet after the one that decoded (or drew) an image do not decode
//! its bytes again.
//!
//! A campaign that makes three renditions of a 1024 px hero and a thumbnail of
//! each asset used to decode the hero's PNG four times and each rendition once
//! more: most of its CPU went to inflating PNGs it had just written. Now the
//! first step that needs the hero's pixels decodes them once, under a lock that
//! makes the others wait for its result instead of decoding the same bytes in
//! parallel, and a step that draws an image hands its pixels on with the bytes.
//!
//! The memo is a cache, never the truth: it is not serialised, hashed or
//! compared, an artifact read back from the journal or the cache has none, and
//! every user falls back to decoding the bytes. Memory is bounded by one budget
//! for the whole process ([`PIXEL_MEMO_BYTES`]): past it, pixels are simply not
//! kept, and each is released with the last clone of its artifact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The most bytes of decoded pixels kept beside artifacts at once, across the
/// process: about forty 1024 px RGB images. Past it, pixels are not kept and
/// the next user decodes the bytes.
pub const PIXEL_MEMO_BYTES: u64 = 128 << 20;

static KEPT: AtomicU64 = AtomicU64::new(0);

/// Decoded 8-bit pixels, rows top to bottom, RGB or RGBA (straight alpha).
pub struct Pixels {
    width: u32,
    height: u32,
    alpha: bool,
    data: Vec<u8>,
    /// The bytes this value holds of [`PIXEL_MEMO_BYTES`]; released on drop.
    reserved: u64,
}

impl Pixels {
    /// Pixels of `width` x `height`, 3 bytes each (or 4 with `alpha`). `None`
    /// when `data` is not exactly that long.
    pub fn new(width: u32, height: u32, alpha: bool, data: Vec<u8>) -> Option<Pixels> {
        let channels: u64 = if alpha { 4 } else { 3 };
        let want = u64::from(width) * u64::from(height) * channels;
        (want == data.len() as u64).then_some(Pixels {
            width,
            height,
            alpha,
            data,
            reserved: 0,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Whether each pixel has a fourth, alpha, byte.
    pub fn has_alpha(&self) -> bool {
        self.alpha
    }

    /// The pixel bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Take the budget for these pixels, or give them back when it is spent.
    fn reserve(mut self) -> Result<Pixels, Pixels> {
        let n = self.data.len() as u64;
        let mut now = KEPT.load(Ordering::Relaxed);
        loop {
            if now.saturating_add(n) > PIXEL_MEMO_BYTES {
                return Err(self);
            }
            match KEPT.compare_exchange_weak(now, now + n, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => break,
                Err(seen) => now = seen,
            }
        }
        self.reserved = n;
        Ok(self)
    }
}

impl Drop for Pixels {
    fn drop(&mut self) {
        if self.reserved > 0 {
            KEPT.fetch_sub(self.reserved, Ordering::AcqRel);
        }
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pixels")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("alpha", &self.alpha)
            .finish_non_exhaustive()
    }
}

/// Bytes of decoded pixels kept beside artifacts in this process right now.
pub fn pixels_kept() -> u64 {
    KEPT.load(Ordering::Relaxed)
}

/// The memo every clone of one artifact shares.
#[derive(Default)]
pub(crate) struct Memo(Mutex<Option<Arc<Pixels>>>);

impl Memo {
    pub(crate) fn get(&self) -> Option<Arc<Pixels>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn offer(&self, pixels: Pixels) {
        if let Ok(kept) = pixels.reserve() {
            *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(kept));
        }
    }

    /// The pixels, or `decode`'s; callers racing on one artifact wait for the
    /// first one's decode rather than repeating it. An error is not kept: each
    /// caller that gets one decodes for itself (and so reports its own error).
    /// Over the budget, the decoded pixels go to this caller alone.
    pub(crate) fn get_or_decode<E>(&self, decode: impl FnOnce() -> Result<Pixels, E>) -> Result<Arc<Pixels>, E> {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = &*slot {
            return Ok(p.clone());
        }
        match decode()?.reserve() {
            Ok(kept) => {
                let kept = Arc::new(kept);
                *slot = Some(kept.clone());
                Ok(kept)
            }
            Err(unkept) => Ok(Arc::new(unkept)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{Artifact, MediaType};
    use std::sync::atomic::AtomicUsize;

    fn grey(side: u32) -> Pixels {
        Pixels::new(side, side, false, vec![128; (side * side * 3) as usize]).unwrap()
    }

    #[test]
    fn pixels_of_the_wrong_length_are_refused() {
        assert!(Pixels::new(2, 2, false, vec![0; 12]).is_some());
        assert!(Pixels::new(2, 2, true, vec![0; 12]).is_none());
        assert!(Pixels::new(2, 2, false, vec![0; 11]).is_none());
    }

    #[test]
    fn clones_of_an_artifact_share_one_decode_even_when_they_race() {
        let a = Artifact::new(MediaType::Png, vec![1u8, 2, 3]);
        let decodes = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (a, decodes) = (a.clone(), decodes.clone());
                std::thread::spawn(move || {
                    a.pixels_or_decode(|_| {
                        decodes.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, ()>(grey(16))
                    })
                    .unwrap()
                    .width()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), 16);
        }
        assert_eq!(decodes.load(Ordering::SeqCst), 1);
        assert_eq!(a.pixels().map(|p| p.height()), Some(16));
    }

    #[test]
    fn a_failed_decode_is_not_kept_and_the_next_caller_decodes_again() {
        let a = Artifact::new(MediaType::Png, vec![9u8]);
        assert_eq!(a.pixels_or_decode(|_| Err::<Pixels, _>("bad")).unwrap_err(), "bad");
        assert!(a.pixels().is_none());
        assert_eq!(a.pixels_or_decode(|_| Ok::<_, ()>(grey(4))).unwrap().width(), 4);
    }

    #[test]
    fn kept_pixels_count_against_the_budget_until_the_last_clone_is_dropped() {
        // Other tests keep pixels too: compare with a margin of this test's own size.
        let side = 512;
        let bytes = u64::from(side * side * 3);
        let a = Artifact::new(MediaType::Png, vec![7u8; 5]).with_pixels(grey(side));
        let b = a.clone();
        assert!(pixels_kept() >= bytes);
        drop(a);
        assert!(b.pixels().is_some(), "a clone still holds them");
        let p = b.pixels().unwrap();
        drop(b);
        assert!(p.reserved == bytes, "the last holder releases what was reserved");
    }

    #[test]
    fn an_artifact_read_back_from_storage_has_no_pixels() {
        let a = Artifact::new(MediaType::Png, vec![1u8]).with_pixels(grey(2));
        let back = Artifact::from_parts(
            a.id().clone(),
            a.media().clone(),
            a.data().clone(),
            a.meta().clone(),
            a.provenance().clone(),
        );
        assert!(a.pixels().is_some());
        assert!(back.pixels().is_none());
    }
}
