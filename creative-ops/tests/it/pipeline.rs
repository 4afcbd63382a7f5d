//! Steps and gates inside the engine: a generate step gated by sharpness and
//! dedupe, then renditions, a caption and provenance metadata, for two jobs.

use crate::common;

use std::sync::Arc;

use common::*;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::{Artifact, Dag, Executor, GenerateStep, Job, MediaType, OnGateFail, Status, Task};
use creative_ops::{metadata, Format};
use creative_testkit::fake::{Answer, FakeProvider};
use serde_json::json;

/// The kit's fake as an image provider whose first answer is blurry and later
/// ones sharp; each job's image differs (the seed picks the pattern).
fn camera() -> FakeProvider {
    FakeProvider::new("camera", &[Task::Image]).seed(true).respond(|r, n| {
        let seed = r.params.seed.unwrap_or(1);
        let img = if r.prompt.contains("mug") {
            detailed(320, 240, seed)
        } else {
            subject_at(320, 240, 20 + (seed % 50) as u32, 120)
        };
        let img = if n == 1 { blur(&img, 4, 2) } else { img };
        Answer::artifacts(vec![Artifact::new(MediaType::Png, encode(&img, Format::Png))])
    })
}

#[tokio::test]
async fn a_campaign_regenerates_blurry_shots_and_delivers_captioned_renditions() {
    let mut reg = Registry::new();
    creative_ops::register(&mut reg);
    let ctx = BuildCtx::default();
    let gate = |kind: &str, s: serde_json::Value| reg.gate_factory(kind).unwrap()(&s, &ctx).unwrap();
    let step = |kind: &str, s: serde_json::Value| reg.step_factory(kind).unwrap()(&s, &ctx).unwrap();

    let generate = GenerateStep::new(Task::Image, ["camera"], "a photo of a {{ product }}")
        .unwrap()
        .gate(gate("sharpness", json!({ "min_variance": 100.0 })))
        .gate(gate("dedupe", json!({})))
        .on_gate_fail(OnGateFail::Regenerate { max: 2 });
    let dag = Dag::builder("campaign")
        .step("hero", generate, &[])
        .step_arc(
            "channels",
            step(
                "renditions",
                json!({ "renditions": [ { "aspect": "1:1", "width": 200 }, { "aspect": "9:16", "width": 135 }, { "aspect": "16:9", "width": 320 } ] }),
            ),
            &["hero"],
        )
        .step_arc("captioned", step("overlay", json!({ "text": "{{ product | title }}" })), &["channels"])
        .step_arc("tagged", step("metadata", json!({})), &["captioned"])
        .build()
        .unwrap();
    let exec = Executor::builder().provider(camera()).concurrency(1).build().unwrap();
    let jobs = vec![Job::new([("product", "mug")]), Job::new([("product", "lamp")])];
    let out = exec.run(Arc::new(dag), jobs).await.unwrap();

    for job in &out.jobs {
        assert_eq!(job.status, Status::Succeeded, "{:?}", job.error());
        let tagged = job.outputs("tagged");
        let renditions: Vec<_> = tagged.iter().map(|a| a.meta().extra["rendition"].clone()).collect();
        assert_eq!(renditions, vec![json!("1x1"), json!("9x16"), json!("16x9")]);
        for a in tagged {
            let doc: serde_json::Value =
                serde_json::from_str(&metadata::read(a.data(), Format::Png).unwrap().unwrap()).unwrap();
            assert_eq!(doc["provenance"]["step"], json!("captioned"));
            let product = job.job.var_str("product").unwrap();
            let title = format!("{}{}", product[..1].to_uppercase(), &product[1..]);
            assert_eq!(doc["provenance"]["params"]["text"], json!(title));
        }
        let hero = &job.outputs("hero")[0];
        let gates: Vec<_> = hero
            .provenance()
            .gates
            .iter()
            .map(|g| (g.gate.clone(), g.verdict.passed))
            .collect();
        assert_eq!(
            gates,
            vec![("sharpness".to_string(), true), ("dedupe".to_string(), true)]
        );
    }
    // The very first shot was blurry: one job needed a second round.
    let rounds: Vec<u32> = out
        .jobs
        .iter()
        .map(|j| j.outputs("hero")[0].provenance().regeneration)
        .collect();
    assert_eq!(rounds.iter().filter(|r| **r == 1).count(), 1, "{rounds:?}");
}
