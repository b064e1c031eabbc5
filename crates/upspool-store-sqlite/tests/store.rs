//! The SQLite store against the `MetadataStore` contract, on real database files.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tempfile::TempDir;
use upspool_domain::configuration::{
    DuplexMode, Finishing, IntegerRange, PrintJobConfiguration, PrintMargin,
};
use upspool_domain::model::{
    BlobKey, Document, DownloadGrant, Job, JobState, JobStateDetail, JobStatus, Printer,
    SessionState, Share, UploadSession, UserIdentity,
};
use upspool_domain::range_set::{ByteRange, RangeSet};
use upspool_domain::store::{CommitOutcome, Completion, JobQuery, MetadataStore, StoreError};
use upspool_store_sqlite::SqliteStore;
use uuid::Uuid;

/// A fixed instant plus `secs`, with nanoseconds so that lossy timestamp storage shows.
fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + secs, 123_456_789).unwrap()
}

fn r(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end).unwrap()
}

async fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("meta.db"))
        .await
        .unwrap();
    (dir, store)
}

fn printer(name: &str, created: DateTime<Utc>) -> Printer {
    Printer {
        id: Uuid::new_v4(),
        display_name: name.into(),
        manufacturer: Some("Contoso".into()),
        model: None,
        created,
    }
}

fn job(printer: Uuid, created: DateTime<Utc>, upn: Option<&str>) -> Job {
    Job {
        id: 0,
        printer_id: printer,
        share_id: None,
        created,
        created_by: UserIdentity {
            id: "user-1".into(),
            display_name: Some("User One".into()),
            user_principal_name: upn.map(Into::into),
        },
        status: JobStatus::upload_pending(),
        configuration: PrintJobConfiguration::default(),
        display_name: None,
        is_fetchable: false,
        error_code: 0,
        acknowledged: None,
        completed: None,
    }
}

async fn add_job(store: &SqliteStore, printer: Uuid, created: DateTime<Utc>) -> (Job, Document) {
    store
        .create_job(job(printer, created, None), Document::empty(0))
        .await
        .unwrap()
}

fn session(job: &Job, document: &Document, size: u64, expires: DateTime<Utc>) -> UploadSession {
    let id = Uuid::new_v4();
    UploadSession {
        id,
        document_id: document.id,
        job_id: job.id,
        document_name: "report.pdf".into(),
        content_type: "application/pdf".into(),
        size,
        token_hash: vec![7; 32],
        blob: BlobKey::for_session(id),
        created: at(0),
        expires,
        state: SessionState::Active,
    }
}

/// A printer with one job, its document and an active session of `size` bytes.
async fn uploading(store: &SqliteStore, size: u64) -> (Printer, Job, Document, UploadSession) {
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let (j, d) = add_job(store, p.id, at(1)).await;
    let s = session(&j, &d, size, at(100));
    assert!(store.replace_upload_session(&s).await.unwrap().is_empty());
    (p, j, d, s)
}

fn completion(session: &UploadSession, document: &Document) -> Completion {
    Completion {
        document: Document {
            display_name: session.document_name.clone(),
            content_type: session.content_type.clone(),
            size: session.size,
            uploaded: Some(at(50)),
            blob: Some(session.blob.clone()),
            ..document.clone()
        },
        completed_at: at(50),
        grace_until: at(650),
    }
}

#[tokio::test]
async fn printers_and_shares_round_trip() {
    let (_dir, store) = open().await;
    store.ping().await.unwrap();
    let late = printer("Late", at(10));
    let early = Printer {
        model: Some("X1".into()),
        manufacturer: None,
        ..printer("Early", at(5))
    };
    store.insert_printer(&late).await.unwrap();
    store.insert_printer(&early).await.unwrap();
    assert_eq!(
        store.get_printer(early.id).await.unwrap(),
        Some(early.clone())
    );
    assert_eq!(store.get_printer(Uuid::new_v4()).await.unwrap(), None);
    assert_eq!(
        store.list_printers().await.unwrap(),
        vec![early.clone(), late.clone()]
    );

    let share = Share {
        id: Uuid::new_v4(),
        display_name: "Floor 2".into(),
        printer_id: late.id,
        allow_all_users: true,
        created: at(20),
    };
    let other = Share {
        id: Uuid::new_v4(),
        allow_all_users: false,
        created: at(15),
        ..share.clone()
    };
    store.insert_share(&share).await.unwrap();
    store.insert_share(&other).await.unwrap();
    assert_eq!(
        store.get_share(share.id).await.unwrap(),
        Some(share.clone())
    );
    assert_eq!(
        store.list_shares().await.unwrap(),
        vec![other.clone(), share.clone()]
    );

    // Jobs outlive the share they came through.
    let (j, _) = store
        .create_job(
            Job {
                share_id: Some(share.id),
                ..job(late.id, at(30), None)
            },
            Document::empty(0),
        )
        .await
        .unwrap();
    assert!(store.delete_share(share.id).await.unwrap());
    assert!(!store.delete_share(share.id).await.unwrap());
    assert_eq!(store.get_share(share.id).await.unwrap(), None);
    let kept = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(kept.share_id, Some(share.id));
}

#[tokio::test]
async fn constraint_violations_are_conflicts() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let dup = store.insert_printer(&p).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");
    let orphan = Share {
        id: Uuid::new_v4(),
        display_name: "S".into(),
        printer_id: Uuid::new_v4(),
        allow_all_users: false,
        created: at(0),
    };
    let fk = store.insert_share(&orphan).await.unwrap_err();
    assert!(matches!(fk, StoreError::Conflict(_)), "{fk:?}");
}

#[tokio::test]
async fn jobs_and_documents_round_trip() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let configuration = PrintJobConfiguration {
        copies: Some(3),
        duplex_mode: Some(DuplexMode::FlipOnShortEdge),
        finishings: Some(vec![Finishing::StapleTopLeft, Finishing::Punch]),
        page_ranges: Some(vec![IntegerRange {
            start: 2,
            end: 5,
            odata_type: None,
        }]),
        margin: Some(PrintMargin {
            top: Some(500),
            ..PrintMargin::default()
        }),
        media_size: Some("A4".into()),
        ..PrintJobConfiguration::default()
    };
    let input = Job {
        id: 999,
        share_id: Some(Uuid::new_v4()),
        configuration,
        display_name: Some("Quarterly".into()),
        status: JobStatus {
            state: JobState::Processing,
            details: vec![JobStateDetail::Interpreting, JobStateDetail::Transforming],
            is_acquired_by_printer: true,
        },
        is_fetchable: true,
        error_code: -7,
        acknowledged: Some(at(3)),
        completed: Some(at(4)),
        ..job(p.id, at(2), Some("Someone@Example.com"))
    };
    let doc = Document {
        display_name: "a.pdf".into(),
        content_type: "application/pdf".into(),
        size: 5 * 1024 * 1024 * 1024,
        uploaded: Some(at(5)),
        downloaded: None,
        blob: Some(BlobKey("s-x".into())),
        ..Document::empty(12345)
    };
    let (j, d) = store.create_job(input.clone(), doc.clone()).await.unwrap();
    assert_ne!(j.id, 999, "the store assigns the id");
    assert_eq!(j, Job { id: j.id, ..input });
    assert_eq!(
        d,
        Document {
            job_id: j.id,
            ..doc
        }
    );
    assert_eq!(store.get_job(j.id).await.unwrap(), Some(j.clone()));
    assert_eq!(store.get_job(j.id + 1000).await.unwrap(), None);
    assert_eq!(store.documents_of_job(j.id).await.unwrap(), vec![d.clone()]);
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(store.get_document(Uuid::new_v4()).await.unwrap(), None);
    // Both in one read: the document whichever job it belongs to (the caller checks), and
    // nothing at all without the job.
    let (other, other_doc) = add_job(&store, p.id, at(6)).await;
    assert_eq!(
        store.get_job_document(j.id, d.id).await.unwrap(),
        Some((j.clone(), Some(d.clone())))
    );
    assert_eq!(
        store.get_job_document(other.id, d.id).await.unwrap(),
        Some((other.clone(), Some(d.clone())))
    );
    assert_eq!(
        store.get_job_document(j.id, Uuid::new_v4()).await.unwrap(),
        Some((j.clone(), None))
    );
    assert_eq!(
        store
            .get_job_document(j.id + 1000, other_doc.id)
            .await
            .unwrap(),
        None
    );

    store.mark_document_downloaded(d.id, at(8)).await.unwrap();
    store.mark_document_downloaded(d.id, at(9)).await.unwrap();
    let got = store.get_document(d.id).await.unwrap().unwrap();
    assert_eq!(
        got.downloaded,
        Some(at(8)),
        "the first download time is kept"
    );
    store.clear_document_blob(d.id).await.unwrap();
    assert_eq!(store.get_document(d.id).await.unwrap().unwrap().blob, None);
}

#[tokio::test]
async fn job_ids_increase_and_never_repeat() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(add_job(&store, p.id, at(i)).await.0.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let (last_job, last_doc) = (ids[2], store.documents_of_job(ids[2]).await.unwrap());
    assert_eq!(store.delete_printer(p.id).await.unwrap(), Some(vec![]));
    assert_eq!(store.get_job(last_job).await.unwrap(), None);
    assert_eq!(store.get_document(last_doc[0].id).await.unwrap(), None);

    let q = printer("Q", at(0));
    store.insert_printer(&q).await.unwrap();
    let next = add_job(&store, q.id, at(9)).await.0.id;
    assert!(
        next > last_job,
        "{next} must not reuse an id up to {last_job}"
    );
}

#[tokio::test]
async fn list_jobs_filters_orders_and_pages() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    let other = printer("Other", at(0));
    store.insert_printer(&p).await.unwrap();
    store.insert_printer(&other).await.unwrap();
    // Two jobs share a creation time: the id breaks the tie.
    let specs = [
        (at(30), Some("alice@example.com")),
        (at(10), Some("BOB@example.com")),
        (at(20), Some("Alice@Example.com")),
        (at(20), None),
    ];
    let mut jobs = Vec::new();
    for (created, upn) in specs {
        let (j, _) = store
            .create_job(job(p.id, created, upn), Document::empty(0))
            .await
            .unwrap();
        jobs.push(j);
    }
    add_job(&store, other.id, at(1)).await;
    let ids = |v: Vec<Job>| v.into_iter().map(|j| j.id).collect::<Vec<_>>();
    let base = JobQuery {
        printer_id: p.id,
        top: 100,
        ..JobQuery::default()
    };

    let ascending = vec![jobs[1].id, jobs[2].id, jobs[3].id, jobs[0].id];
    assert_eq!(ids(store.list_jobs(&base).await.unwrap()), ascending);
    let descending: Vec<_> = ascending.iter().rev().copied().collect();
    let desc = JobQuery {
        descending: true,
        ..base.clone()
    };
    assert_eq!(ids(store.list_jobs(&desc).await.unwrap()), descending);

    // Paging walks the same order without gaps or repeats.
    let mut paged = Vec::new();
    for page in 0..3 {
        let q = JobQuery {
            skip: page * 2,
            top: 2,
            ..desc.clone()
        };
        paged.extend(ids(store.list_jobs(&q).await.unwrap()));
    }
    assert_eq!(paged, descending);
    let none = JobQuery {
        top: 0,
        ..base.clone()
    };
    assert!(store.list_jobs(&none).await.unwrap().is_empty());
    let far = JobQuery {
        skip: u64::MAX,
        ..base.clone()
    };
    assert!(store.list_jobs(&far).await.unwrap().is_empty());

    let alice = JobQuery {
        created_by_upn: Some("ALICE@example.COM".into()),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list_jobs(&alice).await.unwrap()),
        vec![jobs[2].id, jobs[0].id]
    );
    let prefix = JobQuery {
        created_by_upn: Some("alice".into()),
        ..base.clone()
    };
    assert!(
        store.list_jobs(&prefix).await.unwrap().is_empty(),
        "exact match only"
    );

    let pending = JobStatus {
        state: JobState::Pending,
        details: vec![],
        is_acquired_by_printer: false,
    };
    store
        .transition_job(jobs[3].id, &[JobState::Paused], &pending, true)
        .await
        .unwrap()
        .unwrap();
    let by_state = JobQuery {
        state: Some(JobState::Pending),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list_jobs(&by_state).await.unwrap()),
        vec![jobs[3].id]
    );
    let fetchable = JobQuery {
        is_fetchable: Some(true),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list_jobs(&fetchable).await.unwrap()),
        vec![jobs[3].id]
    );
    let not_fetchable = JobQuery {
        is_fetchable: Some(false),
        state: Some(JobState::Paused),
        created_by_upn: Some("bob@example.com".into()),
        ..base.clone()
    };
    assert_eq!(
        ids(store.list_jobs(&not_fetchable).await.unwrap()),
        vec![jobs[1].id]
    );
}

#[tokio::test]
async fn transition_job_is_compare_and_set() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let (j, _) = add_job(&store, p.id, at(1)).await;
    let processing = JobStatus {
        state: JobState::Processing,
        details: vec![JobStateDetail::Interpreting],
        is_acquired_by_printer: true,
    };

    // Wrong expected state: nothing changes.
    let refused = store
        .transition_job(
            j.id,
            &[JobState::Pending, JobState::Stopped],
            &processing,
            true,
        )
        .await
        .unwrap();
    assert_eq!(refused, None);
    assert_eq!(store.get_job(j.id).await.unwrap(), Some(j.clone()));
    assert_eq!(
        store
            .transition_job(j.id, &[], &processing, true)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store
            .transition_job(j.id + 1, &[JobState::Paused], &processing, true)
            .await
            .unwrap(),
        None
    );

    let moved = store
        .transition_job(
            j.id,
            &[JobState::Pending, JobState::Paused],
            &processing,
            true,
        )
        .await
        .unwrap()
        .unwrap();
    let expected = Job {
        status: processing.clone(),
        is_fetchable: true,
        ..j.clone()
    };
    assert_eq!(moved, expected);
    assert_eq!(store.get_job(j.id).await.unwrap(), Some(expected));
    // The same CAS cannot apply twice.
    assert_eq!(
        store
            .transition_job(j.id, &[JobState::Paused], &processing, false)
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn commit_segment_records_ranges_and_moves_expiry() {
    let (_dir, store) = open().await;
    let (_, j, d, s) = uploading(&store, 100).await;
    assert!(matches!(
        store
            .commit_segment(s.id, r(0, 9), at(200), None)
            .await
            .unwrap(),
        CommitOutcome::Committed(_)
    ));
    // The answer carries the ranges as the commit saw them: the earlier one included.
    assert_eq!(
        store
            .commit_segment(s.id, r(20, 29), at(300), None)
            .await
            .unwrap(),
        CommitOutcome::Committed(upspool_domain::range_set::RangeSet::from_ranges([
            r(0, 9),
            r(20, 29)
        ]))
    );
    let (got, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(
        got,
        UploadSession {
            expires: at(300),
            ..s.clone()
        }
    );
    assert_eq!(ranges, RangeSet::from_ranges([r(0, 9), r(20, 29)]));
    assert_eq!(store.session_of_document(d.id).await.unwrap(), Some(got));
    // Nothing else moved.
    assert_eq!(store.get_job(j.id).await.unwrap(), Some(j));
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(d));
    assert_eq!(
        store.get_upload_session(Uuid::new_v4()).await.unwrap(),
        None
    );
    assert_eq!(
        store.session_of_document(Uuid::new_v4()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn commit_segment_with_completion_completes_session_document_and_job() {
    let (_dir, store) = open().await;
    let (_, j, d, s) = uploading(&store, 100).await;
    // Another detail must survive the removal of uploadPending.
    let paused = JobStatus {
        state: JobState::Paused,
        details: vec![JobStateDetail::UploadPending, JobStateDetail::ReleaseWait],
        is_acquired_by_printer: false,
    };
    store
        .transition_job(j.id, &[JobState::Paused], &paused, false)
        .await
        .unwrap()
        .unwrap();
    store
        .commit_segment(s.id, r(0, 49), at(200), None)
        .await
        .unwrap();
    let c = completion(&s, &d);
    assert_eq!(
        store
            .commit_segment(s.id, r(50, 99), at(300), Some(&c))
            .await
            .unwrap(),
        CommitOutcome::Completed
    );

    let (got, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(
        got.state,
        SessionState::Completed {
            at: at(50),
            grace_until: at(650)
        }
    );
    assert_eq!(got.expires, at(300));
    assert!(ranges.covers(100));
    assert_eq!(
        store.get_document(d.id).await.unwrap(),
        Some(c.document.clone())
    );
    let job = store.get_job(j.id).await.unwrap().unwrap();
    assert_eq!(job.status.state, JobState::Paused);
    assert_eq!(job.status.details, vec![JobStateDetail::ReleaseWait]);

    // Completed: later commits are refused and record nothing.
    assert_eq!(
        store
            .commit_segment(s.id, r(0, 0), at(400), None)
            .await
            .unwrap(),
        CommitOutcome::SessionGone
    );
    let (after, _) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(after.expires, at(300));
}

/// Completion is decided by the store: a commit offering a completion completes only when the
/// recorded ranges then cover the whole size, whichever commit that turns out to be.
#[tokio::test]
async fn commit_segment_completes_only_once_every_byte_is_recorded() {
    let (_dir, store) = open().await;
    let (_, j, d, s) = uploading(&store, 100).await;
    let c = completion(&s, &d);
    for range in [r(50, 99), r(0, 9), r(20, 49)] {
        assert!(matches!(
            store
                .commit_segment(s.id, range, at(200), Some(&c))
                .await
                .unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
    let (active, _) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(active.state, SessionState::Active);
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(d.clone()));
    assert_eq!(
        store
            .commit_segment(s.id, r(5, 24), at(300), Some(&c))
            .await
            .unwrap(),
        CommitOutcome::Completed
    );
    let (done, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert!(matches!(done.state, SessionState::Completed { .. }));
    assert!(ranges.covers(100));
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(c.document));
    let job = store.get_job(j.id).await.unwrap().unwrap();
    assert!(!job.status.details.contains(&JobStateDetail::UploadPending));
}

#[tokio::test]
async fn commit_segment_on_a_gone_session_records_nothing() {
    let (_dir, store) = open().await;
    let (_, j, d, s) = uploading(&store, 100).await;
    store
        .commit_segment(s.id, r(0, 9), at(200), None)
        .await
        .unwrap();
    let deleted = store.delete_upload_session(s.id).await.unwrap();
    assert_eq!(
        deleted,
        Some(UploadSession {
            expires: at(200),
            ..s.clone()
        })
    );
    assert_eq!(store.delete_upload_session(s.id).await.unwrap(), None);
    assert_eq!(
        store
            .commit_segment(s.id, r(10, 19), at(300), None)
            .await
            .unwrap(),
        CommitOutcome::SessionGone
    );
    let c = completion(&s, &d);
    assert_eq!(
        store
            .commit_segment(s.id, r(10, 99), at(300), Some(&c))
            .await
            .unwrap(),
        CommitOutcome::SessionGone
    );
    assert_eq!(store.get_upload_session(s.id).await.unwrap(), None);
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(d.clone()));

    // A session whose job was canceled is gone too, even before anyone deletes it.
    let s2 = session(&j, &d, 100, at(100));
    store.replace_upload_session(&s2).await.unwrap();
    let canceled = JobStatus {
        state: JobState::Canceled,
        details: vec![],
        is_acquired_by_printer: false,
    };
    store
        .transition_job(j.id, &[JobState::Paused], &canceled, false)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .commit_segment(s2.id, r(0, 99), at(300), Some(&completion(&s2, &d)))
            .await
            .unwrap(),
        CommitOutcome::SessionGone
    );
    let (still, ranges) = store.get_upload_session(s2.id).await.unwrap().unwrap();
    assert_eq!(still, s2);
    assert!(ranges.is_empty());
    assert_eq!(store.get_document(d.id).await.unwrap(), Some(d));
}

#[tokio::test]
async fn concurrent_commits_are_all_recorded() {
    let (_dir, store) = open().await;
    let store = Arc::new(store);
    let (_, _, _, s) = uploading(&store, 16 * 10).await;
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                // Odd/even interleaving so that no two neighbours arrive in order.
                let k = (i * 7) % 16;
                store
                    .commit_segment(s.id, r(k * 10, k * 10 + 9), at(200 + i as i64), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), CommitOutcome::Committed(_)));
    }
    let (_, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(ranges.ranges(), &[r(0, 159)]);
}

/// Ranges are stored merged, one row per disjoint run of bytes however many segments made
/// it, so reading a session's ranges does not grow with its segment count.
#[tokio::test]
async fn committed_ranges_are_stored_merged() {
    let (dir, store) = open().await;
    let (_, _, _, s) = uploading(&store, 1000).await;
    for (a, b) in [
        (20, 29),
        (0, 9),
        (10, 19),
        (40, 49),
        (60, 69),
        (45, 62),
        (999, 999),
        // Inside a stored range, equal to one, touching one's end.
        (22, 25),
        (0, 29),
        (70, 70),
    ] {
        let CommitOutcome::Committed(received) = store
            .commit_segment(s.id, r(a, b), at(200), None)
            .await
            .unwrap()
        else {
            panic!("{a}-{b} did not commit");
        };
        // The answer is the stored state right after this commit.
        let (_, stored) = store.get_upload_session(s.id).await.unwrap().unwrap();
        assert_eq!(received, stored, "after {a}-{b}");
    }
    let (_, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(ranges.ranges(), &[r(0, 29), r(40, 70), r(999, 999)]);

    let raw = rusqlite::Connection::open(dir.path().join("meta.db")).unwrap();
    let mut stmt = raw
        .prepare("SELECT start, end_incl FROM session_ranges WHERE session_id = ? ORDER BY start")
        .unwrap();
    let rows: Vec<(i64, i64)> = stmt
        .query_map([s.id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, vec![(0, 29), (40, 70), (999, 999)]);
}

#[tokio::test]
async fn replace_upload_session_returns_old_sessions_and_drops_their_ranges() {
    let (_dir, store) = open().await;
    let (_, j, d, s1) = uploading(&store, 100).await;
    store
        .commit_segment(s1.id, r(0, 9), at(200), None)
        .await
        .unwrap();
    let s2 = session(&j, &d, 100, at(500));
    let replaced = store.replace_upload_session(&s2).await.unwrap();
    assert_eq!(
        replaced,
        vec![UploadSession {
            expires: at(200),
            ..s1.clone()
        }]
    );
    assert_eq!(store.get_upload_session(s1.id).await.unwrap(), None);
    assert_eq!(
        store.session_of_document(d.id).await.unwrap(),
        Some(s2.clone())
    );
    let (_, ranges) = store.get_upload_session(s2.id).await.unwrap().unwrap();
    assert!(ranges.is_empty());
    assert_eq!(
        store
            .commit_segment(s1.id, r(10, 19), at(300), None)
            .await
            .unwrap(),
        CommitOutcome::SessionGone
    );
    assert!(matches!(
        store
            .commit_segment(s2.id, r(10, 19), at(300), None)
            .await
            .unwrap(),
        CommitOutcome::Committed(_)
    ));
}

#[tokio::test]
async fn sessions_to_sweep_picks_expired_and_ended_sessions_only() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let make = |expires, completed: Option<(i64, i64)>| {
        let store = &store;
        async move {
            let (j, d) = add_job(store, p.id, at(1)).await;
            let mut s = session(&j, &d, 10, expires);
            store.replace_upload_session(&s).await.unwrap();
            if let Some((done, grace)) = completed {
                let c = Completion {
                    completed_at: at(done),
                    grace_until: at(grace),
                    ..completion(&s, &d)
                };
                let out = store
                    .commit_segment(s.id, r(0, 9), expires, Some(&c))
                    .await
                    .unwrap();
                assert_eq!(out, CommitOutcome::Completed);
                s.state = SessionState::Completed {
                    at: at(done),
                    grace_until: at(grace),
                };
            }
            s
        }
    };
    let now = at(1000);
    let expired = make(at(999), None).await;
    let live = make(at(1001), None).await;
    let exactly_now = make(now, None).await;
    let ended = make(at(2000), Some((900, 999))).await;
    let in_grace = make(at(500), Some((900, 1500))).await;

    let mut swept = store.sessions_to_sweep(now, 100).await.unwrap();
    swept.sort_by_key(|s| s.id);
    let mut want = vec![expired.clone(), ended.clone()];
    want.sort_by_key(|s| s.id);
    assert_eq!(swept, want);
    for kept in [&live, &exactly_now, &in_grace] {
        assert!(!swept.iter().any(|s| s.id == kept.id));
    }
    assert_eq!(store.sessions_to_sweep(now, 1).await.unwrap().len(), 1);
    assert!(store
        .sessions_to_sweep(at(0), 100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn delete_printer_returns_blob_keys_and_removes_everything() {
    let (_dir, store) = open().await;
    assert_eq!(store.delete_printer(Uuid::new_v4()).await.unwrap(), None);
    let (p, j, d, s) = uploading(&store, 10).await;
    let c = completion(&s, &d);
    store
        .commit_segment(s.id, r(0, 9), at(200), Some(&c))
        .await
        .unwrap();
    // A second job with a partial upload, and a job of another printer that must survive.
    let (j2, d2) = add_job(&store, p.id, at(2)).await;
    let s2 = session(&j2, &d2, 10, at(100));
    store.replace_upload_session(&s2).await.unwrap();
    let other = printer("Other", at(0));
    store.insert_printer(&other).await.unwrap();
    let (j3, d3) = add_job(&store, other.id, at(3)).await;
    let s3 = session(&j3, &d3, 10, at(100));
    store.replace_upload_session(&s3).await.unwrap();
    let grant = DownloadGrant {
        id: Uuid::new_v4(),
        document_id: d.id,
        token_hash: vec![1, 2, 3],
        expires: at(900),
    };
    store.insert_download_grant(&grant).await.unwrap();
    store
        .insert_share(&Share {
            id: Uuid::new_v4(),
            display_name: "S".into(),
            printer_id: p.id,
            allow_all_users: true,
            created: at(0),
        })
        .await
        .unwrap();

    let mut keys = store.delete_printer(p.id).await.unwrap().unwrap();
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![s.blob.clone(), s2.blob.clone()];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        keys, want,
        "each key once, the completed document's included"
    );

    assert_eq!(store.get_printer(p.id).await.unwrap(), None);
    assert!(store.list_shares().await.unwrap().is_empty());
    assert_eq!(store.get_job(j.id).await.unwrap(), None);
    assert_eq!(store.get_document(d2.id).await.unwrap(), None);
    assert_eq!(store.get_upload_session(s2.id).await.unwrap(), None);
    assert_eq!(store.get_download_grant(grant.id).await.unwrap(), None);
    assert!(store.get_upload_session(s3.id).await.unwrap().is_some());
    assert!(store.get_job(j3.id).await.unwrap().is_some());
    assert_eq!(store.delete_printer(p.id).await.unwrap(), None);
}

#[tokio::test]
async fn download_grants_round_trip_and_expire() {
    let (_dir, store) = open().await;
    let (_, _, d, _) = uploading(&store, 10).await;
    let grant = |expires| DownloadGrant {
        id: Uuid::new_v4(),
        document_id: d.id,
        token_hash: vec![0xAB; 32],
        expires,
    };
    let old = grant(at(10));
    let fresh = grant(at(30));
    store.insert_download_grant(&old).await.unwrap();
    store.insert_download_grant(&fresh).await.unwrap();
    assert_eq!(
        store.get_download_grant(old.id).await.unwrap(),
        Some(old.clone())
    );
    assert_eq!(
        store.delete_expired_download_grants(at(20)).await.unwrap(),
        1
    );
    assert_eq!(store.get_download_grant(old.id).await.unwrap(), None);
    assert_eq!(
        store.get_download_grant(fresh.id).await.unwrap(),
        Some(fresh)
    );
    assert_eq!(
        store.delete_expired_download_grants(at(20)).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn blobs_of_ended_jobs_lists_canceled_and_aborted_documents_with_bytes() {
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let mut docs = Vec::new();
    for (i, end) in [
        Some(JobState::Canceled),
        Some(JobState::Aborted),
        Some(JobState::Completed),
        None,
        Some(JobState::Canceled),
    ]
    .into_iter()
    .enumerate()
    {
        let (j, d) = add_job(&store, p.id, at(i as i64)).await;
        let s = session(&j, &d, 10, at(100));
        store.replace_upload_session(&s).await.unwrap();
        // The last job's upload never completed: no document bytes to report.
        if i != 4 {
            let c = completion(&s, &d);
            store
                .commit_segment(s.id, r(0, 9), at(100), Some(&c))
                .await
                .unwrap();
        }
        if let Some(state) = end {
            let status = JobStatus {
                state,
                details: vec![],
                is_acquired_by_printer: false,
            };
            store
                .transition_job(j.id, &[JobState::Paused], &status, false)
                .await
                .unwrap()
                .unwrap();
        }
        docs.push((d.id, s.blob));
    }
    let found = store.blobs_of_ended_jobs(100).await.unwrap();
    assert_eq!(found, vec![docs[0].clone(), docs[1].clone()]);
    assert_eq!(store.blobs_of_ended_jobs(1).await.unwrap().len(), 1);
    store.clear_document_blob(docs[0].0).await.unwrap();
    assert_eq!(
        store.blobs_of_ended_jobs(100).await.unwrap(),
        vec![docs[1].clone()]
    );
}

#[tokio::test]
async fn everything_survives_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.path(), path);
    let (p, j, d, s) = uploading(&store, 100).await;
    store
        .commit_segment(s.id, r(0, 9), at(200), None)
        .await
        .unwrap();
    store
        .commit_segment(s.id, r(40, 49), at(210), None)
        .await
        .unwrap();
    let share = Share {
        id: Uuid::new_v4(),
        display_name: "S".into(),
        printer_id: p.id,
        allow_all_users: false,
        created: at(7),
    };
    store.insert_share(&share).await.unwrap();
    let grant = DownloadGrant {
        id: Uuid::new_v4(),
        document_id: d.id,
        token_hash: vec![9; 32],
        expires: at(900),
    };
    store.insert_download_grant(&grant).await.unwrap();
    let j = store.get_job(j.id).await.unwrap().unwrap();
    store.close().await;
    drop(store);

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.list_printers().await.unwrap(), vec![p.clone()]);
    assert_eq!(store.list_shares().await.unwrap(), vec![share]);
    assert_eq!(store.get_job(j.id).await.unwrap(), Some(j.clone()));
    assert_eq!(store.documents_of_job(j.id).await.unwrap(), vec![d]);
    let (got, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
    assert_eq!(
        got,
        UploadSession {
            expires: at(210),
            ..s
        }
    );
    assert_eq!(ranges, RangeSet::from_ranges([r(0, 9), r(40, 49)]));
    assert_eq!(
        store.get_download_grant(grant.id).await.unwrap(),
        Some(grant)
    );
    // The id counter survived too.
    let (next, _) = add_job(&store, p.id, at(8)).await;
    assert!(next.id > j.id);

    // Dropping without close() loses nothing committed either.
    drop(store);
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.get_job(next.id).await.unwrap(), Some(next));
}

/// Two stores on one file stand in for two processes: their writers meet in SQLite's lock
/// (BEGIN IMMEDIATE + busy timeout), not in one pool, and still lose nothing.
#[tokio::test]
async fn two_stores_on_one_file_commit_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    let a = Arc::new(SqliteStore::open(&path).await.unwrap());
    let b = Arc::new(SqliteStore::open(&path).await.unwrap());
    let (_, _, _, s) = uploading(&a, 32 * 10).await;
    let tasks: Vec<_> = (0..32u64)
        .map(|k| {
            let store = Arc::clone(if k % 2 == 0 { &a } else { &b });
            tokio::spawn(async move {
                store
                    .commit_segment(s.id, r(k * 10, k * 10 + 9), at(200), None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap(), CommitOutcome::Committed(_)));
    }
    for store in [&a, &b] {
        let (_, ranges) = store.get_upload_session(s.id).await.unwrap().unwrap();
        assert_eq!(ranges.ranges(), &[r(0, 319)]);
    }
}

#[tokio::test]
async fn share_access_lists_are_kept_per_share_and_go_with_it() {
    use upspool_domain::model::ShareMember;
    let (_dir, store) = open().await;
    let p = printer("P", at(0));
    store.insert_printer(&p).await.unwrap();
    let share = Share {
        id: Uuid::new_v4(),
        display_name: "S".into(),
        printer_id: p.id,
        allow_all_users: false,
        created: at(1),
    };
    store.insert_share(&share).await.unwrap();
    let alice = ShareMember::User("alice@example.com".into());
    let group = ShareMember::Group("g1".into());
    assert!(store.add_share_member(share.id, &alice).await.unwrap());
    assert!(
        store.add_share_member(share.id, &alice).await.unwrap(),
        "adding twice is a no-op"
    );
    assert!(store.add_share_member(share.id, &group).await.unwrap());
    let access = store.share_access(share.id).await.unwrap();
    assert_eq!(access.users, vec!["alice@example.com".to_string()]);
    assert_eq!(access.groups, vec!["g1".to_string()]);
    // A user and a group with the same id are different members.
    assert!(!store
        .remove_share_member(share.id, &ShareMember::Group("alice@example.com".into()))
        .await
        .unwrap());
    assert!(store.remove_share_member(share.id, &alice).await.unwrap());
    assert!(!store.remove_share_member(share.id, &alice).await.unwrap());
    // No list for a share that does not exist, and none left after deletion.
    let missing = Uuid::new_v4();
    assert!(!store.add_share_member(missing, &alice).await.unwrap());
    assert!(store.share_access(missing).await.unwrap().users.is_empty());
    assert!(store.delete_share(share.id).await.unwrap());
    // Re-created with the same id, the share starts with an empty list (the old one cascaded).
    store.insert_share(&share).await.unwrap();
    assert!(store
        .share_access(share.id)
        .await
        .unwrap()
        .groups
        .is_empty());
}
