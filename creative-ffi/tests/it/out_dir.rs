//! The output folder through the C ABI: an empty path or a root is refused with
//! a status and a message, and nothing is written anywhere.

use std::path::PathBuf;
use std::ptr::{null, null_mut};

use crate::abi_text::{c, last_error};
use creative_ffi::*;

const SPEC: &str = "name = \"t\"\n[providers.procedural]\nkind = \"procedural\"\n[matrix]\nproduct = [\"mug\"]\n\
                    [[steps]]\nname = \"hero\"\nkind = \"generate\"\nproviders = [\"procedural\"]\n\
                    prompt = \"a {{ product }}\"\nsize = \"16x16\"\n";

/// Start a run of `spec` in an empty base folder with `options`; returns the
/// status, the message and whether anything appeared in the base folder.
fn try_start(name: &str, spec: &str, options: &str) -> (creative_status, String, bool) {
    let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("out_dir").join(name);
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let mut engine = null_mut();
    assert_eq!(unsafe { creative_engine_new(null(), &mut engine) }, creative_status::Ok);
    let opts = c(&options.replace("BASE", &base.display().to_string()));
    let spec = c(spec);
    let mut run = null_mut();
    let status = unsafe { creative_run_start(engine, spec.as_ptr(), opts.as_ptr(), None, null_mut(), &mut run) };
    let message = last_error();
    if !run.is_null() {
        unsafe { creative_run_free(run) };
    }
    unsafe { creative_engine_free(engine) };
    let wrote = std::fs::read_dir(&base).unwrap().next().is_some();
    (status, message, wrote)
}

#[test]
fn an_empty_out_dir_is_refused_instead_of_writing_into_the_base_folder() {
    let (status, message, wrote) = try_start("empty", SPEC, r#"{"base_dir": "BASE", "out_dir": ""}"#);
    assert_eq!(status, creative_status::InvalidArgument, "{message}");
    assert!(message.contains("`out_dir`"), "{message}");
    assert!(message.contains("empty path"), "{message}");
    assert!(!wrote, "nothing may be written");
}

#[test]
fn a_root_out_dir_is_refused() {
    let (status, message, _) = try_start("root", SPEC, r#"{"base_dir": "BASE", "out_dir": "/"}"#);
    assert_eq!(status, creative_status::InvalidArgument, "{message}");
    assert!(message.contains("file-system root"), "{message}");
}

#[test]
fn a_spec_with_an_empty_output_dir_is_refused() {
    let spec = format!("{SPEC}[output]\ndir = \"\"\n");
    let (status, message, wrote) = try_start("spec-empty", &spec, r#"{"base_dir": "BASE"}"#);
    assert_eq!(status, creative_status::Parse, "{message}");
    assert!(message.contains("output.dir"), "{message}");
    assert!(!wrote, "nothing may be written");
}

#[test]
fn a_named_out_dir_still_runs() {
    let (status, message, _) = try_start(
        "named",
        SPEC,
        r#"{"base_dir": "BASE", "out_dir": "out", "dry_run": true}"#,
    );
    assert_eq!(status, creative_status::Ok, "{message}");
}
