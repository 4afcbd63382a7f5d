use std::io::Write;

use super::*;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("creative-journal-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    d
}

#[tokio::test]
async fn a_recorded_step_is_found_after_reopening_and_a_torn_line_is_cut() {
    let dir = tmp("reopen");
    let job = Job::new([("product", "mug")]);
    {
        let j = FileJournal::open(&dir, true).unwrap();
        assert!(j.lookup(&job, "hero", "in").await.unwrap().into_done().is_none());
        j.record(&job, "hero", "in", &[Artifact::text_plain("one")])
            .await
            .unwrap();
    }
    // A kill in the middle of the next append leaves a torn line.
    let path = dir.join(FileJournal::FILE);
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"job\":\"x")
        .unwrap();
    let j = FileJournal::open(&dir, true).unwrap();
    let got = j.lookup(&job, "hero", "in").await.unwrap().into_done().unwrap();
    assert_eq!(got[0].text(), Some("one"));
    j.record(&job, "small", "in", &[Artifact::text_plain("two")])
        .await
        .unwrap();
    let records = FileJournal::read_records(&path).unwrap();
    assert_eq!(records.len(), 2, "the torn line is gone and the new one is whole");
    assert_eq!(records[1].step, "small");
    // Without resume, the old journal is moved aside and nothing counts as done.
    let fresh = FileJournal::open(&dir, false).unwrap();
    assert!(fresh.lookup(&job, "hero", "in").await.unwrap().into_done().is_none());
    assert!(dir.join("journal.jsonl.prev").exists());
    let _ = fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_missing_payload_means_the_step_runs_again() {
    let dir = tmp("payload");
    let job = Job::new([("i", 1)]);
    let j = FileJournal::open(&dir, true).unwrap();
    let a = Artifact::text_plain("payload");
    j.record(&job, "s", "in", std::slice::from_ref(&a)).await.unwrap();
    fs::remove_file(j.blobs().path_of(a.id())).unwrap();
    let j = FileJournal::open(&dir, true).unwrap();
    assert!(j.lookup(&job, "s", "in").await.unwrap().into_done().is_none());
    let _ = fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_step_whose_definition_or_inputs_changed_is_found_changed_not_done() {
    let dir = std::env::temp_dir().join(format!("creative-journal-fp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let defs = |v: &str| BTreeMap::from([("s".to_string(), v.to_string())]);
    let job = Job::new([("p", "mug")]);
    {
        let j = FileJournal::open(&dir, false).unwrap().with_definitions(defs("red"));
        j.record(&job, "s", "inputs-1", &[Artifact::text_plain("a red mug")])
            .await
            .unwrap();
    }
    let same = FileJournal::open(&dir, true).unwrap().with_definitions(defs("red"));
    let got = same.lookup(&job, "s", "inputs-1").await.unwrap().into_done().unwrap();
    assert_eq!(got[0].text(), Some("a red mug"));
    assert!(matches!(
        same.lookup(&job, "s", "inputs-2").await.unwrap(),
        Recorded::Changed
    ));
    drop(same);
    let edited = FileJournal::open(&dir, true).unwrap().with_definitions(defs("blue"));
    assert!(matches!(
        edited.lookup(&job, "s", "inputs-1").await.unwrap(),
        Recorded::Changed
    ));
    assert!(matches!(
        edited.lookup(&job, "t", "inputs-1").await.unwrap(),
        Recorded::Missing
    ));
    drop(edited);
    let _ = fs::remove_dir_all(&dir);
}

fn rec_line(job: &str, step: &str, text: &str) -> Vec<u8> {
    let r = JournalRecord {
        job: job.into(),
        vars: Vars::default(),
        step: step.into(),
        outputs: vec![ArtifactRecord::of(&Artifact::text_plain(text))],
        fingerprint: String::new(),
        finished_at: None,
    };
    let mut l = serde_json::to_vec(&r).unwrap();
    l.push(b'\n');
    l
}

#[test]
fn the_index_keeps_the_latest_record_of_each_step_in_order_of_first_appearance() {
    let dir = tmp("index");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(FileJournal::FILE);
    let mut text = Vec::new();
    text.extend(rec_line("a", "hero", "a1"));
    text.extend(b"\n");
    text.extend(rec_line("b", "hero", "b1"));
    text.extend(rec_line("a", "hero", "a2"));
    text.extend(b"{\"job\":\"c\",\"st");
    fs::write(&path, &text).unwrap();
    let index = FileJournal::index(&path).unwrap();
    assert_eq!(index.len(), 2);
    assert!(index.contains("a", "hero") && index.contains("b", "hero"));
    assert!(!index.contains("c", "hero") && !index.contains("a", "small"));
    let a = index.get("a", "hero").unwrap().unwrap();
    assert_eq!(
        a.outputs[0].id,
        Artifact::text_plain("a2").id().clone(),
        "the latest wins"
    );
    assert!(index.get("hero", "a").unwrap().is_none());
    let order: Vec<(String, String)> = index
        .iter()
        .map(|r| r.map(|r| (r.job, r.outputs[0].id.to_string())))
        .collect::<Result<_, _>>()
        .unwrap();
    let id = |t: &str| Artifact::text_plain(t).id().to_string();
    assert_eq!(order, [("a".to_string(), id("a2")), ("b".to_string(), id("b1"))]);
    let cut = text.len() - b"{\"job\":\"c\",\"st".len();
    assert_eq!(fs::metadata(&path).unwrap().len(), cut as u64, "the torn line is cut");
    assert_eq!(
        FileJournal::read_records(&path).unwrap(),
        index.iter().collect::<Result<Vec<_>, _>>().unwrap()
    );
    assert!(FileJournal::index(&dir.join("absent.jsonl")).unwrap().is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_line_that_is_not_a_record_is_an_error_naming_its_line() {
    let dir = tmp("garbage");
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(FileJournal::FILE);
    let mut text = rec_line("a", "hero", "a1");
    text.extend(b"not json\n");
    fs::write(&path, &text).unwrap();
    let err = FileJournal::index(&path).unwrap_err();
    assert!(err.0.contains("line 2"), "{err}");
    let _ = fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_records_share_commits_and_all_survive_a_reopen() {
    let dir = tmp("group");
    let j = Arc::new(FileJournal::open(&dir, true).unwrap());
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let j = j.clone();
            tokio::spawn(async move {
                let job = Job::new([("i", i)]);
                j.record(&job, "s", "in", &[Artifact::text_plain(format!("payload {i}"))])
                    .await
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let commits = j.commits();
    assert!(commits >= 1 && commits < n, "{commits} commits for {n} records");
    // Recorded in this run: found through the positions the committer added.
    let got = j
        .lookup(&Job::new([("i", 7)]), "s", "in")
        .await
        .unwrap()
        .into_done()
        .unwrap();
    assert_eq!(got[0].text(), Some("payload 7"));
    drop(j);
    let j = FileJournal::open(&dir, true).unwrap();
    for i in [0, 99, 199] {
        let got = j
            .lookup(&Job::new([("i", i)]), "s", "in")
            .await
            .unwrap()
            .into_done()
            .unwrap();
        assert_eq!(got[0].text(), Some(format!("payload {i}").as_str()));
    }
    assert_eq!(FileJournal::index(j.path()).unwrap().len(), n as usize);
    let _ = fs::remove_dir_all(&dir);
}

type Acks = Vec<oneshot::Receiver<Result<(), StoreError>>>;

/// A committer over a fresh journal in `dir`, and the receivers of `lines`
/// queued (with their payload paths) before it starts, so they form one batch.
fn queued(dir: &Path, lines: Vec<(Vec<u8>, Vec<PathBuf>)>) -> (Committer, mpsc::Receiver<Pending>, Acks) {
    fs::create_dir_all(dir).unwrap();
    let path = dir.join(FileJournal::FILE);
    let file = OpenOptions::new().create(true).append(true).open(&path).unwrap();
    let committer = Committer {
        path,
        file,
        end: 0,
        positions: Arc::default(),
        sync: SyncMethod::Files,
        known_dirs: HashSet::new(),
        commits: Arc::default(),
    };
    let (tx, rx) = mpsc::channel();
    let mut waiters = Vec::new();
    for (i, (line, payloads)) in lines.into_iter().enumerate() {
        let (done, w) = oneshot::channel();
        let key = key_of(&i.to_string(), "s");
        tx.send(Pending {
            key,
            line,
            payloads,
            done,
        })
        .unwrap();
        waiters.push(w);
    }
    // The queue is closed: the committer commits what is queued, then ends.
    drop(tx);
    (committer, rx, waiters)
}

#[test]
fn an_error_in_a_commit_reaches_every_waiter_of_the_batch_and_writes_no_line() {
    let dir = tmp("batch-error");
    let lost = dir.join("objects").join("ab").join("abcd");
    let lines = vec![
        (rec_line("0", "s", "x"), vec![]),
        (rec_line("1", "s", "y"), vec![lost]),
        (rec_line("2", "s", "z"), vec![]),
    ];
    let (committer, rx, waiters) = queued(&dir, lines);
    let positions = committer.positions.clone();
    committer.run(rx);
    for mut w in waiters {
        let err = w.try_recv().expect("every waiter is answered").unwrap_err();
        assert!(err.0.contains("abcd"), "{err}");
    }
    assert_eq!(fs::metadata(dir.join(FileJournal::FILE)).unwrap().len(), 0);
    assert_eq!(positions.lock().unwrap().spans.len(), 0);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_closed_queue_ends_the_committer_after_it_commits_what_was_queued() {
    let dir = tmp("drain");
    let blobs = BlobStore::new(dir.join("objects"));
    let a = Artifact::text_plain("kept");
    blobs.put(a.id(), a.data(), false).unwrap();
    let lines = (0..3)
        .map(|i| (rec_line(&i.to_string(), "s", "kept"), vec![blobs.path_of(a.id())]))
        .collect();
    let (committer, rx, waiters) = queued(&dir, lines);
    let commits = committer.commits.clone();
    // Returns, rather than waiting for more: the test would hang otherwise.
    committer.run(rx);
    for mut w in waiters {
        w.try_recv().expect("answered").expect("committed");
    }
    assert_eq!(commits.load(AtomicOrdering::Relaxed), 1, "one batch, one commit");
    assert_eq!(
        FileJournal::read_records(&dir.join(FileJournal::FILE)).unwrap().len(),
        3
    );
    let _ = fs::remove_dir_all(&dir);
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_journal_syncing_its_file_system_records_and_reads_back() {
    let dir = tmp("syncfs");
    let job = Job::new([("i", 1)]);
    {
        let j = FileJournal::open_with(&dir, true, SyncMethod::FileSystem).unwrap();
        j.record(&job, "s", "in", &[Artifact::text_plain("fs")]).await.unwrap();
    }
    let j = FileJournal::open(&dir, true).unwrap();
    assert_eq!(
        j.lookup(&job, "s", "in").await.unwrap().into_done().unwrap()[0].text(),
        Some("fs")
    );
    let _ = fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_live_reader_gets_each_committed_record_as_the_file_holds_it_and_the_latest_one() {
    let dir = tmp("live");
    let j = FileJournal::open(&dir, false).unwrap();
    let live = j.live_records();
    // A float that a shortest-digits print and a fast parse could disagree on.
    let job = Job::new([
        ("weight", serde_json::json!(0.1 + 0.2)),
        ("product", serde_json::json!("mug")),
    ]);
    assert!(live.get(job.key(), "hero").unwrap().is_none(), "nothing committed yet");
    j.record(&job, "hero", "in", &[Artifact::text_plain("one")])
        .await
        .unwrap();
    j.record(&job, "hero", "in2", &[Artifact::text_plain("two")])
        .await
        .unwrap();
    let path = dir.join(FileJournal::FILE);
    let from_file = FileJournal::index(&path)
        .unwrap()
        .get(job.key(), "hero")
        .unwrap()
        .unwrap();
    assert_eq!(
        from_file.outputs[0].id,
        Artifact::text_plain("two").id().clone(),
        "the latest"
    );
    // Kept in memory as committed: taken once, equal to the file's.
    let kept = live.get(job.key(), "hero").unwrap().unwrap();
    assert_eq!(kept, from_file);
    assert!(j.recent.take(&key_of(job.key(), "hero")).is_none(), "taken");
    // Then read back from the file, the same again.
    assert_eq!(live.get(job.key(), "hero").unwrap().unwrap(), from_file);
    assert!(live.get(job.key(), "other").unwrap().is_none());
    let _ = fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn records_are_kept_for_a_live_reader_only_up_to_the_bound() {
    let dir = tmp("bound");
    let j = FileJournal::open(&dir, false).unwrap();
    let jobs: Vec<Job> = (0..Recent::MAX + 3).map(|i| Job::new([("i", i)])).collect();
    // No reader: nothing is kept.
    j.record(&jobs[0], "s", "in", &[]).await.unwrap();
    assert!(j.recent.records.lock().unwrap().is_empty());
    let live = j.live_records();
    for job in &jobs {
        j.record(job, "s", "in", &[]).await.unwrap();
    }
    assert_eq!(j.recent.records.lock().unwrap().len(), Recent::MAX);
    // Every record is still there for the reader, from memory or the file.
    for job in &jobs {
        assert_eq!(live.get(job.key(), "s").unwrap().unwrap().job, job.key());
    }
    assert!(j.recent.records.lock().unwrap().is_empty());
    let _ = fs::remove_dir_all(&dir);
}
