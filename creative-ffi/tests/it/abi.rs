//! The ABI called from Rust exactly as C calls it: misuse answered with statuses,
//! callback rules, host extensions, lifetimes.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::path::PathBuf;
use std::ptr::{null, null_mut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::abi_text::{c, last_error, take};
use creative_ffi::*;

/// A fresh output folder for a test: whatever an earlier run left is removed.
fn out_dir(name: &str) -> String {
    let d = out_path(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// The path of a test's output folder, left as it is (a run may be writing it).
fn out_path(name: &str) -> String {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("abi")
        .join(name)
        .display()
        .to_string()
}

fn opts(name: &str) -> CString {
    c(&format!(r#"{{"out_dir": "{}"}}"#, out_dir(name)))
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

fn spec(jobs: usize, latency_ms: u64) -> CString {
    let products: Vec<String> = (0..jobs).map(|i| format!("\"p{i}\"")).collect();
    c(&format!(
        "name = \"t\"\nconcurrency = 2\n[providers.procedural]\nkind = \"procedural\"\nlatency_ms = {latency_ms}\n\
         [matrix]\nproduct = [{}]\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"procedural\"]\n\
         prompt = \"a {{{{ product }}}}\"\nsize = \"24x24\"\n",
        products.join(", ")
    ))
}

fn start(
    e: *mut creative_engine,
    spec: &CString,
    opts: &CString,
    cb: creative_event_fn,
    ud: *mut c_void,
) -> *mut creative_run {
    let mut run = null_mut();
    let s = unsafe { creative_run_start(e, spec.as_ptr(), opts.as_ptr(), cb, ud, &mut run) };
    assert_eq!(s, creative_status::Ok, "{}", last_error());
    run
}

#[test]
fn version_function_matches_the_constant() {
    assert_eq!(creative_abi_version(), CREATIVE_ABI_VERSION);
    let v = unsafe { CStr::from_ptr(creative_version()) }.to_str().unwrap();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn null_pointers_are_statuses_that_name_the_argument() {
    unsafe {
        assert_eq!(creative_engine_new(null(), null_mut()), creative_status::NullPointer);
        assert!(last_error().contains("out_engine"), "{}", last_error());
        let mut run = std::ptr::dangling_mut::<creative_run>();
        let s = spec(1, 0);
        assert_eq!(
            creative_run_start(null(), s.as_ptr(), null(), None, null_mut(), &mut run),
            creative_status::NullPointer
        );
        assert!(run.is_null(), "the out handle is cleared on failure");
        assert!(last_error().contains("engine"));
        let e = engine();
        assert_eq!(
            creative_run_start(e, null(), null(), None, null_mut(), &mut run),
            creative_status::NullPointer
        );
        assert!(last_error().contains("spec_text"), "{}", last_error());
        let mut state = creative_run_state::Running;
        assert_eq!(creative_run_poll(null(), &mut state), creative_status::NullPointer);
        assert_eq!(creative_run_wait(null(), 0), creative_status::NullPointer);
        assert_eq!(creative_run_cancel(null()), creative_status::NullPointer);
        let mut n = 0usize;
        assert_eq!(
            creative_run_artifact_count(null(), &mut n),
            creative_status::NullPointer
        );
        assert_eq!(
            creative_host_call_fail(null_mut(), null()),
            creative_status::NullPointer
        );
        creative_run_free(null_mut());
        creative_engine_free(null_mut());
        creative_string_free(null_mut());
        creative_engine_free(e);
    }
}

#[test]
fn bad_text_is_a_status_with_the_place() {
    let e = engine();
    let mut run = null_mut();
    unsafe {
        let bad = b"name = \"\xff\"\n\0";
        let s = creative_run_start(e, bad.as_ptr().cast(), null(), None, null_mut(), &mut run);
        assert_eq!(s, creative_status::InvalidUtf8);
        let toml = c("name = \"x\"\nsteps = [\n");
        assert_eq!(
            creative_run_start(e, toml.as_ptr(), null(), None, null_mut(), &mut run),
            creative_status::Parse
        );
        let json = c(r#"{"name": "x", "steps": 3}"#);
        assert_eq!(
            creative_run_start(e, json.as_ptr(), null(), None, null_mut(), &mut run),
            creative_status::Parse
        );
        assert!(last_error().contains("steps"), "{}", last_error());
        let unknown = c("name = \"x\"\n[[steps]]\nname = \"a\"\nkind = \"nope\"\n");
        assert_eq!(
            creative_run_start(e, unknown.as_ptr(), null(), None, null_mut(), &mut run),
            creative_status::InvalidSpec
        );
        assert!(last_error().contains("nope"), "{}", last_error());
        let s = spec(1, 0);
        let bad_opts = c(r#"{"out_dir": 3}"#);
        assert_eq!(
            creative_run_start(e, s.as_ptr(), bad_opts.as_ptr(), None, null_mut(), &mut run),
            creative_status::Parse
        );
        let bad_cfg = c("{\"worker_threads\": 0}");
        let mut e2 = null_mut();
        assert_eq!(
            creative_engine_new(bad_cfg.as_ptr(), &mut e2),
            creative_status::InvalidArgument
        );
        assert!(e2.is_null());
        assert!(run.is_null());
        creative_engine_free(e);
    }
}

#[test]
fn wrong_state_timeout_and_double_start() {
    let e = engine();
    let s = spec(6, 100);
    let o = opts("double");
    let run = start(e, &s, &o, None, null_mut());
    unsafe {
        assert_eq!(creative_run_wait(run, 0), creative_status::Timeout);
        // A timeout too long to represent waits like CREATIVE_WAIT_FOREVER (here:
        // until the end), never overflows.
        let probe = start(e, &spec(1, 0), &opts("double-probe"), None, null_mut());
        assert_eq!(
            creative_run_wait(probe, u64::MAX - 1),
            creative_status::Ok,
            "{}",
            last_error()
        );
        creative_run_free(probe);
        let t = Instant::now();
        assert_eq!(creative_run_wait(run, 50), creative_status::Timeout);
        assert!(t.elapsed() >= Duration::from_millis(50));
        let mut n = 0;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::WrongState);
        let mut json = null_mut();
        assert_eq!(creative_run_report_json(run, &mut json), creative_status::WrongState);
        assert!(last_error().contains("creative_run_wait"), "{}", last_error());
        // A second run into the same folder while the first is going.
        // (The path only: removing the folder under the running run would pull
        // its payloads from under it.)
        let same = c(&format!(r#"{{"out_dir": "{}/./"}}"#, out_path("double")));
        let mut twin = null_mut();
        assert_eq!(
            creative_run_start(e, s.as_ptr(), same.as_ptr(), None, null_mut(), &mut twin),
            creative_status::WrongState
        );
        assert!(last_error().contains("in use"), "{}", last_error());
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        // Once it has ended, the folder is free again (a resumed run, say).
        let resume = c(&format!(
            r#"{{"out_dir": "{}", "resume": true}}"#,
            out_dir("double-resume")
        ));
        let again = start(e, &s, &resume, None, null_mut());
        assert_eq!(creative_run_wait(again, CREATIVE_WAIT_FOREVER), creative_status::Ok);
        creative_run_free(again);
        let again = start(e, &s, &same, None, null_mut());
        assert_eq!(creative_run_wait(again, CREATIVE_WAIT_FOREVER), creative_status::Ok);
        creative_run_free(again);
        creative_run_free(run);
        creative_engine_free(e);
    }
}

struct Events {
    seqs: Mutex<Vec<u64>>,
    types: Mutex<Vec<String>>,
    threads: Mutex<Vec<std::thread::ThreadId>>,
}

unsafe extern "C-unwind" fn record(json: *const c_char, ud: *mut c_void) {
    let ev = unsafe { &*(ud as *const Events) };
    let v: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(json) }.to_str().unwrap()).unwrap();
    ev.seqs.lock().unwrap().push(v["seq"].as_u64().unwrap());
    ev.types.lock().unwrap().push(v["type"].as_str().unwrap().to_string());
    ev.threads.lock().unwrap().push(std::thread::current().id());
}

#[test]
fn events_arrive_in_order_on_one_library_thread_and_stop_at_free() {
    let e = engine();
    let ev = Box::new(Events {
        seqs: Mutex::new(Vec::new()),
        types: Mutex::new(Vec::new()),
        threads: Mutex::new(Vec::new()),
    });
    let ud = &*ev as *const Events as *mut c_void;
    let run = start(e, &spec(4, 0), &opts("events"), Some(record), ud);
    unsafe {
        assert_eq!(creative_run_wait(run, CREATIVE_WAIT_FOREVER), creative_status::Ok);
        let seqs = ev.seqs.lock().unwrap().clone();
        assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "serialized, in order");
        let types = ev.types.lock().unwrap().clone();
        assert_eq!(types.first().map(String::as_str), Some("run_started"));
        assert_eq!(types.last().map(String::as_str), Some("run_finished"));
        assert_eq!(types.iter().filter(|t| *t == "job_finished").count(), 4);
        let threads = ev.threads.lock().unwrap().clone();
        assert!(threads.iter().all(|t| *t == threads[0]), "one delivery thread per run");
        assert_ne!(threads[0], std::thread::current().id(), "never the caller's thread");
        let mut p = creative_progress::default();
        assert_eq!(creative_run_progress(run, &mut p), creative_status::Ok);
        assert_eq!((p.jobs_total, p.jobs_done, p.steps_done), (4, 4, 4));
        creative_run_free(run);

        // Freed while running: cancelled and joined; no call afterwards.
        ev.types.lock().unwrap().clear();
        let run = start(e, &spec(40, 50), &opts("events-free"), Some(record), ud);
        // Free it once it is certainly running: its first event has arrived.
        let t = Instant::now();
        while ev.types.lock().unwrap().is_empty() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        creative_run_free(run);
        let n = ev.types.lock().unwrap().len();
        assert_eq!(
            ev.types.lock().unwrap().last().map(String::as_str),
            Some("run_finished")
        );
        std::thread::sleep(Duration::from_millis(150));
        assert_eq!(ev.types.lock().unwrap().len(), n, "no callback after free returned");
        creative_engine_free(e);
    }
    drop(ev);
}

struct SelfFree {
    run: AtomicUsize,
    calls_after_free: AtomicUsize,
    freed: AtomicBool,
    wait_status: Mutex<Option<creative_status>>,
}

unsafe extern "C-unwind" fn free_inside(_json: *const c_char, ud: *mut c_void) {
    let s = unsafe { &*(ud as *const SelfFree) };
    if s.freed.load(Ordering::SeqCst) {
        s.calls_after_free.fetch_add(1, Ordering::SeqCst);
        return;
    }
    let run = s.run.load(Ordering::SeqCst) as *mut creative_run;
    if run.is_null() {
        return;
    }
    *s.wait_status.lock().unwrap() = Some(unsafe { creative_run_wait(run, 1000) });
    unsafe { creative_run_free(run) };
    s.freed.store(true, Ordering::SeqCst);
}

#[test]
fn a_callback_may_free_its_own_run_and_is_not_called_again() {
    let e = engine();
    let s = Box::new(SelfFree {
        run: AtomicUsize::new(0),
        calls_after_free: AtomicUsize::new(0),
        freed: AtomicBool::new(false),
        wait_status: Mutex::new(None),
    });
    let ud = &*s as *const SelfFree as *mut c_void;
    let sp = spec(20, 20);
    let o = opts("self-free");
    let mut run = null_mut();
    // Publish the handle before the first event can need it.
    let st = unsafe { creative_run_start(e, sp.as_ptr(), o.as_ptr(), Some(free_inside), ud, &mut run) };
    assert_eq!(st, creative_status::Ok);
    s.run.store(run as usize, Ordering::SeqCst);
    let t = Instant::now();
    while !s.freed.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(s.freed.load(Ordering::SeqCst));
    assert_eq!(*s.wait_status.lock().unwrap(), Some(creative_status::WrongState));
    // The engine's free waits for the run's tasks; nothing is called meanwhile.
    unsafe { creative_engine_free(e) };
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(s.calls_after_free.load(Ordering::SeqCst), 0);
}

// ----- host extensions -----

struct HostData {
    calls: AtomicUsize,
    freed: AtomicUsize,
    prompts: Mutex<Vec<String>>,
}

unsafe extern "C-unwind" fn host_generate(ud: *mut c_void, call: *mut creative_host_call) -> c_int {
    let d = unsafe { &*(ud as *const HostData) };
    d.calls.fetch_add(1, Ordering::SeqCst);
    let mut ctx = null();
    assert_eq!(
        unsafe { creative_host_call_context_json(call, &mut ctx) },
        creative_status::Ok
    );
    let v: serde_json::Value = serde_json::from_str(unsafe { CStr::from_ptr(ctx) }.to_str().unwrap()).unwrap();
    d.prompts
        .lock()
        .unwrap()
        .push(v["request"]["prompt"].as_str().unwrap_or("").to_string());
    assert_eq!(v["role"], "provider");
    assert_eq!(v["settings"]["studio"], "north");
    let body = format!("rendered: {}", v["request"]["prompt"].as_str().unwrap_or(""));
    let media = c("text/plain");
    unsafe {
        assert_eq!(creative_host_call_set_cost(call, 0.25), creative_status::Ok);
        assert_eq!(
            creative_host_call_set_verdict(call, true, 1.0, null()),
            creative_status::WrongState,
            "a provider sets no verdict"
        );
        creative_host_call_add_output(call, media.as_ptr(), body.as_ptr(), body.len(), null()) as c_int
    }
}

unsafe extern "C-unwind" fn host_free(ud: *mut c_void) {
    let d = unsafe { &*(ud as *const HostData) };
    d.freed.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C-unwind" fn host_bad_status(_ud: *mut c_void, _call: *mut creative_host_call) -> c_int {
    999
}

#[test]
fn a_host_provider_serves_a_spec_and_its_data_is_freed_once() {
    let d = Box::new(HostData {
        calls: AtomicUsize::new(0),
        freed: AtomicUsize::new(0),
        prompts: Mutex::new(Vec::new()),
    });
    let e = engine();
    let p = creative_host_provider {
        user_data: &*d as *const HostData as *mut c_void,
        free_user_data: Some(host_free),
        generate: Some(host_generate),
    };
    let kind = c("studio_renderer");
    unsafe {
        assert_eq!(
            creative_engine_register_provider(e, kind.as_ptr(), &p),
            creative_status::Ok
        );
        let mut kinds = null_mut();
        assert_eq!(creative_engine_kinds_json(e, &mut kinds), creative_status::Ok);
        let kinds = take(kinds);
        assert!(
            kinds.contains("studio_renderer") && kinds.contains("procedural"),
            "{kinds}"
        );
    }
    let sp = c(
        "name = \"host\"\n[providers.farm]\nkind = \"studio_renderer\"\nstudio = \"north\"\ntasks = [\"text\"]\n\
         [matrix]\nshot = [\"a\", \"b\"]\n[[steps]]\nname = \"copy\"\nkind = \"generate\"\ntask = \"text\"\n\
         providers = [\"farm\"]\nprompt = \"shot {{ shot }}\"\n",
    );
    let run = start(e, &sp, &opts("host-provider"), None, null_mut());
    // The engine may be freed first: the run keeps what it needs.
    unsafe { creative_engine_free(e) };
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let mut n = 0;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
        assert_eq!(n, 2);
        let mut texts = Vec::new();
        for i in 0..n {
            let mut b = creative_bytes { ptr: null(), len: 0 };
            assert_eq!(creative_run_artifact_data(run, i, &mut b), creative_status::Ok);
            let mut b2 = creative_bytes { ptr: null(), len: 0 };
            creative_run_artifact_data(run, i, &mut b2);
            assert_eq!(b.ptr, b2.ptr, "lent, not copied");
            texts.push(String::from_utf8(std::slice::from_raw_parts(b.ptr, b.len).to_vec()).unwrap());
            let mut info = null_mut();
            assert_eq!(creative_run_artifact_info_json(run, i, &mut info), creative_status::Ok);
            let info: serde_json::Value = serde_json::from_str(&take(info)).unwrap();
            assert_eq!(info["provenance"]["provider"], "farm");
        }
        texts.sort();
        assert_eq!(texts, ["rendered: shot a", "rendered: shot b"]);
        let mut b = creative_bytes { ptr: null(), len: 0 };
        assert_eq!(
            creative_run_artifact_data(run, 2, &mut b),
            creative_status::InvalidArgument
        );
        let mut report = null_mut();
        assert_eq!(creative_run_report_json(run, &mut report), creative_status::Ok);
        let report = take(report);
        assert!(report.contains("farm"), "{report}");
        assert_eq!(d.freed.load(Ordering::SeqCst), 0, "still in use by the run");
        creative_run_free(run);
    }
    assert_eq!(d.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        d.freed.load(Ordering::SeqCst),
        1,
        "freed exactly once, with the last handle"
    );
}

#[test]
fn a_host_failure_becomes_the_step_error() {
    let d = Box::new(HostData {
        calls: AtomicUsize::new(0),
        freed: AtomicUsize::new(0),
        prompts: Mutex::new(Vec::new()),
    });
    let e = engine();
    let st = creative_host_step {
        user_data: &*d as *const HostData as *mut c_void,
        free_user_data: Some(host_free),
        run: Some(host_bad_status),
    };
    let kind = c("odd_step");
    unsafe {
        assert_eq!(
            creative_engine_register_step(e, kind.as_ptr(), &st),
            creative_status::Ok
        );
        // Registering the kind again replaces it; the old data is released.
        assert_eq!(
            creative_engine_register_step(e, kind.as_ptr(), &st),
            creative_status::Ok
        );
        assert_eq!(d.freed.load(Ordering::SeqCst), 1);
    }
    let sp = c("name = \"h\"\n[[steps]]\nname = \"odd\"\nkind = \"odd_step\"\n");
    let run = start(e, &sp, &opts("host-fail"), None, null_mut());
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::StepFailed
        );
        assert!(last_error().contains("unknown status 999"), "{}", last_error());
        let mut state = creative_run_state::Running;
        creative_run_poll(run, &mut state);
        assert_eq!(state, creative_run_state::Failed);
        let mut m = null_mut();
        assert_eq!(
            creative_run_manifest_json(run, &mut m),
            creative_status::Ok,
            "a failed run has a manifest"
        );
        take(m);
        creative_run_free(run);
        creative_engine_free(e);
    }
    assert_eq!(d.freed.load(Ordering::SeqCst), 2);
}

#[test]
fn a_dry_run_plans_without_calling() {
    let e = engine();
    let o = c(r#"{"dry_run": true}"#);
    let run = start(e, &spec(3, 0), &o, None, null_mut());
    unsafe {
        assert_eq!(creative_run_wait(run, CREATIVE_WAIT_FOREVER), creative_status::Ok);
        let mut n = 1;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
        assert_eq!(n, 0);
        let mut r = null_mut();
        assert_eq!(creative_run_report_json(run, &mut r), creative_status::Ok);
        let r: serde_json::Value = serde_json::from_str(&take(r)).unwrap();
        assert_eq!(r["plan"]["jobs"].as_array().map(Vec::len), Some(3));
        creative_run_free(run);
        creative_engine_free(e);
    }
}

#[test]
fn a_json_spec_runs_too() {
    let e = engine();
    let sp = c(r#"{"name": "j", "providers": {"procedural": {"kind": "procedural"}},
        "steps": [{"name": "hero", "kind": "generate", "providers": ["procedural"], "prompt": "a lamp", "size": "16x16"}]}"#);
    let run = start(e, &sp, &opts("json"), None, null_mut());
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let mut media = null();
        assert_eq!(
            creative_run_artifact_media_type(run, 0, &mut media),
            creative_status::Ok
        );
        assert_eq!(CStr::from_ptr(media).to_str().unwrap(), "image/png");
        creative_run_free(run);
        creative_engine_free(e);
    }
}

#[test]
fn a_failed_registration_still_releases_the_data_once() {
    let d = Box::new(HostData {
        calls: AtomicUsize::new(0),
        freed: AtomicUsize::new(0),
        prompts: Mutex::new(Vec::new()),
    });
    let g = creative_host_gate {
        user_data: &*d as *const HostData as *mut c_void,
        free_user_data: Some(host_free),
        check: None,
    };
    let kind = c("g");
    unsafe {
        assert_eq!(
            creative_engine_register_gate(null_mut(), kind.as_ptr(), &g),
            creative_status::NullPointer
        );
        let e = engine();
        assert_eq!(
            creative_engine_register_gate(e, kind.as_ptr(), &g),
            creative_status::NullPointer
        );
        assert!(last_error().contains("gate->check"), "{}", last_error());
        let bad = b"k\xff\0";
        let ok = creative_host_gate {
            check: Some(host_bad_status),
            ..g
        };
        assert_eq!(
            creative_engine_register_gate(e, bad.as_ptr().cast(), &ok),
            creative_status::InvalidUtf8
        );
        assert_eq!(
            creative_engine_register_gate(e, kind.as_ptr(), null()),
            creative_status::NullPointer
        );
        creative_engine_free(e);
    }
    assert_eq!(d.freed.load(Ordering::SeqCst), 3);
}

#[test]
fn the_offline_product_campaign_spec_runs_through_the_abi() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/specs");
    let text =
        std::fs::read_to_string(dir.join("product_campaign.toml")).expect("examples/specs/product_campaign.toml");
    let e = engine();
    let o = c(&serde_json::json!({
        "base_dir": dir,
        "out_dir": out_dir("product-campaign"),
        "origin": "product_campaign.toml",
    })
    .to_string());
    let run = start(e, &c(&text), &o, None, null_mut());
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let mut p = creative_progress::default();
        creative_run_progress(run, &mut p);
        assert_eq!((p.jobs_total, p.jobs_done, p.jobs_failed), (24, 24, 0));
        let mut n = 0;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
        let mut m = null_mut();
        assert_eq!(creative_run_manifest_json(run, &mut m), creative_status::Ok);
        let m: serde_json::Value = serde_json::from_str(&take(m)).unwrap();
        let assets = m["assets"].as_array().expect("assets");
        assert!(
            !assets.is_empty() && n >= assets.len(),
            "{n} artifacts, {} assets",
            assets.len()
        );
        // Every delivered asset is among the lent artifacts, with its file path.
        let mut with_path = 0;
        for i in 0..n {
            let mut info = null_mut();
            creative_run_artifact_info_json(run, i, &mut info);
            let info: serde_json::Value = serde_json::from_str(&take(info)).unwrap();
            if let Some(p) = info["path"].as_str() {
                assert!(std::path::Path::new(p).is_file(), "{p}");
                with_path += 1;
            }
        }
        assert_eq!(with_path, assets.len());
        creative_run_free(run);
        creative_engine_free(e);
    }
}

#[test]
fn a_run_can_take_one_shard_of_the_jobs() {
    let e = engine();
    let s = spec(12, 0);
    let mut counts = Vec::new();
    for k in 1..=3 {
        let o = c(&format!(
            r#"{{"out_dir": "{}", "shard": "{k}/3"}}"#,
            out_dir(&format!("shard{k}"))
        ));
        let run = start(e, &s, &o, None, null_mut());
        unsafe {
            assert_eq!(creative_run_wait(run, CREATIVE_WAIT_FOREVER), creative_status::Ok);
            let mut n = 0usize;
            assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
            counts.push(n);
            creative_run_free(run);
        }
    }
    assert_eq!(
        counts.iter().sum::<usize>(),
        12,
        "the shards cover every job once: {counts:?}"
    );
    assert!(counts.iter().all(|&n| n < 12), "{counts:?}");
    let mut run = null_mut();
    let bad = c(r#"{"shard": "4/3"}"#);
    unsafe {
        assert_eq!(
            creative_run_start(e, s.as_ptr(), bad.as_ptr(), None, null_mut(), &mut run),
            creative_status::InvalidArgument
        );
        assert!(last_error().contains("shard `4/3`"), "{}", last_error());
        creative_engine_free(e);
    }
}

#[test]
fn preflight_refuses_a_run_whose_server_does_not_answer() {
    let e = engine();
    // Nothing listens on a port just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = c(&format!(
        "name = \"t\"\n[providers.comfy]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:{port}\"\n\
         workflow = {{ \"1\" = {{ class_type = \"SaveImage\", inputs = {{ filename_prefix = \"x\" }} }} }}\n\
         [matrix]\nproduct = [\"mug\"]\n[[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"comfy\"]\n\
         prompt = \"a {{{{ product }}}}\"\n"
    ));
    let dir = out_dir("preflight");
    let o = c(&format!(r#"{{"out_dir": "{dir}", "preflight": true}}"#));
    let mut run = null_mut();
    let s = unsafe { creative_run_start(e, down.as_ptr(), o.as_ptr(), None, null_mut(), &mut run) };
    assert_eq!(s, creative_status::ProviderError, "{}", last_error());
    assert!(run.is_null());
    assert!(
        last_error().contains("provider `comfy` cannot be reached"),
        "{}",
        last_error()
    );
    assert!(!std::path::Path::new(&dir).exists(), "nothing was written");
    // A provider that is always there passes, and the run goes on as usual.
    let o = c(&format!(r#"{{"out_dir": "{dir}", "preflight": true}}"#));
    let run = start(e, &spec(2, 0), &o, None, null_mut());
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        creative_run_free(run);
        creative_engine_free(e);
    }
}

/// A loopback server speaking the part of Ollama's API a text run needs:
/// `GET /api/version` and `POST /api/chat`. Serves `limit` connections.
fn ollama_server(limit: usize) -> (String, std::sync::Arc<Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().take(limit) {
            let Ok(mut s) = conn else { continue };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then the body its content-length announces.
            let (head, body_start, len) = loop {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break (String::new(), 0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_string();
                    let len = head
                        .lines()
                        .find_map(|l| {
                            let l = l.to_ascii_lowercase();
                            l.strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    break (head, i + 4, len);
                }
            };
            while buf.len() < body_start + len {
                let n = s.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let first = head.lines().next().unwrap_or_default().to_string();
            rec.lock().unwrap().push(first.clone());
            let body = if first.starts_with("GET /api/version") {
                r#"{"version":"0.12.6"}"#.to_string()
            } else {
                let req: serde_json::Value = serde_json::from_slice(&buf[body_start..]).unwrap_or_default();
                let prompt = req["messages"][0]["content"].as_str().unwrap_or_default().to_string();
                serde_json::json!({
                    "model": "llama3.2", "created_at": "2025-10-26T17:21:21Z",
                    "message": {"role": "assistant", "content": format!("copy for: {prompt}")},
                    "done": true, "done_reason": "stop", "prompt_eval_count": 12, "eval_count": 7
                })
                .to_string()
            };
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
        }
    });
    (url, seen)
}

#[test]
fn an_http_provider_runs_through_the_abi() {
    let (url, seen) = ollama_server(8);
    let e = engine();
    let spec = c(&format!(
        "name = \"t\"\n[providers.local]\nkind = \"ollama\"\nbase_url = \"{url}\"\nmodel = \"llama3.2\"\n\
         [matrix]\nproduct = [\"mug\", \"lamp\"]\n[[steps]]\nname = \"copy\"\nkind = \"generate\"\ntask = \"text\"\n\
         providers = [\"local\"]\nprompt = \"a line for a {{{{ product }}}}\"\n"
    ));
    let o = c(&format!(r#"{{"out_dir": "{}", "preflight": true}}"#, out_dir("http")));
    let run = start(e, &spec, &o, None, null_mut());
    unsafe {
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let mut n = 0;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
        let mut texts = Vec::new();
        for i in 0..n {
            let mut b = creative_bytes { ptr: null(), len: 0 };
            assert_eq!(creative_run_artifact_data(run, i, &mut b), creative_status::Ok);
            texts.push(String::from_utf8(std::slice::from_raw_parts(b.ptr, b.len).to_vec()).unwrap());
        }
        texts.sort();
        assert_eq!(texts, ["copy for: a line for a lamp", "copy for: a line for a mug"]);
        creative_run_free(run);
        creative_engine_free(e);
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0], "GET /api/version HTTP/1.1",
        "the preflight came first: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|l| l.starts_with("POST /api/chat")).count(),
        2,
        "{seen:?}"
    );
}
