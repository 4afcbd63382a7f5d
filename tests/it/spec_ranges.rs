//! Every number of a spec has a range; a value outside it fails the build (and
//! so `creative check`) with an error naming the field path and the range,
//! instead of panicking, aborting or hanging the run.

use creative::campaign::spec::{Format, Registry, Spec, SpecError, SpecErrorKind};

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

/// A spec with `top` at the top level, `provider` in the provider's table and
/// `step` in the generate step's table.
fn spec(top: &str, provider: &str, step: &str, tail: &str) -> String {
    format!(
        r#"name = "t"
{top}

[providers.art]
kind = "procedural"
{provider}

[matrix]
product = ["mug", "lamp"]

[[steps]]
name = "hero"
kind = "generate"
providers = ["art"]
prompt = "a {{{{ product }}}}"
{step}
{tail}
"#
    )
}

fn try_build(text: &str) -> Result<(), SpecError> {
    let spec = Spec::parse(text, Format::Toml, "campaign.toml")?;
    spec.build(&registry(), ".").map(|_| ())
}

fn refused(text: &str, path: &str, range: &str) {
    let e = match try_build(text) {
        Ok(()) => panic!("the spec should not build:\n{text}"),
        Err(e) => e,
    };
    assert_eq!(e.kind, SpecErrorKind::Invalid, "{e}");
    assert_eq!(e.path, path, "{e}");
    assert!(e.message.contains(range), "`{e}` should name the range `{range}`");
}

#[test]
fn a_concurrency_of_i64_max_is_refused_instead_of_panicking() {
    refused(
        &spec("concurrency = 9223372036854775807", "", "", ""),
        "concurrency",
        "allowed 1 to 10000",
    );
    refused(
        &spec("concurrency = 0", "", "", ""),
        "concurrency",
        "allowed 1 to 10000",
    );
    try_build(&spec("concurrency = 10000", "", "", "")).unwrap();
}

#[test]
fn a_provider_concurrency_rate_limit_and_timeout_have_ranges() {
    refused(
        &spec("", "concurrency = 9223372036854775807", "", ""),
        "providers.art.concurrency",
        "allowed 1 to 10000",
    );
    refused(
        &spec("", "requests_per_minute = 0", "", ""),
        "providers.art.requests_per_minute",
        "allowed 1 to 1000000",
    );
    refused(
        &spec("", "burst = 4000000000", "", ""),
        "providers.art.burst",
        "allowed 1 to 100000",
    );
    refused(
        &spec("", "call_timeout_s = 1e300", "", ""),
        "providers.art.call_timeout_s",
        "up to 86400",
    );
    try_build(&spec(
        "",
        "concurrency = 64\nrequests_per_minute = 600\nburst = 10\ncall_timeout_s = 600",
        "",
        "",
    ))
    .unwrap();
}

#[test]
fn a_run_deadline_of_1e300_minutes_is_refused_instead_of_panicking() {
    refused(
        &spec("", "", "", "[budget]\nmax_minutes = 1e300"),
        "budget.max_minutes",
        "up to 525600",
    );
    refused(
        &spec("", "", "", "[budget]\nmax_minutes = 0"),
        "budget.max_minutes",
        "above 0",
    );
    refused(
        &spec("", "", "", "[budget]\nmax_minutes = nan"),
        "budget.max_minutes",
        "above 0",
    );
    refused(
        &spec("", "", "", "[budget]\nmax_cost_usd = -1"),
        "budget.max_cost_usd",
        "from 0",
    );
    refused(
        &spec("", "", "", "[budget]\nmax_cost_usd = inf"),
        "budget.max_cost_usd",
        "from 0",
    );
    refused(
        &spec("", "", "", "[budget]\nmax_attempts = 0"),
        "budget.max_attempts",
        "allowed 1 to",
    );
    try_build(&spec(
        "",
        "",
        "",
        "[budget]\nmax_minutes = 525600\nmax_cost_usd = 0\nmax_attempts = 5",
    ))
    .unwrap();
}

#[test]
fn a_retry_delay_of_u64_max_is_refused_instead_of_sleeping_forever() {
    refused(
        &spec("", "", "", "[retry]\nbase_ms = 18446744073709551615"),
        "retry.base_ms",
        "allowed 1 to 3600000",
    );
    refused(
        &spec("", "", "", "[retry]\nmax_ms = 3600001"),
        "retry.max_ms",
        "allowed 1 to 3600000",
    );
    refused(
        &spec("", "", "", "[retry]\nmax_attempts = 101"),
        "retry.max_attempts",
        "allowed 1 to 100",
    );
    try_build(&spec(
        "",
        "",
        "",
        "[retry]\nbase_ms = 1000\nmax_ms = 3600000\nmax_attempts = 100",
    ))
    .unwrap();
}

#[test]
fn a_billion_regeneration_rounds_are_refused() {
    refused(
        &spec(
            "",
            "",
            "on_gate_fail = { action = \"regenerate\", max = 1000000000 }",
            "",
        ),
        "steps[0].on_gate_fail.max",
        "allowed 0 to 100",
    );
    try_build(&spec(
        "",
        "",
        "on_gate_fail = { action = \"regenerate\", max = 100 }",
        "",
    ))
    .unwrap();
}

#[test]
fn image_sizes_counts_and_sampling_numbers_have_ranges_in_every_layer() {
    refused(
        &spec("", "", "size = \"50000x50000\"", ""),
        "steps[0].size",
        "at most 16384",
    );
    refused(
        &spec("", "", "width = 16384\nheight = 16384", ""),
        "steps[0].height",
        "pixels",
    );
    refused(&spec("", "", "count = 100000", ""), "steps[0].count", "allowed 1 to 64");
    refused(&spec("", "", "keep = 100000", ""), "steps[0].keep", "allowed 1 to 1000");
    refused(&spec("", "", "steps = 0", ""), "steps[0].steps", "allowed 1 to 1000");
    refused(&spec("", "", "guidance = -1.0", ""), "steps[0].guidance", "up to 100");
    refused(
        &spec("", "", "temperature = 11.0", ""),
        "steps[0].temperature",
        "up to 10",
    );
    refused(&spec("", "", "duration_s = 0", ""), "steps[0].duration_s", "above 0");
    refused(
        &spec("", "", "max_tokens = 0", ""),
        "steps[0].max_tokens",
        "allowed 1 to 1000000",
    );
    refused(
        &spec("", "", "", "[defaults]\ncount = 65"),
        "defaults.count",
        "allowed 1 to 64",
    );
    refused(
        &spec("", "", "", "[presets.brand]\nheight = 20000"),
        "presets.brand.height",
        "allowed 1 to 16384",
    );
    // A job variable sets a parameter too.
    let text = spec("", "", "", "").replace(
        "product = [\"mug\", \"lamp\"]",
        "product = [\"mug\", \"lamp\"]\ncount = [1, 1000]",
    );
    refused(&text, "matrix.count", "allowed 1 to 64");
    try_build(&spec(
        "",
        "",
        "size = \"16384x6000\"\ncount = 64\nkeep = 64\nsteps = 1000",
        "",
    ))
    .unwrap();
}

#[tokio::test]
async fn a_campaign_started_from_rust_refuses_an_empty_or_root_out_dir() {
    use creative::campaign::spec::CampaignOptions;
    let parsed = Spec::parse(&spec("", "", "", ""), Format::Toml, "campaign.toml").unwrap();
    let campaign = parsed.build(&registry(), ".").unwrap();
    for (dir, says) in [("", "empty path"), ("/", "file-system root")] {
        let e = campaign
            .start(CampaignOptions {
                out_dir: Some(dir.into()),
                ..Default::default()
            })
            .err()
            .expect("refused");
        assert!(e.to_string().contains(says), "{e}");
    }
    refused(
        &spec("", "", "", "[output]\ndir = \"/\""),
        "output.dir",
        "file-system root",
    );
}

#[test]
fn a_cache_cap_of_zero_or_past_16_tib_is_refused_naming_output_cache_max_mb() {
    for bad in ["0", "16777217", "-1"] {
        let text = spec("", "", "", &format!("[output]\ncache_max_mb = {bad}"));
        match try_build(&text) {
            Ok(()) => panic!("cache_max_mb = {bad} should be refused"),
            Err(e) => assert!(e.to_string().contains("cache_max_mb"), "{e}"),
        }
    }
    refused(
        &spec("", "", "", "[output]\ncache_max_mb = 0"),
        "output.cache_max_mb",
        "allowed 1 to 16777216",
    );
    try_build(&spec("", "", "", "[output]\ncache_max_mb = 512")).unwrap();
}
