//! A client for Microsoft Graph's Universal Print API, as served by upspool and by Microsoft
//! itself: printers, shares and jobs, and uploads that are parallel, resumable and patient.
//!
//! - [`graph`]: the calls, one attempt each.
//! - [`retry`]: backoff with jitter, `Retry-After`.
//! - [`plan`]: byte ranges and the segment planner.
//! - [`upload`]: the upload engine (N streams, files read as sent).
//! - [`state`]: resume state files.
//! - [`print`]: the whole print flow, resuming when it can.
//! - [`sniff`]: document types from content.
//!
//! No command-line or terminal code lives here: progress is reported through
//! [`upload::Progress`].

pub mod error;
pub mod graph;
pub mod plan;
pub mod print;
pub mod retry;
pub mod sniff;
pub mod state;
pub mod upload;

pub use error::{ClientError, Result};
pub use graph::{Graph, Scope, Settings};
