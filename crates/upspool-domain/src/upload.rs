//! The upload engine: resumable upload sessions fed with byte-range segments, in any order and
//! several at once.
//!
//! The promise is "acknowledged means durable": a segment's new bytes are written positionally
//! into the session's blob, synced, then its range is committed in the metadata store, and only
//! then answered. A request that fails anywhere before the commit (bad length, overlap with
//! different bytes, client gone) leaves no trace in the committed ranges; bytes it may have
//! written sit in claimed-but-uncommitted positions that count as never received.
//!
//! Completion is the commit that covers the last missing byte: the same transaction completes
//! the session, the document and the job. The blob already is the document; nothing is copied.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::access::Operation;
use crate::content_range::{self, ContentRange};
use crate::coordinator::Claim;
use crate::error::{DomainError, Result};
use crate::model::{
    BlobKey, Document, JobId, JobState, JobStateDetail, SessionState, UploadSession,
};
use crate::principal::Principal;
use crate::range_set::{ByteRange, RangeSet};
use crate::service::{JobScope, PrintService};
use crate::store::{BlobHandle, BlockBuffer, CommitOutcome, Completion};
use crate::token;

/// A request body as a stream of chunks. The HTTP layer adapts its body type to this; an
/// error of kind `TimedOut` means the client went idle ([`DomainError::BodyTimeout`]).
pub type BodyStream = BoxStream<'static, std::io::Result<Bytes>>;

/// Bytes are gathered into buffers of this size before each positional write or comparison:
/// large enough to keep syscalls per segment low, small enough that memory per request stays
/// a fixed, small amount whatever the document size.
pub const IO_BUFFER: usize = 256 * 1024;

/// Hooks for measuring the upload path (the HTTP layer turns them into metrics).
pub trait UploadObserver: Send + Sync {
    /// `bytes` new bytes were written in `took`.
    fn written(&self, bytes: u64, took: std::time::Duration);
    /// A segment's bytes were synced in `took`.
    fn synced(&self, took: std::time::Duration);
    /// A segment's range was committed to the metadata store in `took` (waiting for a shared
    /// group commit included): with `synced`, what an acknowledgement costs besides the body.
    fn committed(&self, took: std::time::Duration);
    /// A segment's body was streamed to the byte store, `waits` saying what the request
    /// waited for meanwhile: the split that shows whether the socket or the disk bounds it.
    fn streamed(&self, waits: StreamWaits);
    /// A block was gathered for an aligned write, into memory the store lent (`lent`) or,
    /// when it had none to spare, the engine's own: a rising count of the latter means the
    /// store's pool is too small for the uploads streaming at once.
    fn gathered(&self, lent: bool);
}

/// Where one segment's streaming time went (see [`UploadObserver::streamed`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamWaits {
    /// Waiting for the body while the store had room for another write: the client, the
    /// socket or the request's own copying bounded it.
    pub body: std::time::Duration,
    /// Waiting for a write to finish with the most writes in flight, and for the last writes
    /// after the body ended: the store bounded it.
    pub store: std::time::Duration,
}

/// `printDocumentUploadProperties`, already checked for JSON types by the HTTP layer.
#[derive(Clone, Debug)]
pub struct UploadProperties {
    pub document_name: String,
    pub content_type: String,
    pub size: u64,
}

/// A new session and the secret to put in its upload URL (shown once, stored only hashed).
#[derive(Clone, Debug)]
pub struct NewSession {
    pub session: UploadSession,
    pub token: String,
    pub missing: Vec<ByteRange>,
}

/// What `GET {uploadUrl}` and a `202` report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub expires: DateTime<Utc>,
    pub missing: Vec<ByteRange>,
}

#[derive(Clone, Debug)]
pub enum SegmentOutcome {
    /// Recorded; bytes are still missing (`202`).
    Accepted(SessionStatus),
    /// Every byte is there (`201`), now or already (a replay during the grace period).
    Completed(Document),
}

/// How a segment names its session.
pub enum SegmentTarget<'a> {
    /// `PUT {uploadUrl}`: the session id and its `tempauthtoken`.
    Url { session: Uuid, token: &'a str },
    /// The draft form, `POST .../documents/{id}/uploadSession/$value` with `If-Match`.
    IfMatch {
        who: &'a Principal,
        scope: JobScope,
        job: JobId,
        document: Uuid,
        if_match: Option<&'a str>,
    },
}

/// One segment request, as received.
pub struct Segment<'a> {
    pub content_range: Option<&'a str>,
    /// The `Content-Length` header, when the body is not chunked.
    pub content_length: Option<u64>,
    pub body: BodyStream,
}

/// Accepts a MIME type of the form `type/subtype` with token characters, parameters allowed.
fn valid_mime(s: &str) -> bool {
    let essence = s.split(';').next().unwrap_or("").trim();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    s.len() <= 255
        && essence
            .split_once('/')
            .is_some_and(|(t, st)| token(t) && token(st))
}

fn to_chrono(d: std::time::Duration) -> ChronoDuration {
    ChronoDuration::from_std(d).unwrap_or(ChronoDuration::MAX)
}

impl PrintService {
    /// createUploadSession: a new session for a document that is not uploaded yet. A newer
    /// session replaces an older one, whose URL answers 404 from then on.
    pub async fn create_upload_session(
        &self,
        who: &Principal,
        scope: JobScope,
        job_id: JobId,
        document_id: Uuid,
        props: UploadProperties,
    ) -> Result<NewSession> {
        let (job, document) = self
            .document_for(who, Operation::UploadDocument, scope, job_id, document_id)
            .await?;
        if props.size == 0 {
            return Err(DomainError::InvalidRequest(
                "properties.size must be an integer of at least 1".into(),
            ));
        }
        if props.size > self.limits.max_document_size {
            return Err(DomainError::MaxFileSizeExceeded {
                size: props.size,
                max: self.limits.max_document_size,
            });
        }
        if !valid_mime(&props.content_type) {
            return Err(DomainError::InvalidRequest(format!(
                "properties.contentType '{}' is not a valid MIME type such as 'application/pdf'",
                props.content_type
            )));
        }
        if props.document_name.chars().count() > 256
            || props.document_name.chars().any(char::is_control)
        {
            return Err(DomainError::InvalidRequest(
                "properties.documentName must be at most 256 characters without control characters"
                    .into(),
            ));
        }
        if document.uploaded.is_some() {
            return Err(DomainError::InvalidRequest(
                "The document has already been uploaded; an upload session can no longer be created."
                    .into(),
            ));
        }
        if job.status.state != JobState::Paused
            || !job.status.details.contains(&JobStateDetail::UploadPending)
        {
            return Err(DomainError::InvalidRequest(format!(
                "The print job is {} and no longer accepts an upload.",
                job.status.state
            )));
        }

        let now = Utc::now();
        let id = Uuid::new_v4();
        let (secret, token_hash) = token::generate();
        let session = UploadSession {
            id,
            document_id,
            job_id,
            document_name: props.document_name,
            content_type: props.content_type,
            size: props.size,
            token_hash,
            blob: BlobKey::for_session(id),
            created: now,
            expires: now + to_chrono(self.limits.session_ttl.min(self.limits.session_hard_cap)),
            state: SessionState::Active,
        };
        self.blobs.create(&session.blob, session.size).await?;
        let replaced = match self.meta.replace_upload_session(&session).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self.blobs.delete(&session.blob).await;
                return Err(e.into());
            }
        };
        for old in replaced {
            self.sessions.forget(old.id);
            tracing::info!(session = %old.id, by = %id, "upload session replaced");
            self.delete_blob_logged(&old.blob).await;
        }
        // A new session has received nothing, and its row is the one just stored: its first
        // segment need not read either back.
        let slot = self.sessions.slot(id);
        slot.load(RangeSet::new());
        slot.remember(&session);
        tracing::info!(session = %id, job = job_id, size = session.size, "upload session created");
        let missing = RangeSet::new().complement(session.size);
        Ok(NewSession {
            session,
            token: secret,
            missing,
        })
    }

    /// Finds a session answering at `now`, checking its URL token.
    async fn live_session(&self, id: Uuid, token: &str) -> Result<(UploadSession, RangeSet)> {
        let (session, ranges) = self
            .meta
            .get_upload_session(id)
            .await?
            .ok_or(DomainError::UploadSessionNotFound)?;
        Ok((check_live(session, token)?, ranges))
    }

    /// `GET {uploadUrl}`: what is still missing. Does not extend the expiry.
    pub async fn session_status(&self, id: Uuid, token: &str) -> Result<SessionStatus> {
        let (session, ranges) = self.live_session(id, token).await?;
        Ok(status_of(&session, &ranges))
    }

    /// `DELETE {uploadUrl}`: an active session is discarded with its bytes (the job stays
    /// waiting for an upload); a completed one just ends its replay grace.
    pub async fn delete_session(&self, id: Uuid, token: &str) -> Result<()> {
        let (session, _) = self.live_session(id, token).await?;
        self.discard_session(&session).await
    }

    /// Deletes a session; its bytes go too unless they became the document.
    pub(crate) async fn discard_session(&self, session: &UploadSession) -> Result<()> {
        let deleted = self.meta.delete_upload_session(session.id).await?;
        self.sessions.forget(session.id);
        if let Some(s) = deleted {
            if s.state == SessionState::Active {
                self.delete_blob_logged(&s.blob).await;
            }
            tracing::info!(session = %s.id, "upload session deleted");
        }
        Ok(())
    }

    pub(crate) async fn delete_blob_logged(&self, key: &BlobKey) {
        if let Err(e) = self.blobs.delete(key).await {
            tracing::warn!(blob = %key.0, error = %e, "could not delete bytes; the sweeper will not retry");
        }
    }

    /// Resolves the draft form's `If-Match` to the document's current session.
    async fn session_by_if_match(
        &self,
        who: &Principal,
        scope: JobScope,
        job: JobId,
        document: Uuid,
        if_match: Option<&str>,
    ) -> Result<(UploadSession, RangeSet)> {
        let (_, doc) = self
            .document_for(who, Operation::UploadDocument, scope, job, document)
            .await?;
        let wanted = if_match
            .map(|v| v.trim().trim_matches('"').to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                DomainError::InvalidRequest(
                    "The If-Match header is required and must carry the upload session id.".into(),
                )
            })?;
        let current = self
            .meta
            .session_of_document(doc.id)
            .await?
            .filter(|s| s.is_live(Utc::now()))
            .ok_or(DomainError::UploadSessionNotFound)?;
        if wanted != "*" && !wanted.eq_ignore_ascii_case(&current.id.to_string()) {
            return Err(DomainError::PreconditionFailed(format!(
                "If-Match names upload session '{wanted}', which is not the document's active session."
            )));
        }
        self.meta
            .get_upload_session(current.id)
            .await?
            .ok_or(DomainError::UploadSessionNotFound)
    }

    /// Receives one segment. See the module docs for the durability rules; the order of the
    /// checks decides which error a client sees and follows the reference's §8.3.
    pub async fn put_segment(
        self: &Arc<Self>,
        target: SegmentTarget<'_>,
        segment: Segment<'_>,
    ) -> Result<SegmentOutcome> {
        // Whether the session's row came from its slot instead of the store (see `cached`).
        let mut cached = false;
        let session = match target {
            SegmentTarget::Url { session, token } => {
                match self.cached_session(session, token) {
                    Some(row) => {
                        cached = true;
                        row
                    }
                    // The ranges are not needed here (the engine's slot has them): one read.
                    None => {
                        let found = self.meta.get_upload_session_only(session).await?;
                        check_live(found.ok_or(DomainError::UploadSessionNotFound)?, token)?
                    }
                }
            }
            SegmentTarget::IfMatch {
                who,
                scope,
                job,
                document,
                if_match,
            } => {
                self.session_by_if_match(who, scope, job, document, if_match)
                    .await?
                    .0
            }
        };
        let range = self.check_range(&session, &segment)?;
        match session.state {
            SessionState::Completed { .. } => self.replay(&session, range, segment).await,
            SessionState::Active => {
                // Receiving runs in its own task so that it always finishes: if the caller's
                // future were dropped mid-write (client gone), a blocking write could still land
                // after the claim was released, on bytes another request then owns.
                let (this, id) = (Arc::clone(self), session.id);
                let received =
                    tokio::spawn(async move { this.receive(&session, range, segment.body).await })
                        .await
                        .map_err(|e| DomainError::Internal(format!("segment task failed: {e}")))?;
                match received {
                    Err(e) if cached => Err(self.judge_with_fresh_row(id, e).await),
                    done => done,
                }
            }
        }
    }

    /// The session's row from its slot, if a recent request here left it there and it is
    /// live with this token; `None` sends the caller to the store. It saves each segment of
    /// an upload after the first a read; a copy gone stale (the session was deleted along
    /// with its printer, or by another process) is caught by the commit, which checks the
    /// session in its transaction, or by [`Self::judge_with_fresh_row`].
    fn cached_session(&self, id: Uuid, token: &str) -> Option<UploadSession> {
        self.sessions
            .cached(id)
            .and_then(|row| check_live(row, token).ok())
    }

    /// A request that used a kept row failed with `error`: the row is dropped, and if the
    /// store no longer has the session live, the answer is that it is gone (as a request
    /// that read the store first would have been told), not whatever its bytes met on the way
    /// (a blob deleted with its printer, say).
    async fn judge_with_fresh_row(&self, id: Uuid, error: DomainError) -> DomainError {
        self.sessions.forget(id);
        match self.meta.get_upload_session_only(id).await {
            Ok(Some(row)) if row.is_live(Utc::now()) => error,
            Ok(_) => DomainError::UploadSessionNotFound,
            Err(_) => error,
        }
    }

    /// Steps 4 to 8 of §8.3: the range must parse, match the session and fit the limits.
    fn check_range(&self, session: &UploadSession, segment: &Segment<'_>) -> Result<ByteRange> {
        let header = segment.content_range.ok_or_else(|| {
            DomainError::InvalidRequest(
                "The Content-Range header is required, as 'bytes {start}-{end}/{total}'.".into(),
            )
        })?;
        let ContentRange { start, end, total } = content_range::parse(header).map_err(|e| {
            DomainError::InvalidRequest(format!("Invalid Content-Range '{header}': {e}."))
        })?;
        if total != session.size {
            return Err(DomainError::FragmentLengthMismatch(format!(
                "The Content-Range total {total} differs from the session's declared size {}.",
                session.size
            )));
        }
        let range = ByteRange::new(start, end)
            .filter(|r| r.end < total)
            .ok_or_else(|| {
                DomainError::InvalidRequest(format!(
                    "Invalid Content-Range '{header}': need start <= end < total."
                ))
            })?;
        if range.len() > self.limits.max_segment_size {
            return Err(DomainError::MaxFragmentLengthExceeded {
                len: range.len(),
                max: self.limits.max_segment_size,
            });
        }
        match segment.content_length {
            // An empty body is a replay form for completed sessions; judged there.
            Some(0) if matches!(session.state, SessionState::Completed { .. }) => Ok(range),
            Some(n) if n != range.len() => Err(DomainError::FragmentLengthMismatch(format!(
                "The body has {n} bytes but Content-Range '{header}' names {}.",
                range.len()
            ))),
            _ => Ok(range),
        }
    }

    /// A segment for an active session: claim, stream, sync, commit.
    async fn receive(
        &self,
        session: &UploadSession,
        range: ByteRange,
        body: BodyStream,
    ) -> Result<SegmentOutcome> {
        let slot = self.sessions.slot(session.id);
        if !slot.is_loaded() {
            let _commit = slot.commit.lock().await;
            if !slot.is_loaded() {
                let (_, ranges) = self
                    .meta
                    .get_upload_session(session.id)
                    .await?
                    .ok_or(DomainError::UploadSessionNotFound)?;
                slot.load(ranges);
            }
        }
        slot.remember(session);
        let claim = slot.claim(range).await;
        let max = self.limits.max_session_ranges;
        if max > 0 && slot.would_exceed(range, max as usize) {
            return Err(DomainError::TooManyRanges { max });
        }
        let handle = self.blobs.open(&session.blob).await?;
        // Segments of more than one block get their space up front (a single block's write
        // finds a full disk just as early, without the extra call).
        for r in claim.new.iter().filter(|r| r.len() > IO_BUFFER as u64) {
            handle.allocate(r.start, r.len()).await?;
        }
        let observer = self.observer.get().map(Arc::as_ref);
        let wrote = stream_segment(handle.as_ref(), range, &claim, body, observer).await?;
        if wrote {
            let started = std::time::Instant::now();
            handle.sync().await?;
            if let Some(o) = observer {
                o.synced(started.elapsed());
            }
        }

        let now = Utc::now();
        let expires = (now + to_chrono(self.limits.session_ttl))
            .min(session.created + to_chrono(self.limits.session_hard_cap));
        // Applied by the store only if this commit covers the last missing byte.
        let completion = Completion {
            document: Document {
                id: session.document_id,
                job_id: session.job_id,
                display_name: session.document_name.clone(),
                content_type: session.content_type.clone(),
                size: session.size,
                uploaded: Some(now),
                downloaded: None,
                blob: Some(session.blob.clone()),
            },
            completed_at: now,
            grace_until: now + to_chrono(self.limits.replay_grace),
        };
        // No per-session lock around the commit: the store decides completion inside the
        // transaction, so concurrent segments of one session can share a grouped commit.
        let started = std::time::Instant::now();
        let outcome = self
            .meta
            .commit_segment(session.id, range, expires, Some(&completion))
            .await?;
        if let Some(o) = observer {
            o.committed(started.elapsed());
        }
        match outcome {
            CommitOutcome::SessionGone => {
                drop(claim);
                self.sessions.forget(session.id);
                self.after_session_gone(session.id).await
            }
            CommitOutcome::Committed(received) => {
                {
                    let _commit = slot.commit.lock().await;
                    slot.record(range, expires);
                }
                drop(claim);
                // Answer from the state this commit saw: a concurrent commit applied after it
                // may complete the session, and that request alone answers 201 (§8.3 step 11).
                Ok(SegmentOutcome::Accepted(SessionStatus {
                    expires,
                    missing: received.complement(session.size),
                }))
            }
            CommitOutcome::Completed => {
                {
                    let _commit = slot.commit.lock().await;
                    slot.record(range, expires);
                }
                drop(claim);
                // Later requests are replays, judged without the slot.
                self.sessions.forget(session.id);
                tracing::info!(session = %session.id, job = session.job_id, size = session.size, "upload completed");
                Ok(SegmentOutcome::Completed(completion.document))
            }
        }
    }

    /// The commit found the session no longer active. If another request completed it
    /// meanwhile, this request's bytes were all compared equal to stored ones (it could claim
    /// no new bytes, or the session could not have completed), so it is a replay: answer with
    /// the document. Otherwise the session was deleted, replaced or canceled.
    async fn after_session_gone(&self, id: Uuid) -> Result<SegmentOutcome> {
        match self.meta.get_upload_session(id).await? {
            Some((s, _))
                if matches!(s.state, SessionState::Completed { .. }) && s.is_live(Utc::now()) =>
            {
                let document = self
                    .meta
                    .get_document(s.document_id)
                    .await?
                    .ok_or(DomainError::UploadSessionNotFound)?;
                Ok(SegmentOutcome::Completed(document))
            }
            _ => Err(DomainError::UploadSessionNotFound),
        }
    }

    /// A segment for a completed session, during the replay grace: the same bytes (or an
    /// empty body) are answered with the document again; different bytes are refused.
    async fn replay(
        &self,
        session: &UploadSession,
        range: ByteRange,
        segment: Segment<'_>,
    ) -> Result<SegmentOutcome> {
        let handle = self.blobs.open(&session.blob).await?;
        let mut blocks = Blocks::new(segment.body, range, None, None);
        while let Some(block) = blocks.next().await? {
            let stored = handle.read_at(block.at, block.len).await?;
            if stored != block.contiguous(0, block.len) {
                return Err(DomainError::FragmentOverlap);
            }
        }
        if blocks.got != 0 && blocks.got != range.len() {
            return Err(too_short(range, blocks.got));
        }
        let document = self
            .meta
            .get_document(session.document_id)
            .await?
            .ok_or(DomainError::UploadSessionNotFound)?;
        Ok(SegmentOutcome::Completed(document))
    }
}

/// `session`, if it answers at `now` and `token` is its URL token.
fn check_live(session: UploadSession, token: &str) -> Result<UploadSession> {
    if !session.is_live(Utc::now()) {
        return Err(DomainError::UploadSessionNotFound);
    }
    if !token::matches(token, &session.token_hash) {
        return Err(DomainError::Unauthenticated(
            "The upload URL's tempauthtoken is missing or invalid.".into(),
        ));
    }
    Ok(session)
}

fn status_of(session: &UploadSession, ranges: &RangeSet) -> SessionStatus {
    match &session.state {
        SessionState::Active => SessionStatus {
            expires: session.expires,
            missing: ranges.complement(session.size),
        },
        SessionState::Completed { grace_until, .. } => SessionStatus {
            expires: *grace_until,
            missing: vec![],
        },
    }
}

fn too_long(range: ByteRange) -> DomainError {
    DomainError::FragmentLengthMismatch(format!(
        "The body is longer than the {} bytes its Content-Range names.",
        range.len()
    ))
}

fn too_short(range: ByteRange, got: u64) -> DomainError {
    DomainError::FragmentLengthMismatch(format!(
        "The body has {got} bytes but its Content-Range names {}.",
        range.len()
    ))
}

/// Most chunks a block keeps as they arrived; past this the block is gathered into one buffer,
/// so that a body sent in tiny chunks neither pins many receive buffers nor needs more than a
/// few iovecs per write.
const MAX_PARTS: usize = 8;

/// Body bytes that belong at `at`, at most [`IO_BUFFER`] of them, kept in the chunks they
/// arrived in: writing them with one vectored write costs no copy, where gathering them into
/// one buffer first would copy every byte of every upload once more.
struct Block {
    at: u64,
    parts: Vec<Bytes>,
    len: usize,
}

impl Block {
    /// Bytes `from..from + len` of the block as slices of its parts (no copy).
    fn slices(&self, from: usize, len: usize) -> Vec<Bytes> {
        let (mut skip, mut left, mut out) = (from, len, Vec::new());
        for p in &self.parts {
            if left == 0 {
                break;
            }
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            let take = (p.len() - skip).min(left);
            out.push(p.slice(skip..skip + take));
            left -= take;
            skip = 0;
        }
        out
    }

    /// Bytes `from..from + len` in one buffer: a slice when one part holds them, else a copy
    /// (only overlap comparisons need this).
    fn contiguous(&self, from: usize, len: usize) -> Bytes {
        let mut slices = self.slices(from, len);
        if slices.len() == 1 {
            return slices.pop().expect("one slice");
        }
        let mut buf = BytesMut::with_capacity(len);
        for s in slices {
            buf.extend_from_slice(&s);
        }
        buf.freeze()
    }
}

/// Cuts a body into blocks, each with the offset it belongs at, refusing bodies longer than
/// their range. A block ends at the next multiple of [`IO_BUFFER`] in the blob (or where the
/// body ends), so consecutive segments' blocks line up with the same page boundaries however
/// the client cut them. The only memory a request holds is the block being cut (plus the
/// chunk being cut) and the blocks being written (see `stream_segment`).
struct Blocks<'h> {
    body: BodyStream,
    parts: Vec<Bytes>,
    len: usize,
    pending: Bytes,
    next_at: u64,
    range: ByteRange,
    /// Body bytes received so far.
    got: u64,
    done: bool,
    /// The store's [`BlobHandle::write_alignment`]: when set, each block is gathered into
    /// `gathered` instead of keeping its chunks.
    align: Option<usize>,
    /// The block being gathered and where in it the block's bytes start (the padding that
    /// gives its first byte the store's alignment).
    gathered: Option<(Gather, usize)>,
    /// The store, asked to lend memory for each gathered block ([`BlobHandle::block_buffer`]).
    lender: Option<&'h dyn BlobHandle>,
    /// Told where each gathered block's memory came from.
    observer: Option<&'h dyn UploadObserver>,
}

/// A block being gathered into one aligned buffer.
enum Gather {
    /// Memory the engine allocated.
    Own(BytesMut),
    /// Memory the store lent, and how much of it is filled (padding included).
    Lent(BlockBuffer, usize),
}

/// A lent buffer as the owner of a `Bytes`, so that it returns to the store when the last
/// slice of it is dropped (after its write).
struct LentBytes(BlockBuffer);

impl AsRef<[u8]> for LentBytes {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

impl Gather {
    /// Memory for a block of `want` bytes that belongs at `at`, and the padding before its
    /// first byte that gives it `align`: lent by the store when it has some to spare.
    fn new(lender: Option<&dyn BlobHandle>, at: u64, want: usize, align: usize) -> (Gather, usize) {
        let pad_for = |ptr: *const u8| (at as usize % align + align - ptr as usize % align) % align;
        if let Some(mem) = lender.and_then(|h| h.block_buffer()) {
            let buf: &[u8] = (*mem).as_ref();
            let pad = pad_for(buf.as_ptr());
            // A store's buffer too small for this block is not used (never expected).
            if buf.len() >= pad + want {
                return (Gather::Lent(mem, pad), pad);
            }
        }
        // Room for the padding and a whole block, so the buffer never moves.
        let mut buf = BytesMut::with_capacity(want + align);
        let pad = pad_for(buf.as_ptr());
        buf.resize(pad, 0);
        (Gather::Own(buf), pad)
    }

    fn extend(&mut self, piece: &[u8]) {
        match self {
            Gather::Own(buf) => buf.extend_from_slice(piece),
            Gather::Lent(mem, filled) => {
                (**mem).as_mut()[*filled..*filled + piece.len()].copy_from_slice(piece);
                *filled += piece.len();
            }
        }
    }

    /// The gathered bytes after the padding.
    fn freeze(self, pad: usize) -> Bytes {
        match self {
            Gather::Own(buf) => buf.freeze().slice(pad..),
            Gather::Lent(mem, filled) => Bytes::from_owner(LentBytes(mem)).slice(pad..filled),
        }
    }
}

impl<'h> Blocks<'h> {
    fn new(
        body: BodyStream,
        range: ByteRange,
        align: Option<usize>,
        lender: Option<&'h dyn BlobHandle>,
    ) -> Self {
        Blocks {
            body,
            parts: Vec::new(),
            len: 0,
            pending: Bytes::new(),
            next_at: range.start,
            range,
            got: 0,
            done: false,
            // Alignment only helps for powers of two up to a block, which is what stores use.
            align: align.filter(|a| a.is_power_of_two() && *a > 1 && *a <= IO_BUFFER),
            gathered: None,
            lender,
            observer: None,
        }
    }

    fn observed_by(mut self, observer: Option<&'h dyn UploadObserver>) -> Self {
        self.observer = observer;
        self
    }

    /// The length of a full block starting at `next_at`: up to the next `IO_BUFFER` boundary.
    fn full_len(&self) -> usize {
        IO_BUFFER - (self.next_at % IO_BUFFER as u64) as usize
    }

    async fn next(&mut self) -> Result<Option<Block>> {
        loop {
            let want = self.full_len();
            if !self.pending.is_empty() {
                let take = (want - self.len).min(self.pending.len());
                let piece = self.pending.split_to(take);
                self.add(piece);
                self.len += take;
            }
            let full = self.len == want;
            let last = self.done && self.pending.is_empty() && self.len > 0;
            if full || last {
                let block = Block {
                    at: self.next_at,
                    parts: self.take_parts(),
                    len: std::mem::take(&mut self.len),
                };
                self.next_at += block.len as u64;
                return Ok(Some(block));
            }
            if self.done {
                return Ok(None);
            }
            match self.body.next().await {
                None => self.done = true,
                Some(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Err(DomainError::BodyTimeout(format!(
                        "{e}; nothing from this request was recorded"
                    )))
                }
                Some(Err(e)) => return Err(DomainError::BodyAborted(e.to_string())),
                Some(Ok(chunk)) => {
                    self.got += chunk.len() as u64;
                    if self.got > self.range.len() {
                        return Err(too_long(self.range));
                    }
                    self.pending = chunk;
                }
            }
        }
    }

    /// Adds `piece` to the block being cut: copied into the aligned buffer when the store
    /// asked for one, else kept as it arrived.
    fn add(&mut self, piece: Bytes) {
        if let Some(align) = self.align {
            let (at, want, lender, observer) =
                (self.next_at, self.full_len(), self.lender, self.observer);
            let (buf, _) = self.gathered.get_or_insert_with(|| {
                let gather = Gather::new(lender, at, want, align);
                if let Some(o) = observer {
                    o.gathered(matches!(gather.0, Gather::Lent(..)));
                }
                gather
            });
            buf.extend(&piece);
            return;
        }
        if self.parts.len() == MAX_PARTS {
            self.gather();
        }
        self.parts.push(piece);
    }

    /// The block's bytes, ready to be written.
    fn take_parts(&mut self) -> Vec<Bytes> {
        match self.gathered.take() {
            Some((buf, pad)) => vec![buf.freeze(pad)],
            None => std::mem::take(&mut self.parts),
        }
    }

    /// Copies the parts gathered so far into one buffer with room for a whole block.
    fn gather(&mut self) {
        let mut buf = BytesMut::with_capacity(IO_BUFFER);
        for p in self.parts.drain(..) {
            buf.extend_from_slice(&p);
        }
        self.parts.push(buf.freeze());
    }
}

/// Most blocks of one request being written at once to a store that asked for aligned
/// blocks: it writes them without the page cache, so each write waits for the disk, and a few
/// in flight keep the disk busy while the next block is received. A buffered store's write
/// returns once the page cache has the bytes, so one at a time keeps up with the socket (and
/// its blocks pin received chunks). A request holds at most this many blocks plus the one
/// being cut. Eight: on a disk that flushes quickly the request's own receiving leaves gaps
/// between a write finishing and the next starting, which a deeper queue hides (BENCHMARKS.md,
/// tenth round); each more costs a block of memory per streaming request.
const ALIGNED_WRITES_IN_FLIGHT: usize = 8;

/// Streams the body: new bytes are written, bytes already committed are compared. Returns
/// whether anything was written.
///
/// Blocks are received while earlier ones are written (see [`ALIGNED_WRITES_IN_FLIGHT`]),
/// so the socket copy and the disk write run at the same time instead of taking turns.
/// Every write started is awaited, even when the body or another write fails meanwhile, so
/// no write outlives the claim on its range.
async fn stream_segment(
    handle: &dyn BlobHandle,
    range: ByteRange,
    claim: &Claim,
    body: BodyStream,
    observer: Option<&dyn UploadObserver>,
) -> Result<bool> {
    use futures_util::future::{select, Either};
    use futures_util::stream::FuturesUnordered;

    let mut blocks =
        Blocks::new(body, range, handle.write_alignment(), Some(handle)).observed_by(observer);
    let in_flight = match blocks.align {
        Some(_) => ALIGNED_WRITES_IN_FLIGHT,
        None => 1,
    };
    let mut writes = FuturesUnordered::new();
    let (mut wrote, mut failure, mut receiving) = (false, None, true);
    let mut waits = StreamWaits::default();
    let mut finished = |done: Result<u64>, failure: &mut Option<DomainError>| match done {
        Ok(n) => wrote |= n > 0,
        Err(e) => {
            failure.get_or_insert(e);
        }
    };
    loop {
        if receiving && failure.is_none() && writes.len() < in_flight {
            let started = std::time::Instant::now();
            let received = {
                let mut receive = std::pin::pin!(blocks.next());
                loop {
                    if writes.is_empty() {
                        break Some(receive.await);
                    }
                    match select(receive.as_mut(), writes.next()).await {
                        Either::Left((received, _)) => break Some(received),
                        Either::Right((done, _)) => {
                            finished(done.expect("a write was pending"), &mut failure);
                            // A failed write: the rest of the body is not needed.
                            if failure.is_some() {
                                break None;
                            }
                        }
                    }
                }
            };
            waits.body += started.elapsed();
            match received {
                Some(Ok(Some(block))) => writes.push(write_block(handle, block, claim, observer)),
                Some(Ok(None)) => receiving = false,
                Some(Err(e)) => {
                    failure.get_or_insert(e);
                }
                None => {}
            }
        } else {
            let started = std::time::Instant::now();
            let done = writes.next().await;
            waits.store += started.elapsed();
            match done {
                Some(done) => finished(done, &mut failure),
                None => break,
            }
        }
    }
    if let Some(o) = observer {
        o.streamed(waits);
    }
    if let Some(e) = failure {
        return Err(e);
    }
    if blocks.got != range.len() {
        return Err(too_short(range, blocks.got));
    }
    Ok(wrote)
}

/// Writes (or compares) one block, reporting the written bytes to the observer.
async fn write_block(
    handle: &dyn BlobHandle,
    block: Block,
    claim: &Claim,
    observer: Option<&dyn UploadObserver>,
) -> Result<u64> {
    let started = std::time::Instant::now();
    let written = flush(handle, &block, claim).await?;
    if let Some(o) = observer.filter(|_| written > 0) {
        o.written(written, started.elapsed());
    }
    Ok(written)
}

/// Handles `block`: parts in the claim's new ranges are written, parts in its existing ranges
/// must equal what is stored. Returns how many bytes were written.
async fn flush(handle: &dyn BlobHandle, block: &Block, claim: &Claim) -> Result<u64> {
    let span = ByteRange::new(block.at, block.at + block.len as u64 - 1).expect("non-empty block");
    for r in claim.existing.iter().filter_map(|r| r.intersect(&span)) {
        let from = (r.start - block.at) as usize;
        let stored = handle.read_at(r.start, r.len() as usize).await?;
        if stored != block.contiguous(from, r.len() as usize) {
            return Err(DomainError::FragmentOverlap);
        }
    }
    let mut wrote = 0;
    for r in claim.new.iter().filter_map(|r| r.intersect(&span)) {
        let from = (r.start - block.at) as usize;
        handle
            .write_parts_at(r.start, block.slices(from, r.len() as usize))
            .await?;
        wrote += r.len();
    }
    Ok(wrote)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `body` as a request body arriving in chunks of `size` bytes.
    fn chunked(body: &[u8], size: usize) -> BodyStream {
        let chunks: Vec<_> = body
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        futures_util::stream::iter(chunks).boxed()
    }

    /// Blocks cover the body exactly, in order, at most `IO_BUFFER` each, and keep the
    /// received chunks' memory: no byte is copied while fewer than `MAX_PARTS` chunks make a
    /// block.
    #[tokio::test]
    async fn blocks_cut_bodies_without_copying_the_chunks() {
        let body: Vec<u8> = (0..(900 * 1024 + 17)).map(|i| (i % 251) as u8).collect();
        let mut chunks = vec![Bytes::copy_from_slice(&body[..100 * 1024])];
        chunks.push(Bytes::copy_from_slice(&body[100 * 1024..800 * 1024]));
        // The tail in 64 KiB chunks, as hyper delivers bodies.
        chunks.extend(
            body[800 * 1024..]
                .chunks(64 * 1024)
                .map(Bytes::copy_from_slice),
        );
        let owned: Vec<std::ops::Range<*const u8>> =
            chunks.iter().map(|c| c.as_ptr_range()).collect();
        let stream: BodyStream =
            futures_util::stream::iter(chunks.clone().into_iter().map(Ok)).boxed();
        let range = ByteRange::new(1000, 1000 + body.len() as u64 - 1).unwrap();
        let mut blocks = Blocks::new(stream, range, None, None);
        let (mut next, mut seen) = (1000, Vec::new());
        while let Some(block) = blocks.next().await.unwrap() {
            assert_eq!(block.at, next);
            assert!(block.len > 0 && block.len <= IO_BUFFER);
            assert_eq!(block.len, block.parts.iter().map(Bytes::len).sum::<usize>());
            for p in &block.parts {
                assert!(
                    owned.iter().any(|o| o.contains(&p.as_ptr())),
                    "a part is a received chunk's memory, not a copy"
                );
            }
            next += block.len as u64;
            seen.extend_from_slice(&block.contiguous(0, block.len));
        }
        assert_eq!(seen, body);
        assert_eq!(blocks.got, body.len() as u64);
    }

    /// A body in tiny chunks is gathered, so a block never holds more than `MAX_PARTS`.
    #[tokio::test]
    async fn tiny_chunks_are_gathered() {
        let body: Vec<u8> = (0..(300 * 1024)).map(|i| (i % 249) as u8).collect();
        let stream: BodyStream = chunked(&body, 1000);
        let range = ByteRange::new(0, body.len() as u64 - 1).unwrap();
        let mut blocks = Blocks::new(stream, range, None, None);
        let mut seen = Vec::new();
        while let Some(block) = blocks.next().await.unwrap() {
            assert!(block.parts.len() <= MAX_PARTS);
            for (from, len) in [(0, block.len), (block.len / 3, block.len / 2)] {
                let sliced: Vec<u8> = block.slices(from, len).concat();
                assert_eq!(sliced, &block.contiguous(0, block.len)[from..from + len]);
            }
            seen.extend_from_slice(&block.contiguous(0, block.len));
        }
        assert_eq!(seen, body);
    }

    /// For a store that asks for aligned memory, each block is one buffer whose address is
    /// congruent to its blob offset, and blocks end on `IO_BUFFER` boundaries of the blob
    /// whatever offset the segment starts at.
    #[tokio::test]
    async fn aligned_blocks_line_up_with_the_blob() {
        let body: Vec<u8> = (0..(3 * IO_BUFFER + 5000))
            .map(|i| (i % 247) as u8)
            .collect();
        let stream: BodyStream = chunked(&body, 64 * 1024 + 3);
        let start = 4096 * 3 + 100;
        let range = ByteRange::new(start, start + body.len() as u64 - 1).unwrap();
        let mut blocks = Blocks::new(stream, range, Some(4096), None);
        let (mut next, mut seen) = (start, Vec::new());
        while let Some(block) = blocks.next().await.unwrap() {
            assert_eq!(block.at, next);
            assert_eq!(block.parts.len(), 1, "one gathered buffer");
            assert_eq!(block.parts[0].as_ptr() as u64 % 4096, block.at % 4096);
            let end = block.at + block.len as u64;
            assert!(
                end.is_multiple_of(IO_BUFFER as u64) || end == range.end + 1,
                "block {}..{end} ends off a boundary",
                block.at
            );
            next = end;
            seen.extend_from_slice(&block.parts[0]);
        }
        assert_eq!(seen, body);
    }

    /// Gathered blocks go into the memory a store lends while it has some to spare (each
    /// aligned as for its own buffers), into the engine's own after that, and lent memory goes
    /// back once its block is dropped.
    #[tokio::test]
    async fn gathered_blocks_use_the_memory_a_store_lends() {
        use crate::store::BlobError;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Mutex;

        struct Mem(Vec<u8>, Arc<AtomicUsize>);
        impl AsRef<[u8]> for Mem {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl AsMut<[u8]> for Mem {
            fn as_mut(&mut self) -> &mut [u8] {
                &mut self.0
            }
        }
        impl crate::store::BlockMemory for Mem {}
        impl Drop for Mem {
            fn drop(&mut self) {
                self.1.fetch_add(1, Ordering::SeqCst);
            }
        }
        /// Lends two buffers (unaligned, with room for the padding), then none.
        #[derive(Default)]
        struct Lender {
            lent: Mutex<Vec<std::ops::Range<usize>>>,
            back: Arc<AtomicUsize>,
        }
        #[async_trait::async_trait]
        impl BlobHandle for Lender {
            async fn write_at(&self, _: u64, _: Bytes) -> std::result::Result<(), BlobError> {
                unreachable!("blocks are only cut here")
            }
            async fn read_at(&self, _: u64, _: usize) -> std::result::Result<Bytes, BlobError> {
                unreachable!("blocks are only cut here")
            }
            async fn sync(&self) -> std::result::Result<(), BlobError> {
                unreachable!("blocks are only cut here")
            }
            fn block_buffer(&self) -> Option<BlockBuffer> {
                let mut lent = self.lent.lock().unwrap();
                if lent.len() == 2 {
                    return None;
                }
                let mem = Mem(vec![0; IO_BUFFER + 4096], self.back.clone());
                let at = mem.0.as_ptr() as usize;
                lent.push(at..at + mem.0.len());
                Some(Box::new(mem))
            }
        }

        let body: Vec<u8> = (0..(3 * IO_BUFFER + 5000))
            .map(|i| (i % 241) as u8)
            .collect();
        let stream: BodyStream = chunked(&body, 64 * 1024 + 7);
        let start = 4096 * 5 + 300;
        let range = ByteRange::new(start, start + body.len() as u64 - 1).unwrap();
        /// Counts where gathered blocks' memory came from.
        #[derive(Default)]
        struct Counts(AtomicUsize, AtomicUsize);
        impl UploadObserver for Counts {
            fn written(&self, _: u64, _: std::time::Duration) {}
            fn synced(&self, _: std::time::Duration) {}
            fn committed(&self, _: std::time::Duration) {}
            fn streamed(&self, _: StreamWaits) {}
            fn gathered(&self, lent: bool) {
                let n = if lent { &self.0 } else { &self.1 };
                n.fetch_add(1, Ordering::SeqCst);
            }
        }
        let counts = Counts::default();
        let lender = Lender::default();
        let mut blocks =
            Blocks::new(stream, range, Some(4096), Some(&lender)).observed_by(Some(&counts));
        let mut kept = Vec::new();
        while let Some(block) = blocks.next().await.unwrap() {
            assert_eq!(block.parts.len(), 1, "one gathered buffer");
            assert_eq!(block.parts[0].as_ptr() as u64 % 4096, block.at % 4096);
            kept.push(block);
        }
        let in_lent = |b: &Block| {
            let at = b.parts[0].as_ptr() as usize;
            let lent = lender.lent.lock().unwrap();
            lent.iter()
                .any(|r| r.contains(&at) && r.contains(&(at + b.len - 1)))
        };
        let lent: Vec<bool> = kept.iter().map(in_lent).collect();
        assert_eq!(lent, [true, true, false, false]);
        let told = (
            counts.0.load(Ordering::SeqCst),
            counts.1.load(Ordering::SeqCst),
        );
        assert_eq!(told, (2, 2), "the observer hears of each block's memory");
        let seen: Vec<u8> = kept.iter().flat_map(|b| b.parts[0].to_vec()).collect();
        assert_eq!(seen, body);
        assert_eq!(
            lender.back.load(Ordering::SeqCst),
            0,
            "kept while their blocks live"
        );
        drop(kept);
        assert_eq!(lender.back.load(Ordering::SeqCst), 2, "both given back");
    }

    #[test]
    fn mime_types_need_type_and_subtype() {
        assert!(valid_mime("application/pdf"));
        assert!(valid_mime("application/oxps"));
        assert!(valid_mime("text/plain; charset=utf-8"));
        assert!(!valid_mime("pdf"));
        assert!(!valid_mime("application/"));
        assert!(!valid_mime("a b/c"));
        assert!(!valid_mime(""));
    }
}
