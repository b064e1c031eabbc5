//! Per-session coordination of concurrent segment writes, in one process.
//!
//! Segments of one session are written concurrently; only short steps are serialised per
//! session: claiming the new bytes a request will write (so two requests never write the
//! same byte at once), judging overlaps against committed bytes, and recording a commit. A request
//! whose range touches bytes another request has claimed waits until that claim is committed
//! or abandoned, then is judged against the result.
//!
//! State lives while some request holds the session's slot, and for the [`KEEP_RECENT`] most
//! recently used sessions after that; a new slot reloads the committed ranges from the
//! metadata store, so nothing here needs to survive a restart. Keeping a slot is safe because
//! in one process every commit of a session's ranges goes through its slot (`record`), and a
//! session's ranges only ever grow until it is deleted.
//!
//! A slot also keeps the session's row as this process last read or committed it, so that a
//! client's next segment need not read it again ([`SessionCoordinator::cached`]). That copy is
//! only a shortcut: the commit checks the session in its own transaction, and the engine reads
//! the row again whenever a request using the copy fails (see `PrintService::put_segment`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::model::UploadSession;
use crate::range_set::{ByteRange, RangeSet};

/// Sessions whose slots stay loaded after their last request, so that a client sending one
/// segment at a time does not make every segment reload the committed ranges (a read
/// transaction of four statements). A slot is a few hundred bytes.
pub(crate) const KEEP_RECENT: usize = 64;

#[derive(Default)]
pub(crate) struct SessionCoordinator {
    slots: Mutex<Slots>,
}

#[derive(Default)]
struct Slots {
    by_id: HashMap<Uuid, Weak<Slot>>,
    /// The most recently used first, at most [`KEEP_RECENT`].
    recent: VecDeque<(Uuid, Arc<Slot>)>,
}

#[derive(Default)]
pub(crate) struct Slot {
    state: Mutex<SlotState>,
    /// Woken whenever claims are released.
    released: Notify,
    /// Held while loading committed ranges and while recording a commit, so that a load
    /// never overwrites a range recorded meanwhile. (Completion is decided by the store, in
    /// the committing transaction; commits themselves run unlocked.)
    pub(crate) commit: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SlotState {
    /// Committed ranges as known to this process; `None` until loaded from the store.
    received: Option<RangeSet>,
    /// Ranges being written by requests in flight.
    claimed: RangeSet,
    /// The session's row (an active session's), with the expiry of its last commit here.
    session: Option<UploadSession>,
}

/// What a request may do with its range once claimed.
pub(crate) struct Claim {
    slot: Arc<Slot>,
    /// Bytes nobody has: this request writes them.
    pub(crate) new: Vec<ByteRange>,
    /// Bytes already committed: this request only compares them.
    pub(crate) existing: Vec<ByteRange>,
}

impl SessionCoordinator {
    /// The slot of a session, shared by every request in flight for it (and kept a while
    /// after, see [`KEEP_RECENT`]).
    pub(crate) fn slot(&self, session: Uuid) -> Arc<Slot> {
        let mut slots = self.lock();
        let slot = match slots.by_id.get(&session).and_then(Weak::upgrade) {
            Some(slot) => slot,
            None => {
                if slots.by_id.len() >= 1024 {
                    slots.by_id.retain(|_, w| w.strong_count() > 0);
                }
                let slot = Arc::new(Slot::default());
                slots.by_id.insert(session, Arc::downgrade(&slot));
                slot
            }
        };
        if let Some(at) = slots.recent.iter().position(|(id, _)| *id == session) {
            slots.recent.remove(at);
        }
        slots.recent.push_front((session, Arc::clone(&slot)));
        slots.recent.truncate(KEEP_RECENT);
        slot
    }

    /// Stops keeping a session's slot (it completed or is gone); requests still holding it
    /// keep it until they end, but its row is no longer handed out.
    pub(crate) fn forget(&self, session: Uuid) {
        let mut slots = self.lock();
        slots.recent.retain(|(id, _)| *id != session);
        if let Some(slot) = slots.by_id.get(&session).and_then(Weak::upgrade) {
            slot.lock().session = None;
        }
    }

    /// The session's row as a loaded slot keeps it, without making or touching a slot.
    pub(crate) fn cached(&self, session: Uuid) -> Option<UploadSession> {
        let slot = self.lock().by_id.get(&session).and_then(Weak::upgrade)?;
        let row = slot.lock().session.clone();
        row
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().expect("coordinator lock poisoned")
    }
}

impl Slot {
    /// Whether committed ranges were loaded into this slot yet.
    pub(crate) fn is_loaded(&self) -> bool {
        self.lock().received.is_some()
    }

    /// Sets the committed ranges, read from the store while holding `commit`.
    pub(crate) fn load(&self, received: RangeSet) {
        self.lock().received.get_or_insert(received);
    }

    /// Whether committing `range` would make the received bytes fall into more than `max`
    /// separate ranges. Requests in flight are not counted, so a session can exceed `max` by
    /// at most the number of its concurrent requests.
    pub(crate) fn would_exceed(&self, range: ByteRange, max: usize) -> bool {
        self.lock()
            .received
            .as_ref()
            .is_some_and(|r| r.ranges().len() >= max && !r.touches(range))
    }

    /// Keeps `session`'s row for the next request (see [`SessionCoordinator::cached`]), with
    /// the later of its expiry and the one a commit here recorded meanwhile.
    pub(crate) fn remember(&self, session: &UploadSession) {
        let mut st = self.lock();
        let expires = st
            .session
            .as_ref()
            .map_or(session.expires, |kept| kept.expires.max(session.expires));
        st.session = Some(UploadSession {
            expires,
            ..session.clone()
        });
    }

    /// Records a committed range and the expiry that commit set. Call while holding `commit`,
    /// before the claim is dropped.
    pub(crate) fn record(&self, range: ByteRange, expires: DateTime<Utc>) {
        let mut st = self.lock();
        st.received.get_or_insert_with(RangeSet::new).insert(range);
        if let Some(row) = st.session.as_mut() {
            row.expires = row.expires.max(expires);
        }
    }

    /// Claims the new bytes of `range`, waiting while any of it is claimed by another request.
    pub(crate) async fn claim(self: &Arc<Self>, range: ByteRange) -> Claim {
        loop {
            let released = self.released.notified();
            {
                let mut st = self.lock();
                if !st.claimed.intersects(range) {
                    let received = st.received.clone().unwrap_or_default();
                    let new = received.missing_within(range);
                    for r in &new {
                        st.claimed.insert(*r);
                    }
                    return Claim {
                        slot: Arc::clone(self),
                        new,
                        existing: received.intersection(range),
                    };
                }
            }
            // `notified()` was created before the check, so a release in between is not missed.
            released.await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.state.lock().expect("session slot lock poisoned")
    }
}

impl Drop for Claim {
    /// Releases the claim whether the request committed, failed or was cancelled mid-body.
    fn drop(&mut self) {
        {
            let mut st = self.slot.lock();
            for r in &self.new {
                st.claimed.remove(*r);
            }
        }
        self.slot.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn r(a: u64, b: u64) -> ByteRange {
        ByteRange::new(a, b).unwrap()
    }

    #[tokio::test]
    async fn disjoint_claims_proceed_and_overlapping_ones_wait_for_release() {
        let c = SessionCoordinator::default();
        let id = Uuid::new_v4();
        let slot = c.slot(id);
        slot.load(RangeSet::from_ranges([r(0, 9)]));

        let a = slot.claim(r(5, 19)).await;
        assert_eq!(a.existing, vec![r(5, 9)]);
        assert_eq!(a.new, vec![r(10, 19)]);
        // Disjoint from a's new bytes: granted at once.
        let b = slot.claim(r(20, 29)).await;
        assert_eq!(b.new, vec![r(20, 29)]);

        let slot2 = c.slot(id);
        let waiter = tokio::spawn(async move {
            let claim = slot2.claim(r(15, 25)).await;
            (claim.new.clone(), claim.existing.clone())
        });
        // On the current-thread runtime the waiter runs whenever this task yields.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert!(!waiter.is_finished(), "must wait while 15-25 is claimed");
        // a commits; b is abandoned.
        slot.record(r(5, 19), Utc::now());
        drop(a);
        drop(b);
        let (new, existing) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("waiter woke")
            .unwrap();
        assert_eq!(existing, vec![r(15, 19)]);
        assert_eq!(new, vec![r(20, 25)]);
    }

    #[test]
    fn slots_are_shared_while_held_and_kept_for_the_recent_sessions() {
        let c = SessionCoordinator::default();
        let id = Uuid::new_v4();
        let s1 = c.slot(id);
        s1.load(RangeSet::from_ranges([r(0, 0)]));
        assert!(Arc::ptr_eq(&s1, &c.slot(id)), "one slot per session");
        drop(s1);
        // Released, but among the recent sessions: still loaded.
        assert!(c.slot(id).is_loaded());
        // Using it again made it the most recent: it outlives KEEP_RECENT - 1 others...
        for _ in 0..KEEP_RECENT - 1 {
            c.slot(Uuid::new_v4());
        }
        assert!(c.slot(id).is_loaded());
        // ...but not KEEP_RECENT others.
        for _ in 0..KEEP_RECENT {
            c.slot(Uuid::new_v4());
        }
        assert!(!c.slot(id).is_loaded());
    }

    #[test]
    fn only_a_range_that_joins_none_counts_against_the_limit() {
        let c = SessionCoordinator::default();
        let slot = c.slot(Uuid::new_v4());
        assert!(
            !slot.would_exceed(r(0, 0), 0),
            "nothing loaded: nothing judged"
        );
        slot.load(RangeSet::from_ranges([r(0, 9), r(20, 29)]));
        assert!(!slot.would_exceed(r(40, 49), 3), "a third range fits");
        assert!(slot.would_exceed(r(40, 49), 2), "a third range does not");
        assert!(!slot.would_exceed(r(30, 39), 2), "touches 20-29");
        assert!(!slot.would_exceed(r(5, 15), 2), "overlaps 0-9");
        assert!(!slot.would_exceed(r(10, 19), 1), "joins both");
    }

    fn row(id: Uuid, expires: DateTime<Utc>) -> UploadSession {
        UploadSession {
            id,
            document_id: Uuid::new_v4(),
            job_id: 1,
            document_name: "a.pdf".into(),
            content_type: "application/pdf".into(),
            size: 10,
            token_hash: vec![1, 2, 3],
            blob: crate::model::BlobKey("s-a".into()),
            created: expires - chrono::Duration::minutes(15),
            expires,
            state: crate::model::SessionState::Active,
        }
    }

    #[test]
    fn a_kept_row_follows_commits_and_goes_with_forget() {
        let c = SessionCoordinator::default();
        let (id, t0) = (Uuid::new_v4(), Utc::now());
        assert!(c.cached(id).is_none(), "no slot, no row");
        let slot = c.slot(id);
        assert!(
            c.cached(id).is_none(),
            "a slot keeps a row only when given one"
        );
        slot.remember(&row(id, t0));
        assert_eq!(c.cached(id).unwrap().expires, t0);
        // A commit here slides the expiry; a row read earlier does not move it back.
        let t1 = t0 + chrono::Duration::seconds(30);
        slot.record(r(0, 4), t1);
        assert_eq!(c.cached(id).unwrap().expires, t1);
        slot.remember(&row(id, t0));
        assert_eq!(c.cached(id).unwrap().expires, t1);
        // Forgotten (completed, deleted): no longer handed out, even while a request holds
        // the slot.
        c.forget(id);
        assert!(c.cached(id).is_none());
        assert!(slot.is_loaded(), "the ranges stay with the held slot");
    }

    #[test]
    fn a_forgotten_slot_lives_only_while_held() {
        let c = SessionCoordinator::default();
        let id = Uuid::new_v4();
        let held = c.slot(id);
        held.load(RangeSet::from_ranges([r(0, 0)]));
        c.forget(id);
        assert!(c.slot(id).is_loaded(), "a request still holds it");
        c.forget(id);
        drop(held);
        assert!(!c.slot(id).is_loaded());
    }
}
