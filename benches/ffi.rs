//! C ABI benchmarks: what a host pays per call across the boundary.
//!
//! - `abi/run_poll`: `creative_run_poll` on a finished run (panic boundary,
//!   handle check, a lock, the out-pointer write).
//! - `abi/run_progress`: `creative_run_progress`.
//! - `abi/artifact_data`: `creative_run_artifact_data`, lending one artifact's
//!   bytes (no copy: the cost does not depend on the artifact's size).
//! - `abi/error_path`: a call that fails (NULL run) plus reading
//!   `creative_last_error_message`.
//! - `events/deliver_10k`: 10,000 events through a run's delivery path (pump
//!   task, delivery thread, JSON serialization, an `extern "C"` callback), from
//!   start to the end of the wait; divide by 10,000 for the cost per event.

use std::ffi::{c_char, c_void, CString};
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use creative::engine::{Event, EventKind, Progress};
use creative_ffi::*;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

const SPEC: &str = r#"
name = "bench"
[providers.procedural]
kind = "procedural"
[matrix]
product = ["a", "b", "c", "d"]
[[steps]]
name = "hero"
kind = "generate"
providers = ["procedural"]
prompt = "a {{ product }}"
size = "64x64"
"#;

fn finished_run(engine: *mut creative_engine) -> *mut creative_run {
    let spec = CString::new(SPEC).unwrap();
    let dir = std::env::temp_dir().join(format!("creative-ffi-bench-{}", std::process::id()));
    let opts = CString::new(format!(r#"{{"out_dir": "{}"}}"#, dir.display())).unwrap();
    let mut run = null_mut();
    unsafe {
        assert_eq!(
            creative_run_start(engine, spec.as_ptr(), opts.as_ptr(), None, null_mut(), &mut run),
            creative_status::Ok
        );
        assert_eq!(creative_run_wait(run, CREATIVE_WAIT_FOREVER), creative_status::Ok);
    }
    run
}

unsafe extern "C-unwind" fn count_event(json: *const c_char, user_data: *mut c_void) {
    // Touch the text as a host would (its first byte), then count.
    let first = unsafe { *json } as u64;
    let n = unsafe { &*(user_data as *const AtomicU64) };
    n.fetch_add(1 + (first >> 63), Ordering::Relaxed);
}

fn events(n: u64) -> Vec<Event> {
    (0..n)
        .map(|seq| Event {
            seq,
            at_ms: seq as f64 * 0.01,
            kind: EventKind::JobFinished {
                job: format!("{seq:016x}"),
                status: creative::engine::Status::Succeeded,
                progress: Progress {
                    jobs_total: n,
                    jobs_done: seq + 1,
                    jobs_failed: 0,
                    steps_done: seq + 1,
                },
            },
        })
        .collect()
}

fn abi(c: &mut Criterion) {
    let mut engine = null_mut();
    unsafe { assert_eq!(creative_engine_new(null(), &mut engine), creative_status::Ok) };
    let run = finished_run(engine);
    let mut g = c.benchmark_group("abi");
    g.bench_function("run_poll", |b| {
        let mut state = creative_run_state::Running;
        b.iter(|| unsafe { creative_run_poll(std::hint::black_box(run), &mut state) })
    });
    g.bench_function("run_progress", |b| {
        let mut p = creative_progress::default();
        b.iter(|| unsafe { creative_run_progress(std::hint::black_box(run), &mut p) })
    });
    g.bench_function("artifact_data", |b| {
        let mut bytes = creative_bytes { ptr: null(), len: 0 };
        let mut i = 0usize;
        b.iter(|| {
            i = (i + 1) % 4;
            unsafe { creative_run_artifact_data(std::hint::black_box(run), i, &mut bytes) }
        })
    });
    g.bench_function("error_path", |b| {
        let mut state = creative_run_state::Running;
        b.iter(|| unsafe {
            let s = creative_run_poll(std::hint::black_box(null()), &mut state);
            (s, *creative_last_error_message())
        })
    });
    g.finish();
    unsafe {
        creative_run_free(run);
        creative_engine_free(engine);
    }
}

fn event_delivery(c: &mut Criterion) {
    const N: u64 = 10_000;
    let mut engine = null_mut();
    unsafe { assert_eq!(creative_engine_new(null(), &mut engine), creative_status::Ok) };
    let counter = Box::new(AtomicU64::new(0));
    let ud = &*counter as *const AtomicU64 as *mut c_void;
    let mut g = c.benchmark_group("events");
    g.throughput(Throughput::Elements(N));
    g.measurement_time(Duration::from_secs(10));
    g.sample_size(20);
    g.bench_function("deliver_10k", |b| {
        b.iter_batched(
            || events(N),
            |evs| {
                let run = replay_events(unsafe { &*engine }, evs, Some(count_event), ud).unwrap();
                let run = Box::into_raw(run);
                unsafe {
                    assert_eq!(creative_run_wait(run, CREATIVE_WAIT_FOREVER), creative_status::Ok);
                    creative_run_free(run);
                }
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
    assert!(counter.load(Ordering::Relaxed) >= N);
    unsafe { creative_engine_free(engine) };
}

criterion_group!(benches, abi, event_delivery);
criterion_main!(benches);
