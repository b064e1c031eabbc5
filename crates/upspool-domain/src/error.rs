//! The domain's one error type. Variants say what went wrong in domain words; the HTTP layer
//! maps each to exactly one Graph status and code (`upspool-http`'s `graph_error`).

use thiserror::Error;

use crate::store::{BlobError, StoreError};

#[derive(Debug, Error)]
pub enum DomainError {
    /// A printer, share, job or document that does not exist, or that the caller may not see
    /// (the two are indistinguishable on purpose). The string names the kind of resource.
    #[error("the requested {0} was not found")]
    NotFound(&'static str),
    /// Unknown, expired, deleted or replaced upload session.
    #[error("the upload session was not found, has expired, or was replaced by a newer one")]
    UploadSessionNotFound,
    /// Missing or wrong credentials (bearer token, or an upload/download URL's tempauthtoken).
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    AccessDenied(String),
    /// Malformed or semantically invalid request.
    #[error("{0}")]
    InvalidRequest(String),
    /// A bad OData query option ($top, $filter, ...).
    #[error("{0}")]
    InvalidQueryOption(String),
    /// Content-Range total differs from the session size, or the body length from the range.
    #[error("{0}")]
    FragmentLengthMismatch(String),
    /// The declared document size is above the configured maximum.
    #[error("the document size {size} is above the maximum of {max} bytes")]
    MaxFileSizeExceeded { size: u64, max: u64 },
    /// One segment is larger than the configured maximum segment size.
    #[error("the segment of {len} bytes is larger than the maximum of {max} bytes per request")]
    MaxFragmentLengthExceeded { len: u64, max: u64 },
    /// The segment would split the session's received bytes into more separate ranges than
    /// the limit. Nothing was written.
    #[error(
        "the session's received bytes already fall into {max} separate ranges, the most allowed; \
         send bytes that join or extend them (fill the gaps) first"
    )]
    TooManyRanges { max: u32 },
    /// The segment overlaps stored bytes with different content. Nothing was written.
    #[error("the uploaded fragment overlaps bytes already received with different content")]
    FragmentOverlap,
    /// Draft upload form: If-Match names a session that is not the document's active one.
    #[error("{0}")]
    PreconditionFailed(String),
    /// Draft upload form: the body is not application/octet-stream.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The operation is not implemented by upspool.
    #[error("{0}")]
    NotSupported(String),
    /// The client stopped sending before the body was complete. Nothing was recorded.
    #[error("the request body ended early: {0}")]
    BodyAborted(String),
    /// The client stopped sending body bytes for longer than the configured idle timeout.
    /// Nothing was recorded.
    #[error("{0}")]
    BodyTimeout(String),
    /// Disk full or storage quota exhausted. Nothing from the request was recorded.
    #[error("the storage is full")]
    StorageFull,
    /// A back end (metadata or bytes) is unreachable for now.
    #[error("a storage back end is unavailable: {0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; details are logged, not shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => DomainError::Unavailable(m),
            StoreError::StorageFull => DomainError::StorageFull,
            StoreError::Conflict(m) | StoreError::Internal(m) => DomainError::Internal(m),
        }
    }
}

impl From<BlobError> for DomainError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::StorageFull => DomainError::StorageFull,
            BlobError::NotFound => DomainError::Internal("blob missing from the byte store".into()),
            BlobError::Unavailable(m) => DomainError::Unavailable(m),
            BlobError::Io(m) => DomainError::Internal(m),
        }
    }
}

pub type Result<T, E = DomainError> = std::result::Result<T, E>;
