//! Starts and stops the real `upspool` binary on a fresh temporary data directory, and reads
//! its memory figures from `/proc`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{bail, Context};

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running server; killed when dropped (its temporary data directory goes with it).
pub struct Server {
    child: Child,
    pub base: String,
    pub data_dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// `upspool serve --insecure-dev-auth --listen 127.0.0.1:0` with a data directory under
    /// `parent` (so that blobs land on the filesystem the direct baselines use).
    pub fn start(bin: &Path, parent: &Path, log_level: &str) -> anyhow::Result<Server> {
        let tmp = tempfile::Builder::new()
            .prefix("upspool-bench-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a data directory in {}", parent.display()))?;
        let data_dir = tmp.path().join("data");
        let log = File::create(tmp.path().join("server.log"))?;
        let mut child = Command::new(bin)
            .args(["serve", "--insecure-dev-auth", "--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(&data_dir)
            .env("RUST_LOG", log_level)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (tx, rx) = mpsc::channel();
        // Keeps draining stdout for the server's whole life, so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("upspool listening on http://") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut server = Server {
            child,
            base: String::new(),
            data_dir,
            _tmp: tmp,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => server.base = format!("http://{addr}"),
            Err(_) => {
                let log = std::fs::read_to_string(server._tmp.path().join("server.log"))
                    .unwrap_or_default();
                bail!("upspool did not announce its listener within {START_TIMEOUT:?}:\n{log}");
            }
        }
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> anyhow::Result<u64> {
        proc_status_kib(self.pid(), "VmHWM:").map(|k| k * 1024)
    }

    /// Context switches (voluntary and not) of the server's live threads so far. Threads that
    /// ended take theirs with them, so take differences over short spans of activity.
    pub fn context_switches(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
                continue; // the thread ended meanwhile
            };
            total += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
        Ok(total)
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time_of(&format!("/proc/{}/stat", self.pid()))
    }
}

/// CPU time (user + system) this process (the bench: client and direct runs) has used.
pub fn own_cpu_time() -> anyhow::Result<Duration> {
    cpu_time_of("/proc/self/stat")
}

/// utime + stime from a `/proc/.../stat` file, in clock ticks of 10 ms (USER_HZ is 100 on
/// Linux).
fn cpu_time_of(path: &str) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
    // The command name may hold spaces; the fields after it are plain numbers.
    let after = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `kB` field of `/proc/{pid}/status`.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Finds the release `upspool` binary, building it first unless `explicit` names one.
pub fn locate_binary(explicit: Option<&Path>, build: bool) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    if build {
        eprintln!("building the release upspool binary (cargo build --release -p upspool)...");
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(["build", "--release", "-p", "upspool"])
            .current_dir(&workspace)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo build --release -p upspool failed");
        }
    }
    let bin = target.join("release/upspool");
    if !bin.exists() {
        bail!(
            "{} does not exist; build it with `cargo build --release -p upspool`",
            bin.display()
        );
    }
    Ok(bin.canonicalize()?)
}
