//! Presets: a named style or brand kit that a [`GenerateStep`] starts from.
//!
//! A preset carries what a step would otherwise set itself: typed params, the
//! model, raw provider fields, words around the prompt, a negative prompt, a
//! seed policy and gates. A step applies one with
//! [`GenerateStep::preset`]; a step that runs with a different preset per job
//! carries several and picks one by a job variable
//! ([`GenerateStep::preset_by_var`]).
//!
//! [`GenerateStep`]: crate::GenerateStep
//! [`GenerateStep::preset`]: crate::GenerateStep::preset
//! [`GenerateStep::preset_by_var`]: crate::GenerateStep::preset_by_var

use std::sync::Arc;

use crate::gate::{IntoGate, QualityGate};
use crate::job::SeedPolicy;
use crate::request::Params;

/// A named set of generation settings a step starts from.
///
/// Every field is optional; what a preset leaves unset, it leaves to the step
/// (or to a lower preset). Its seed lives in its seed policy: a `seed` among
/// the [`params`](Self::params) given to it fixes it.
///
/// ```
/// use creative_core::{GenerateStep, Params, Preset, SeedPolicy, Task};
/// let brand = Preset::new("brand")
///     .params(&Params { style: Some("flat".into()), ..Default::default() })
///     .size(1024, 1024)
///     .model("flux-dev")
///     .prompt_prefix("studio photo of ")
///     .prompt_suffix(", soft light")
///     .negative("text, watermark")
///     .seed(SeedPolicy::Fixed(7));
/// let step = GenerateStep::new(Task::Image, ["art"], "a {{ product }}")
///     .unwrap()
///     .size(512, 512)
///     .preset(brand);
/// // The step's own size wins; the rest comes from the preset.
/// assert_eq!(step.resolved_params().width, Some(512));
/// assert_eq!(step.resolved_params().style.as_deref(), Some("flat"));
/// assert_eq!(step.resolved_params().seed, Some(7));
/// ```
#[derive(Clone, Default)]
pub struct Preset {
    pub(crate) name: String,
    pub(crate) params: Params,
    pub(crate) model: Option<String>,
    pub(crate) raw: serde_json::Map<String, serde_json::Value>,
    pub(crate) prompt_prefix: Option<String>,
    pub(crate) prompt_suffix: Option<String>,
    pub(crate) negative: Option<String>,
    pub(crate) seed: Option<SeedPolicy>,
    pub(crate) gates: Vec<Arc<dyn QualityGate>>,
}

impl std::fmt::Debug for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gates: Vec<&str> = self.gates.iter().map(|g| g.name()).collect();
        f.debug_struct("Preset")
            .field("name", &self.name)
            .field("params", &self.params)
            .field("model", &self.model)
            // Raw fields are a provider's own body and may hold anything a user
            // put there: only their names are shown.
            .field("raw", &self.raw.keys().collect::<Vec<_>>())
            .field("prompt_prefix", &self.prompt_prefix)
            .field("prompt_suffix", &self.prompt_suffix)
            .field("negative", &self.negative)
            .field("seed", &self.seed)
            .field("gates", &gates)
            .finish()
    }
}

impl Preset {
    /// An empty preset called `name` (the value of the job variable that picks
    /// it, for a step that chooses per job).
    pub fn new(name: impl Into<String>) -> Self {
        Preset {
            name: name.into(),
            ..Default::default()
        }
    }

    /// The preset's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Typed params, overlaid on those set so far. A `seed` among them fixes
    /// the preset's seed (as [`seed`](Self::seed) with [`SeedPolicy::Fixed`]).
    pub fn params(mut self, p: &Params) -> Self {
        let mut p = p.clone();
        if let Some(s) = p.seed.take() {
            self.seed = Some(SeedPolicy::Fixed(s));
        }
        self.params.merge_from(&p);
        self
    }

    /// Output size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.params.width = Some(width);
        self.params.height = Some(height);
        self
    }

    /// The model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Raw provider fields, merged key by key over those set so far.
    pub fn raw(mut self, raw: serde_json::Map<String, serde_json::Value>) -> Self {
        self.raw.extend(raw);
        self
    }

    /// Template text put before the step's prompt (it may read job variables).
    pub fn prompt_prefix(mut self, text: impl Into<String>) -> Self {
        self.prompt_prefix = Some(text.into());
        self
    }

    /// Template text put after the step's prompt.
    pub fn prompt_suffix(mut self, text: impl Into<String>) -> Self {
        self.prompt_suffix = Some(text.into());
        self
    }

    /// A negative-prompt template, for steps that set none.
    pub fn negative(mut self, template: impl Into<String>) -> Self {
        self.negative = Some(template.into());
        self
    }

    /// How seeds are chosen, for steps that choose none.
    pub fn seed(mut self, policy: SeedPolicy) -> Self {
        self.seed = Some(policy);
        self
    }

    /// Add a gate (a gate value, or one shared behind an `Arc`). A preset's
    /// gates judge after the step's own.
    pub fn gate(mut self, g: impl IntoGate) -> Self {
        self.gates.push(g.into_gate());
        self
    }

    /// Overlay `higher` on this preset: every field `higher` sets wins, params
    /// field by field, raw fields key by key; its gates, if it has any,
    /// replace these (a gate list is one setting, not a sum). The name stays.
    ///
    /// This is how layers of presets combine (a campaign's defaults under a
    /// brand kit under a step's own settings).
    ///
    /// ```
    /// use creative_core::Preset;
    /// let mut kit = Preset::new("kit").prompt_prefix("kit: ").prompt_suffix("!");
    /// kit.merge_from(&Preset::new("over").prompt_prefix("over: "));
    /// assert_eq!(kit.name(), "kit");
    /// assert_eq!(kit.wrap_prompt("a mug"), "over: a mug!");
    /// ```
    pub fn merge_from(&mut self, higher: &Preset) {
        self.params.merge_from(&higher.params);
        macro_rules! take {
            ($($f:ident),*) => { $( if higher.$f.is_some() { self.$f = higher.$f.clone(); } )* };
        }
        take!(model, prompt_prefix, prompt_suffix, negative, seed);
        for (k, v) in &higher.raw {
            self.raw.insert(k.clone(), v.clone());
        }
        if !higher.gates.is_empty() {
            self.gates = higher.gates.clone();
        }
    }

    /// The negative-prompt template this preset sets, if any.
    pub fn negative_prompt(&self) -> Option<&str> {
        self.negative.as_deref()
    }

    /// The template source of `prompt` wrapped in this preset's prefix and
    /// suffix, as the step compiles it: one template, so a block the prefix
    /// opens may close in the suffix.
    pub fn wrap_prompt(&self, prompt: &str) -> String {
        format!(
            "{}{prompt}{}",
            self.prompt_prefix.as_deref().unwrap_or(""),
            self.prompt_suffix.as_deref().unwrap_or("")
        )
    }
}

impl From<Params> for Preset {
    /// A preset of typed params only, unnamed (what `GenerateStep::preset`
    /// took before presets carried more).
    fn from(p: Params) -> Self {
        Preset::default().params(&p)
    }
}

impl From<&Params> for Preset {
    fn from(p: &Params) -> Self {
        Preset::default().params(p)
    }
}
