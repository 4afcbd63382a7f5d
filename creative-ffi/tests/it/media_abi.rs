//! Audio and video come through the C ABI as any artifact does (issue 19):
//! a run of generated voice and clip, and renditions cut from the clip, lends
//! each one's bytes with its media type and its probed facts, called from
//! Rust exactly as C calls it. Needs ffmpeg (scripts/test installs it).

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::ptr::{null, null_mut};

use crate::abi_text::{c, last_error, take};
use creative_ffi::*;

const SPEC: &str = r#"
name = "media-abi"

[providers.studio]
kind = "procedural"

[[steps]]
name = "voice"
kind = "generate"
task = "audio"
providers = ["studio"]
prompt = "a calm voice"
duration_s = 1.0

[[steps]]
name = "clip"
kind = "generate"
task = "video"
providers = ["studio"]
prompt = "a mug on a desk"
width = 128
height = 72
duration_s = 1.0

[[steps]]
name = "cuts"
kind = "video_renditions"
inputs = ["clip"]
renditions = [{ aspect = "1:1", width = 64 }, { aspect = "9:16", width = 36 }]
output = { preset = "ultrafast" }
"#;

/// (step, media type, container by its magic bytes, width and height).
type Facts<'a> = (&'a str, &'a str, &'a str, (Option<u64>, Option<u64>));

#[test]
fn generated_audio_and_video_and_their_renditions_come_through_the_abi_with_their_media_types() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("abi").join("media");
    let _ = std::fs::remove_dir_all(&out);
    let opts = c(&serde_json::json!({ "out_dir": out }).to_string());
    let mut e = null_mut();
    let mut run = null_mut();
    unsafe {
        assert_eq!(
            creative_engine_new(null(), &mut e),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let s = creative_run_start(e, c(SPEC).as_ptr(), opts.as_ptr(), None, null_mut(), &mut run);
        assert_eq!(s, creative_status::Ok, "{}", last_error());
        assert_eq!(
            creative_run_wait(run, CREATIVE_WAIT_FOREVER),
            creative_status::Ok,
            "{}",
            last_error()
        );
        let mut n = 0;
        assert_eq!(creative_run_artifact_count(run, &mut n), creative_status::Ok);
        // (step, media type, first bytes, duration and size from the info JSON)
        let mut seen = Vec::new();
        for i in 0..n {
            let mut media: *const c_char = null();
            assert_eq!(
                creative_run_artifact_media_type(run, i, &mut media),
                creative_status::Ok
            );
            let media = CStr::from_ptr(media).to_string_lossy().into_owned();
            let mut data = creative_bytes { ptr: null(), len: 0 };
            assert_eq!(creative_run_artifact_data(run, i, &mut data), creative_status::Ok);
            let bytes = std::slice::from_raw_parts(data.ptr, data.len);
            let mut info = null_mut();
            assert_eq!(creative_run_artifact_info_json(run, i, &mut info), creative_status::Ok);
            let info: serde_json::Value = serde_json::from_str(&take(info)).unwrap();
            assert_eq!(info["media_type"], media.as_str());
            assert_eq!(info["size"].as_u64(), Some(bytes.len() as u64));
            let magic = match &bytes[..12] {
                b if &b[0..4] == b"RIFF" && &b[8..12] == b"WAVE" => "wav",
                b if &b[4..8] == b"ftyp" => "mp4",
                _ => "other",
            };
            seen.push((
                info["step"].as_str().unwrap().to_string(),
                media,
                magic,
                info["meta"]["duration_s"].as_f64(),
                (info["meta"]["width"].as_u64(), info["meta"]["height"].as_u64()),
            ));
        }
        creative_run_free(run);
        creative_engine_free(e);
        let facts: Vec<Facts> = seen
            .iter()
            .map(|(s, m, magic, _, size)| (s.as_str(), m.as_str(), *magic, *size))
            .collect();
        assert_eq!(
            facts,
            vec![
                ("voice", "audio/wav", "wav", (None, None)),
                ("clip", "video/mp4", "mp4", (Some(128), Some(72))),
                ("cuts", "video/mp4", "mp4", (Some(64), Some(64))),
                ("cuts", "video/mp4", "mp4", (Some(36), Some(64))),
            ],
            "{seen:?}"
        );
        for (step, _, _, d, _) in &seen {
            let d = d.unwrap_or_else(|| panic!("{step}: no duration"));
            assert!((d - 1.0).abs() < 0.05, "{step}: {d} s");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
