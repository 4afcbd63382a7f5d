//! The campaign matrix as a stream of jobs.
//!
//! A matrix of a million jobs is three lists of a hundred values: it is stored
//! as its axes, never as its jobs. A job is made when it is asked for, by
//! decoding its index in mixed radix over the axes, so counting the jobs is a
//! product, the `n`-th job costs what one job costs, and iterating holds one job
//! at a time.

use std::sync::Arc;

use crate::spec::campaign::Shard;
use crate::spec::error::{SpecError, SpecErrorKind};
use crate::spec::schema::MatrixSpec;
use creative_core::job::{Job, Vars};

/// Jobs a matrix may expand to unless the spec raises `matrix.max_jobs`.
pub const DEFAULT_MAX_JOBS: u64 = 10_000_000;

/// The most `matrix.max_jobs` may be raised to.
pub const MAX_JOBS_LIMIT: u64 = 1_000_000_000;

/// One axis of the product: a variable's values, or a zipped group's rows.
#[derive(Debug)]
struct Axis {
    /// The variables this axis sets.
    names: Vec<String>,
    rows: Vec<Vec<(String, serde_json::Value)>>,
}

#[derive(Debug)]
struct Axes {
    axes: Vec<Axis>,
    runs: u64,
    /// Combinations times runs.
    len: u64,
}

/// The jobs of a campaign: the cartesian product of every axis (a plain
/// variable, or a zipped group whose lists advance together), each combination
/// repeated `runs` times, optionally restricted to one shard.
///
/// Jobs come out in a stable order (axes by name, then zipped groups; values in
/// list order; the last axis varies fastest, runs fastest of all), and a job's
/// key depends only on its variables. Cloning is cheap: the axes are shared.
///
/// ```
/// use creative_campaign::spec::{Format, Spec};
/// let spec = Spec::parse(
///     "name = \"m\"\nsteps = []\n[matrix]\nproduct = [\"mug\", \"lamp\"]\nlocale = [\"en\", \"fr\", \"de\"]\n",
///     Format::Toml, "m.toml").unwrap();
/// let jobs = spec.jobs().unwrap();
/// assert_eq!(jobs.len(), 6);
/// // Axes in name order, the last varying fastest: job 5 is (de, lamp).
/// assert_eq!(jobs.get(5).unwrap().var_str("product").as_deref(), Some("lamp"));
/// assert_eq!(jobs.iter().count(), 6);
/// ```
#[derive(Debug, Clone)]
pub struct JobMatrix {
    axes: Arc<Axes>,
    shard: Option<Shard>,
}

impl JobMatrix {
    /// Read a matrix spec, refusing one that expands to more than its job cap
    /// (`max_jobs`, default [`DEFAULT_MAX_JOBS`]) before anything is allocated.
    pub(crate) fn new(m: &MatrixSpec) -> Result<JobMatrix, SpecError> {
        let max_jobs = match m.max_jobs {
            None => DEFAULT_MAX_JOBS,
            Some(n) if (1..=MAX_JOBS_LIMIT).contains(&n) => n,
            Some(n) => {
                return Err(SpecError::new(
                    SpecErrorKind::Invalid,
                    "matrix.max_jobs",
                    format!("max_jobs is {n}; it must be between 1 and {MAX_JOBS_LIMIT}"),
                ))
            }
        };
        // Count first, from the lists' lengths alone, so a matrix too large to
        // run is refused before any of it is copied.
        let runs = u64::from(m.runs.unwrap_or(1));
        if runs == 0 {
            return Err(SpecError::new(
                SpecErrorKind::Invalid,
                "matrix.runs",
                "runs must be at least 1",
            ));
        }
        let mut len: Option<u64> = Some(runs);
        for value in m.vars.values() {
            let n = match value {
                serde_json::Value::Array(a) => a.len() as u64,
                _ => 1,
            };
            len = len.and_then(|l| l.checked_mul(n.max(1)));
        }
        for group in &m.zip {
            let n = group
                .values()
                .map(|v| v.as_array().map_or(1, |a| a.len() as u64))
                .max()
                .unwrap_or(1);
            len = len.and_then(|l| l.checked_mul(n.max(1)));
        }
        match len {
            Some(n) if n <= max_jobs => {}
            other => {
                let count = other.map_or_else(|| "more than 18446744073709551615".to_string(), group_digits);
                return Err(SpecError::new(
                    SpecErrorKind::Invalid,
                    "matrix",
                    format!(
                        "the matrix expands to {count} jobs, over the cap of {}; split the campaign, or raise matrix.max_jobs (at most {})",
                        group_digits(max_jobs),
                        group_digits(MAX_JOBS_LIMIT)
                    ),
                ));
            }
        }

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
                names: vec![name.clone()],
                rows: values.into_iter().map(|v| vec![(name.clone(), v)]).collect(),
            });
        }
        for (g, group) in m.zip.iter().enumerate() {
            let mut len: Option<(String, usize)> = None;
            let mut cols: Vec<(String, &Vec<serde_json::Value>)> = Vec::new();
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
                cols.push((name.clone(), values));
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
                names: cols.iter().map(|(k, _)| k.clone()).collect(),
                rows: (0..n)
                    .map(|i| cols.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect())
                    .collect(),
            });
        }
        let combos: u64 = axes.iter().map(|a| a.rows.len() as u64).product();
        Ok(JobMatrix {
            axes: Arc::new(Axes {
                axes,
                runs,
                len: combos * runs,
            }),
            shard: None,
        })
    }

    /// The same matrix restricted to one shard (jobs whose key hashes to it).
    pub fn shard(&self, shard: Shard) -> JobMatrix {
        JobMatrix {
            axes: self.axes.clone(),
            shard: Some(shard),
        }
    }

    /// The shard this matrix is restricted to, if any.
    pub fn shard_of(&self) -> Option<Shard> {
        self.shard
    }

    /// Jobs of the whole matrix (every shard), computed from the axes' lengths.
    pub fn len(&self) -> u64 {
        self.axes.len
    }

    /// Whether the matrix has no job (never, for a built spec).
    pub fn is_empty(&self) -> bool {
        self.axes.len == 0
    }

    /// Jobs this matrix yields: [`len`](Self::len) without a shard; with one,
    /// counted by hashing each job's key (no job is kept).
    pub fn count(&self) -> u64 {
        match self.shard {
            None => self.axes.len,
            Some(_) => self.iter().count() as u64,
        }
    }

    /// The job at `index` of the whole matrix (shards ignored), or `None` past the end.
    pub fn get(&self, index: u64) -> Option<Job> {
        (index < self.axes.len).then(|| self.axes.job(index))
    }

    /// Whether a variable takes more than one value over the matrix (`run`
    /// included when there are several runs).
    pub fn varies(&self, name: &str) -> bool {
        if name == "run" {
            return self.axes.runs > 1;
        }
        self.axes
            .axes
            .iter()
            .any(|a| a.rows.len() > 1 && a.names.iter().any(|n| n == name))
    }

    /// Variables that vary over the matrix, in axis order (`run` last).
    pub fn varying(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .axes
            .axes
            .iter()
            .filter(|a| a.rows.len() > 1)
            .flat_map(|a| a.names.iter().cloned())
            .collect();
        if self.axes.runs > 1 {
            v.push("run".into());
        }
        v
    }

    /// Every job, in order, one at a time (the shard's only, when restricted).
    pub fn iter(&self) -> Jobs {
        Jobs {
            axes: self.axes.clone(),
            shard: self.shard,
            next: 0,
            end: self.axes.len,
        }
    }

    /// Every job with its position in the whole matrix (shards keep the
    /// matrix's numbering).
    pub fn iter_indexed(&self) -> impl Iterator<Item = (u64, Job)> + Send + 'static {
        let (axes, shard) = (self.axes.clone(), self.shard);
        (0..axes.len)
            .map(move |i| (i, axes.job(i)))
            .filter(move |(_, j)| shard.is_none_or(|s| s.contains(j)))
    }

    /// One representative job for each distinct combination of the axes that
    /// set any of `names` (and of the runs, when `run` is named): the other
    /// axes stay at their first value. Whatever depends only on `names` (a
    /// template over them) is the same for every job a representative stands
    /// for, so checking the representatives checks every job.
    pub fn representatives(&self, names: &[&str]) -> impl Iterator<Item = Job> + '_ {
        let a = &self.axes;
        let used: Vec<bool> = a
            .axes
            .iter()
            .map(|ax| ax.names.iter().any(|n| names.contains(&n.as_str())))
            .collect();
        let runs = if names.contains(&"run") { a.runs } else { 1 };
        let count: u64 = a
            .axes
            .iter()
            .zip(&used)
            .map(|(ax, u)| if *u { ax.rows.len() as u64 } else { 1 })
            .product::<u64>()
            * runs;
        (0..count).map(move |mut i| {
            let run = i % runs;
            i /= runs;
            // Decode over the used axes only, last fastest, then place the digits.
            let mut digits = vec![0u64; a.axes.len()];
            for (k, ax) in a.axes.iter().enumerate().rev() {
                if used[k] {
                    let n = ax.rows.len() as u64;
                    digits[k] = i % n;
                    i /= n;
                }
            }
            a.job_of(&digits, run)
        })
    }
}

impl Axes {
    fn job(&self, index: u64) -> Job {
        let run = index % self.runs;
        let mut c = index / self.runs;
        let mut digits = vec![0u64; self.axes.len()];
        for (k, ax) in self.axes.iter().enumerate().rev() {
            let n = ax.rows.len() as u64;
            digits[k] = c % n;
            c /= n;
        }
        self.job_of(&digits, run)
    }

    fn job_of(&self, digits: &[u64], run: u64) -> Job {
        let mut vars = Vars::new();
        for (ax, &d) in self.axes.iter().zip(digits) {
            for (k, v) in &ax.rows[d as usize] {
                vars.insert(k.clone(), v.clone());
            }
        }
        if self.runs > 1 {
            vars.insert("run".into(), (run + 1).into());
        }
        Job::from_vars(vars)
    }
}

/// The jobs of a [`JobMatrix`], made one at a time.
#[derive(Debug, Clone)]
pub struct Jobs {
    axes: Arc<Axes>,
    shard: Option<Shard>,
    next: u64,
    end: u64,
}

impl Iterator for Jobs {
    type Item = Job;

    fn next(&mut self) -> Option<Job> {
        while self.next < self.end {
            let job = self.axes.job(self.next);
            self.next += 1;
            if self.shard.is_none_or(|s| s.contains(&job)) {
                return Some(job);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = usize::try_from(self.end - self.next).unwrap_or(usize::MAX);
        match self.shard {
            None => (left, Some(left)),
            Some(_) => (0, Some(left)),
        }
    }
}

impl DoubleEndedIterator for Jobs {
    fn next_back(&mut self) -> Option<Job> {
        while self.next < self.end {
            self.end -= 1;
            let job = self.axes.job(self.end);
            if self.shard.is_none_or(|s| s.contains(&job)) {
                return Some(job);
            }
        }
        None
    }
}

/// `1234567` as `1,234,567`.
pub(crate) fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> MatrixSpec {
        serde_json::from_value(v).unwrap()
    }

    /// The order the matrix had when it was expanded into a list: axis after
    /// axis, each combination's runs together.
    fn expand_eagerly(m: &MatrixSpec) -> Vec<Vars> {
        let mut combos: Vec<Vars> = vec![Vars::new()];
        let mut push_axis = |rows: Vec<Vec<(String, serde_json::Value)>>| {
            let mut next = Vec::new();
            for c in &combos {
                for row in &rows {
                    let mut v = c.clone();
                    v.extend(row.iter().cloned());
                    next.push(v);
                }
            }
            combos = next;
        };
        for (k, v) in &m.vars {
            let values = v.as_array().cloned().unwrap_or_else(|| vec![v.clone()]);
            push_axis(values.into_iter().map(|x| vec![(k.clone(), x)]).collect());
        }
        for g in &m.zip {
            let n = g.values().next().and_then(|v| v.as_array()).map_or(0, Vec::len);
            push_axis(
                (0..n)
                    .map(|i| g.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect())
                    .collect(),
            );
        }
        let runs = m.runs.unwrap_or(1);
        let mut out = Vec::new();
        for c in combos {
            for r in 1..=runs {
                let mut v = c.clone();
                if runs > 1 {
                    v.insert("run".into(), r.into());
                }
                out.push(v);
            }
        }
        out
    }

    #[test]
    fn product_of_axes_with_zipped_groups_advancing_together() {
        let m = spec(json!({
            "product": ["mug", "lamp"],
            "zip": [{"channel": ["square", "story"], "size": ["1x1", "9x16"]}],
            "runs": 2
        }));
        let jobs: Vec<Job> = JobMatrix::new(&m).unwrap().iter().collect();
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
    fn streamed_jobs_come_in_the_order_and_with_the_keys_of_the_eager_expansion() {
        let m = spec(json!({
            "b": [1, 2, 3],
            "a": ["x", "y"],
            "const": "k",
            "zip": [{"c": [true, false], "d": ["p", "q"]}],
            "runs": 3
        }));
        let matrix = JobMatrix::new(&m).unwrap();
        let eager = expand_eagerly(&m);
        let streamed: Vec<Job> = matrix.iter().collect();
        assert_eq!(matrix.len(), eager.len() as u64);
        assert_eq!(streamed.len(), eager.len());
        for (i, (s, e)) in streamed.iter().zip(&eager).enumerate() {
            assert_eq!(**s.vars(), *e, "job {i}");
            assert_eq!(s.key(), Job::from_vars(e.clone()).key());
            assert_eq!(matrix.get(i as u64).unwrap().key(), s.key(), "random access agrees");
        }
        assert!(matrix.get(matrix.len()).is_none());
        let back: Vec<String> = matrix.iter().rev().map(|j| j.key().to_string()).collect();
        let mut fwd: Vec<String> = streamed.iter().map(|j| j.key().to_string()).collect();
        fwd.reverse();
        assert_eq!(back, fwd, "the last jobs come cheaply from the back");
    }

    #[test]
    fn shards_partition_the_matrix() {
        let m = spec(json!({"a": (0..50).collect::<Vec<_>>(), "b": [1, 2, 3]}));
        let matrix = JobMatrix::new(&m).unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut total = 0;
        for k in 0..4 {
            let part = matrix.shard(Shard { index: k, count: 4 });
            let jobs: Vec<Job> = part.iter().collect();
            assert_eq!(part.count(), jobs.len() as u64);
            total += jobs.len();
            for j in jobs {
                assert!(seen.insert(j.key().to_string()));
            }
        }
        assert_eq!(total, 150);
    }

    #[test]
    fn a_matrix_of_a_billion_jobs_is_refused_before_anything_is_allocated() {
        let big: Vec<u32> = (0..1000).collect();
        let m = spec(json!({"a": big, "b": big, "c": big}));
        let e = JobMatrix::new(&m).unwrap_err();
        assert_eq!(e.path, "matrix");
        assert!(e.message.contains("1,000,000,000 jobs"), "{}", e.message);
        assert!(e.message.contains("max_jobs"), "{}", e.message);
        let e = JobMatrix::new(&spec(json!({"a": [1, 2], "runs": 1_000_000_000u32}))).unwrap_err();
        assert!(e.message.contains("2,000,000,000 jobs"), "{}", e.message);
        let m = spec(json!({"a": [1, 2], "runs": 1_000_000_000u32, "max_jobs": 2_000_000_000u64}));
        assert_eq!(JobMatrix::new(&m).unwrap_err().path, "matrix.max_jobs");
        let m = spec(json!({"a": big, "b": big, "max_jobs": 1_000_000}));
        assert_eq!(JobMatrix::new(&m).unwrap().len(), 1_000_000);
    }

    #[test]
    fn representatives_cover_each_combination_of_the_named_axes_once() {
        let m = spec(json!({"a": [1, 2, 3], "b": ["x", "y"], "c": [true, false], "runs": 2}));
        let matrix = JobMatrix::new(&m).unwrap();
        let reps: Vec<Job> = matrix.representatives(&["a", "c"]).collect();
        assert_eq!(reps.len(), 6);
        let combos: std::collections::HashSet<String> = reps
            .iter()
            .map(|j| format!("{:?}{:?}", j.vars()["a"], j.vars()["c"]))
            .collect();
        assert_eq!(combos.len(), 6);
        assert!(reps.iter().all(|j| j.var_str("b").as_deref() == Some("x")));
        assert!(
            reps.iter().all(|j| matrix.iter().any(|k| k.key() == j.key())),
            "each is a real job"
        );
        assert_eq!(matrix.representatives(&["run"]).count(), 2);
        assert_eq!(matrix.representatives(&[]).count(), 1);
    }

    #[test]
    fn unequal_zipped_lists_are_an_error_naming_both() {
        let m = spec(json!({"zip": [{"a": [1, 2], "b": [1]}]}));
        let e = JobMatrix::new(&m).unwrap_err();
        assert_eq!(e.path, "matrix.zip[0].b");
        assert!(e.message.contains("`a` has 2, `b` has 1"), "{}", e.message);
    }

    #[test]
    fn no_matrix_is_one_job() {
        assert_eq!(JobMatrix::new(&MatrixSpec::default()).unwrap().iter().count(), 1);
    }

    #[test]
    fn digits_are_grouped_by_thousands() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
