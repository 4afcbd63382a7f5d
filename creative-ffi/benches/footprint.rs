//! What a host pays for the C library: its size on disk as built and stripped,
//! the time to load it (`dlopen`, as a plugin host does), and the memory of an
//! idle engine (resident set before and after `creative_engine_new`).
//!
//! Each load is measured in a fresh child process (a library loads once per
//! process); figures are medians over the runs.
//!
//!   cargo bench -p creative-ffi --bench footprint                # target/release
//!   cargo bench -p creative-ffi --bench footprint -- /abs/LIB.so [RUNS]
//!
//! The harness only loads the library, so it may be built in any profile
//! (`--profile dev` skips building the bench profile's own copy of the crates).
//!
//! Measured at 097f5e1 (Linux x86_64, 2 shared cores of an AMD EPYC under a
//! load of about 11; median of 21 processes), every backend built in:
//!
//! | build                                   | as built | stripped | dlopen  | library RSS | engine_new | idle engine RSS |
//! |-----------------------------------------|----------|----------|---------|-------------|------------|-----------------|
//! | release (before: 128 MB, 22 MB stripped) | 77.9 MB  | 26.1 MB  | 0.71 ms | 1.93 MB     | 0.27 ms    | 1.46 MB         |
//! | dist (release + fat LTO, 1 codegen unit) | 62.8 MB  | 22.2 MB  | 0.71 ms | 1.69 MB     | 0.33 ms    | 1.47 MB         |
//!
//! "stripped" is what install.sh installs (its debug info goes to a .debug
//! file: 40.5 MB for dist). The dist build took 25.6 min against release's 21
//! here (the same load), all crates from scratch.

use std::ffi::{c_char, c_void, CString};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// In the child: load `lib`, make an engine, print
/// `load_us engine_us rss_before_load rss_before_engine rss_after_engine` (KiB).
fn child(lib: &str) {
    let path = CString::new(lib).expect("path");
    let unloaded = rss_kib();
    let t = Instant::now();
    // SAFETY: loads a library by a NUL-terminated path; a NULL result is checked.
    let h = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    let load = t.elapsed();
    assert!(!h.is_null(), "dlopen {lib} failed");
    let sym = |name: &str| {
        let n = CString::new(name).expect("name");
        // SAFETY: `h` is a live handle and `n` a NUL-terminated name.
        let p = unsafe { libc::dlsym(h, n.as_ptr()) };
        assert!(!p.is_null(), "{name} not exported");
        p
    };
    type New = unsafe extern "C" fn(*const c_char, *mut *mut c_void) -> i32;
    type Free = unsafe extern "C" fn(*mut c_void);
    // SAFETY: the header's signatures of these two functions.
    let (new, free): (New, Free) = unsafe {
        (
            std::mem::transmute::<*mut c_void, New>(sym("creative_engine_new")),
            std::mem::transmute::<*mut c_void, Free>(sym("creative_engine_free")),
        )
    };
    let before = rss_kib();
    let mut engine = std::ptr::null_mut();
    let t = Instant::now();
    // SAFETY: NULL config (the defaults) and a writable out-pointer.
    assert_eq!(unsafe { new(std::ptr::null(), &mut engine) }, 0);
    let made = t.elapsed();
    // An idle engine: its runtime's threads parked.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let after = rss_kib();
    // SAFETY: the engine just made, freed once.
    unsafe { free(engine) };
    println!(
        "{} {} {} {} {}",
        load.as_micros(),
        made.as_micros(),
        unloaded,
        before,
        after
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn stripped_size(lib: &Path) -> Option<u64> {
    let out = std::env::temp_dir().join(format!("creative-footprint-{}.so", std::process::id()));
    let ok = Command::new("strip")
        .arg("--strip-debug")
        .arg("--strip-unneeded")
        .arg("-o")
        .arg(&out)
        .arg(lib)
        .status()
        .ok()?
        .success();
    let size = std::fs::metadata(&out).ok().map(|m| m.len());
    let _ = std::fs::remove_file(&out);
    ok.then_some(size).flatten()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1]);
        return;
    }
    let lib = args
        .first()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/libcreative_ffi.so"));
    let runs: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(15).clamp(1, 1000);
    assert!(
        lib.is_file(),
        "no library at {} (cargo build --release -p creative-ffi; cargo runs benches in creative-ffi/, so give an absolute path)",
        lib.display()
    );
    let size = std::fs::metadata(&lib).map(|m| m.len()).unwrap_or(0);
    let mb = |b: u64| b as f64 / 1e6;
    println!("library: {}", lib.display());
    println!("size as built:   {:8.1} MB", mb(size));
    match stripped_size(&lib) {
        Some(s) => println!("size stripped:   {:8.1} MB", mb(s)),
        None => println!("size stripped:   (strip not available)"),
    }
    let exe = std::env::current_exe().expect("own path");
    let (mut load, mut made, mut loaded, mut idle) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let out = Command::new(&exe).arg("--child").arg(&lib).output().expect("child");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        assert_eq!(v.len(), 5, "child printed {v:?}");
        load.push(v[0] / 1000.0);
        made.push(v[1] / 1000.0);
        loaded.push((v[3] - v[2]) / 1024.0);
        idle.push((v[4] - v[3]) / 1024.0);
    }
    println!(
        "load (dlopen):   {:8.2} ms  (median of {runs} fresh processes)",
        median(load)
    );
    println!(
        "loaded library:  {:8.2} MB resident (RSS after dlopen minus before)",
        median(loaded)
    );
    println!("engine_new:      {:8.2} ms", median(made));
    println!(
        "idle engine:     {:8.2} MB resident (RSS after creative_engine_new minus before)",
        median(idle)
    );
}
