//! [`PrintService`]: the operations the Graph API exposes, in domain terms. Printers, shares
//! and jobs are here; upload sessions are in `upload`, downloads in `download`, and the
//! background clean-up in `sweeper`.

use std::sync::Arc;

use chrono::Utc;
use uuid::Uuid;

use crate::access::{self, Operation, Reach, ShareAccess};
use crate::configuration::PrintJobConfiguration;
use crate::coordinator::SessionCoordinator;
use crate::error::{DomainError, Result};
use crate::limits::Limits;
use crate::model::{
    Document, Job, JobId, JobState, JobStateDetail, JobStatus, Printer, Share, ShareMember,
};
use crate::principal::Principal;
use crate::store::{BlobStore, JobQuery, MetadataStore};

/// Through which resource a job is addressed: `/print/printers/{id}` or `/print/shares/{id}`.
/// A share is a view of its printer, so both see the printer's jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobScope {
    Printer(Uuid),
    Share(Uuid),
}

/// A page of jobs and whether another page follows.
#[derive(Clone, Debug)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    pub has_more: bool,
}

pub struct PrintService {
    pub(crate) meta: Arc<dyn MetadataStore>,
    pub(crate) blobs: Arc<dyn BlobStore>,
    pub(crate) limits: Limits,
    pub(crate) sessions: SessionCoordinator,
    pub(crate) observer: std::sync::OnceLock<Arc<dyn crate::upload::UploadObserver>>,
}

const MAX_NAME_LEN: usize = 256;

fn check_name(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(DomainError::InvalidRequest(format!(
            "{field} must not be empty"
        )));
    }
    if value.chars().count() > MAX_NAME_LEN || value.chars().any(char::is_control) {
        return Err(DomainError::InvalidRequest(format!(
            "{field} must be at most {MAX_NAME_LEN} characters without control characters"
        )));
    }
    Ok(())
}

impl PrintService {
    pub fn new(meta: Arc<dyn MetadataStore>, blobs: Arc<dyn BlobStore>, limits: Limits) -> Self {
        PrintService {
            meta,
            blobs,
            limits,
            sessions: SessionCoordinator::default(),
            observer: std::sync::OnceLock::new(),
        }
    }

    /// Installs the upload-path observer (once; later calls are ignored).
    pub fn observe(&self, observer: Arc<dyn crate::upload::UploadObserver>) {
        let _ = self.observer.set(observer);
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the metadata store answers (for `/readyz`).
    pub async fn ready(&self) -> Result<()> {
        Ok(self.meta.ping().await?)
    }

    /// Sessions accepting segments right now (for metrics).
    pub async fn active_sessions(&self) -> Result<u64> {
        Ok(self.meta.count_active_sessions(Utc::now()).await?)
    }

    // ---- printers ----

    pub async fn create_printer(
        &self,
        who: &Principal,
        display_name: String,
        manufacturer: Option<String>,
        model: Option<String>,
    ) -> Result<Printer> {
        access::authorize(who, Operation::AdministerPrinters)?;
        check_name("displayName", &display_name)?;
        for (field, v) in [("manufacturer", &manufacturer), ("model", &model)] {
            if let Some(v) = v {
                check_name(field, v)?;
            }
        }
        let printer = Printer {
            id: Uuid::new_v4(),
            display_name,
            manufacturer,
            model,
            created: Utc::now(),
        };
        self.meta.insert_printer(&printer).await?;
        tracing::info!(printer = %printer.id, name = %printer.display_name, "printer created");
        Ok(printer)
    }

    pub async fn list_printers(&self, who: &Principal) -> Result<Vec<Printer>> {
        access::authorize(who, Operation::ReadPrinters)?;
        Ok(self.meta.list_printers().await?)
    }

    pub async fn get_printer(&self, who: &Principal, id: Uuid) -> Result<Printer> {
        access::authorize(who, Operation::ReadPrinters)?;
        self.meta
            .get_printer(id)
            .await?
            .ok_or(DomainError::NotFound("printer"))
    }

    /// Deletes a printer with its shares and jobs, and their bytes.
    pub async fn delete_printer(&self, who: &Principal, id: Uuid) -> Result<()> {
        access::authorize(who, Operation::AdministerPrinters)?;
        let blobs = self
            .meta
            .delete_printer(id)
            .await?
            .ok_or(DomainError::NotFound("printer"))?;
        for key in blobs {
            if let Err(e) = self.blobs.delete(&key).await {
                // The sweeper cannot find these any more; log so an operator can.
                tracing::warn!(blob = %key.0, error = %e, "could not delete bytes of a deleted printer");
            }
        }
        tracing::info!(printer = %id, "printer deleted");
        Ok(())
    }

    // ---- shares ----

    pub async fn create_share(
        &self,
        who: &Principal,
        display_name: String,
        printer_id: Uuid,
        allow_all_users: bool,
    ) -> Result<Share> {
        access::authorize(who, Operation::AdministerShares)?;
        check_name("displayName", &display_name)?;
        if self.meta.get_printer(printer_id).await?.is_none() {
            return Err(DomainError::InvalidRequest(format!(
                "printer@odata.bind names printer '{printer_id}', which does not exist"
            )));
        }
        let share = Share {
            id: Uuid::new_v4(),
            display_name,
            printer_id,
            allow_all_users,
            created: Utc::now(),
        };
        self.meta.insert_share(&share).await?;
        tracing::info!(share = %share.id, printer = %printer_id, "share created");
        Ok(share)
    }

    pub async fn list_shares(&self, who: &Principal) -> Result<Vec<Share>> {
        access::authorize(who, Operation::ReadShares)?;
        Ok(self.meta.list_shares().await?)
    }

    pub async fn get_share(&self, who: &Principal, id: Uuid) -> Result<Share> {
        access::authorize(who, Operation::ReadShares)?;
        self.meta
            .get_share(id)
            .await?
            .ok_or(DomainError::NotFound("printer share"))
    }

    pub async fn delete_share(&self, who: &Principal, id: Uuid) -> Result<()> {
        access::authorize(who, Operation::AdministerShares)?;
        if self.meta.delete_share(id).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound("printer share"))
        }
    }

    /// The printer of a share the caller may read (`$expand=printer`).
    pub async fn printer_of_share(&self, who: &Principal, share: &Share) -> Result<Printer> {
        access::authorize(who, Operation::ReadShares)?;
        self.meta
            .get_printer(share.printer_id)
            .await?
            .ok_or(DomainError::NotFound("printer"))
    }

    // ---- share access lists ----

    /// A share's allowedUsers and allowedGroups.
    pub async fn share_access(&self, who: &Principal, share: Uuid) -> Result<ShareAccess> {
        access::authorize(who, Operation::ReadShares)?;
        self.get_share(who, share).await?;
        Ok(self.meta.share_access(share).await?)
    }

    /// Adds a user or group to a share's access list (idempotent).
    pub async fn allow_on_share(
        &self,
        who: &Principal,
        share: Uuid,
        member: ShareMember,
    ) -> Result<()> {
        access::authorize(who, Operation::AdministerShares)?;
        let (ShareMember::User(m) | ShareMember::Group(m)) = &member;
        check_name("member id", m)?;
        if self.meta.add_share_member(share, &member).await? {
            tracing::info!(share = %share, member = ?member, "share access granted");
            Ok(())
        } else {
            Err(DomainError::NotFound("printer share"))
        }
    }

    /// Removes a user or group from a share's access list.
    pub async fn disallow_on_share(
        &self,
        who: &Principal,
        share: Uuid,
        member: ShareMember,
    ) -> Result<()> {
        access::authorize(who, Operation::AdministerShares)?;
        if self.meta.remove_share_member(share, &member).await? {
            tracing::info!(share = %share, member = ?member, "share access revoked");
            Ok(())
        } else {
            Err(DomainError::NotFound(match member {
                ShareMember::User(_) => "allowed user",
                ShareMember::Group(_) => "allowed group",
            }))
        }
    }

    // ---- jobs ----

    /// Refuses job creation unless the share (or, for a printer, one of its shares) admits
    /// the caller.
    async fn check_may_print(
        &self,
        who: &Principal,
        printer: Uuid,
        share: Option<Uuid>,
    ) -> Result<()> {
        if who.is_admin {
            return Ok(());
        }
        let shares = match share {
            Some(id) => self.meta.get_share(id).await?.into_iter().collect(),
            None => self
                .meta
                .list_shares()
                .await?
                .into_iter()
                .filter(|s| s.printer_id == printer)
                .collect::<Vec<_>>(),
        };
        for s in &shares {
            let list = if s.allow_all_users {
                ShareAccess::default()
            } else {
                self.meta.share_access(s.id).await?
            };
            if access::may_print_to(who, s, &list) {
                return Ok(());
            }
        }
        Err(DomainError::AccessDenied(
            "The printer share does not allow this user to print: it neither allows all users nor lists the user or one of their groups."
                .into(),
        ))
    }

    /// The printer behind a scope, and the share if the scope is one.
    async fn resolve(&self, scope: JobScope) -> Result<(Uuid, Option<Uuid>)> {
        match scope {
            JobScope::Printer(id) => match self.meta.get_printer(id).await? {
                Some(p) => Ok((p.id, None)),
                None => Err(DomainError::NotFound("printer")),
            },
            JobScope::Share(id) => match self.meta.get_share(id).await? {
                Some(s) => Ok((s.printer_id, Some(s.id))),
                None => Err(DomainError::NotFound("printer share")),
            },
        }
    }

    /// Creates a job with exactly one empty document, paused until its upload completes.
    pub async fn create_job(
        &self,
        who: &Principal,
        scope: JobScope,
        configuration: PrintJobConfiguration,
        display_name: Option<String>,
    ) -> Result<(Job, Document)> {
        access::authorize(who, Operation::CreateJob)?;
        configuration
            .validate()
            .map_err(DomainError::InvalidRequest)?;
        if let Some(name) = &display_name {
            if name.chars().count() > MAX_NAME_LEN {
                return Err(DomainError::InvalidRequest(format!(
                    "displayName must be at most {MAX_NAME_LEN} characters"
                )));
            }
        }
        let (printer_id, share_id) = self.resolve(scope).await?;
        self.check_may_print(who, printer_id, share_id).await?;
        let job = Job {
            id: 0,
            printer_id,
            share_id,
            created: Utc::now(),
            created_by: who.user.clone(),
            status: JobStatus::upload_pending(),
            configuration,
            display_name,
            is_fetchable: false,
            error_code: 0,
            acknowledged: None,
            completed: None,
        };
        let (job, document) = self.meta.create_job(job, Document::empty(0)).await?;
        tracing::info!(job = job.id, printer = %printer_id, "job created");
        Ok((job, document))
    }

    /// A job as seen through `scope`; jobs of other printers are "not found".
    pub async fn get_job(&self, who: &Principal, scope: JobScope, id: JobId) -> Result<Job> {
        self.job_for(who, Operation::ReadJobs, scope, id).await
    }

    /// A job the caller may subject to `op`: the permission is checked first (403), then
    /// jobs of other printers, and other users' jobs without a `.All` permission, are "not
    /// found" (404), so that their existence does not leak.
    pub(crate) async fn job_for(
        &self,
        who: &Principal,
        op: Operation,
        scope: JobScope,
        id: JobId,
    ) -> Result<Job> {
        let reach = access::authorize(who, op)?;
        let job = self.meta.get_job(id).await?;
        self.visible_job(who, reach, scope, job).await
    }

    /// A document of a job the caller may subject to `op`, read together with its job.
    pub(crate) async fn document_for(
        &self,
        who: &Principal,
        op: Operation,
        scope: JobScope,
        job: JobId,
        document: Uuid,
    ) -> Result<(Job, Document)> {
        let reach = access::authorize(who, op)?;
        let (job, document) = match self.meta.get_job_document(job, document).await? {
            Some((job, document)) => (Some(job), document),
            None => (None, None),
        };
        let job = self.visible_job(who, reach, scope, job).await?;
        match document {
            Some(d) if d.job_id == job.id => Ok((job, d)),
            _ => Err(DomainError::NotFound("print document")),
        }
    }

    /// `job` if the caller may see it through `scope`. A job of the scope's printer proves
    /// the printer exists (deleting a printer deletes its jobs), so a printer scope costs no
    /// read on this path; only a refusal reads the printer, to say which one is missing.
    async fn visible_job(
        &self,
        who: &Principal,
        reach: Reach,
        scope: JobScope,
        job: Option<Job>,
    ) -> Result<Job> {
        let printer_id = match scope {
            JobScope::Printer(id) if job.as_ref().is_some_and(|j| j.printer_id == id) => id,
            _ => self.resolve(scope).await?.0,
        };
        match job {
            Some(job) if job.printer_id == printer_id && access::can_see(who, reach, &job) => {
                Ok(job)
            }
            _ => Err(DomainError::NotFound("print job")),
        }
    }

    /// Refuses an operation upspool does not implement only after the caller proved it
    /// would be allowed to ask (so that a 501 never answers an unauthorised caller).
    pub fn check_allowed(&self, who: &Principal, op: Operation) -> Result<()> {
        access::authorize(who, op).map(|_| ())
    }

    /// One page of the jobs visible through `scope`. `query.printer_id` is set from the scope.
    pub async fn list_jobs(
        &self,
        who: &Principal,
        scope: JobScope,
        mut query: JobQuery,
    ) -> Result<JobPage> {
        let reach = access::authorize(who, Operation::ReadJobs)?;
        let (printer_id, _) = self.resolve(scope).await?;
        if reach == Reach::OwnJobs {
            query.created_by_id = Some(who.user.id.clone());
        }
        let top = query.top;
        query.printer_id = printer_id;
        // Ask for one more than the page to learn whether a next page exists.
        query.top = top.saturating_add(1);
        let mut jobs = self.meta.list_jobs(&query).await?;
        let has_more = jobs.len() > top as usize;
        jobs.truncate(top as usize);
        Ok(JobPage { jobs, has_more })
    }

    pub async fn documents(
        &self,
        who: &Principal,
        scope: JobScope,
        job: JobId,
    ) -> Result<Vec<Document>> {
        let job = self.get_job(who, scope, job).await?;
        Ok(self.meta.documents_of_job(job.id).await?)
    }

    /// The documents of a job the caller already holds (for `$expand=documents`).
    pub async fn documents_of_job(&self, job: &Job) -> Result<Vec<Document>> {
        Ok(self.meta.documents_of_job(job.id).await?)
    }

    pub async fn get_document(
        &self,
        who: &Principal,
        scope: JobScope,
        job: JobId,
        document: Uuid,
    ) -> Result<Document> {
        let (_, doc) = self
            .document_for(who, Operation::ReadJobs, scope, job, document)
            .await?;
        Ok(doc)
    }

    /// Starts a job whose document is uploaded. Starting a job that is already pending or
    /// processing answers its current status (idempotent).
    pub async fn start_job(
        &self,
        who: &Principal,
        scope: JobScope,
        id: JobId,
    ) -> Result<JobStatus> {
        let job = self.job_for(who, Operation::StartJob, scope, id).await?;
        let s = &job.status;
        if s.state == JobState::Paused && s.details.contains(&JobStateDetail::UploadPending) {
            return Err(DomainError::InvalidRequest(
                "The print job's document has not been uploaded yet. Complete the upload session before starting the job."
                    .into(),
            ));
        }
        match s.state {
            JobState::Paused => {}
            state if state.is_terminal() => {
                return Err(DomainError::InvalidRequest(format!(
                    "The print job is {state} and cannot be started."
                )))
            }
            _ => return Ok(job.status),
        }
        let to = JobStatus {
            state: JobState::Processing,
            details: vec![],
            is_acquired_by_printer: false,
        };
        match self
            .meta
            .transition_job(id, &[JobState::Paused], &to, true)
            .await?
        {
            Some(job) => {
                tracing::info!(job = id, "job started");
                Ok(job.status)
            }
            // Someone else changed it meanwhile: answer with what it is now.
            None => Box::pin(self.start_job(who, scope, id)).await,
        }
    }

    /// Cancels a job that has not ended, deleting its upload session. Canceling a canceled
    /// job succeeds again; a completed or aborted one cannot be canceled.
    pub async fn cancel_job(&self, who: &Principal, scope: JobScope, id: JobId) -> Result<()> {
        let job = self.job_for(who, Operation::CancelJob, scope, id).await?;
        match job.status.state {
            JobState::Canceled => return Ok(()),
            state if state.is_terminal() => {
                return Err(DomainError::InvalidRequest(format!(
                    "The print job is {state} and cannot be canceled."
                )))
            }
            _ => {}
        }
        let from: Vec<JobState> = JobState::ALL
            .iter()
            .copied()
            .filter(|s| !s.is_terminal())
            .collect();
        let to = JobStatus {
            state: JobState::Canceled,
            details: vec![],
            is_acquired_by_printer: job.status.is_acquired_by_printer,
        };
        if self
            .meta
            .transition_job(id, &from, &to, false)
            .await?
            .is_none()
        {
            return Box::pin(self.cancel_job(who, scope, id)).await;
        }
        for doc in self.meta.documents_of_job(id).await? {
            if let Some(session) = self.meta.session_of_document(doc.id).await? {
                self.discard_session(&session).await?;
            }
        }
        tracing::info!(job = id, "job canceled");
        Ok(())
    }
}
