//! Presets live in the engine (`creative::engine::Preset`) and the spec maps
//! its `[presets.NAME]`, `[defaults]` and step settings onto them (issue 13):
//! a spec with presets makes the same assets, seeds, step fingerprints and
//! cache keys as before the move (the values below were recorded from the
//! `creative` binary built from main before it), and a Dag built in Rust with
//! the same presets sends the same requests as the spec.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use creative::campaign::spec::{CampaignOptions, Format, Registry, Spec};
use creative::engine::{Dag, Executor, Params, Provider, Request, SeedPolicy, Status, Task};
use creative::prelude::{GenerateStep, Job, Preset};
use creative_testkit::fake::{Answer, FakeProvider};

use crate::common::temp_dir;

/// Presets picked per job by the matrix (`preset = [...]`) over defaults, with
/// overrides, raw fields merged key by key, a fixed and a derived seed, words
/// around the prompt from a preset and from a step.
const PICKED_PER_JOB: &str = r##"
name = "presets-a"

[providers.art]
kind = "procedural"

[defaults]
quality = "standard"
size = "48x48"
raw = { base = 1, shared = "defaults" }

[presets.brand]
prompt_prefix = "studio photo of "
prompt_suffix = ", soft light"
negative_prompt = "blurry {{ product }}"
palette = ["#1f3a5f", "#f2c14e"]
seed = "derived"
steps = 30
guidance = 6.5
raw = { shared = "brand", brand = true }

[presets.bold]
prompt_prefix = "bold poster of "
seed = 7
width = 40
style = "vivid"
raw = { bold = 2 }

[overrides]
raw = { shared = "overrides" }
count = 1

[matrix]
product = ["mug", "lamp"]
preset = ["brand", "bold"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{ product }}"
height = 56
gates = [{ kind = "format", media = ["image/png"] }]

[[steps]]
name = "copy"
kind = "generate"
task = "text"
providers = ["art"]
prompt = "tagline for {{ product }}"
prompt_suffix = " (short)"
max_tokens = 20
"##;

/// A step's own preset, with job variables setting the size and the seed
/// over it, and a step with no preset beside it.
const STEP_PRESET: &str = r##"
name = "presets-b"

[providers.art]
kind = "procedural"

[defaults]
size = "32x32"
model = "m-default"

[presets.kit]
prompt_prefix = "kit {{ color }} "
negative_prompt = "text"
model = "m-kit"
seed = 1234
size = "64x64"
raw = { k = "v" }

[matrix]
color = ["red", "blue"]
zip = [{ size = ["40x40", "44x48"], seed = ["derived", 99] }]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
preset = "kit"
prompt = "a {{ color }} cup"
width = 36

[[steps]]
name = "plain"
kind = "generate"
providers = ["art"]
prompt = "plain {{ color }}"
negative_prompt = "noise"
"##;

/// What main's binary made of [`PICKED_PER_JOB`]: (job key, step, asset
/// sha256, seed), the step fingerprints, the cache keys.
const PICKED_ASSETS: &[(&str, &str, &str, u64)] = &[
    (
        "40c821855fc708f4",
        "copy",
        "947efd6ef70a9b8214f4e607d7a9fe19952087254bd00199abe9fa30e4731b12",
        1823161009,
    ),
    (
        "40c821855fc708f4",
        "hero",
        "4ae0b093a39d7a4719972a02959a01e6b2edbe87b68f732a020158139ae9b5da",
        2685507424,
    ),
    (
        "d4b391ee9eeabd40",
        "copy",
        "62e598caa7e63a599ec175e90d9876a70758bc1ae6b4aa9d79e88087c556f49d",
        7,
    ),
    (
        "d4b391ee9eeabd40",
        "hero",
        "69a2ce13dec25bf7499cce2c73042b236863c1d7bdcafcee9aae55a0dba76646",
        7,
    ),
    (
        "d816c0d030747aa2",
        "copy",
        "49e47783f31c771ae50f7fa3f0483e311211c03fb934d879c721da754b5af65f",
        2879585406,
    ),
    (
        "d816c0d030747aa2",
        "hero",
        "f60dd26c7b6ca6e2bb23b5e7fff80a86f7fe5faded8e932dff4b643794236082",
        458455022,
    ),
    (
        "eb00b49b967233d8",
        "copy",
        "11ac7cb4111db8d2fb4f72152d160a6a244af6298b75eab2061ff8849163f361",
        7,
    ),
    (
        "eb00b49b967233d8",
        "hero",
        "df57245ee9dc5ab472ff905f4b549b137f1e7bae1511afba58ab564b67067004",
        7,
    ),
];
const PICKED_FINGERPRINTS: &[(&str, &str)] = &[
    (
        "copy",
        "82f0b18d56309a7c4a450e9f868a8d85bfd01dc50f1ab0d2046ee06fc17f5215",
    ),
    (
        "hero",
        "7f07bc4b6cea03503c257cd6fbd30ccde1ccfd6b2f7629cacd10f2231ee446c7",
    ),
];
const PICKED_CACHE_KEYS: &[&str] = &[
    "059aa486228fc7161d73c88e5628022f830c0e884b1ccc2280a254fb4c910483",
    "42b555c4879ed60387275984d77e06949c82dbe4bf9526b3b6ecc5eabf9dc042",
    "6a34593a7a28e4f0f62a48c42640e4b565069935f9c2013b58b9284acc58973c",
    "80ccf964e08002e302cc24204a96c272bb639561314480f2a635ed027a40c589",
    "9de37095fd220afac096a1de4099040cb9616cfa9aa731f28bb26d5eef9605f6",
    "afa02c3b5ce42f45522a770f58d044ac01dd0751a42c18030a3056ab69423d32",
    "cb50f2bf59c13c2a773ff46159f8043308742ef26ad5567459f84e4e71b6ef1b",
    "d50ea489285f4e35ebfa84b0cb5e8d4f030231e43a6c28eaeea3d08b671eb008",
];

/// What main's binary made of [`STEP_PRESET`].
const STEP_ASSETS: &[(&str, &str, &str, u64)] = &[
    (
        "2e1ce0ac058e3c70",
        "hero",
        "af3c4143d12e0a9e5be11235f25113191521e51b4af6759ebd9bece1a3a8b02f",
        37766463,
    ),
    (
        "2e1ce0ac058e3c70",
        "plain",
        "76478b798e87a21db5059c33ab99a7023f6bcc60275e1a759d7daf9482d283b5",
        2860369907,
    ),
    (
        "434962855ffb8e6d",
        "hero",
        "5d9ed428ba7e42f4b36a8f42620073565282428b4ba4633bfecb83f8099c7586",
        99,
    ),
    (
        "434962855ffb8e6d",
        "plain",
        "8d383d4194227f7689260a00a954f0484de58cfb2f2f2bc609e63ff93f13c4a6",
        99,
    ),
    (
        "9d509f11bc3ab751",
        "hero",
        "68f4e2cfaec61903ea1c545a6471ccf2de5e8cea1bf9b3e6ea0c4e685700a6ec",
        3740558065,
    ),
    (
        "9d509f11bc3ab751",
        "plain",
        "0e417196ac38618402fb5fa6fb4fca110adb3a3285a12f074865a8ed92f22435",
        543680889,
    ),
    (
        "e5cb190e952bede8",
        "hero",
        "1472cbd37c240d02fa45d880d184e340f898df5b36e0de155ef90cd715235958",
        99,
    ),
    (
        "e5cb190e952bede8",
        "plain",
        "4fae5af1a9b6efe98b84dd7cc87c4a191da6fe83a6ec46f9d5194eaea58309b4",
        99,
    ),
];
const STEP_FINGERPRINTS: &[(&str, &str)] = &[
    (
        "hero",
        "48e40511eea0f24a85fb1ec12d3aa405ce568ac2349d84c1a434054094706b22",
    ),
    (
        "plain",
        "f527fa5854560f13b75c48d568fdae8417f104106e2c577c006a0b1b0e4c9714",
    ),
];
const STEP_CACHE_KEYS: &[&str] = &[
    "20182b95c5118b53a459774779f35c70bef277bac355c5c114cd3720f9317514",
    "652e9375096a7a8a8796e78dbfd7d037509af3dcedf35a569e51ff8690ccef8d",
    "6a2d502ee05fbf1d8f9985c9b8e0e34bb2e6f7083413f2b59d0d66a6637c706a",
    "7d7c759dad724fbd218b2ffc139d895dc91e0afd93f0db6443948df98f0c94e1",
    "b8a6fe3110b97c6d4a5cd901ef398f2fc3490aa881631432c707b510e72dddc2",
    "cc2e4a688f6ee3a1b7c7267068a54714f975f167b947f4e385bb2ebc4e57c643",
    "d96bf41778d68422ce5bc82e5d4521cc17936816f0a63822447e41f8e2dd8b55",
    "e185c96f7480ba0ae085a7cf210bd8ae1b6ed10036e2176cc765e670e444f090",
];

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

async fn run_spec(spec: &str, reg: &Registry, out: &Path) {
    let spec = Spec::parse(spec, Format::Toml, "presets.toml").unwrap();
    let campaign = spec.build(reg, ".").unwrap();
    let opts = CampaignOptions {
        out_dir: Some(out.to_path_buf()),
        ..CampaignOptions::default()
    };
    let done = campaign.start(opts).unwrap().wait().await.unwrap();
    assert_eq!(done.outcome.status, Status::Succeeded);
}

/// (job, step, asset id, seed) of every delivered asset, sorted.
fn assets(out: &Path) -> Vec<(String, String, String, u64)> {
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let mut v: Vec<_> = m["assets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let s = |k: &str| a[k].as_str().unwrap().to_string();
            (s("job"), s("step"), s("id"), a["provenance"]["seed"].as_u64().unwrap())
        })
        .collect();
    v.sort();
    v
}

/// (step, fingerprint) of every step the journal recorded, deduplicated.
fn fingerprints(out: &Path) -> BTreeSet<(String, String)> {
    std::fs::read_to_string(out.join(".creative/journal.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                r["step"].as_str().unwrap().to_string(),
                r["fingerprint"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cache_keys(out: &Path) -> Vec<String> {
    let db = rusqlite::Connection::open(out.join(".creative/cache.sqlite")).unwrap();
    // The index keeps a hex key as its bytes.
    let mut q = db.prepare("SELECT lower(hex(key)) FROM entries ORDER BY key").unwrap();
    let keys = q.query_map([], |r| r.get(0)).unwrap();
    keys.map(Result::unwrap).collect()
}

async fn assert_made_as_on_main(
    spec: &str,
    name: &str,
    want_assets: &[(&str, &str, &str, u64)],
    want_fingerprints: &[(&str, &str)],
    want_keys: &[&str],
) {
    let out = temp_dir(name);
    run_spec(spec, &registry(), &out).await;
    let owned = |v: &[(&str, &str, &str, u64)]| -> Vec<(String, String, String, u64)> {
        v.iter()
            .map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), *d))
            .collect()
    };
    assert_eq!(assets(&out), owned(want_assets), "assets and seeds of {name}");
    let fps: BTreeSet<(String, String)> = want_fingerprints
        .iter()
        .map(|(s, f)| (s.to_string(), f.to_string()))
        .collect();
    assert_eq!(fingerprints(&out), fps, "step fingerprints of {name}");
    assert_eq!(cache_keys(&out), want_keys, "cache keys of {name}");
    std::fs::remove_dir_all(&out).ok();
}

#[tokio::test]
async fn a_spec_whose_jobs_pick_presets_makes_the_assets_seeds_fingerprints_and_cache_keys_main_made() {
    assert_made_as_on_main(
        PICKED_PER_JOB,
        "presets-picked",
        PICKED_ASSETS,
        PICKED_FINGERPRINTS,
        PICKED_CACHE_KEYS,
    )
    .await;
}

#[tokio::test]
async fn a_spec_with_a_step_preset_and_job_sizes_and_seeds_makes_what_main_made() {
    assert_made_as_on_main(
        STEP_PRESET,
        "presets-step",
        STEP_ASSETS,
        STEP_FINGERPRINTS,
        STEP_CACHE_KEYS,
    )
    .await;
}

/// A spec of text steps on a fake provider `art`, and the same campaign as
/// a Rust-built Dag: defaults as the step's fixed preset, the spec's presets
/// picked by the `preset` variable, the overrides as the step's own settings.
const FAKE_SPEC: &str = r##"
name = "presets-fake"

[providers.art]
kind = "fake"

[defaults]
temperature = 0.5
model = "m-default"
raw = { base = 1, shared = "defaults" }

[presets.brand]
prompt_prefix = "in the brand voice, "
prompt_suffix = "!"
negative_prompt = "no {{ product }} puns"
seed = "derived"
style = "warm"
system = "be brief"
raw = { shared = "brand", brand = true }

[presets.bold]
prompt_prefix = "LOUDLY: "
seed = 7
model = "m-bold"
temperature = 0.9
raw = { bold = 2 }

[overrides]
raw = { shared = "overrides" }
max_tokens = 30

[matrix]
product = ["mug", "lamp"]
preset = ["brand", "bold"]

[[steps]]
name = "copy"
kind = "generate"
task = "text"
providers = ["art"]
prompt = "a tagline for {{ product }}"
max_tokens = 20
"##;

fn fake() -> FakeProvider {
    FakeProvider::new("art", &[Task::Text]).respond(|req, _| Answer::text(format!("said: {}", req.prompt)))
}

/// The requests a provider received, as canonical JSON, sorted (jobs run in
/// any order).
fn sent(p: &FakeProvider) -> Vec<String> {
    let mut v: Vec<String> = p
        .requests()
        .iter()
        .map(|r: &Request| serde_json::to_string(&r.resolved_json()).unwrap())
        .collect();
    v.sort();
    v
}

fn raw(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

#[tokio::test]
async fn a_rust_built_dag_with_presets_sends_the_requests_of_the_equivalent_spec() {
    // The spec, through the campaign layer.
    let by_spec = fake();
    let mut reg = registry();
    let p = by_spec.clone();
    reg.provider(
        "fake",
        Arc::new(move |_, _, _| Ok(Arc::new(p.clone()) as Arc<dyn Provider>)),
    );
    let out = temp_dir("presets-fake");
    run_spec(FAKE_SPEC, &reg, &out).await;
    std::fs::remove_dir_all(&out).ok();

    // The same campaign, built in Rust.
    let defaults = Preset::new("defaults")
        .params(&Params {
            temperature: Some(0.5),
            ..Default::default()
        })
        .model("m-default")
        .raw(raw(&[("base", 1.into()), ("shared", "defaults".into())]));
    let brand = Preset::new("brand")
        .prompt_prefix("in the brand voice, ")
        .prompt_suffix("!")
        .negative("no {{ product }} puns")
        .seed(SeedPolicy::Derived)
        .params(&Params {
            style: Some("warm".into()),
            system: Some("be brief".into()),
            ..Default::default()
        })
        .raw(raw(&[("shared", "brand".into()), ("brand", true.into())]));
    let bold = Preset::new("bold")
        .prompt_prefix("LOUDLY: ")
        .seed(SeedPolicy::Fixed(7))
        .model("m-bold")
        .params(&Params {
            temperature: Some(0.9),
            ..Default::default()
        })
        .raw(raw(&[("bold", 2.into())]));
    let step = GenerateStep::new(Task::Text, ["art"], "a tagline for {{ product }}")
        .unwrap()
        .params(&Params {
            max_tokens: Some(20),
            ..Default::default()
        })
        .preset(defaults)
        .preset_by_var("preset", [brand, bold], None)
        .unwrap()
        // The spec's overrides: the step's own settings, set last.
        .params(&Params {
            max_tokens: Some(30),
            ..Default::default()
        })
        .raw(raw(&[("shared", "overrides".into())]));
    let by_dag = fake();
    let exec = Executor::builder().provider(by_dag.clone()).build().unwrap();
    let dag = Dag::builder("presets-fake").step("copy", step, &[]).build().unwrap();
    let jobs = ["mug", "lamp"]
        .iter()
        .flat_map(|product| ["brand", "bold"].map(|preset| Job::new([("product", *product), ("preset", preset)])));
    let done = exec.run(Arc::new(dag), jobs).await.unwrap();
    assert_eq!(done.status, Status::Succeeded);

    let (spec_sent, dag_sent) = (sent(&by_spec), sent(&by_dag));
    assert_eq!(spec_sent.len(), 4, "{spec_sent:#?}");
    assert_eq!(dag_sent, spec_sent);
    // And the layering is the one the spec documents: the bold preset's fixed
    // seed, model and temperature over the defaults; the overrides over all.
    let bold_mug = spec_sent
        .iter()
        .find(|r| r.contains("LOUDLY: a tagline for mug"))
        .unwrap();
    let r: serde_json::Value = serde_json::from_str(bold_mug).unwrap();
    assert_eq!(r["model"], "m-bold");
    assert_eq!(r["params"]["seed"], 7);
    let temperature = r["params"]["temperature"].as_f64().unwrap();
    assert!((temperature - 0.9).abs() < 1e-6, "{temperature}");
    assert_eq!(r["params"]["max_tokens"], 30);
    assert_eq!(
        r["raw"],
        serde_json::json!({ "base": 1, "bold": 2, "shared": "overrides" })
    );
}
