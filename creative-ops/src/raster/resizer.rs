//! The pool of idle resizers every resize borrows from, so their scratch is
//! reused rather than allocated and page-faulted on each call.

use fast_image_resize as fir;

/// The most bytes of scratch an idle resizer keeps: enough for a 1024 px RGB
/// or RGBA image's intermediate pass and premultiplied copy, so a larger
/// resize gives its scratch back rather than parking it in the pool.
pub(super) const RESIZER_SCRATCH_KEPT: usize = 6 << 20;

/// Idle resizers, so their scratch (about 1.5 MB for a 1024 px image halved)
/// is reused: a fresh one allocated and page-faulted it on every resize, about
/// 2% of a renditions run's CPU. A pool rather than one per thread: tokio's
/// blocking pool runs dozens of threads, which would each pin their scratch
/// (70 MB more peak memory in a 32-job campaign), while only about as many
/// resizes as there are cores run at once.
static RESIZERS: std::sync::Mutex<Vec<fir::Resizer>> = std::sync::Mutex::new(Vec::new());

/// How many idle resizers the pool keeps: two per core.
pub(super) fn resizers_kept() -> usize {
    static N: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *N.get_or_init(|| 2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Run `f` with an idle resizer from the pool (or a fresh one), then give it
/// back, without its scratch if that grew past [`RESIZER_SCRATCH_KEPT`].
pub(super) fn with_resizer<T>(f: impl FnOnce(&mut fir::Resizer) -> T) -> T {
    let pool = || RESIZERS.lock().unwrap_or_else(|p| p.into_inner());
    let mut r = pool().pop().unwrap_or_else(fir::Resizer::new);
    let out = f(&mut r);
    let mut idle = pool();
    if idle.len() < resizers_kept() {
        idle.push(trimmed(r));
    }
    out
}

/// A resizer without its scratch when that is more than an idle one keeps.
pub(super) fn trimmed(mut r: fir::Resizer) -> fir::Resizer {
    if r.size_of_internal_buffers() > RESIZER_SCRATCH_KEPT {
        r.reset_internal_buffers();
    }
    r
}
