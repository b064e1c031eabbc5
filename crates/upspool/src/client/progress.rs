//! Upload progress on stderr: a bar on a terminal (bytes, rate, ETA, retries), plain lines
//! otherwise (a line per tenth of the file and per retry), nothing with `--quiet`.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use upspool_client::upload::{NoProgress, Progress};
use upspool_client::ClientError;

/// The progress reporter for this process's stderr.
pub fn for_stderr(quiet: bool) -> Box<dyn Progress> {
    if quiet {
        Box::new(NoProgress)
    } else if std::io::stderr().is_terminal() {
        Box::new(Bar::new())
    } else {
        Box::new(Lines::default())
    }
}

/// A terminal progress bar.
struct Bar {
    bar: ProgressBar,
    retries: AtomicU32,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        Bar {
            bar,
            retries: AtomicU32::new(0),
        }
    }
}

impl Progress for Bar {
    fn started(&self, total: u64, already: u64) {
        self.bar.set_length(total);
        self.bar.set_position(already);
        self.bar.reset_eta();
    }
    fn acknowledged(&self, n: u64) {
        self.bar.inc(n);
        let total = self.bar.length().unwrap_or(0);
        if self.bar.position() >= total && !self.bar.is_finished() {
            // A summary line instead of the finished bar, which would leave the cursor at
            // its end, where the job id printed next on stdout would land.
            let secs = self.bar.elapsed().as_secs_f64();
            self.bar.finish_and_clear();
            eprintln!(
                "upspool: uploaded {total} bytes in {secs:.1}s, {} retries",
                self.retries.load(Ordering::Relaxed)
            );
        }
    }
    fn retrying(&self, error: &ClientError, delay: Duration) {
        let n = self.retries.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.set_message(format!("{n} retries"));
        self.bar
            .println(format!("retrying in {:.1}s: {error}", delay.as_secs_f64()));
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.abandon();
        }
    }
}

/// Plain progress lines, for logs and pipes.
#[derive(Default)]
struct Lines {
    total: AtomicU64,
    done: AtomicU64,
    sent: AtomicU64,
    retries: AtomicU32,
    /// Start time and the last tenth reported.
    state: Mutex<Option<(Instant, u64)>>,
}

impl Lines {
    fn line(&self, text: &str) {
        let _ = writeln!(std::io::stderr().lock(), "upspool: {text}");
    }
}

impl Progress for Lines {
    fn started(&self, total: u64, already: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(already, Ordering::Relaxed);
        if let Ok(mut s) = self.state.lock() {
            *s = Some((Instant::now(), already * 10 / total.max(1)));
        }
        self.line(&format!(
            "uploading {total} bytes ({already} already on the server)"
        ));
    }
    fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    fn acknowledged(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        let total = self.total.load(Ordering::Relaxed).max(1);
        let tenth = done * 10 / total;
        let Ok(mut s) = self.state.lock() else { return };
        let Some((start, last)) = s.as_mut() else {
            return;
        };
        if tenth > *last {
            *last = tenth;
            let secs = start.elapsed().as_secs_f64().max(1e-3);
            let rate = self.sent.load(Ordering::Relaxed) as f64 / secs / (1024.0 * 1024.0);
            self.line(&format!(
                "uploaded {done}/{total} bytes ({}%), {rate:.1} MiB/s, {} retries",
                done * 100 / total,
                self.retries.load(Ordering::Relaxed)
            ));
        }
    }
    fn retrying(&self, error: &ClientError, delay: Duration) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.line(&format!("retrying in {:.1}s: {error}", delay.as_secs_f64()));
    }
}
