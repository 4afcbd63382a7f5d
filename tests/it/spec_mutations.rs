//! Bad input never panics: thousands of mutations of the shipped example specs
//! (lines dropped, duplicated or swapped, values replaced by other types, text cut
//! anywhere, bytes flipped) go through parsing, building and a dry run. Each one
//! either works or returns an error; none panics, and an error always says
//! something and names the file.

use std::panic::AssertUnwindSafe;

use creative::campaign::spec::{CampaignOptions, Format, Registry, Spec};

fn registry() -> Registry {
    let mut reg = Registry::new();
    creative::providers::register(&mut reg);
    creative::ops::register(&mut reg);
    reg
}

const REPLACEMENTS: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "1e309",
    "18446744073709551616",
    "true",
    "[]",
    "[[]]",
    "{}",
    "\"../../etc/passwd\"",
    "\"{{ nope }}\"",
    "\"{{\"",
    "\"\\u0000\"",
    "\"x\"",
    "\"0x0\"",
    "\"99999x99999\"",
    "nan",
    "inf",
];

fn mutate(rng: &mut fastrand::Rng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    if lines.is_empty() {
        return String::new();
    }
    for _ in 0..rng.usize(1..=3) {
        let n = lines.len();
        let i = rng.usize(0..n);
        match rng.u8(0..7) {
            0 => {
                lines.remove(i);
                if lines.is_empty() {
                    break;
                }
            }
            1 => {
                let l = lines[i].clone();
                lines.insert(i, l);
            }
            2 => lines.swap(i, rng.usize(0..n)),
            3 | 4 => {
                if let Some((k, _)) = lines[i].split_once(" = ") {
                    let v = REPLACEMENTS[rng.usize(0..REPLACEMENTS.len())];
                    lines[i] = format!("{k} = {v}");
                }
            }
            5 => {
                let l = &lines[i];
                let cut = rng.usize(0..=l.len());
                if l.is_char_boundary(cut) {
                    lines[i] = l[..cut].to_string();
                }
            }
            _ => {
                let mut bytes = lines[i].clone().into_bytes();
                if !bytes.is_empty() {
                    let j = rng.usize(0..bytes.len());
                    let pool = b"=[]{}\"'#.,\\x";
                    bytes[j] = pool[rng.usize(0..pool.len())];
                }
                lines[i] = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutated_specs_error_or_work_and_never_panic() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let specs = ["product_campaign.toml", "social_post.toml", "comfyui_campaign.toml"];
    let reg = registry();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let (mut ok, mut errors) = (0usize, 0usize);
    for name in specs {
        let original = std::fs::read_to_string(root.join("examples/specs").join(name)).unwrap();
        for round in 0..400 {
            let text = mutate(&mut rng, &original);
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
                Spec::parse(&text, Format::Toml, name).and_then(|s| s.build(&reg, root.join("examples/specs")))
            }));
            let built = match result {
                Ok(r) => r,
                Err(_) => panic!("{name} mutation {round} panicked; the spec was:\n{text}"),
            };
            match built {
                Ok(campaign) => {
                    // It built: a dry run (no provider called, nothing written) must work too.
                    let run = campaign
                        .start(CampaignOptions {
                            dry_run: true,
                            ..CampaignOptions::default()
                        })
                        .unwrap_or_else(|e| panic!("{name} mutation {round}: dry run refused: {e}\n{text}"));
                    run.wait().await.expect("a dry run ends");
                    ok += 1;
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        msg.contains(name) && msg.len() > name.len() + 10,
                        "{name} mutation {round}: an error that says too little: `{msg}`"
                    );
                    errors += 1;
                }
            }
        }
    }
    // Both outcomes were exercised.
    assert!(ok > 50 && errors > 300, "{ok} built, {errors} refused");
}
