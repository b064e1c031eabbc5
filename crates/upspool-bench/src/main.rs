//! `upspool-bench`: starts the release `upspool` binary on temporary data directories and
//! measures upload, memory, latency, small-request, download and whole-job figures, each
//! beside the same work done directly on this machine in the same run. See BENCHMARKS.md.

mod bare_http;
mod client;
mod direct;
mod phases;
mod report;
mod server;
mod stats;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use rand::{RngCore, SeedableRng};

use crate::phases::{Bench, Plan};
use crate::report::{Machine, Report};

const MIB: u64 = 1024 * 1024;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    /// SQLite metadata and blobs on the local filesystem (the only backend so far).
    Embedded,
}

/// Sizes default to the figures; `--quick` shrinks them for a run of a minute or two.
#[derive(Debug, Parser)]
#[command(name = "upspool-bench", version, about)]
struct Cli {
    /// Small sizes and counts (a quick run); explicit size options still win.
    #[arg(long)]
    quick: bool,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Only these items (1 upload, 2 memory, 3 final segment, 4 small requests, 5 download,
    /// 6 whole jobs); 1 and 5 run together.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=6))]
    only: Vec<u8>,
    #[arg(long, value_enum, default_value = "embedded")]
    backend: Backend,
    /// The upspool binary; by default `cargo build --release -p upspool` runs first and
    /// target/release/upspool is used.
    #[arg(long, value_name = "FILE")]
    server_bin: Option<PathBuf>,
    /// Use target/release/upspool as it is, without building it.
    #[arg(long)]
    no_build: bool,
    /// Where data directories and direct-I/O files go; its filesystem is the one measured.
    #[arg(long, value_name = "DIR", default_value_os_t = std::env::temp_dir())]
    work_dir: PathBuf,
    /// RUST_LOG of the server.
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Item 1/5: document size in MiB [default: 1024, quick 128]
    #[arg(long)]
    upload_mib: Option<u64>,
    /// Item 1: rounds of (four direct writers, upspool, loopback, bare HTTP) runs, each
    /// round starting with another; medians and bests are reported, since a run's speed here
    /// depends on the disk and on the memory it is given [default: 5, quick 1]
    #[arg(long)]
    rounds: Option<usize>,
    /// Segment size in MiB for every large upload.
    #[arg(long, default_value_t = 8)]
    segment_mib: u64,
    /// Item 2: concurrent uploads.
    #[arg(long, default_value_t = 16)]
    rss_uploads: usize,
    /// Item 2: size of each in MiB (also run at a quarter of it) [default: 256, quick 32]
    #[arg(long)]
    rss_mib: Option<u64>,
    /// Item 3: the large document in MiB (the small one is 1 MiB) [default: 1024, quick 128]
    #[arg(long)]
    final_mib: Option<u64>,
    /// Item 3: uploads per size.
    #[arg(long, default_value_t = 5)]
    final_reps: usize,
    /// Item 4: segment size in KiB.
    #[arg(long, default_value_t = 64)]
    small_kib: usize,
    /// Item 4: connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Item 4: segments per connection [default: 64, quick 16]
    #[arg(long)]
    segments_per_connection: Option<usize>,
    /// Item 4: createUploadSession requests [default: 1024, quick 256]
    #[arg(long)]
    sessions: Option<usize>,
    /// Item 6: concurrent clients.
    #[arg(long, default_value_t = 16)]
    job_clients: usize,
    /// Item 6: jobs per client [default: 16, quick 4]
    #[arg(long)]
    jobs_per_client: Option<usize>,
    /// Item 6: document size in KiB.
    #[arg(long, default_value_t = 1024)]
    job_kib: usize,
}

impl Cli {
    fn plan(&self) -> anyhow::Result<Plan> {
        fn pick<T>(quick: bool, full: T, small: T) -> T {
            if quick {
                small
            } else {
                full
            }
        }
        let q64 = |full, small| pick(self.quick, full, small);
        let q = |full, small| pick(self.quick, full, small);
        let plan = Plan {
            upload: self.upload_mib.unwrap_or(q64(1024, 128)) * MIB,
            segment: (self.segment_mib * MIB) as usize,
            rounds: self.rounds.unwrap_or(q(5, 1)).max(1),
            rss_uploads: self.rss_uploads,
            rss_size: self.rss_mib.unwrap_or(q64(256, 32)) * MIB,
            final_small: MIB,
            final_large: self.final_mib.unwrap_or(q64(1024, 128)) * MIB,
            final_segment: 64 * 1024,
            final_reps: self.final_reps.max(1),
            small_segment: self.small_kib * 1024,
            connections: self.connections.max(1),
            small_per_connection: self.segments_per_connection.unwrap_or(q(64, 16)).max(1),
            sessions: self.sessions.unwrap_or(q(1024, 256)).max(1),
            job_clients: self.job_clients.max(1),
            jobs_per_client: self.jobs_per_client.unwrap_or(q(16, 4)).max(1),
            job_size: self.job_kib * 1024,
        };
        if plan.segment == 0 || plan.small_segment == 0 || plan.job_size == 0 {
            bail!("segment and document sizes must be at least 1");
        }
        if plan.final_large < 2 * MIB || plan.rss_size < 4 * MIB || plan.upload < MIB {
            bail!("--final-mib must be at least 2, --rss-mib at least 4, --upload-mib at least 1");
        }
        Ok(plan)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let Backend::Embedded = cli.backend;
    let plan = cli.plan()?;
    let bin = server::locate_binary(cli.server_bin.as_deref(), !cli.no_build)?;
    let longest = plan
        .segment
        .max(plan.small_segment)
        .max(plan.job_size)
        .max(plan.final_segment);
    let mut data = vec![0u8; longest];
    rand::rngs::StdRng::seed_from_u64(6).fill_bytes(&mut data);
    let bench = Arc::new(Bench {
        bin,
        scratch: direct::Scratch::new(&cli.work_dir)?,
        work_dir: cli.work_dir.clone(),
        log_level: cli.server_log.clone(),
        plan,
        data: Bytes::from(data),
    });
    let wanted = |i: u8| cli.only.is_empty() || cli.only.contains(&i);
    let mut rows = Vec::new();
    if wanted(1) || wanted(5) {
        eprintln!("items 1 and 5: upload and download throughput...");
        rows.extend(phases::upload_and_download(&bench).await?);
    }
    if wanted(2) {
        eprintln!("item 2: peak memory...");
        rows.extend(phases::peak_memory(&bench).await?);
    }
    if wanted(3) {
        eprintln!("item 3: final segment latency...");
        rows.extend(phases::final_segment(&bench).await?);
    }
    if wanted(4) {
        eprintln!("item 4: small segments and createUploadSession...");
        rows.extend(phases::small_requests(&bench).await?);
    }
    if wanted(6) {
        eprintln!("item 6: whole jobs...");
        rows.extend(phases::whole_jobs(&bench).await?);
    }
    rows.sort_by_key(|r| r.item);
    let report = Report {
        machine: Machine::describe(&cli.work_dir),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        rows,
    };
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::table(&report));
    }
    Ok(())
}
