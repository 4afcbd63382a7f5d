//! `creative init`: a commented starter campaign that runs as written.

use std::process::ExitCode;

use super::args::{InitArgs, StarterProvider};
use super::schema::SCHEMA_FILE;

fn provider_block(p: StarterProvider) -> &'static str {
    match p {
        StarterProvider::Procedural => {
            "# `procedural` draws test images offline: no key, no network, no cost. Swap in\n\
             # a real backend when the pipeline does what you want (`creative explain openai`).\n\
             [providers.art]\nkind = \"procedural\"\n"
        }
        StarterProvider::Openai => {
            "# OpenAI's image API. The key is read from OPENAI_API_KEY (`api_key_env` names\n\
             # another variable), never written in the spec; a dry run needs none.\n\
             [providers.art]\nkind = \"openai\"\nmodel = \"gpt-image-1\"\n\
             requests_per_minute = 50      # your account's limit; the run paces itself to it\n"
        }
        StarterProvider::Comfyui => {
            "# A ComfyUI server on this machine (`creative run` checks that it is up first).\n\
             [providers.art]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:8188\"\n\
             # workflow = \"workflow.json\"  # an API-format workflow exported from ComfyUI\n"
        }
    }
}

/// The starter spec's text.
pub fn starter(p: StarterProvider) -> String {
    format!(
        "#:schema ./{SCHEMA_FILE}
# A starter campaign: 2 products x 2 channels, one hero image each, reframed per
# channel and checked. `creative schema > {SCHEMA_FILE}` lets your editor complete
# and check this file; `creative explain KIND` prints a kind's settings.
#
#   creative check campaign.toml          # parse, build, static checks
#   creative run campaign.toml --dry-run  # jobs, cost and time against the budget
#   creative run campaign.toml            # writes ./out
name = \"starter\"
concurrency = 4                 # jobs and calls at once (1 to 10000)

{provider}
# Every list is an axis: 2 x 2 = 4 jobs. Each job's variables fill the templates.
[matrix]
product = [\"mug\", \"lamp\"]
[[matrix.zip]]                  # lists that advance together form one axis
channel = [\"square\", \"story\"]
aspect = [\"1:1\", \"9:16\"]

# The lowest layer of generation parameters; presets, steps, job variables and
# [overrides] win over it.
[defaults]
size = \"1024x1024\"

[[steps]]
name = \"hero\"
kind = \"generate\"
providers = [\"art\"]
prompt = \"studio photo of a {{{{ product }}}} on a wooden table, soft light\"
gates = [{{ kind = \"sharpness\" }}]     # a blurry image is generated again
on_gate_fail = {{ action = \"regenerate\", max = 2 }}

[[steps]]
name = \"framed\"
kind = \"reframe\"
inputs = [\"hero\"]
aspect_var = \"aspect\"            # the job's `aspect` variable picks the frame
output = {{ format = \"jpeg\", quality = 88 }}

[budget]
max_cost_usd = 5.0              # the run stops here (exit 5); --resume continues
max_minutes = 30

[output]
dir = \"out\"
file_name = \"{{{{ channel }}}}/{{{{ product }}}}.{{{{ ext }}}}\"
",
        provider = provider_block(p)
    )
}

/// `creative init`.
pub fn init(a: InitArgs) -> ExitCode {
    if a.file.exists() && !a.force {
        eprintln!("error: {} exists; --force overwrites it", a.file.display());
        return ExitCode::from(super::run::DID_NOT_START);
    }
    if let Err(e) = std::fs::write(&a.file, starter(a.provider)) {
        eprintln!("error: cannot write {}: {e}", a.file.display());
        return ExitCode::from(super::run::DID_NOT_START);
    }
    let schema = a
        .file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| std::path::PathBuf::from(SCHEMA_FILE), |p| p.join(SCHEMA_FILE));
    let s = super::schema::spec_schema();
    if let Err(e) = std::fs::write(&schema, serde_json::to_string_pretty(&s.schema).unwrap_or_default()) {
        eprintln!("warning: cannot write {}: {e}", schema.display());
    }
    super::out::println(&format!(
        "wrote {} and {}; next: creative check {}",
        a.file.display(),
        schema.display(),
        a.file.display()
    ));
    ExitCode::SUCCESS
}
