//! Prometheus metrics: requests by route and status and how long they took, bytes received,
//! segment write and sync latency, and in-flight segment requests.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};
use upspool_domain::upload::{StreamWaits, UploadObserver};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub bytes_received: IntCounter,
    pub segments_in_flight: IntGauge,
    pub write_seconds: Histogram,
    pub sync_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub body_wait_seconds: Histogram,
    pub store_wait_seconds: Histogram,
    pub blocks_gathered: IntCounterVec,
}

/// Latency buckets from 100 µs to 10 s: a sync on a fast SSD is well under a millisecond,
/// on a busy disk it can take seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
fn latency(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(latency_opts(name, help)).expect("valid metric")
}

fn latency_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec())
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("upspool".into()), None)
            .expect("static metric prefix is valid");
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        // By route template, not path, so ids do not multiply the series.
        let request_seconds = HistogramVec::new(
            latency_opts(
                "http_request_duration_seconds",
                "Time from a request's head being read to its response being ready (a download's \
                 body streams after), by route and method",
            ),
            &["route", "method"],
        )
        .expect("valid metric");
        let bytes_received = IntCounter::new(
            "upload_bytes_written_total",
            "New document bytes written by upload segments",
        )
        .expect("valid metric");
        let segments_in_flight = IntGauge::new(
            "upload_segments_in_flight",
            "Upload segment requests being received right now",
        )
        .expect("valid metric");
        let write_seconds = latency(
            "upload_write_seconds",
            "Time to write one buffer of a segment to the byte store",
        );
        let sync_seconds = latency(
            "upload_sync_seconds",
            "Time to make one segment's bytes durable before acknowledging it",
        );
        let commit_seconds = latency(
            "upload_commit_seconds",
            "Time to record one segment's range in the metadata store, after its sync",
        );
        let body_wait_seconds = latency(
            "upload_body_wait_seconds",
            "Per segment: time waiting for the request body while the byte store had room",
        );
        let store_wait_seconds = latency(
            "upload_store_wait_seconds",
            "Per segment: time waiting for the byte store's writes (most in flight, or the last)",
        );
        let blocks_gathered = IntCounterVec::new(
            Opts::new(
                "upload_blocks_gathered_total",
                "Blocks gathered for direct writes, by where their memory came from: the byte \
                 store's huge-page pool, or the heap when the pool had none to spare",
            ),
            &["memory"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(request_seconds.clone()),
            Box::new(bytes_received.clone()),
            Box::new(segments_in_flight.clone()),
            Box::new(write_seconds.clone()),
            Box::new(sync_seconds.clone()),
            Box::new(commit_seconds.clone()),
            Box::new(body_wait_seconds.clone()),
            Box::new(store_wait_seconds.clone()),
            Box::new(blocks_gathered.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        Metrics {
            registry,
            requests,
            request_seconds,
            bytes_received,
            segments_in_flight,
            write_seconds,
            sync_seconds,
            commit_seconds,
            body_wait_seconds,
            store_wait_seconds,
            blocks_gathered,
        }
    }

    /// Adds a gauge computed at scrape time (e.g. active sessions).
    pub fn render(&self, extra: &[(&str, &str, i64)]) -> String {
        let mut families = self.registry.gather();
        for (name, help, value) in extra {
            let g = IntGauge::new(format!("upspool_{name}"), *help).expect("valid metric");
            g.set(*value);
            families.extend(prometheus::core::Collector::collect(&g));
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl UploadObserver for Metrics {
    fn written(&self, bytes: u64, took: Duration) {
        self.bytes_received.inc_by(bytes);
        self.write_seconds.observe(took.as_secs_f64());
    }

    fn synced(&self, took: Duration) {
        self.sync_seconds.observe(took.as_secs_f64());
    }

    fn committed(&self, took: Duration) {
        self.commit_seconds.observe(took.as_secs_f64());
    }

    fn streamed(&self, waits: StreamWaits) {
        self.body_wait_seconds.observe(waits.body.as_secs_f64());
        self.store_wait_seconds.observe(waits.store.as_secs_f64());
    }

    fn gathered(&self, lent: bool) {
        let memory = if lent { "pool" } else { "heap" };
        self.blocks_gathered.with_label_values(&[memory]).inc();
    }
}
