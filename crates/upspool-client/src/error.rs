//! The client's one error type. Each variant says whether trying again can help
//! ([`ClientError::is_retryable`]), which is what the retry loops ask.

use std::time::Duration;

/// What went wrong while talking to a Graph print service.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error status; `code` and `message` come from the Graph
    /// error envelope when there is one.
    #[error("{what}: HTTP {status} {code}: {message}")]
    Api {
        what: String,
        status: u16,
        code: String,
        message: String,
        /// The `Retry-After` the service asked for (429, 503).
        retry_after: Option<Duration>,
    },
    /// No answer: connection refused or reset, timeout, TLS failure.
    #[error("{what}: {source}")]
    Transport {
        what: String,
        /// True when the request certainly never reached the service (connection refused),
        /// so that even a non-idempotent call may be sent again.
        not_sent: bool,
        #[source]
        source: reqwest::Error,
    },
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a document type a printer accepts; nothing was created.
    #[error("{0}")]
    UnsupportedContent(String),
    /// A share or printer name that names none, or more than one.
    #[error("{0}")]
    Target(String),
    /// The upload session expired, was replaced or deleted.
    #[error("the upload session no longer exists (expired, replaced or deleted)")]
    SessionGone,
    /// An answer that does not have the shape the API promises.
    #[error("unexpected answer to {what}: {detail}")]
    Protocol { what: String, detail: String },
    /// A retryable failure that did not go away.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        attempts: u32,
        last: Box<ClientError>,
    },
    /// Invalid settings given to the client (bad server URL, unreadable certificate).
    #[error("{0}")]
    Config(String),
}

impl ClientError {
    /// Whether the same request may succeed later: connection-level failures, `408`, `429`
    /// and `5xx` except `501` (an action the service does not implement stays unimplemented).
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport { source, .. } => !is_tls_rejection(source),
            ClientError::Api { status, .. } => {
                matches!(*status, 408 | 429) || (*status >= 500 && *status != 501)
            }
            _ => false,
        }
    }

    /// Whether the request was certainly not processed, so a non-idempotent call (creating a
    /// job) can be sent again without risking a duplicate: refused connections, and `429` /
    /// `503`, which the service answers before doing anything.
    pub fn was_not_processed(&self) -> bool {
        match self {
            ClientError::Transport {
                not_sent, source, ..
            } => *not_sent && !is_tls_rejection(source),
            ClientError::Api { status, .. } => matches!(*status, 429 | 503),
            _ => false,
        }
    }

    /// The wait the service asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::RetriesExhausted { last, .. } => last.status(),
            _ => None,
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        ClientError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn transport(what: impl Into<String>, source: reqwest::Error) -> Self {
        ClientError::Transport {
            what: what.into(),
            not_sent: source.is_connect(),
            source,
        }
    }
}

/// A TLS handshake that failed on the certificate or the protocol: trying again gives the
/// same answer, so it is not retried. rustls reports these as `io::ErrorKind::InvalidData`
/// somewhere in the error's source chain.
fn is_tls_rejection(e: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        source = match s.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::InvalidData => return true,
            // An io::Error's source() skips the error it wraps; look at that one too.
            Some(io) => match io.get_ref() {
                Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
                None => s.source(),
            },
            None => s.source(),
        };
    }
    false
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
