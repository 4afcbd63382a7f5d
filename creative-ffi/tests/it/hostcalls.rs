//! Where and when the library calls into the host: a thread the host ends by a
//! forced unwind (`pthread_exit`, as Python's finalization does) inside a
//! callback, pump mode (host calls and events on the host's own thread), engine
//! shutdown (no call into the host afterwards), and `convert_to`.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use crate::abi_text::{c, last_error};
use creative_ffi::*;

fn out_dir(name: &str) -> String {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hostcalls").join(name);
    let _ = std::fs::remove_dir_all(&d);
    d.display().to_string()
}

fn engine() -> *mut creative_engine {
    let mut e = null_mut();
    assert_eq!(
        unsafe { creative_engine_new(null(), &mut e) },
        creative_status::Ok,
        "{}",
        last_error()
    );
    e
}

/// `jobs` jobs: a procedural image, then the host step `kind` on it.
fn spec(jobs: usize, kind: &str, extra: &str) -> CString {
    let shots: Vec<String> = (0..jobs).map(|i| format!("\"s{i}\"")).collect();
    c(&format!(
        "name = \"h\"\nconcurrency = 4\n[providers.procedural]\nkind = \"procedural\"\n\
         [matrix]\nshot = [{}]\n[[steps]]\nname = \"concept\"\nkind = \"generate\"\nproviders = [\"procedural\"]\n\
         prompt = \"a {{{{ shot }}}}\"\nsize = \"16x16\"\n\
         [[steps]]\nname = \"frame\"\nkind = \"{kind}\"\ninputs = [\"concept\"]\nproduces = \"image\"\n{extra}",
        shots.join(", ")
    ))
}

fn register_step(
    e: *mut creative_engine,
    kind: &str,
    run: unsafe extern "C-unwind" fn(*mut c_void, *mut creative_host_call) -> c_int,
    ud: *mut c_void,
) {
    let step = creative_host_step {
        user_data: ud,
        free_user_data: None,
        run: Some(run),
    };
    let k = c(kind);
    assert_eq!(
        unsafe { creative_engine_register_step(e, k.as_ptr(), &step) },
        creative_status::Ok,
        "{}",
        last_error()
    );
}

fn start(
    e: *mut creative_engine,
    spec: &CString,
    opts: &str,
    cb: creative_event_fn,
    ud: *mut c_void,
) -> *mut creative_run {
    let opts = c(opts);
    let mut run = null_mut();
    let s = unsafe { creative_run_start(e, spec.as_ptr(), opts.as_ptr(), cb, ud, &mut run) };
    assert_eq!(s, creative_status::Ok, "{}", last_error());
    run
}

fn state(run: *mut creative_run) -> creative_run_state {
    let mut s = creative_run_state::Running;
    assert_eq!(unsafe { creative_run_poll(run, &mut s) }, creative_status::Ok);
    s
}

/// Copies input 0 to the output as a PNG.
unsafe extern "C-unwind" fn copy_input(_ud: *mut c_void, call: *mut creative_host_call) -> c_int {
    let mut b = creative_bytes { ptr: null(), len: 0 };
    let s = unsafe { creative_host_call_input(call, 0, &mut b, null_mut()) };
    if s != creative_status::Ok {
        return s as c_int;
    }
    let png = c("image/png");
    unsafe { creative_host_call_add_output(call, png.as_ptr(), b.ptr, b.len, null()) as c_int }
}

/// Ends its own thread the way Python's finalization does.
unsafe extern "C-unwind" fn exit_thread(_ud: *mut c_void, _call: *mut creative_host_call) -> c_int {
    unsafe { libc::pthread_exit(null_mut()) }
}

#[test]
fn a_host_step_whose_thread_is_ended_by_pthread_exit_fails_its_step_and_the_process_lives_on() {
    let e = engine();
    register_step(e, "ends_thread", exit_thread, null_mut());
    let run = start(
        e,
        &spec(3, "ends_thread", ""),
        &format!(r#"{{"out_dir": "{}"}}"#, out_dir("exit-step")),
        None,
        null_mut(),
    );
    let s = unsafe { creative_run_wait(run, 60_000) };
    assert_eq!(s, creative_status::StepFailed, "{}", last_error());
    let msg = last_error();
    assert!(msg.contains("the host ended the thread running it"), "{msg}");
    assert_eq!(state(run), creative_run_state::Failed);
    unsafe { creative_run_free(run) };
    // The engine's threads were ended under it; freeing it still returns.
    unsafe { creative_engine_free(e) };
}

static EVENTS_SEEN: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C-unwind" fn exit_on_third_event(_json: *const c_char, _ud: *mut c_void) {
    if EVENTS_SEEN.fetch_add(1, Ordering::SeqCst) == 2 {
        unsafe { libc::pthread_exit(null_mut()) }
    }
}

#[test]
fn an_event_thread_ended_by_pthread_exit_stops_delivery_and_the_run_still_finishes() {
    let e = engine();
    register_step(e, "copy", copy_input, null_mut());
    let run = start(
        e,
        &spec(4, "copy", ""),
        &format!(r#"{{"out_dir": "{}"}}"#, out_dir("exit-events")),
        Some(exit_on_third_event),
        null_mut(),
    );
    let s = unsafe { creative_run_wait(run, 60_000) };
    assert_eq!(s, creative_status::Ok, "{}", last_error());
    assert_eq!(EVENTS_SEEN.load(Ordering::SeqCst), 3, "no event after the thread ended");
    let mut n = 0usize;
    assert_eq!(unsafe { creative_run_artifact_count(run, &mut n) }, creative_status::Ok);
    assert_eq!(n, 8, "4 concepts and 4 frames");
    unsafe { creative_run_free(run) };
    unsafe { creative_engine_free(e) };
}

/// What a pumped run's callbacks saw: the thread of each call.
#[derive(Default)]
struct Seen {
    threads: Mutex<Vec<ThreadId>>,
    events: Mutex<Vec<String>>,
}

unsafe extern "C-unwind" fn step_on_thread(ud: *mut c_void, call: *mut creative_host_call) -> c_int {
    let seen = unsafe { &*(ud as *const Seen) };
    seen.threads.lock().unwrap().push(std::thread::current().id());
    unsafe { copy_input(null_mut(), call) }
}

unsafe extern "C-unwind" fn event_on_thread(json: *const c_char, ud: *mut c_void) {
    let seen = unsafe { &*(ud as *const Seen) };
    seen.threads.lock().unwrap().push(std::thread::current().id());
    let v: serde_json::Value = serde_json::from_slice(unsafe { CStr::from_ptr(json) }.to_bytes()).unwrap();
    seen.events
        .lock()
        .unwrap()
        .push(v["type"].as_str().unwrap_or("").to_string());
}

#[test]
fn pump_mode_runs_every_host_call_and_event_on_the_pumping_thread() {
    let e = engine();
    let seen = Box::new(Seen::default());
    let ud = &*seen as *const Seen as *mut c_void;
    register_step(e, "on_main", step_on_thread, ud);
    let run = start(
        e,
        &spec(5, "on_main", ""),
        &format!(r#"{{"out_dir": "{}", "host_calls": "pump"}}"#, out_dir("pump")),
        Some(event_on_thread),
        ud,
    );
    let main = std::thread::current().id();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut st = creative_run_state::Running;
    let mut pumps = 0;
    while st == creative_run_state::Running {
        assert!(Instant::now() < deadline, "the pumped run did not finish");
        assert_eq!(
            unsafe { creative_run_pump(run, 50, &mut st) },
            creative_status::Ok,
            "{}",
            last_error()
        );
        pumps += 1;
    }
    assert_eq!(st, creative_run_state::Succeeded, "after {pumps} pumps");
    let threads = seen.threads.lock().unwrap();
    let events = seen.events.lock().unwrap();
    assert!(threads.len() > 5, "5 host steps and the events: {}", threads.len());
    assert!(threads.iter().all(|t| *t == main), "every call on the pumping thread");
    assert_eq!(events.first().map(String::as_str), Some("run_started"));
    assert_eq!(events.last().map(String::as_str), Some("run_finished"));
    // Finished: a further pump returns at once with the final state.
    let t = Instant::now();
    assert_eq!(unsafe { creative_run_pump(run, 5_000, &mut st) }, creative_status::Ok);
    assert!(t.elapsed() < Duration::from_secs(4));
    assert_eq!(st, creative_run_state::Succeeded);
    unsafe { creative_run_free(run) };
    unsafe { creative_engine_free(e) };
    drop(threads);
    drop(events);
}

#[test]
fn a_pumped_run_waits_for_its_host_and_a_threads_run_cannot_be_pumped() {
    let e = engine();
    register_step(e, "copy", copy_input, null_mut());
    let pumped = start(
        e,
        &spec(2, "copy", ""),
        &format!(r#"{{"out_dir": "{}", "host_calls": "pump"}}"#, out_dir("pump-idle")),
        None,
        null_mut(),
    );
    // Nobody pumps: the host steps wait in the queue and the run does not end.
    assert_eq!(unsafe { creative_run_wait(pumped, 300) }, creative_status::Timeout);
    assert_eq!(state(pumped), creative_run_state::Running);
    // Freeing it anyway returns: queued calls fail without calling the host.
    unsafe { creative_run_free(pumped) };

    let threads = start(
        e,
        &spec(1, "copy", ""),
        &format!(r#"{{"out_dir": "{}"}}"#, out_dir("threads")),
        None,
        null_mut(),
    );
    assert_eq!(
        unsafe { creative_run_pump(threads, 0, null_mut()) },
        creative_status::WrongState
    );
    assert!(last_error().contains("pump mode"), "{}", last_error());
    assert_eq!(
        unsafe { creative_run_wait(threads, 60_000) },
        creative_status::Ok,
        "{}",
        last_error()
    );
    unsafe { creative_run_free(threads) };

    let bad = c(r#"{"host_calls": "main"}"#);
    let s = spec(1, "copy", "");
    let mut run = null_mut();
    assert_eq!(
        unsafe { creative_run_start(e, s.as_ptr(), bad.as_ptr(), None, null_mut(), &mut run) },
        creative_status::InvalidArgument
    );
    assert!(last_error().contains("host_calls"), "{}", last_error());
    unsafe { creative_engine_free(e) };
}

static SLOW_CALLS: AtomicUsize = AtomicUsize::new(0);
static SLOW_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// A host step that takes a while and counts itself.
unsafe extern "C-unwind" fn slow(_ud: *mut c_void, call: *mut creative_host_call) -> c_int {
    SLOW_CALLS.fetch_add(1, Ordering::SeqCst);
    SLOW_RUNNING.fetch_add(1, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(200));
    SLOW_RUNNING.fetch_sub(1, Ordering::SeqCst);
    unsafe { copy_input(null_mut(), call) }
}

#[test]
fn after_shutdown_no_host_code_runs_and_no_run_starts() {
    let e = engine();
    register_step(e, "slow", slow, null_mut());
    let run = start(
        e,
        &spec(40, "slow", ""),
        &format!(r#"{{"out_dir": "{}"}}"#, out_dir("shutdown")),
        None,
        null_mut(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while SLOW_CALLS.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "no host call started");
        std::thread::yield_now();
    }
    assert_eq!(
        unsafe { creative_engine_shutdown(e, 10_000) },
        creative_status::Ok,
        "{}",
        last_error()
    );
    assert_eq!(
        SLOW_RUNNING.load(Ordering::SeqCst),
        0,
        "shutdown waits for the calls in progress"
    );
    let calls = SLOW_CALLS.load(Ordering::SeqCst);
    assert!(calls < 40, "the run was cancelled ({calls} calls)");
    let s = unsafe { creative_run_wait(run, 60_000) };
    assert_ne!(s, creative_status::Ok, "the run did not complete");
    assert_eq!(SLOW_CALLS.load(Ordering::SeqCst), calls, "no host call after shutdown");
    let sp = spec(1, "slow", "");
    let mut again = null_mut();
    assert_eq!(
        unsafe { creative_run_start(e, sp.as_ptr(), null(), None, null_mut(), &mut again) },
        creative_status::WrongState
    );
    assert!(last_error().contains("shut down"), "{}", last_error());
    unsafe { creative_run_free(run) };
    unsafe { creative_engine_free(e) };
}

/// Hands back a 3x2 binary PPM, as a renderer writing PPM would.
unsafe extern "C-unwind" fn ppm_frame(_ud: *mut c_void, call: *mut creative_host_call) -> c_int {
    let mut ppm = b"P6\n3 2\n255\n".to_vec();
    ppm.extend((0..18u8).map(|i| i * 10));
    let media = c("image/x-portable-pixmap");
    unsafe { creative_host_call_add_output(call, media.as_ptr(), ppm.as_ptr(), ppm.len(), null()) as c_int }
}

#[test]
fn convert_to_turns_a_host_ppm_into_a_png_with_its_size() {
    let e = engine();
    register_step(e, "ppm", ppm_frame, null_mut());
    let run = start(
        e,
        &spec(1, "ppm", "convert_to = \"image/png\"\n"),
        &format!(r#"{{"out_dir": "{}"}}"#, out_dir("convert")),
        None,
        null_mut(),
    );
    assert_eq!(
        unsafe { creative_run_wait(run, 60_000) },
        creative_status::Ok,
        "{}",
        last_error()
    );
    let mut n = 0usize;
    assert_eq!(unsafe { creative_run_artifact_count(run, &mut n) }, creative_status::Ok);
    let mut found = false;
    for i in 0..n {
        let mut info = null_mut();
        assert_eq!(
            unsafe { creative_run_artifact_info_json(run, i, &mut info) },
            creative_status::Ok
        );
        let v: serde_json::Value = serde_json::from_slice(unsafe { CStr::from_ptr(info) }.to_bytes()).unwrap();
        unsafe { creative_string_free(info) };
        if v["step"] == "frame" {
            found = true;
            assert_eq!(v["media_type"], "image/png", "{v}");
            assert_eq!(v["meta"]["width"], 3, "{v}");
            assert_eq!(v["meta"]["height"], 2, "{v}");
            let mut b = creative_bytes { ptr: null(), len: 0 };
            assert_eq!(
                unsafe { creative_run_artifact_data(run, i, &mut b) },
                creative_status::Ok
            );
            let data = unsafe { std::slice::from_raw_parts(b.ptr, b.len) };
            assert!(data.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
            let path = v["path"].as_str().unwrap();
            assert!(PathBuf::from(path).is_absolute(), "{path}");
            assert!(path.ends_with(".png"), "{path}");
        }
    }
    assert!(found, "the frame step's output is listed");
    unsafe { creative_run_free(run) };

    let bad = spec(1, "ppm", "convert_to = \"image/x-exr\"\n");
    let mut r = null_mut();
    let o = c(&format!(r#"{{"out_dir": "{}"}}"#, out_dir("convert-bad")));
    assert_eq!(
        unsafe { creative_run_start(e, bad.as_ptr(), o.as_ptr(), None, null_mut(), &mut r) },
        creative_status::InvalidSpec
    );
    assert!(last_error().contains("convert_to"), "{}", last_error());
    unsafe { creative_engine_free(e) };
}
