//! Runs the real `upspool` binary for tests: one-shot commands ([`run`]) and servers
//! ([`Server`]), each in its own temporary directory (also the working directory, so the
//! default `./upspool-data` never lands in the source tree).
//!
//! A server is ready when it has printed its listening lines on stdout; the helper waits for
//! them (with a timeout, never a fixed sleep) and shows the server's stderr when a start
//! fails. When a test panics, dropping the [`Server`] prints the server's stderr too.
#![allow(dead_code)]

pub mod api;
pub mod proxy;
pub mod sdk;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to print its listening lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a one-shot command may run.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_upspool")
}

/// A `Command` for the binary, in `cwd`, with no `UPSPOOL_*` variable inherited from the
/// environment of the test run.
pub fn command(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.current_dir(cwd).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("UPSPOOL_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(envs.iter().copied());
    cmd
}

/// Runs a command that is expected to end (admin commands, invalid configurations) in `cwd`
/// and returns its output. Panics if it runs longer than [`RUN_TIMEOUT`] (a `serve` that
/// unexpectedly starts is killed).
pub fn run_in(cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut child = command(cwd, args, envs)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn upspool");
    let out = collect(child.stdout.take().unwrap());
    let err = collect(child.stderr.take().unwrap());
    let status = wait_until(&mut child, RUN_TIMEOUT);
    let status = match status {
        Some(s) => s,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "upspool {args:?} still running after {RUN_TIMEOUT:?}; stderr:\n{}",
                String::from_utf8_lossy(&err.join().unwrap())
            );
        }
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// [`run_in`] in a fresh temporary directory.
pub fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = TempDir::new().unwrap();
    run_in(dir.path(), args, envs)
}

fn collect(mut r: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Waits for the child to exit, polling, up to `timeout`.
fn wait_until(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait for upspool") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM (without a dependency on libc or nix).
pub fn sigterm(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

/// How to start a [`Server`]; see [`Server::builder`].
pub struct ServerBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    pass_data_dir: bool,
    pass_listen: bool,
}

impl ServerBuilder {
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    pub fn envs(mut self, envs: &[(&str, &str)]) -> Self {
        self.envs
            .extend(envs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        self
    }

    /// Do not pass `--data-dir`, so that the environment, a config file or the default
    /// decides. [`Server::data_dir`] is then `{root}/upspool-data`, the default, which is only
    /// right when nothing else sets the data directory.
    pub fn without_data_dir_flag(mut self) -> Self {
        self.pass_data_dir = false;
        self
    }

    /// Do not pass `--listen 127.0.0.1:0`, so that the environment, a config file or the
    /// default (127.0.0.1:8631) decides.
    pub fn without_listen_flag(mut self) -> Self {
        self.pass_listen = false;
        self
    }

    pub fn start(self) -> Server {
        self.try_start().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts the server, or returns why it did not start (exit status and stderr).
    pub fn try_start(self) -> Result<Server, String> {
        let root = TempDir::new().unwrap();
        let mut args = vec!["serve".to_string()];
        let has = |flag: &str| {
            self.args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let data_dir = if let Some(i) = self.args.iter().position(|a| a == "--data-dir") {
            root.path().join(&self.args[i + 1])
        } else if let Some(a) = self.args.iter().find(|a| a.starts_with("--data-dir=")) {
            root.path().join(&a["--data-dir=".len()..])
        } else if self.pass_data_dir {
            let dir = root.path().join("data");
            args.push("--data-dir".into());
            args.push(dir.to_str().unwrap().into());
            dir
        } else {
            root.path().join("upspool-data")
        };
        if self.pass_listen && !has("--listen") {
            args.push("--listen".into());
            args.push("127.0.0.1:0".into());
        }
        args.extend(self.args);
        let mut server = Server {
            child: None,
            root,
            args,
            envs: self.envs,
            data_dir,
            base_url: String::new(),
            https_url: None,
            stderr: Arc::new(Mutex::new(String::new())),
            stdout: Arc::new(Mutex::new(Vec::new())),
            threads: Vec::new(),
        };
        server.spawn()?;
        Ok(server)
    }
}

/// A running `upspool serve`. Dropping it kills the process.
pub struct Server {
    child: Option<Child>,
    root: TempDir,
    /// Everything after the binary name, `serve` included.
    args: Vec<String>,
    envs: Vec<(String, String)>,
    data_dir: PathBuf,
    base_url: String,
    https_url: Option<String>,
    /// stderr of every run so far, runs separated by a marker line.
    stderr: Arc<Mutex<String>>,
    /// stdout lines of every run so far.
    stdout: Arc<Mutex<Vec<String>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    /// `upspool serve --data-dir {tmp}/data --listen 127.0.0.1:0 ARGS...` with `ENVS`; the
    /// helper leaves out `--data-dir` / `--listen` when `args` has them (a relative
    /// `--data-dir` is relative to the temporary working directory).
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> Server {
        Server::builder().args(args).envs(envs).start()
    }

    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            args: Vec::new(),
            envs: Vec::new(),
            pass_data_dir: true,
            pass_listen: true,
        }
    }

    fn spawn(&mut self) -> Result<(), String> {
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = self
            .envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut child = command(self.root.path(), &args, &envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot spawn {}: {e}", bin()))?;

        let (tx, rx) = mpsc::channel::<String>();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let stdout_lines = self.stdout.clone();
        self.threads.push(std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                stdout_lines.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        }));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let stderr_text = self.stderr.clone();
        self.threads.push(std::thread::spawn(move || {
            let mut line = String::new();
            while matches!(stderr.read_line(&mut line), Ok(n) if n > 0) {
                stderr_text.lock().unwrap().push_str(&line);
                line.clear();
            }
        }));
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        let mut https = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("upspool listening on https://") {
                        https = Some(format!("https://{}", connectable(addr)));
                    } else if let Some(addr) = line.strip_prefix("upspool listening on http://") {
                        // The plain HTTP line is always the last one.
                        self.base_url = format!("http://{}", connectable(addr));
                        self.https_url = https;
                        return Ok(());
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(STOP_TIMEOUT);
                    return Err(format!(
                        "upspool {:?} exited before listening ({status:?}); stderr:\n{}",
                        self.args,
                        self.stderr()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.kill();
                    return Err(format!(
                        "upspool {:?} did not print its listening line within {START_TIMEOUT:?}; stderr:\n{}",
                        self.args,
                        self.stderr()
                    ));
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `https://127.0.0.1:PORT` when the server has a TLS listener.
    pub fn https_url(&self) -> Option<&str> {
        self.https_url.as_deref()
    }

    /// The data directory (see [`ServerBuilder::without_data_dir_flag`]).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary directory the server runs in (its working directory).
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The process id of the running server; panics when it is not running.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server is not running")
    }

    /// Everything the server wrote on stderr so far (all runs, for diagnostics).
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Every stdout line so far (all runs).
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// A client that trusts the self-signed certificate in `{data_dir}/tls/cert.pem`.
    pub fn https_client(&self) -> reqwest::Client {
        client_trusting(&self.data_dir.join("tls/cert.pem"))
    }

    /// Sends SIGTERM and waits (up to [`STOP_TIMEOUT`]) for the exit; panics with the
    /// server's stderr if it does not exit in time.
    pub fn stop_gracefully(&mut self) -> ExitStatus {
        sigterm(self.pid());
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "upspool did not exit within {STOP_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                    self.stderr()
                );
            }
        }
    }

    /// Waits for the server to exit by itself (after a signal the test sent); panics with its
    /// stderr if it does not exit within [`STOP_TIMEOUT`].
    pub fn wait(&mut self) -> ExitStatus {
        self.wait_exit(STOP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "upspool did not exit within {STOP_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
        self.wait_exit(STOP_TIMEOUT);
    }

    /// Starts the server again with the same arguments, environment and data directory,
    /// stopping it gracefully first if it runs. The ports (and so the URLs) may change.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop_gracefully();
        }
        self.stderr
            .lock()
            .unwrap()
            .push_str("----- restart -----\n");
        self.spawn().unwrap_or_else(|e| panic!("{e}"));
    }

    /// Waits for the process to exit and for its output to be read. `None` on timeout (the
    /// process is left running).
    fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = wait_until(child, timeout)?;
        self.child = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Some(status)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("----- upspool stderr -----\n{}\n-----", self.stderr());
        }
    }
}

/// The address in a listening line, with an unspecified IP made connectable.
fn connectable(addr: &str) -> String {
    match addr.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_unspecified() => {
            let ip = if a.is_ipv4() { "127.0.0.1" } else { "[::1]" };
            format!("{ip}:{}", a.port())
        }
        _ => addr.to_string(),
    }
}

/// Like [`client_trusting`], but not following redirects (as [`api::Api::new`]'s client), so
/// that tests see `302` answers themselves.
pub fn client_trusting_without_redirects(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// A reqwest client whose only trusted root is the PEM certificate at `cert`.
pub fn client_trusting(cert: &Path) -> reqwest::Client {
    let pem = std::fs::read(cert).unwrap_or_else(|e| panic!("read {}: {e}", cert.display()));
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}
