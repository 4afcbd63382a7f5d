//! The `router` kind in the registry: a spec's router table parsed into a
//! [`RouterBuilder`](super::RouterBuilder), each bad field reported as a
//! [`ConfigError`] naming it.

use std::sync::Arc;
use std::time::Duration;

use creative_core::registry::{BuildCtx, Registry};
use creative_core::resilience::{BreakerConfig, DownConfig, ProviderLimits};
use creative_core::{ConfigError, Provider};

use super::{Router, RouterError, Weights};

/// Register the `router` kind.
///
/// Settings: `providers` (member ids, defined earlier in the spec), `strategy`
/// (`fallback`, `cheapest`, `fastest`, `most_reliable`, `cost_per_accepted`;
/// default `fallback`), and optionally `exploration`, `latency_alpha`, `decay`,
/// `max_wait_s`, `max_attempts`, `breaker = { failure_threshold, cool_down_s }`,
/// `down_after = { after_s, min_failures }`,
/// `limits = { <member id> = { rpm, burst, concurrency } }`, and for learning:
/// `window`, `prior_strength`, `wait_cost_usd_per_s`, `latency_cap_s` (p95),
/// `weights = { cost, latency, reliability }`, `gated`, `gate_set` and
/// `stats_file` (resolved against the spec's folder).
pub fn register(reg: &mut Registry) {
    reg.provider(
        "router",
        Arc::new(|id: &str, settings: &serde_json::Value, ctx: &BuildCtx| {
            build_from_settings(id, settings, ctx).map(|r| Arc::new(r) as Arc<dyn Provider>)
        }),
    );
}

fn build_from_settings(id: &str, s: &serde_json::Value, ctx: &BuildCtx) -> Result<Router, ConfigError> {
    let obj = s
        .as_object()
        .ok_or_else(|| bad("", "router settings must be a table"))?;
    const KNOWN: &[&str] = &[
        "providers",
        "strategy",
        "exploration",
        "latency_alpha",
        "decay",
        "max_wait_s",
        "max_attempts",
        "breaker",
        "down_after",
        "limits",
        "seed",
        "window",
        "prior_strength",
        "wait_cost_usd_per_s",
        "latency_cap_s",
        "weights",
        "gated",
        "gate_set",
        "stats_file",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(
            k,
            format!("unknown router setting `{k}` (known: {})", KNOWN.join(", ")),
        ));
    }
    let ids = obj
        .get("providers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| bad("providers", "must be a list of provider ids"))?;
    let limits = match obj.get("limits") {
        None => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(bad(
                "limits",
                "must be a table of member id -> { rpm, burst, concurrency }",
            ))
        }
    };
    let mut b = Router::builder(id);
    for (n, v) in ids.iter().enumerate() {
        let pid = v
            .as_str()
            .ok_or_else(|| bad(&format!("providers[{n}]"), "must be a string"))?;
        if pid == id {
            return Err(bad(&format!("providers[{n}]"), "a router cannot route to itself"));
        }
        let p = ctx.providers.get(pid).cloned().ok_or_else(|| {
            bad(
                &format!("providers[{n}]"),
                format!("provider `{pid}` is not defined (define it before the router)"),
            )
        })?;
        let lim = match limits.get(pid) {
            Some(l) => member_limits(pid, l)?,
            None => ProviderLimits::default(),
        };
        b = b.member_with_limits(p, lim);
    }
    if let Some(k) = limits
        .keys()
        .find(|k| !ids.iter().any(|v| v.as_str() == Some(k.as_str())))
    {
        return Err(bad(
            &format!("limits.{k}"),
            format!("`{k}` is not one of the router's providers"),
        ));
    }
    if let Some(v) = obj.get("strategy") {
        let s = v.as_str().ok_or_else(|| bad("strategy", "must be a string"))?;
        b = b.strategy(s.parse().map_err(|e: RouterError| bad("strategy", e.to_string()))?);
    }
    let num = |k: &str| -> Result<Option<f64>, ConfigError> {
        match obj.get(k) {
            None => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| bad(k, "must be a number")),
        }
    };
    if let Some(x) = num("exploration")? {
        b = b.exploration(x);
    }
    if let Some(x) = num("latency_alpha")? {
        b = b.latency_alpha(x);
    }
    if let Some(x) = num("decay")? {
        b = b.decay(x);
    }
    if let Some(x) = num("max_wait_s")? {
        b = b.max_wait(secs("max_wait_s", x)?);
    }
    if let Some(v) = obj.get("max_attempts") {
        let n = v
            .as_u64()
            .ok_or_else(|| bad("max_attempts", "must be a whole number"))?;
        b = b.max_attempts(n as usize);
    }
    if let Some(v) = obj.get("seed") {
        b = b.seed(v.as_u64().ok_or_else(|| bad("seed", "must be a whole number"))?);
    }
    if let Some(x) = num("window")? {
        b = b.window(x);
    }
    if let Some(x) = num("prior_strength")? {
        b = b.prior_strength(x);
    }
    if let Some(x) = num("wait_cost_usd_per_s")? {
        b = b.wait_cost(x);
    }
    if let Some(x) = num("latency_cap_s")? {
        if !(0.001..=86_400.0).contains(&x) {
            return Err(bad(
                "latency_cap_s",
                format!("{x} is out of range: between 0.001 and 86400 seconds"),
            ));
        }
        b = b.latency_cap(secs("latency_cap_s", x)?);
    }
    if let Some(v) = obj.get("weights") {
        let t = v
            .as_object()
            .ok_or_else(|| bad("weights", "must be a table of cost, latency, reliability"))?;
        let mut w = Weights {
            cost: 0.0,
            latency: 0.0,
            reliability: 0.0,
        };
        for (k, v) in t {
            let x = v
                .as_f64()
                .ok_or_else(|| bad(&format!("weights.{k}"), "must be a number"))?;
            match k.as_str() {
                "cost" => w.cost = x,
                "latency" => w.latency = x,
                "reliability" => w.reliability = x,
                _ => {
                    return Err(bad(
                        &format!("weights.{k}"),
                        "unknown setting (known: cost, latency, reliability)",
                    ))
                }
            }
        }
        b = b.weights(w);
    }
    if let Some(v) = obj.get("gated") {
        b = b.gated(v.as_bool().ok_or_else(|| bad("gated", "must be true or false"))?);
    }
    if let Some(v) = obj.get("gate_set") {
        b = b.gate_set(v.as_str().ok_or_else(|| bad("gate_set", "must be a string"))?);
    }
    if let Some(v) = obj.get("stats_file") {
        let path = v.as_str().ok_or_else(|| bad("stats_file", "must be a path"))?;
        b = b.stats_file(ctx.resolve(path));
    }
    if let Some(v) = obj.get("breaker") {
        let t = v.as_object().ok_or_else(|| bad("breaker", "must be a table"))?;
        let mut c = BreakerConfig::default();
        if let Some(n) = t.get("failure_threshold") {
            let n = n
                .as_u64()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("breaker.failure_threshold", "must be a whole number >= 1"))?;
            c.failure_threshold = u32::try_from(n).map_err(|_| bad("breaker.failure_threshold", "is too large"))?;
        }
        if let Some(x) = t.get("cool_down_s") {
            let x = x
                .as_f64()
                .ok_or_else(|| bad("breaker.cool_down_s", "must be a number"))?;
            c.cool_down = secs("breaker.cool_down_s", x)?;
        }
        b = b.breaker(c);
    }
    if let Some(v) = obj.get("down_after") {
        let t = v.as_object().ok_or_else(|| bad("down_after", "must be a table"))?;
        if let Some(k) = t.keys().find(|k| !["after_s", "min_failures"].contains(&k.as_str())) {
            return Err(bad(
                &format!("down_after.{k}"),
                "unknown setting (known: after_s, min_failures)",
            ));
        }
        let mut d = DownConfig::default();
        if let Some(x) = t.get("after_s") {
            let x = x
                .as_f64()
                .ok_or_else(|| bad("down_after.after_s", "must be a number"))?;
            d.after = secs("down_after.after_s", x)?;
        }
        if let Some(n) = t.get("min_failures") {
            let n = n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad("down_after.min_failures", "must be a whole number from 1 to 4294967295"))?;
            d.min_failures = n;
        }
        b = b.down_after(d);
    }
    b.build().map_err(|e| {
        // The builder's error names a setting; place it where the table has it.
        let field = match &e {
            RouterError::NoMembers(_) | RouterError::DuplicateMember { .. } => "providers",
            RouterError::UnknownStrategy(_) => "strategy",
            RouterError::StatsFile(_) => "stats_file",
            RouterError::OutOfRange { name, .. } => name,
        };
        bad(field, e.to_string())
    })
}

fn bad(field: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(field, reason)
}

fn secs(name: &str, x: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(x).map_err(|_| bad(name, "must be a non-negative number of seconds"))
}

fn member_limits(pid: &str, v: &serde_json::Value) -> Result<ProviderLimits, ConfigError> {
    let t = v
        .as_object()
        .ok_or_else(|| bad(&format!("limits.{pid}"), "must be a table"))?;
    let mut l = ProviderLimits::default();
    for (k, v) in t {
        let n = v
            .as_u64()
            .ok_or_else(|| bad(&format!("limits.{pid}.{k}"), "must be a whole number"))?;
        match k.as_str() {
            "rpm" => {
                l.requests_per_minute =
                    Some(u32::try_from(n).map_err(|_| bad(&format!("limits.{pid}.rpm"), "is too large"))?)
            }
            "burst" => {
                l.burst = Some(u32::try_from(n).map_err(|_| bad(&format!("limits.{pid}.burst"), "is too large"))?)
            }
            "concurrency" => l.concurrency = Some(n as usize),
            _ => {
                return Err(bad(
                    &format!("limits.{pid}.{k}"),
                    "unknown setting (known: rpm, burst, concurrency)",
                ))
            }
        }
    }
    Ok(l)
}
