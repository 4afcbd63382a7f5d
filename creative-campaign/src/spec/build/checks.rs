//! The checks a spec's build makes before anything runs: templates render for
//! every job, names and file names are valid and unique, gate policies and
//! provenance marks are well formed.

use std::collections::HashMap;

use super::{err, list};
use crate::deliver::{FileNameTemplate, PathError};
use crate::spec::error::{SpecError, SpecErrorKind as K};
use crate::spec::matrix::JobMatrix;
use crate::spec::ranges;
use creative_core::artifact::MediaKind;
use creative_core::gate::OnGateFail;
use creative_core::job::Job;
use creative_core::registry::BuildCtx;
use creative_core::template::{Template, TemplateError, UPSTREAM};

pub(super) fn describe(job: &Job) -> String {
    let vars: Vec<String> = job
        .vars()
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            o => format!("{k}={o}"),
        })
        .collect();
    if vars.is_empty() {
        format!("job {}", job.key())
    } else {
        format!("job {} ({})", job.key(), vars.join(", "))
    }
}

/// Render a template for every job, so a missing variable fails the build and
/// names the variable and a job that lacks it. A template reads only the
/// variables it names, so one job per combination of their axes stands for all
/// (a million-job matrix over three prompts' variables checks a few hundred).
pub(super) fn check_renders(
    t: &Template,
    jobs: &JobMatrix,
    preset: Option<&(Option<String>, Option<String>)>,
    upstream: Option<&serde_json::Value>,
    path: &str,
) -> Result<(), SpecError> {
    let mut names: Vec<&str> = t.variables().filter(|v| *v != UPSTREAM).collect();
    names.push("preset");
    for job in jobs.representatives(&names) {
        if let Some((wanted, default)) = preset {
            if job.var_str("preset").or_else(|| default.clone()) != *wanted {
                continue;
            }
        }
        let rendered = match upstream {
            Some(up) => {
                let mut vars = (**job.vars()).clone();
                vars.insert(UPSTREAM.into(), up.clone());
                t.render(&vars)
            }
            None => t.render(job.vars()),
        };
        if let Err(e) = rendered {
            return Err(match e {
                TemplateError::Missing { name, .. } => {
                    let have = job.vars().keys().cloned().collect::<Vec<_>>();
                    err(
                        K::MissingVariable,
                        path,
                        format!(
                            "missing variable `{name}` for {}; the job has: {}",
                            describe(&job),
                            list(have)
                        ),
                    )
                }
                other => err(K::Invalid, path, format!("{other} for {}", describe(&job))),
            });
        }
    }
    Ok(())
}

/// The name an asset of `job` from `step` gets, as the file-name check sees it.
pub(super) fn check_name(
    names: &FileNameTemplate,
    job: &Job,
    step: &str,
    produces: &HashMap<String, Option<MediaKind>>,
) -> Result<String, SpecError> {
    let mut v = (**job.vars()).clone();
    v.insert("step".into(), step.into());
    v.insert("index".into(), 0.into());
    v.insert("ext".into(), ext_for(produces.get(step).copied().flatten()).into());
    v.insert("id".into(), "0123456789ab".into());
    v.insert("job".into(), job.key().into());
    names.render(&v).map_err(|e| match e {
        PathError::Template(TemplateError::Missing { name, .. }) => err(
            K::MissingVariable,
            "output.file_name",
            format!(
                "missing variable `{name}` for {}; file names may use the job's variables and step, index, ext, id, job",
                describe(job)
            ),
        ),
        PathError::Escape { .. } | PathError::Invalid(_) => {
            err(K::PathEscape, "output.file_name", format!("{e} ({})", describe(job)))
        }
        PathError::Template(t) => err(K::Invalid, "output.file_name", t.to_string()),
    })
}

/// Every delivered asset of every job gets a name of its own. Names are
/// remembered as 64-bit hashes (8 bytes a name, not the name), so a million
/// jobs check in bounded memory; a repeated hash is confirmed by a second pass
/// that finds both owners by name.
pub(super) fn check_file_names(
    names: &FileNameTemplate,
    jobs: &JobMatrix,
    deliver: &[String],
    produces: &HashMap<String, Option<MediaKind>>,
) -> Result<(), SpecError> {
    use std::hash::{Hash, Hasher};
    let hash = |p: &str| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        p.hash(&mut h);
        h.finish()
    };
    let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
    for (n, job) in jobs.iter().enumerate() {
        for (k, step) in deliver.iter().enumerate() {
            let path = check_name(names, &job, step, produces)?;
            if seen.insert(hash(&path)) {
                continue;
            }
            let who = format!("{} step {step}", describe(&job));
            for (m, earlier) in jobs.iter().enumerate().take(n + 1) {
                for (l, s) in deliver.iter().enumerate() {
                    if (m, l) >= (n, k) {
                        break;
                    }
                    if check_name(names, &earlier, s, produces)? == path {
                        let other = format!("{} step {s}", describe(&earlier));
                        return Err(err(
                            K::Invalid,
                            "output.file_name",
                            format!("file name `{path}` is the same for {other} and {who}; use a variable that tells them apart"),
                        ));
                    }
                }
            }
            // Two names with one hash: the name is new after all.
        }
    }
    Ok(())
}

pub(super) fn on_gate_fail(v: &Option<serde_json::Value>, path: &str, generate: bool) -> Result<OnGateFail, SpecError> {
    let policy = match v {
        None => {
            return Ok(if generate {
                OnGateFail::default()
            } else {
                OnGateFail::Fail
            })
        }
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "regenerate" => OnGateFail::default(),
            "fallback" => OnGateFail::Fallback,
            "flag" => OnGateFail::Flag,
            "fail" => OnGateFail::Fail,
            other => {
                return Err(err(
                    K::Invalid,
                    path,
                    format!("unknown policy `{other}`; use regenerate, fallback, flag or fail"),
                ))
            }
        },
        Some(v) => serde_json::from_value::<OnGateFail>(v.clone()).map_err(|e| {
            err(
                K::Invalid,
                path,
                format!("{e}; use a policy name or a table such as {{ action = \"regenerate\", max = 3 }}"),
            )
        })?,
    };
    ranges::check_policy(&policy, path)?;
    if !generate && matches!(policy, OnGateFail::Regenerate { .. } | OnGateFail::Fallback) {
        return Err(err(
            K::Invalid,
            path,
            "only generate steps can regenerate or fall back; use `flag` or `fail`",
        ));
    }
    Ok(policy)
}

pub(super) fn ext_for(kind: Option<MediaKind>) -> &'static str {
    match kind {
        Some(MediaKind::Image) => "png",
        Some(MediaKind::Text) => "txt",
        Some(MediaKind::Audio) => "wav",
        Some(MediaKind::Video) => "mp4",
        Some(MediaKind::Model3d) => "glb",
        _ => "bin",
    }
}

/// How delivered files are marked: C2PA credentials (`output.c2pa`), else
/// IPTC XMP (`output.xmp`), else not at all. The signing credentials are
/// loaded and tried here, so `creative check` reports a bad key or
/// certificate before anything is generated.
pub(super) fn marking(
    out: &crate::spec::OutputSpec,
    ctx: &BuildCtx,
    campaign: &str,
) -> Result<Option<crate::deliver::Marking>, SpecError> {
    let Some(c) = &out.c2pa else {
        return Ok(out.xmp.unwrap_or(false).then(crate::deliver::Marking::xmp));
    };
    #[cfg(feature = "c2pa")]
    {
        let cert = pem(&c.cert, &c.cert_env, "cert", ctx)?;
        let key = pem(&c.key, &c.key_env, "key", ctx)?;
        let signer = crate::deliver::C2paSigner::new(&cert, &key, c.alg.unwrap_or_default(), c.tsa_url.as_deref())
            .map_err(|e| {
                let field = match e {
                    crate::deliver::C2paError::TsaUrl { .. } => "output.c2pa.tsa_url",
                    _ => "output.c2pa",
                };
                err(K::Settings, field, e.to_string())
            })?
            .campaign(campaign)
            .include(c.include_prompt.unwrap_or(false), c.include_seed.unwrap_or(false));
        Ok(Some(crate::deliver::Marking::c2pa(signer)))
    }
    #[cfg(not(feature = "c2pa"))]
    {
        let _ = (c, ctx, campaign);
        Err(err(
            K::Settings,
            "output.c2pa",
            "this build cannot sign C2PA credentials: build creative with the `c2pa` feature",
        ))
    }
}

/// A PEM document from a file (`what`) or an environment variable
/// (`what_env`), exactly one of the two. The text is never put in an error.
#[cfg(feature = "c2pa")]
pub(super) fn pem(
    file: &Option<String>,
    env: &Option<String>,
    what: &str,
    ctx: &BuildCtx,
) -> Result<Vec<u8>, SpecError> {
    match (file, env) {
        (Some(f), None) => {
            let path = ctx.resolve(f);
            std::fs::read(&path).map_err(|e| {
                err(
                    K::Settings,
                    format!("output.c2pa.{what}"),
                    format!("read {}: {e}", path.display()),
                )
            })
        }
        (None, Some(var)) => std::env::var(var).map(String::into_bytes).map_err(|_| {
            err(
                K::Settings,
                format!("output.c2pa.{what}_env"),
                format!("the environment variable `{var}` is not set (or is not UTF-8)"),
            )
        }),
        (Some(_), Some(_)) => Err(err(
            K::Invalid,
            format!("output.c2pa.{what}"),
            format!("give `{what}` (a PEM file) or `{what}_env`, not both"),
        )),
        (None, None) => Err(err(
            K::Invalid,
            "output.c2pa",
            format!("`{what}` (a PEM file) or `{what}_env` (a variable holding the PEM) is required"),
        )),
    }
}
