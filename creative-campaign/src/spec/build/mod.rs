//! Building a spec into a runnable campaign: providers from the registry, the
//! jobs of the matrix, the steps and gates, the DAG, the executor, the outputs.
//! Every check that can be made before running is made here, so a bad spec
//! fails before any provider is called.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::deliver::{FileNameTemplate, Sink};
use crate::spec::campaign::Campaign;
use crate::spec::error::{SpecError, SpecErrorKind as K};
use crate::spec::matrix::JobMatrix;
use crate::spec::schema::{GateSpec, GenerateSettings, Layer, StepSpec, GENERATE_KEYS, PARAM_VARS};
use crate::spec::steps::{job_layer, job_var_message, preset_of, GatedStep, NamedGate, SpecGenerate};
use crate::spec::{ranges, Spec};
use creative_core::artifact::MediaKind;
use creative_core::dag::Dag;
use creative_core::error::PipelineError;
use creative_core::exec::{Executor, ProviderLimits};
use creative_core::gate::{OnGateFail, QualityGate};
use creative_core::generate::GenerateStep;
use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::{Backoff, RetryPolicy};
use creative_core::step::Step;
use creative_core::template::Template;
use creative_core::{ConfigError, Preset, StepError};

fn err(kind: K, path: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError::new(kind, path, msg)
}

/// A factory's refusal of the settings at `path`: its field goes on the path,
/// so the error (and its line) points at the refused key itself.
fn settings_err(path: &str, e: ConfigError) -> SpecError {
    let e = e.at(path);
    err(K::Settings, e.field(), e.reason())
}

fn list(items: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| s.as_ref().to_string()).collect();
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

/// Deserialize a settings map into `T`, naming the field on error.
fn typed<T: serde::de::DeserializeOwned>(
    map: serde_json::Map<String, serde_json::Value>,
    base: &str,
) -> Result<T, SpecError> {
    serde_path_to_error::deserialize(serde_json::Value::Object(map)).map_err(|e| {
        let p = e.path().to_string();
        let path = if p == "." {
            base.to_string()
        } else {
            format!("{base}.{p}")
        };
        err(K::Invalid, path, e.inner().to_string())
    })
}

fn template(src: &str, path: &str) -> Result<Template, SpecError> {
    Template::new(src).map_err(|e| err(K::Invalid, path, e.to_string()))
}

/// Merge what one template reads upstream into what the step's templates read.
fn merge_placeholder(into: &mut Option<serde_json::Value>, more: Option<serde_json::Value>) {
    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(old) => merge(old, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            (a, b) if !a.is_object() => *a = b,
            _ => {}
        }
    }
    match (into.as_mut(), more) {
        (Some(a), Some(b)) => merge(a, b),
        (None, Some(b)) => *into = Some(b),
        _ => {}
    }
}

mod chaining;
mod checks;
use checks::{check_file_names, check_renders, describe, marking, on_gate_fail};

impl Spec {
    /// Build a runnable [`Campaign`]: providers, steps and gates come from the
    /// registry; relative paths resolve against `base_dir` (usually the spec's
    /// folder). Every problem is a [`SpecError`] naming the file, field and line.
    pub fn build(&self, registry: &Registry, base_dir: impl AsRef<Path>) -> Result<Campaign, SpecError> {
        self.build_inner(registry, base_dir.as_ref())
            .map_err(|e| self.locate(e))
    }

    /// What a router learns from needs the spec around it: whether the steps
    /// that call it judge its outputs, by which gates (learned statistics are
    /// kept per gate set), and where to keep them. Settings the spec gives win.
    fn learning_settings(&self, id: &str, settings: &mut serde_json::Map<String, serde_json::Value>) {
        let gates: Vec<&Vec<crate::spec::schema::GateSpec>> = self
            .doc
            .steps
            .iter()
            .filter(|s| {
                s.settings
                    .get("providers")
                    .and_then(|v| v.as_array())
                    .is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(id)))
            })
            .map(|s| &s.gates)
            .filter(|g| !g.is_empty())
            .collect();
        if !gates.is_empty() {
            settings.entry("gated").or_insert(serde_json::Value::Bool(true));
            let json = creative_core::canonical::to_vec(&gates).unwrap_or_default();
            let key = blake3::hash(&json).to_hex()[..16].to_string();
            settings.entry("gate_set").or_insert(serde_json::Value::String(key));
        }
        // The output folder is relative to where the run starts, as the
        // campaign uses it; the router resolves relative paths against the
        // spec's folder, so it gets an absolute one.
        let out = PathBuf::from(self.doc.output.dir.clone().unwrap_or_else(|| "out".into()));
        let out = match std::env::current_dir() {
            Ok(cwd) if out.is_relative() => cwd.join(out),
            Ok(_) => out,
            Err(_) => return,
        };
        let file = out
            .join(crate::spec::campaign::STATE_DIR)
            .join("routing")
            .join(format!("{id}.json"));
        settings
            .entry("stats_file")
            .or_insert(serde_json::Value::String(file.to_string_lossy().into_owned()));
    }

    fn build_inner(&self, reg: &Registry, base_dir: &Path) -> Result<Campaign, SpecError> {
        let doc = &self.doc;
        let mut ctx = BuildCtx {
            base_dir: base_dir.to_path_buf(),
            providers: BTreeMap::new(),
        };

        // Every number of the document's own sections, before anything is
        // built from them.
        ranges::check_doc(doc)?;

        // Providers.
        let mut exec =
            Executor::builder().concurrency(doc.concurrency.unwrap_or(creative_core::limits::DEFAULT_CONCURRENCY));
        for (id, ps) in &doc.providers {
            let path = format!("providers.{id}");
            let factory = reg.provider_factory(&ps.kind).ok_or_else(|| {
                err(
                    K::UnknownKind,
                    format!("{path}.kind"),
                    format!(
                        "unknown provider kind `{}`; registered kinds: {}",
                        ps.kind,
                        list(reg.provider_kinds())
                    ),
                )
            })?;
            if ps.settings.contains_key("api_key") {
                return Err(err(
                    K::Invalid,
                    format!("{path}.api_key"),
                    "do not put API keys in specs; name the environment variable that holds it with `api_key_env`",
                ));
            }
            let mut settings = ps.settings.clone();
            if ps.kind == "router" {
                self.learning_settings(id, &mut settings);
            }
            let provider =
                factory(id, &serde_json::Value::Object(settings), &ctx).map_err(|e| settings_err(&path, e))?;
            if provider.id() != id {
                return Err(err(
                    K::Settings,
                    path.clone(),
                    format!(
                        "the `{}` factory built a provider named `{}`, not `{id}`",
                        ps.kind,
                        provider.id()
                    ),
                ));
            }
            if ps.call_timeout_s.is_some_and(|t| !(t.is_finite() && t > 0.0)) {
                return Err(err(
                    K::Invalid,
                    format!("{path}.call_timeout_s"),
                    "call_timeout_s must be a positive number",
                ));
            }
            let limits = ProviderLimits {
                concurrency: ps.concurrency,
                requests_per_minute: ps.requests_per_minute,
                burst: ps.burst,
                timeout: ps.call_timeout_s.map(Duration::from_secs_f64),
            };
            exec = exec.provider_with_limits(provider.clone(), limits);
            ctx.providers.insert(id.clone(), provider);
        }
        if doc.concurrency == Some(0) {
            return Err(err(K::Invalid, "concurrency", "concurrency must be at least 1"));
        }

        // Retry.
        let r = &doc.retry;
        let mut retry = RetryPolicy::default();
        if let Some(n) = r.max_attempts {
            if n == 0 {
                return Err(err(
                    K::Invalid,
                    "retry.max_attempts",
                    "max_attempts counts the first call: at least 1",
                ));
            }
            retry.max_attempts = n;
        }
        if r.base_ms.is_some() || r.max_ms.is_some() {
            let base = Duration::from_millis(r.base_ms.unwrap_or(250));
            let max = Duration::from_millis(r.max_ms.unwrap_or(20_000));
            retry.backoff = Backoff::new(base, max).map_err(|e| err(K::Invalid, "retry", e.to_string()))?;
        }
        exec = exec.retry(retry);

        // Jobs.
        let jobs = JobMatrix::new(&doc.matrix)?;
        let mut layer_vars: Vec<&str> = PARAM_VARS.to_vec();
        layer_vars.push("preset");
        for job in jobs.representatives(&layer_vars) {
            let layer = job_layer(job.vars()).map_err(|e| {
                err(
                    K::Invalid,
                    "matrix",
                    format!("{} ({})", job_var_message(&e), describe(&job)),
                )
            })?;
            ranges::check_layer(&layer, "matrix").map_err(|mut e| {
                e.message = format!("{} ({})", e.message, describe(&job));
                e
            })?;
            if let Some(p) = job.var_str("preset") {
                if !doc.presets.contains_key(&p) {
                    return Err(err(
                        K::Invalid,
                        "matrix.preset",
                        format!("unknown preset `{p}`; presets: {}", list(doc.presets.keys())),
                    ));
                }
            }
        }
        for (name, p) in doc
            .presets
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("defaults", &doc.defaults), ("overrides", &doc.overrides)])
        {
            let base = if name == "defaults" || name == "overrides" {
                name.to_string()
            } else {
                format!("presets.{name}")
            };
            ranges::check_layer(p, &base)?;
        }

        // Steps.
        let names: Vec<&str> = doc.steps.iter().map(|s| s.name.as_str()).collect();
        let mut built: Vec<(String, Arc<dyn Step>, Vec<String>)> = Vec::new();
        let mut generators = Vec::new();
        let mut gated = Vec::new();
        let mut definitions = BTreeMap::new();
        let revisions = Arc::default();
        for (i, s) in doc.steps.iter().enumerate() {
            let base = format!("steps[{i}]");
            for (j, input) in s.inputs.iter().enumerate() {
                if !names.contains(&input.as_str()) {
                    return Err(err(
                        K::UnknownStep,
                        format!("{base}.inputs[{j}]"),
                        format!("unknown step `{input}`; steps are: {}", list(&names)),
                    ));
                }
            }
            let generate = s.kind == "generate";
            let policy = on_gate_fail(&s.on_gate_fail, &format!("{base}.on_gate_fail"), generate)?;
            let step: Arc<dyn Step> = if generate {
                let (step, gen) = self.build_generate(s, &base, reg, &ctx, &jobs, policy, &revisions)?;
                generators.push((s.name.clone(), gen));
                step
            } else {
                let factory = reg.step_factory(&s.kind).ok_or_else(|| {
                    err(
                        K::UnknownKind,
                        format!("{base}.kind"),
                        format!(
                            "unknown step kind `{}`; kinds: generate, {}",
                            s.kind,
                            list(reg.step_kinds())
                        ),
                    )
                })?;
                let inner = factory(&serde_json::Value::Object(s.settings.clone()), &ctx)
                    .map_err(|e| settings_err(&base, e))?;
                for p in inner.providers() {
                    if !ctx.providers.contains_key(&p) {
                        return Err(err(
                            K::UnknownProvider,
                            base.clone(),
                            format!("step uses provider `{p}`, which [providers] does not declare"),
                        ));
                    }
                }
                if s.gates.is_empty() {
                    inner
                } else {
                    let gates = self.build_gates(&s.gates, &base, reg, &ctx, None)?;
                    gated.push((s.name.clone(), gates.clone()));
                    Arc::new(GatedStep {
                        inner,
                        gates,
                        on_fail: policy,
                    })
                }
            };
            definitions.insert(s.name.clone(), self.definition_fingerprint(s, step.as_ref(), &ctx));
            built.push((s.name.clone(), step, s.inputs.clone()));
        }
        let produces: HashMap<String, Option<MediaKind>> =
            built.iter().map(|(n, s, _)| (n.clone(), s.produces())).collect();
        let mut dag = Dag::builder(doc.name.clone());
        for (name, step, inputs) in &built {
            let ins: Vec<&str> = inputs.iter().map(String::as_str).collect();
            dag = dag.step_arc(name.clone(), step.clone(), &ins);
        }
        let dag = dag.build().map_err(|e| self.pipeline_error(e))?;

        // Outputs.
        let out = &doc.output;
        let deliver: Vec<String> = match &out.steps {
            Some(list_) => {
                for (j, s) in list_.iter().enumerate() {
                    if !names.contains(&s.as_str()) {
                        return Err(err(
                            K::UnknownStep,
                            format!("output.steps[{j}]"),
                            format!("unknown step `{s}`; steps are: {}", list(&names)),
                        ));
                    }
                }
                list_.clone()
            }
            None => {
                let read: BTreeSet<&str> = doc
                    .steps
                    .iter()
                    .flat_map(|s| s.inputs.iter().map(String::as_str))
                    .collect();
                names
                    .iter()
                    .filter(|n| !read.contains(*n))
                    .map(|n| n.to_string())
                    .collect()
            }
        };
        let default_names = {
            let vars: Vec<String> = jobs
                .get(0)
                .map(|j| j.vars().keys().map(|k| format!("{{{{ {k} }}}}")).collect())
                .unwrap_or_default();
            let stem = if vars.is_empty() {
                "{{ job }}".to_string()
            } else {
                vars.join("_")
            };
            format!("{{{{ step }}}}/{stem}{{% if index %}}-{{{{ index }}}}{{% endif %}}.{{{{ ext }}}}")
        };
        let name_src = out.file_name.clone().unwrap_or(default_names);
        let names_t =
            FileNameTemplate::new(&name_src).map_err(|e| err(K::Invalid, "output.file_name", e.to_string()))?;
        check_file_names(&names_t, &jobs, &deliver, &produces)?;

        // Sinks.
        let mut sinks: Vec<Arc<dyn Sink>> = Vec::new();
        for (j, s) in out.sinks.iter().enumerate() {
            let path = format!("output.sinks[{j}]");
            let f = reg.sink_factory(&s.kind).ok_or_else(|| {
                err(
                    K::UnknownKind,
                    format!("{path}.kind"),
                    format!(
                        "unknown sink kind `{}`; registered kinds: {}",
                        s.kind,
                        list(reg.sink_kinds())
                    ),
                )
            })?;
            sinks.push(f(&serde_json::Value::Object(s.settings.clone()), &ctx).map_err(|e| settings_err(&path, e))?);
        }

        let marking = marking(out, &ctx, &doc.name)?;

        let b = &doc.budget;
        if b.max_cost_usd.is_some_and(|c| !(c.is_finite() && c >= 0.0)) {
            return Err(err(K::Invalid, "budget.max_cost_usd", "must be a non-negative number"));
        }
        if b.max_minutes.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return Err(err(K::Invalid, "budget.max_minutes", "must be a positive number"));
        }

        let campaign = Campaign {
            name: doc.name.clone(),
            spec_hash: self.hash(),
            executor: exec.build().map_err(|e| err(K::Invalid, e.field(), e.reason()))?,
            dag: Arc::new(dag),
            jobs,
            steps: names.iter().map(|s| s.to_string()).collect(),
            deliver,
            budget: doc.budget.clone(),
            file_names: names_t,
            out_dir: out.dir.clone().unwrap_or_else(|| "out".into()).into(),
            cache_dir: out.cache_dir.as_ref().map(|c| ctx.resolve(c)),
            cache_max_bytes: out.cache_max_mb.map(|mb| mb.saturating_mul(1 << 20)),
            contact_sheet: out.contact_sheet.unwrap_or(true),
            sinks,
            marking,
            generators,
            gated,
            providers: ctx.providers.clone(),
            definitions,
            revisions,
        };
        if doc.budget.max_cost_usd.is_some() {
            campaign.check_priced(doc)?;
        }
        Ok(campaign)
    }

    /// A fingerprint of what shapes a step's outputs besides its inputs: its
    /// own entry, the parameter layers (defaults, presets, overrides) and, for a
    /// step that calls providers or judges with gates, the providers' settings.
    /// The journal records it, so a resume after an edit re-runs the step.
    fn definition_fingerprint(&self, s: &StepSpec, step: &dyn Step, ctx: &BuildCtx) -> String {
        let doc = &self.doc;
        let mut h = blake3::Hasher::new();
        let mut part = |v: serde_json::Result<Vec<u8>>| {
            h.update(&v.unwrap_or_default());
            h.update(&[0]);
        };
        part(creative_core::canonical::to_vec(s));
        part(creative_core::canonical::to_vec(&doc.defaults));
        part(creative_core::canonical::to_vec(&doc.presets));
        part(creative_core::canonical::to_vec(&doc.overrides));
        if s.kind == "generate" || !s.gates.is_empty() || !step.providers().is_empty() {
            part(creative_core::canonical::to_vec(&doc.providers));
            // What the spec cannot show: a workflow file's contents, for one.
            for p in ctx.providers.values() {
                h.update(p.id().as_bytes());
                h.update(&[0]);
                h.update(p.fingerprint().as_bytes());
                h.update(&[0]);
            }
        }
        h.finalize().to_hex().to_string()
    }

    fn pipeline_error(&self, e: PipelineError) -> SpecError {
        let idx = |name: &str| self.doc.steps.iter().position(|s| s.name == name);
        let at = |name: &str, field: &str| match idx(name) {
            Some(i) => format!("steps[{i}].{field}"),
            None => "steps".into(),
        };
        match &e {
            PipelineError::Cycle(names) => err(K::Cycle, at(&names[0], "inputs"), e.to_string()),
            PipelineError::UnknownInput { step, .. } => err(K::UnknownStep, at(step, "inputs"), e.to_string()),
            PipelineError::DuplicateStep(n) | PipelineError::InvalidName(n) => {
                // Point at the second step of that name.
                let i = self.doc.steps.iter().rposition(|s| &s.name == n);
                err(
                    K::Invalid,
                    i.map(|i| format!("steps[{i}].name")).unwrap_or_default(),
                    e.to_string(),
                )
            }
            PipelineError::MissingInput { step, .. } | PipelineError::MediaMismatch { step, .. } => {
                err(K::Invalid, at(step, "inputs"), e.to_string())
            }
            PipelineError::Empty => err(K::Invalid, "steps", e.to_string()),
            _ => err(K::Invalid, "steps", e.to_string()),
        }
    }

    fn build_gates(
        &self,
        gates: &[GateSpec],
        base: &str,
        reg: &Registry,
        ctx: &BuildCtx,
        palette: Option<&Vec<String>>,
    ) -> Result<Vec<Arc<dyn QualityGate>>, SpecError> {
        let mut out: Vec<Arc<dyn QualityGate>> = Vec::new();
        for (j, g) in gates.iter().enumerate() {
            let path = format!("{base}.gates[{j}]");
            let f = reg.gate_factory(&g.kind).ok_or_else(|| {
                err(
                    K::UnknownKind,
                    format!("{path}.kind"),
                    format!(
                        "unknown gate kind `{}`; registered kinds: {}",
                        g.kind,
                        list(reg.gate_kinds())
                    ),
                )
            })?;
            let mut settings = g.settings.clone();
            if g.kind == "palette" && !settings.contains_key("palette") {
                if let Some(p) = palette {
                    // The brand kit's palette, unless the gate sets its own.
                    settings.insert("palette".into(), p.clone().into());
                }
            }
            let gate = f(&serde_json::Value::Object(settings), ctx).map_err(|e| settings_err(&path, e))?;
            out.push(match &g.name {
                Some(n) => Arc::new(NamedGate {
                    name: n.clone(),
                    inner: gate,
                }),
                None => gate,
            });
        }
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn build_generate(
        &self,
        s: &StepSpec,
        base: &str,
        reg: &Registry,
        ctx: &BuildCtx,
        jobs: &JobMatrix,
        policy: OnGateFail,
        revisions: &Arc<std::sync::RwLock<crate::review::Revisions>>,
    ) -> Result<(Arc<dyn Step>, Arc<SpecGenerate>), SpecError> {
        let doc = &self.doc;
        let (mut own, mut layer_map) = (serde_json::Map::new(), serde_json::Map::new());
        for (k, v) in &s.settings {
            if GENERATE_KEYS.contains(&k.as_str()) {
                own.insert(k.clone(), v.clone());
            } else {
                layer_map.insert(k.clone(), v.clone());
            }
        }
        let settings: GenerateSettings = typed(own, base)?;
        let step_layer: Layer = typed(layer_map, base)?;
        ranges::check_layer(&step_layer, base)?;
        ranges::check_keep(settings.keep, &format!("{base}.keep"))?;
        if settings.providers.is_empty() {
            return Err(err(
                K::Invalid,
                format!("{base}.providers"),
                "a generate step needs at least one provider",
            ));
        }
        for (j, p) in settings.providers.iter().enumerate() {
            if !ctx.providers.contains_key(p) {
                return Err(err(
                    K::UnknownProvider,
                    format!("{base}.providers[{j}]"),
                    format!(
                        "unknown provider `{p}`; [providers] declares: {}",
                        list(ctx.providers.keys())
                    ),
                ));
            }
        }
        if let Some(p) = &settings.preset {
            if !doc.presets.contains_key(p) {
                return Err(err(
                    K::Invalid,
                    format!("{base}.preset"),
                    format!("unknown preset `{p}`; presets: {}", list(doc.presets.keys())),
                ));
            }
        }
        template(&settings.prompt, &format!("{base}.prompt"))?;
        let task = settings.task.unwrap_or_default();
        // The presets this step may run with: its own, or any a job selects.
        let mut presets: Vec<Option<String>> = vec![settings.preset.clone()];
        if jobs.get(0).is_some_and(|j| j.vars().contains_key("preset")) {
            presets.extend(doc.presets.keys().map(|k| Some(k.clone())));
        }
        // Each layer as an engine preset; the engine merges them. A size was
        // checked with the layer, so converting it cannot fail here.
        let engine_preset = |layer: &Layer, path: &str| {
            preset_of(layer, "").map_err(|e| err(K::Invalid, format!("{path}.{}", e.field()), e.reason()))
        };
        let defaults = engine_preset(&doc.defaults, "defaults")?;
        let own = engine_preset(&step_layer, base)?;
        // Prompt wrappers cannot come from job variables, so the overrides
        // are the last word on them here.
        let o = &doc.overrides;
        let mut words = Preset::new("");
        if let Some(t) = &o.prompt_prefix {
            words = words.prompt_prefix(t.clone());
        }
        if let Some(t) = &o.prompt_suffix {
            words = words.prompt_suffix(t.clone());
        }
        if let Some(t) = &o.negative_prompt {
            words = words.negative(t.clone());
        }
        let (mut fixed, mut named) = (None, Vec::new());
        let mut upstream = None;
        for preset in presets {
            let seen = |p: &Preset| preset.as_deref() == Some(p.name());
            if (preset.is_none() && fixed.is_some()) || named.iter().any(seen) {
                continue;
            }
            let layer = preset.as_ref().and_then(|p| doc.presets.get(p));
            // defaults < preset < step < (the overrides' words), merged by the engine.
            let mut engine = Preset::new(preset.clone().unwrap_or_default());
            engine.merge_from(&defaults);
            if let Some(l) = layer {
                engine.merge_from(&engine_preset(l, &format!("presets.{}", engine.name()))?);
            }
            engine.merge_from(&own);
            engine.merge_from(&words);
            let prompt = template(&engine.wrap_prompt(&settings.prompt), &format!("{base}.prompt"))?;
            let users = (preset.clone(), settings.preset.clone());
            let up = self.upstream_placeholder(&prompt, s, &format!("{base}.prompt"))?;
            merge_placeholder(&mut upstream, up);
            check_renders(
                &prompt,
                jobs,
                Some(&users),
                upstream.as_ref(),
                &format!("{base}.prompt"),
            )?;
            if let Some(n) = engine.negative_prompt() {
                let t = template(n, &format!("{base}.negative_prompt"))?;
                let up = self.upstream_placeholder(&t, s, &format!("{base}.negative_prompt"))?;
                merge_placeholder(&mut upstream, up);
                check_renders(
                    &t,
                    jobs,
                    Some(&users),
                    upstream.as_ref(),
                    &format!("{base}.negative_prompt"),
                )?;
            }
            // The brand kit's palette, for palette gates that set none.
            let palette = step_layer
                .palette
                .as_ref()
                .or(layer.and_then(|l| l.palette.as_ref()))
                .or(doc.defaults.palette.as_ref());
            for g in self.build_gates(&s.gates, base, reg, ctx, palette)? {
                engine = engine.gate(g);
            }
            match preset {
                None => fixed = Some(engine),
                Some(_) => named.push(engine),
            }
        }
        let in_step = |e: StepError| err(K::Invalid, format!("{base}.prompt"), e.to_string());
        let mut step = GenerateStep::new(task, settings.providers.clone(), &settings.prompt)
            .map_err(in_step)?
            .on_gate_fail(policy)
            .keep(settings.keep.unwrap_or(1));
        if let Some(p) = fixed {
            step = step.try_preset(p).map_err(in_step)?;
        }
        if !named.is_empty() {
            // A job's `preset` variable picks one, else the step's own.
            step = step
                .preset_by_var("preset", named, settings.preset.as_deref())
                .map_err(in_step)?;
        }
        let gen = Arc::new(SpecGenerate {
            task,
            chain: settings.providers.clone(),
            step,
            overrides: doc.overrides.clone(),
            upstream,
            revisions: revisions.clone(),
        });
        Ok((gen.clone() as Arc<dyn Step>, gen))
    }
}

impl Campaign {
    /// Under a money budget every call must have a price: a provider with no
    /// price for a step's model, or a gate's (a judge's) provider with none for
    /// its calls, would be counted as free, so the budget would never trip and
    /// the dry run would say $0. Checked on the first job.
    fn check_priced(&self, doc: &crate::spec::SpecDoc) -> Result<(), SpecError> {
        let Some(job) = self.jobs.get(0) else { return Ok(()) };
        let index = |step: &str| doc.steps.iter().position(|s| s.name == step).unwrap_or(0);
        let unpriced = |path: String, pid: &str, model: Option<String>, what: &str| {
            let model = model.map_or_else(|| "its default model".into(), |m| format!("model `{m}`"));
            err(
                K::Invalid,
                path,
                format!(
                    "provider `{pid}` has no price for {model}, so its {what} would count as $0 and budget.max_cost_usd could not hold; give [providers.{pid}] a `prices` table (for example prices = {{ \"<model>\" = {{ image = {{ \"*\" = 0.04 }} }} }} or {{ input_per_mtok = 0.15, output_per_mtok = 0.6 }} for text), or remove the money budget"
                ),
            )
        };
        for (step, g) in &self.generators {
            let Ok(req) = g.request_for(&job) else { continue };
            for (j, pid) in g.chain.iter().enumerate() {
                let Some(p) = self.providers.get(pid) else { continue };
                if !p.has_price(&req) {
                    let path = format!("steps[{}].providers[{j}]", index(step));
                    return Err(unpriced(path, pid, p.model(&req), "calls"));
                }
            }
        }
        let gates = self
            .generators
            .iter()
            .map(|(step, g)| (step, g.gates_for(&job)))
            .chain(self.gated.iter().map(|(step, gates)| (step, gates.clone())));
        for (step, gates) in gates {
            for (j, gate) in gates.iter().enumerate() {
                for (pid, req) in gate.planned_calls(job.vars()) {
                    let Some(p) = self.providers.get(&pid) else { continue };
                    if !p.has_price(&req) {
                        let path = format!("steps[{}].gates[{j}]", index(step));
                        let what = format!("calls from gate `{}`", gate.name());
                        return Err(unpriced(path, &pid, p.model(&req), &what));
                    }
                }
            }
        }
        Ok(())
    }
}
