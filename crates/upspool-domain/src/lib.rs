//! upspool's domain: print jobs, documents and resumable upload sessions, and the storage
//! contracts they need. It knows nothing of HTTP or SQL: the HTTP layer calls into
//! [`service::PrintService`], which talks to [`store::MetadataStore`] and
//! [`store::BlobStore`] implementations living in their own crates.

pub mod access;
pub mod configuration;
pub mod content_range;
mod coordinator;
pub mod download;
pub mod error;
pub mod limits;
pub mod model;
pub mod principal;
pub mod range_set;
pub mod service;
pub mod store;
pub mod sweeper;
pub mod token;
pub mod upload;
pub mod wire_enum;

pub use error::{DomainError, Result};
pub use service::{JobPage, JobScope, PrintService};
