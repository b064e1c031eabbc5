//! Support for the SDK compatibility tests (`sdk_python.rs`, `sdk_js.rs`): where the SDK
//! environment of `scripts/sdk-env.sh` lives, tokens from the real `upspool token` command, a
//! printer and share to print to, and running an SDK program with a deadline.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::api::{random_bytes, Api};
use super::Server;

/// The script that installs the SDKs (named in every skip or failure message).
pub const ENV_SCRIPT: &str = "scripts/sdk-env.sh";

/// The workspace root (this crate is `crates/upspool`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `crates/upspool/tests/sdk/{rel}`: the SDK programs and their pinned dependencies.
pub fn sdk_dir(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sdk")
        .join(rel)
}

/// True when running in CI (`CI` set and not empty): a missing SDK environment then fails
/// the test instead of skipping it, so CI can never pass without running the SDKs.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// `path` if it exists (or the path in the environment variable `override_var`). Otherwise:
/// in CI a panic naming the install script; elsewhere a skip notice on stderr and `None`.
pub fn require(what: &str, override_var: &str, default: PathBuf) -> Option<PathBuf> {
    let path = std::env::var_os(override_var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or(default);
    if path.exists() {
        return Some(path);
    }
    let msg = format!(
        "{what} not found at {} (set {override_var} or run {ENV_SCRIPT}, as .ci/run does)",
        path.display()
    );
    if in_ci() {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Runs `upspool token ARGS --data-dir {server's}` and returns the token it printed.
pub fn mint(server: &Server, args: &[&str]) -> String {
    let dir = server.data_dir().to_str().unwrap().to_string();
    let mut all = vec!["token", "--data-dir", dir.as_str()];
    all.extend_from_slice(args);
    let out = super::run(&all, &[]);
    assert!(
        out.status.success(),
        "upspool {all:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A share open to all users, made by an administrator, and a printing user's token.
pub struct PrintTarget {
    pub admin: Api,
    pub printer: String,
    pub share: String,
    /// `alice@example.com` with `PrintJob.ReadWrite PrinterShare.ReadBasic.All`.
    pub user_token: String,
}

/// Creates a printer and a share through `api` (on the plain or the HTTPS listener).
pub async fn print_target(server: &Server, api: &Api) -> PrintTarget {
    let admin = api.with_token(&mint(
        server,
        &[
            "--user",
            "admin@example.com",
            "--scopes",
            "Printer.FullControl.All PrinterShare.ReadWrite.All",
        ],
    ));
    let printer = admin.printer("SDK printer").await;
    let share = admin.share(&printer, "SDK share").await;
    let user_token = mint(
        server,
        &[
            "--user",
            "alice@example.com",
            "--scopes",
            "PrintJob.ReadWrite PrinterShare.ReadBasic.All",
        ],
    );
    PrintTarget {
        admin,
        printer,
        share,
        user_token,
    }
}

/// What an SDK program did.
pub struct ProgramRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl ProgramRun {
    /// Asserts success and returns stdout's last line parsed as JSON.
    pub fn json(&self, what: &str) -> serde_json::Value {
        assert!(
            self.status.success(),
            "{what} failed ({:?}); stderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        let line = self.stdout.lines().last().unwrap_or_default();
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{what} printed no JSON ({e}); stdout:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Runs `cmd` to its end, killing it after `timeout` (then panicking with its output).
/// Runs on a blocking thread so the test's runtime keeps serving.
pub async fn run_program(mut cmd: Command, timeout: Duration) -> ProgramRun {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let out = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = out.read_to_string(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let status = loop {
            if let Some(s) = child.try_wait().expect("wait for SDK program") {
                break Some(s);
            }
            if start.elapsed() >= timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
        let Some(status) = status else {
            panic!("{cmd:?} still running after {timeout:?}; stdout:\n{stdout}\nstderr:\n{stderr}");
        };
        ProgramRun {
            status,
            stdout,
            stderr,
            elapsed: start.elapsed(),
        }
    })
    .await
    .expect("SDK program thread")
}

/// The value of one Prometheus sample line `{name}{labels} VALUE` in `/metrics` (0 if absent).
pub async fn metric(base: &str, client: &reqwest::Client, sample: &str) -> u64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// `upspool_http_requests_total` for `method` on upload URLs answered with `status`.
pub async fn upload_requests(api: &Api, method: &str, status: u16) -> u64 {
    metric(
        &api.base,
        &api.http,
        &format!(
            "upspool_http_requests_total{{method=\"{method}\",route=\"/uploadSessions/{{session}}\",status=\"{status}\"}}"
        ),
    )
    .await
}

/// The two documents each SDK program prints: 12 MiB (several default 5 MiB slices) and
/// 300,000 bytes (one slice, so the Python task's replay of its only range is exercised),
/// written to a temporary directory. `seed` and `seed + 1` pick their random bytes.
pub struct Inputs {
    pub dir: tempfile::TempDir,
    pub files: Vec<(&'static str, Vec<u8>)>,
}

impl Inputs {
    pub fn new(seed: u64) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let files = vec![
            ("large.pdf", random_bytes(12 * 1024 * 1024, seed)),
            ("small.pdf", random_bytes(300_000, seed + 1)),
        ];
        for (name, bytes) in &files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        Inputs { dir, files }
    }

    /// The files' paths, in order, for the SDK program's arguments.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files
            .iter()
            .map(|(n, _)| self.dir.path().join(n))
            .collect()
    }
}
