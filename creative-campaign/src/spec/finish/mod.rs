//! The end of a campaign run, streamed from the journal.
//!
//! Nothing here holds the campaign in memory. One pass walks the matrix in
//! order and reads each job's records back from the journal by position: it
//! follows a running campaign on a thread of its own ([`Finisher`]), taking
//! each job as soon as it has ended, or runs from a [`JournalIndex`] when there
//! is no run to follow. It places the job's files (hard links to the stored
//! payloads, so no byte is copied or read), writes the job's manifest entries
//! to part files, and feeds the report. `manifest.json` is then assembled from
//! the parts; sinks are fed from the assets' part, a few at a time; the contact
//! sheet's cards are rendered as the pass places each asset (linking the
//! thumbnail its job made as it ended), and its pages are written around them
//! at the end, once the report they open with is known.
//!
//! What stays in memory is a hash per delivered file name (8 bytes), a hash per
//! output folder and the report's rows; while a run goes, also the marks of
//! jobs that ended ahead of the pass (at most 65,536) and the records committed
//! that it has not taken yet (at most 4,096).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::hash::{Hash, Hasher};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use futures::StreamExt;
use tokio::sync::mpsc;

use crate::deliver::{
    job_entries, AssetEntry, DeliveryLedger, DirectorySink, JobEntry, ManifestSummary, Report, ReportBuilder,
    SheetCards, Sinks,
};
use crate::spec::campaign::{Campaign, CampaignError, EVENTS_FILE, STATE_DIR};
use crate::spec::ended::{Ended, Wait};
use crate::store::{remove_stale_temps, write_atomic, BlobStore, FileJournal, JournalRecord, LiveRecords, StoreError};
use creative_core::artifact::Artifact;
use creative_core::cancel::CancellationToken;
use creative_core::exec::RunOutcome;

/// Assets handed to the sinks at once at the end of a run.
pub(crate) const SINK_CONCURRENCY: usize = 8;

/// The delivered assets of the last run, one [`AssetEntry`] a JSON line, in
/// manifest order, inside the state folder: what hosts read the assets back
/// from, one at a time.
pub const ASSETS_FILE: &str = "assets.jsonl";
/// Every finished step's outputs of the last run, delivered or not, one
/// [`ArtifactLine`] a JSON line, by job (matrix order), step (pipeline order)
/// and output, inside the state folder: what the C ABI lends artifacts from.
pub const ARTIFACTS_FILE: &str = "artifacts.jsonl";
const JOBS_PART: &str = "manifest-jobs.part";
const ASSETS_PART: &str = "manifest-assets.part";
const SHEET_PART: &str = "contact-sheet.part";

mod files;
use files::{batches, io_err, Lines, Part};
pub(crate) use files::{read_assets, read_events};

/// One line of [`ARTIFACTS_FILE`]: an output of a finished step.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ArtifactLine {
    /// The job's key.
    pub job: String,
    /// The job's variables.
    pub vars: creative_core::job::Vars,
    /// The step.
    pub step: String,
    /// Its position among the step's outputs.
    pub index: usize,
    /// Where it was delivered, relative to the output folder, when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The artifact (its payload is in the store under its id).
    pub artifact: crate::store::ArtifactRecord,
}

fn hash64(s: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    s.hash(&mut h);
    h.finish()
}

/// What the delivery pass left for the rest of the end of the run.
struct Delivered {
    summary: ManifestSummary,
    builder: ReportBuilder,
    errors: Vec<String>,
    /// The contact sheet's cards, when the spec asks for a sheet.
    sheet: Option<SheetCards>,
}

/// Reads the latest record of (job, step) back from a journal.
type ReadRecord<'a> = dyn Fn(&str, &str) -> Result<Option<JournalRecord>, StoreError> + Sync + 'a;

/// What the pass placing files left: the counts, the report's view of the
/// records and assets it saw, what went wrong, and the manifest's two parts.
struct Placed {
    summary: ManifestSummary,
    records: ReportBuilder,
    errors: Vec<String>,
    jobs_part: PathBuf,
    assets_part: PathBuf,
    sheet: Option<SheetCards>,
}

/// The pass placing files, run on a thread of its own while the campaign runs:
/// it takes each job, in matrix order, as soon as the job has ended (see
/// [`Ended`]), so that at the end of a run only the last few jobs, the manifest,
/// the report and the sheet are left. A run whose pass fell behind, or stopped
/// following it, finishes the pass from the journal once it is over.
pub(crate) struct Finisher {
    ended: Arc<Ended>,
    thread: Option<std::thread::JoinHandle<Result<Placed, StoreError>>>,
}

impl Finisher {
    /// Start the pass for `campaign` delivering into `out_dir`, reading records
    /// from the running journal's `records`.
    pub(crate) fn start(campaign: Campaign, out_dir: PathBuf, records: LiveRecords) -> Result<Finisher, StoreError> {
        let ended = Arc::new(Ended::default());
        let e = ended.clone();
        let thread = std::thread::Builder::new()
            .name("creative-finish".into())
            .spawn(move || {
                let placed = campaign.place_files(&out_dir, &|job, step| records.get(job, step), Some(&e));
                // Done (or failed): the run's marks are of no use any more.
                e.abandon();
                placed
            })
            .map_err(|e| StoreError(format!("start the pass placing files: {e}")))?;
        Ok(Finisher {
            ended,
            thread: Some(thread),
        })
    }

    /// Where the run marks the jobs that ended.
    pub(crate) fn ended(&self) -> Arc<Ended> {
        self.ended.clone()
    }

    /// The run is over: let the pass take the jobs left and wait for it.
    fn join(mut self) -> Result<Placed, StoreError> {
        self.ended.run_over();
        let thread = self
            .thread
            .take()
            .ok_or_else(|| StoreError("the pass was joined twice".into()))?;
        thread
            .join()
            .map_err(|_| StoreError("the pass placing files panicked".into()))?
    }
}

impl Drop for Finisher {
    fn drop(&mut self) {
        // Not joined: the run was dropped, and with it the output folder's lock.
        // The pass must not write the state folder after that.
        if self.thread.is_some() {
            self.ended.abandon();
        }
    }
}

impl Campaign {
    /// The end of a run: deliver and account for what the journal in `out_dir`
    /// records, where a cancelled `cancel` stops the sinks (the files,
    /// manifest, report and sheet are local and always written, but a cancelled
    /// run does not wait on webhooks, whose retries can take minutes). What
    /// they did not get is listed in the report, and a resume sends it (with the
    /// same idempotency keys).
    pub(crate) async fn finalize_until(
        &self,
        out_dir: &Path,
        outcome: Option<&RunOutcome>,
        cancel: Option<&CancellationToken>,
        started: SystemTime,
        observed: Option<ReportBuilder>,
        finisher: Option<Finisher>,
    ) -> Result<(ManifestSummary, Report), CampaignError> {
        let this = self.clone();
        let out = out_dir.to_path_buf();
        let Delivered {
            summary,
            builder,
            mut errors,
            sheet,
        } = blocking(move || this.deliver_files(&out, started, observed, finisher)).await?;
        let mut report = builder.finish(&self.name, outcome);
        let state_dir = out_dir.join(STATE_DIR);
        let blobs = BlobStore::new(state_dir.join("objects"));
        let mut sinks_stopped = false;
        let sinks = Sinks::new(&self.sinks);
        if !sinks.is_empty() {
            // The acknowledgements of the deliveries as jobs ended (and of
            // earlier sessions of this run): only the rest is handed again.
            let sd = state_dir.clone();
            let ledger = blocking(move || DeliveryLedger::open(&sd, false)).await?;
            if summary.assets > 0 {
                // A few assets at a time: one webhook round trip after another would
                // take minutes for a campaign of thousands. Sinks are idempotent per
                // asset, so the order they see assets in does not matter. The assets
                // are read back from disk as the sinks take them.
                let (tx, rx) = mpsc::channel::<AssetEntry>(SINK_CONCURRENCY * 4);
                let path = state_dir.join(ASSETS_FILE);
                let reader = tokio::task::spawn_blocking(move || read_assets(&path, |a| tx.blocking_send(a).is_ok()));
                let deliveries = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|a| (a, rx)) })
                    .map(|a| {
                        let (blobs, sinks, ledger) = (blobs.clone(), &sinks, &ledger);
                        async move { self.deliver_to_sinks(&a, out_dir, &blobs, sinks, ledger).await }
                    })
                    .buffer_unordered(SINK_CONCURRENCY);
                let mut deliveries = Box::pin(deliveries);
                let mut sink_errors = Vec::new();
                loop {
                    match until_cancelled(cancel, deliveries.next()).await {
                        None => {
                            sinks_stopped = true;
                            break;
                        }
                        Some(None) => break,
                        Some(Some(r)) => sink_errors.extend(r?),
                    }
                }
                // Dropping the stream ends the reader (its sends fail).
                drop(deliveries);
                match reader.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => errors.push(e.to_string()),
                    Err(e) => errors.push(format!("asset reader failed: {e}")),
                }
                // Completion order varies from run to run; the report should not.
                sink_errors.sort();
                errors.extend(sink_errors);
            }
            if !sinks_stopped {
                sinks_stopped = !sinks.finish(&ledger, &summary, &report, cancel, &mut errors).await;
            }
        }
        if sinks_stopped {
            let names: Vec<&str> = self.sinks.iter().map(|s| s.name()).collect();
            errors.push(format!(
                "sinks {} stopped: the run was cancelled; resume it to deliver the rest",
                names.join(", ")
            ));
        }
        report.delivery_errors = errors;
        let this = self.clone();
        let out = out_dir.to_path_buf();
        let r2 = report.clone();
        blocking(move || this.write_report_and_sheet(&out, &r2, sheet)).await?;
        Ok((summary, report))
    }

    /// Hand one delivered asset to every sink that has not acknowledged it;
    /// returns their errors.
    async fn deliver_to_sinks(
        &self,
        asset: &AssetEntry,
        out_dir: &Path,
        blobs: &BlobStore,
        sinks: &Sinks,
        ledger: &DeliveryLedger,
    ) -> Result<Vec<String>, CampaignError> {
        if !sinks.pending(ledger, asset) {
            return Ok(Vec::new());
        }
        // Marked files differ from the store's bytes: sinks get what the
        // folder holds, the signed file a receiver should see.
        if let (Some(_), Some(rel)) = (&self.marking, &asset.path) {
            let path = out_dir.join(rel);
            let read = blocking(move || Ok::<_, StoreError>(fs::read(&path).ok())).await?;
            let Some(data) = read else { return Ok(Vec::new()) };
            let artifact = marked_artifact(asset, data.into());
            return Ok(sinks.deliver(ledger, asset, &artifact).await);
        }
        let b = blobs.clone();
        let (id, media) = (asset.id.clone(), asset.media.clone());
        let data = blocking(move || b.get(&id, &media)).await?;
        let Some(data) = data else { return Ok(Vec::new()) };
        let artifact = Artifact::from_parts(
            asset.id.clone(),
            asset.media.clone(),
            data,
            asset.meta.clone(),
            asset.provenance.clone(),
        );
        Ok(sinks.deliver(ledger, asset, &artifact).await)
    }

    /// The folder sink files are delivered through: linked from the store's
    /// blobs, or written marked when the spec asks for marks.
    pub(crate) fn directory_sink(&self, out_dir: &Path, blobs: BlobStore) -> DirectorySink {
        let dir = DirectorySink::new(out_dir, self.file_names.clone()).with_blobs(blobs);
        match &self.marking {
            Some(m) => dir.with_marking(m.clone()),
            None => dir,
        }
    }

    /// Place every delivered asset's file and write the manifest (with paths);
    /// feed the report the events, records and assets. The placing is the
    /// `finisher`'s, which has followed the run, when there is one; else it is
    /// done here, from the journal. `observed`: the report's view of the run's
    /// events, when it was made as they passed (else it is read from the event
    /// log).
    fn deliver_files(
        &self,
        out_dir: &Path,
        started: SystemTime,
        observed: Option<ReportBuilder>,
        finisher: Option<Finisher>,
    ) -> Result<Delivered, StoreError> {
        let state_dir = out_dir.join(STATE_DIR);
        let placed = match finisher {
            Some(f) => f.join()?,
            None => {
                fs::create_dir_all(&state_dir).map_err(|e| io_err("create", &state_dir, e))?;
                let index = FileJournal::index(&state_dir.join(FileJournal::FILE))?;
                self.place_files(out_dir, &|job, step| index.get(job, step), None)?
            }
        };
        let Placed {
            mut summary,
            records,
            errors,
            jobs_part,
            assets_part,
            sheet,
        } = placed;
        self.write_manifest(out_dir, started, &jobs_part, &assets_part)?;
        summary.path = Some(out_dir.join("manifest.json"));
        let _ = fs::remove_file(&jobs_part);
        let _ = fs::remove_file(&assets_part);
        let mut builder = match observed {
            Some(b) => b,
            None => {
                let mut b = ReportBuilder::new();
                read_events(&state_dir.join(EVENTS_FILE), |e| b.observe(&e))?;
                b
            }
        };
        builder.absorb(records);
        Ok(Delivered {
            summary,
            builder,
            errors,
            sheet,
        })
    }

    /// Walk the matrix in order, place every delivered asset's file, and write
    /// the manifest's entries (with paths) to part files, reading each job's
    /// records with `records`. With `ended`, each job is taken once it has
    /// ended (the pass follows a running campaign); without, at once.
    fn place_files(
        &self,
        out_dir: &Path,
        records: &ReadRecord<'_>,
        ended: Option<&Ended>,
    ) -> Result<Placed, StoreError> {
        let state_dir = out_dir.join(STATE_DIR);
        fs::create_dir_all(&state_dir).map_err(|e| io_err("create", &state_dir, e))?;
        let blobs = BlobStore::new(state_dir.join("objects"));
        let dir = self.directory_sink(out_dir, blobs.clone());
        let mut builder = ReportBuilder::new();
        // Named as temporaries, so a pass abandoned with its run never shares
        // a file with the next run's, and a killed run's are cleaned below.
        let mut jobs_part = Part::create(crate::store::temp_path(&state_dir.join(JOBS_PART)))?;
        let mut assets_part = Part::create(crate::store::temp_path(&state_dir.join(ASSETS_PART)))?;
        let sheet_path = crate::store::temp_path(&state_dir.join(SHEET_PART));
        let mut sheet = match self.contact_sheet {
            true => Some(SheetCards::create(sheet_path.clone()).map_err(|e| io_err("create", &sheet_path, e))?),
            false => None,
        };
        let load = |a: &AssetEntry| blobs.get(&a.id, &a.media).ok().flatten();
        let mut lines = Lines::create(state_dir.join(ASSETS_FILE))?;
        let mut artifacts = Lines::create(state_dir.join(ARTIFACTS_FILE))?;
        let mut used: HashSet<u64> = HashSet::new();
        let mut folders: HashSet<u64> = HashSet::new();
        let mut errors = Vec::new();
        let mut summary = ManifestSummary {
            campaign: self.name.clone(),
            spec_hash: self.spec_hash.clone(),
            ..ManifestSummary::default()
        };
        let mut clean = |folder: &Path, errors: &mut Vec<String>| {
            // A run killed while delivering may have left half-written
            // temporaries beside the assets (never under an asset's name).
            if folders.insert(hash64(&folder.to_string_lossy())) {
                if let Err(e) = remove_stale_temps(folder) {
                    errors.push(format!("clean {}: {e}", folder.display()));
                }
            }
        };
        clean(out_dir, &mut errors);
        clean(&state_dir, &mut errors);
        // Getting each job's records (waiting for the job to end, when the pass
        // follows a run; a read and a JSON parse per step when they are not
        // kept in memory) runs on a thread of its own, a bounded stretch of
        // jobs ahead of the placing and writing below: the two halves of the
        // pass take about the same time, and the order stays the matrix's.
        std::thread::scope(|scope| -> Result<(), StoreError> {
            let (mut tx, rx) = batches::<Result<JobRecords, StoreError>>(READ_AHEAD);
            scope.spawn(move || {
                for job in self.jobs.iter() {
                    if ended.is_some_and(|e| e.wait_for(job.key()) == Wait::Stop) {
                        let stop = Err(StoreError("the run was dropped before its end".into()));
                        tx.push(stop);
                        return;
                    }
                    let item = (|| {
                        let mut done = BTreeMap::new();
                        for step in &self.steps {
                            if let Some(r) = records(job.key(), step)? {
                                done.insert(step.clone(), r);
                            }
                        }
                        let (entry, assets) = job_entries(&job, &self.steps, &self.deliver, &done);
                        Ok(JobRecords { done, entry, assets })
                    })();
                    let failed = item.is_err();
                    // The receiver stops at an error or one of its own.
                    if !tx.push(item) || failed {
                        return;
                    }
                }
            });
            for item in rx {
                let JobRecords { done, entry, assets } = item?;
                for r in self.steps.iter().filter_map(|s| done.get(s)) {
                    builder.observe_record(r);
                }
                summary.jobs += 1;
                summary.jobs_complete += u64::from(entry.complete);
                jobs_part.push(&entry)?;
                let mut paths: Vec<(String, usize, String)> = Vec::new();
                for mut asset in assets {
                    match dir.path_for(&asset) {
                        Ok(p) => {
                            let rel = unique(p, &asset, |p| used.contains(&hash64(p)));
                            let placed = if dir.marking().is_some() {
                                dir.place_marked(&rel, &blobs, &asset)
                            } else {
                                dir.place(&rel, &blobs, &asset.id, &asset.media, asset.bytes)
                            };
                            match placed {
                                Ok(true) => {
                                    used.insert(hash64(&rel));
                                    if let Some(folder) = out_dir.join(&rel).parent() {
                                        clean(folder, &mut errors);
                                    }
                                    paths.push((asset.step.clone(), asset.index, rel.clone()));
                                    asset.path = Some(rel);
                                }
                                Ok(false) => errors.push(format!(
                                    "{} step {}: payload {} is missing",
                                    asset.job, asset.step, asset.id
                                )),
                                Err(e) => errors.push(e.to_string()),
                            }
                        }
                        Err(e) => errors.push(format!("{} step {}: {e}", asset.job, asset.step)),
                    }
                    builder.observe_asset(&asset);
                    assets_part.push(&asset)?;
                    lines.push(&asset)?;
                    if let Some(sheet) = &mut sheet {
                        sheet
                            .push(out_dir, &asset, &load)
                            .map_err(|e| io_err("write", &sheet_path, e))?;
                    }
                    summary.assets += 1;
                }
                for (step, rec) in self.steps.iter().filter_map(|s| done.get(s).map(|r| (s, r))) {
                    for (index, a) in rec.outputs.iter().enumerate() {
                        let path = paths
                            .iter()
                            .find(|(s, i, _)| s == step && *i == index)
                            .map(|(_, _, p)| p.clone());
                        artifacts.push(&ArtifactLine {
                            job: rec.job.clone(),
                            vars: rec.vars.clone(),
                            step: step.clone(),
                            index,
                            path,
                            artifact: a.clone(),
                        })?;
                    }
                }
            }
            Ok(())
        })?;
        lines.finish()?;
        artifacts.finish()?;
        let (jobs_part, _) = jobs_part.finish()?;
        let (assets_part, _) = assets_part.finish()?;
        Ok(Placed {
            summary,
            records: builder,
            errors,
            jobs_part,
            assets_part,
            sheet,
        })
    }

    /// `manifest.json`: the header, then the two parts, as one pretty JSON
    /// document (what serializing a whole [`Manifest`](crate::deliver::Manifest)
    /// would give, byte for byte). `started` is when this run began; it ends
    /// now, as the manifest is written.
    fn write_manifest(
        &self,
        out_dir: &Path,
        started: SystemTime,
        jobs: &Path,
        assets: &Path,
    ) -> Result<(), StoreError> {
        let path = out_dir.join("manifest.json");
        let tmp = crate::store::temp_path(&path);
        let result = (|| -> std::io::Result<()> {
            let mut w = BufWriter::with_capacity(1 << 16, File::create(&tmp)?);
            let q = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
            write!(
                w,
                "{{\n  \"campaign\": {},\n  \"spec_hash\": {},\n  \"library_version\": {},\n  \"started_at\": {},\n  \"finished_at\": {},\n  \"jobs\": [",
                q(&self.name),
                q(&self.spec_hash),
                q(crate::VERSION),
                q(&crate::store::rfc3339(started)),
                q(&crate::store::utc_now()),
            )?;
            let copy = |part: &Path, w: &mut BufWriter<File>| -> std::io::Result<()> {
                let mut f = File::open(part)?;
                let n = std::io::copy(&mut f, w)?;
                w.write_all(if n > 0 { b"\n  ]" } else { b"]" })
            };
            copy(jobs, &mut w)?;
            w.write_all(b",\n  \"assets\": [")?;
            copy(assets, &mut w)?;
            w.write_all(b"\n}\n")?;
            let f = w.into_inner().map_err(|e| e.into_error())?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            crate::store::sync_dir(&path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(|e| io_err("write", &path, e))
    }

    fn write_report_and_sheet(
        &self,
        out_dir: &Path,
        report: &Report,
        sheet: Option<SheetCards>,
    ) -> Result<(), StoreError> {
        let mut json = serde_json::to_vec_pretty(report).map_err(|e| StoreError(e.to_string()))?;
        json.push(b'\n');
        let p = out_dir.join("report.json");
        write_atomic(&p, &json, true).map_err(|e| io_err("write", &p, e))?;
        if let Some(sheet) = sheet {
            sheet
                .finish(out_dir, &self.name, report)
                .map_err(|e| io_err("write the contact sheet in", out_dir, e))?;
        }
        Ok(())
    }
}

/// Jobs whose records the final pass reads ahead of the one it places.
const READ_AHEAD: usize = 256;
/// One job's records as the final pass's reader hands them on.
struct JobRecords {
    done: BTreeMap<String, crate::store::JournalRecord>,
    entry: JobEntry,
    assets: Vec<AssetEntry>,
}

/// Run blocking work (file system) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, CampaignError> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError(format!("file task failed: {e}")))??)
}

/// Run `f` unless `cancel` fires first (`None` then).
async fn until_cancelled<F: std::future::Future>(cancel: Option<&CancellationToken>, f: F) -> Option<F::Output> {
    match cancel {
        Some(t) if t.is_cancelled() => None,
        Some(t) => tokio::select! {
            r = f => Some(r),
            () = t.cancelled() => None,
        },
        None => Some(f.await),
    }
}

/// `path`, or `path` with `-<index>` (then `-<short id>`) before the extension
/// when another asset already has it.
fn unique(path: String, asset: &AssetEntry, taken: impl Fn(&str) -> bool) -> String {
    if !taken(&path) {
        return path;
    }
    let (stem, ext) = match path.rfind('.') {
        Some(i) if !path[i..].contains('/') => (&path[..i], &path[i..]),
        _ => (path.as_str(), ""),
    };
    let by_index = format!("{stem}-{}{ext}", asset.index);
    if !taken(&by_index) {
        return by_index;
    }
    format!("{stem}-{}{ext}", asset.id.short())
}

/// The artifact sinks are handed for a marked file: its delivered bytes (and
/// their own id), with the asset's metadata and provenance. The asset entry
/// keeps the store's id, which the manifest names.
pub(crate) fn marked_artifact(asset: &AssetEntry, data: bytes::Bytes) -> Artifact {
    Artifact::from_parts(
        creative_core::artifact::ArtifactId::of(&asset.media, &data),
        asset.media.clone(),
        data,
        asset.meta.clone(),
        asset.provenance.clone(),
    )
}
