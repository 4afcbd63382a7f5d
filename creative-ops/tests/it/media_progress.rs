//! An ffmpeg step reports its progress as engine events: a transcode run by
//! the executor sends `Progress` events (provider `ffmpeg`) that only move
//! forward and end at the clip's whole duration.

use crate::media_common;

use std::sync::Arc;

use async_trait::async_trait;
use creative_core::events::EventKind;
use creative_core::exec::RunOptions;
use creative_core::{Artifact, Dag, Executor, Job, MediaKind, Status, Step, StepCtx, StepError, StepInputs};
use creative_ops::media::video::{VideoOutput, VideoTranscodeSettings, VideoTranscodeStep};

/// Hands the run a clip made in the test, as a generate step would.
struct Clip(Artifact);

#[async_trait]
impl Step for Clip {
    fn kind(&self) -> &str {
        "clip"
    }
    fn produces(&self) -> Option<MediaKind> {
        Some(MediaKind::Video)
    }
    async fn run(&self, _: &StepInputs, _: &StepCtx) -> Result<Vec<Artifact>, StepError> {
        Ok(vec![self.0.clone()])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transcode_sends_progress_events_that_move_forward_and_end_at_the_clip_s_duration() {
    // Six seconds of 640x360 at x264's `medium`: an encode long enough for
    // ffmpeg to report several times (every 0.2 s) on any machine.
    let clip = media_common::clip(640, 360, 6.0);
    // The step counts in microseconds and reports milliseconds.
    let duration_ms = (media_common::duration(&clip).await * 1e6) as u64 / 1000;
    let transcode = VideoTranscodeStep::new(
        VideoTranscodeSettings {
            output: VideoOutput::default(),
            ..Default::default()
        },
        media_common::ff(),
    )
    .unwrap();
    let dag = Dag::builder("progress")
        .step("clip", Clip(clip), &[])
        .step("web", transcode, &["clip"])
        .build()
        .unwrap();
    let exec = Executor::builder().build().unwrap();
    let mut run = exec
        .start(Arc::new(dag), vec![Job::new([("n", "1")])], RunOptions::default())
        .unwrap();
    let mut events = run.events().expect("the run's events");

    let mut reports = Vec::new();
    let mut finished = None;
    while let Some(e) = events.recv().await {
        match e.kind {
            EventKind::Progress {
                step,
                provider,
                stage,
                done,
                total,
                ..
            } if step == "web" => {
                assert_eq!((provider.as_str(), stage.as_str()), ("ffmpeg", "video_transcode"));
                reports.push((done, total));
            }
            EventKind::JobFinished { status, .. } => finished = Some(status),
            _ => {}
        }
    }
    assert_eq!(finished, Some(Status::Succeeded));
    assert!(reports.len() >= 2, "{reports:?}");
    assert!(
        reports.windows(2).all(|w| w[0].0 < w[1].0),
        "each report is further on: {reports:?}"
    );
    assert!(reports.iter().all(|r| r.1 == duration_ms), "{reports:?}");
    assert_eq!(reports.last().unwrap().0, duration_ms, "{reports:?}");
}
