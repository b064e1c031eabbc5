//! Every limit upspool enforces, in one place, with the documented defaults.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest document an upload session may declare (`size`). Default 4 GiB.
    pub max_document_size: u64,
    /// Largest body of one segment request. Default 60 MiB.
    pub max_segment_size: u64,
    /// Most separate ranges an upload session's received bytes may fall into; 0 for no
    /// bound. Every commit reads them all and every `202` lists the gaps between them, so
    /// this bounds the work and the answer of each request. Default 10 000.
    pub max_session_ranges: u32,
    /// Sliding session lifetime after creation and after each accepted segment. Default 24 h.
    pub session_ttl: Duration,
    /// A session never lives longer than this after creation, however active. Default 7 days.
    pub session_hard_cap: Duration,
    /// How long a completed session answers replays of its bytes. Default 10 minutes.
    pub replay_grace: Duration,
    /// Lifetime of a pre-authenticated download URL. Default 10 minutes.
    pub download_url_ttl: Duration,
    /// Page size of job lists when `$top` is absent. Default 100.
    pub default_page_size: u32,
    /// Largest accepted `$top`; larger values are clamped. Default 999.
    pub max_page_size: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_size: 4 * 1024 * 1024 * 1024,
            max_segment_size: 60 * 1024 * 1024,
            max_session_ranges: 10_000,
            session_ttl: Duration::from_secs(24 * 3600),
            session_hard_cap: Duration::from_secs(7 * 24 * 3600),
            replay_grace: Duration::from_secs(600),
            download_url_ttl: Duration::from_secs(600),
            default_page_size: 100,
            max_page_size: 999,
        }
    }
}
