//! Pre-authenticated download URLs for a document's bytes (`$value` answers with a redirect
//! to one). A grant opens exactly one document until it expires; only its hash is stored.

use chrono::Utc;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use uuid::Uuid;

use crate::access::Operation;
use crate::error::{DomainError, Result};
use crate::model::{Document, DownloadGrant, JobId};
use crate::principal::Principal;
use crate::service::{JobScope, PrintService};
use crate::token;
use bytes::Bytes;

/// A grant and the secret for its URL (shown once).
#[derive(Clone, Debug)]
pub struct NewDownload {
    pub grant: DownloadGrant,
    pub token: String,
}

impl PrintService {
    /// Issues a download URL for an uploaded document.
    pub async fn create_download(
        &self,
        who: &Principal,
        scope: JobScope,
        job: JobId,
        document: Uuid,
    ) -> Result<NewDownload> {
        let (job, doc) = self
            .document_for(who, Operation::DownloadDocument, scope, job, document)
            .await?;
        // The sweeper deletes these bytes a little later; a URL to them would fail mid-way.
        if job.status.state.discards_content() {
            return Err(DomainError::InvalidRequest(format!(
                "The print job is {}; its document's content was discarded and cannot be downloaded.",
                job.status.state
            )));
        }
        if doc.blob.is_none() {
            return Err(DomainError::InvalidRequest(
                "The document has no content yet: its upload has not completed.".into(),
            ));
        }
        let (secret, token_hash) = token::generate();
        let grant = DownloadGrant {
            id: Uuid::new_v4(),
            document_id: doc.id,
            token_hash,
            expires: Utc::now()
                + chrono::Duration::from_std(self.limits.download_url_ttl)
                    .unwrap_or(chrono::Duration::MAX),
        };
        self.meta.insert_download_grant(&grant).await?;
        Ok(NewDownload {
            grant,
            token: secret,
        })
    }

    /// Checks a download URL and returns the document it opens. Marks the document as
    /// downloaded the first time.
    pub async fn open_download(&self, grant: Uuid, presented: &str) -> Result<Document> {
        let grant = self
            .meta
            .get_download_grant(grant)
            .await?
            .filter(|g| Utc::now() < g.expires)
            .ok_or(DomainError::NotFound("download"))?;
        if !token::matches(presented, &grant.token_hash) {
            return Err(DomainError::Unauthenticated(
                "The download URL's tempauthtoken is missing or invalid.".into(),
            ));
        }
        let doc = self
            .meta
            .get_document(grant.document_id)
            .await?
            .filter(|d| d.blob.is_some())
            .ok_or(DomainError::NotFound("download"))?;
        // A URL issued before its job was canceled or aborted opens nothing from then on.
        let job = self.meta.get_job(doc.job_id).await?;
        if job.is_none_or(|j| j.status.state.discards_content()) {
            return Err(DomainError::NotFound("download"));
        }
        if doc.downloaded.is_none() {
            self.meta
                .mark_document_downloaded(doc.id, Utc::now())
                .await?;
        }
        Ok(doc)
    }

    /// Streams `len` bytes of an uploaded document from `offset`.
    pub async fn read_document(
        &self,
        doc: &Document,
        offset: u64,
        len: u64,
    ) -> Result<BoxStream<'static, std::io::Result<Bytes>>> {
        let key = doc.blob.as_ref().ok_or(DomainError::NotFound("download"))?;
        if offset.checked_add(len).is_none_or(|end| end > doc.size) {
            return Err(DomainError::Internal("read beyond the document".into()));
        }
        let stream = self.blobs.read_stream(key, offset, len).await?;
        Ok(stream
            .map(|r| r.map_err(|e| std::io::Error::other(e.to_string())))
            .boxed())
    }
}
