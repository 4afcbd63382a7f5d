//! Expanding the campaign matrix into jobs.

use crate::job::{Job, Vars};
use crate::spec::error::{SpecError, SpecErrorKind};
use crate::spec::schema::MatrixSpec;

/// One axis of the product: a variable's values, or a zipped group's rows.
struct Axis {
    rows: Vec<Vec<(String, serde_json::Value)>>,
}

/// Expand the matrix into jobs: the cartesian product of every axis (a plain
/// variable, or a zipped group whose lists advance together), repeated `runs`
/// times. Jobs come out in a stable order (axes by name, values in list order),
/// and their keys depend only on their variables.
pub(crate) fn expand(m: &MatrixSpec) -> Result<Vec<Job>, SpecError> {
    let mut axes: Vec<Axis> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let mut claim = |name: &str, path: &str| -> Result<(), SpecError> {
        if name == "run" || name == "job" {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                path,
                format!("`{name}` is a reserved variable name"),
            ));
        }
        if seen.iter().any(|s| s == name) {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                path,
                format!("variable `{name}` is defined twice in the matrix"),
            ));
        }
        seen.push(name.to_string());
        Ok(())
    };
    for (name, value) in &m.vars {
        let path = format!("matrix.{name}");
        claim(name, &path)?;
        let values = match value {
            serde_json::Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        if values.is_empty() {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                path,
                format!("variable `{name}` has no values, so the campaign has no jobs"),
            ));
        }
        axes.push(Axis {
            rows: values.into_iter().map(|v| vec![(name.clone(), v)]).collect(),
        });
    }
    for (g, group) in m.zip.iter().enumerate() {
        let mut len: Option<(String, usize)> = None;
        let mut cols: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
        for (name, value) in group {
            let path = format!("matrix.zip[{g}].{name}");
            claim(name, &path)?;
            let serde_json::Value::Array(values) = value else {
                return Err(SpecError::new(
                    SpecErrorKind::Invalid,
                    path,
                    format!("zipped variable `{name}` must be a list"),
                ));
            };
            match &len {
                Some((first, n)) if *n != values.len() => {
                    return Err(SpecError::new(
                        SpecErrorKind::Invalid,
                        path,
                        format!(
                            "zipped lists advance together and must have the same length: `{first}` has {n}, `{name}` has {}",
                            values.len()
                        ),
                    ))
                }
                Some(_) => {}
                None => len = Some((name.clone(), values.len())),
            }
            cols.push((name.clone(), values.clone()));
        }
        let n = len.map(|l| l.1).unwrap_or(0);
        if n == 0 {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                format!("matrix.zip[{g}]"),
                "a zipped group needs at least one non-empty list",
            ));
        }
        axes.push(Axis {
            rows: (0..n)
                .map(|i| cols.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect())
                .collect(),
        });
    }
    let runs = m.runs.unwrap_or(1);
    if runs == 0 {
        return Err(SpecError::new(
            SpecErrorKind::Invalid,
            "matrix.runs",
            "runs must be at least 1",
        ));
    }
    let mut combos: Vec<Vars> = vec![Vars::new()];
    for axis in &axes {
        let mut next = Vec::with_capacity(combos.len() * axis.rows.len());
        for c in &combos {
            for row in &axis.rows {
                let mut v = c.clone();
                v.extend(row.iter().cloned());
                next.push(v);
            }
        }
        combos = next;
    }
    let mut jobs = Vec::with_capacity(combos.len() * runs as usize);
    for vars in combos {
        for r in 1..=runs {
            let mut v = vars.clone();
            if runs > 1 {
                v.insert("run".into(), r.into());
            }
            jobs.push(Job::from_vars(v));
        }
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> MatrixSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn product_of_axes_with_zipped_groups_advancing_together() {
        let m = spec(json!({
            "product": ["mug", "lamp"],
            "zip": [{"channel": ["square", "story"], "size": ["1x1", "9x16"]}],
            "runs": 2
        }));
        let jobs = expand(&m).unwrap();
        assert_eq!(jobs.len(), 2 * 2 * 2);
        for j in &jobs {
            let ch = j.var_str("channel").unwrap();
            let size = j.var_str("size").unwrap();
            assert_eq!(ch == "square", size == "1x1", "zipped values stay paired");
            assert!(j.vars().contains_key("run"));
        }
        let keys: std::collections::HashSet<_> = jobs.iter().map(|j| j.key().to_string()).collect();
        assert_eq!(keys.len(), jobs.len(), "every job has its own key");
    }

    #[test]
    fn unequal_zipped_lists_are_an_error_naming_both() {
        let m = spec(json!({"zip": [{"a": [1, 2], "b": [1]}]}));
        let e = expand(&m).unwrap_err();
        assert_eq!(e.path, "matrix.zip[0].b");
        assert!(e.message.contains("`a` has 2, `b` has 1"), "{}", e.message);
    }

    #[test]
    fn no_matrix_is_one_job() {
        assert_eq!(expand(&MatrixSpec::default()).unwrap().len(), 1);
    }
}
