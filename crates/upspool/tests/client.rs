//! End-to-end tests of the client commands: the built `upspool` binary as the client process,
//! a real `upspool serve` as the service, and (where failures must be made to happen) a small
//! reverse proxy between them that answers 503/429 or holds requests (`common::proxy`).
//!
//! Nothing waits on a clock: the tests poll for conditions (a held request, a state file, a
//! job state) with deadlines. The only timing asserted is an ordering: a retry never comes
//! before the `Retry-After` the client was given.

mod common;

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use tempfile::TempDir;

use common::api::{random_bytes, sha256, Api, JobRef};
use common::proxy::{forward_all, Action, Proxy};
use common::Server;

const MIB: usize = 1024 * 1024;
const DEADLINE: Duration = Duration::from_secs(60);

/// A client "home": working directory, resume cache and an empty config home, so that
/// nothing of the machine's own settings leaks in.
struct Client {
    dir: TempDir,
}

impl Client {
    fn new() -> Self {
        Client {
            dir: TempDir::new().unwrap(),
        }
    }

    fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    fn envs(&self) -> Vec<(String, String)> {
        let d = self.dir.path();
        vec![
            (
                "UPSPOOL_CACHE_DIR".into(),
                self.cache().display().to_string(),
            ),
            ("HOME".into(), d.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                d.join("config").display().to_string(),
            ),
        ]
    }

    /// A file in the client's directory.
    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        p.display().to_string()
    }

    /// Runs a client command to its end.
    fn run(&self, args: &[&str]) -> Output {
        let envs = self.envs();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::run_in(self.dir.path(), args, &envs)
    }

    /// Starts a client command without waiting for it.
    fn spawn(&self, args: &[&str]) -> Child {
        let envs = self.envs();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        common::command(self.dir.path(), args, &envs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the client")
    }

    /// The resume state files present now.
    fn state_files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.cache()) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The `--json` report of a successful run.
fn report(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "client failed ({:?}); stderr:\n{}\nstdout:\n{}",
        out.status,
        text(&out.stderr),
        text(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("JSON report: {e}: {}", text(&out.stdout)))
}

/// A "PDF": the magic, then deterministic random bytes.
fn pdf(len: usize, seed: u64) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend(random_bytes(len - v.len(), seed));
    v
}

/// Polls `cond` until it holds, panicking with `what` at the deadline.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A printer and a share named `name` on the server; returns the share id.
async fn share(api: &Api, name: &str) -> (String, String) {
    let printer = api.printer(name).await;
    let share = api.share(&printer, name).await;
    (printer, share)
}

/// The job's document, downloaded through `$value`.
async fn download(api: &Api, share: &str, job: &Value) -> Vec<u8> {
    let j = JobRef {
        scope: format!("shares/{share}"),
        job: job["jobId"].as_str().unwrap().to_string(),
        document: job["documentId"].as_str().unwrap().to_string(),
    };
    api.download(&j).await.1
}

/// A dev-auth server whose `public_url` is a proxy in front of it, so that upload URLs go
/// through the proxy too.
fn proxied_server(extra: &[&str]) -> (Server, Proxy) {
    let proxy = Proxy::start("http://127.0.0.1:9", forward_all());
    let mut args = vec!["--insecure-dev-auth", "--public-url", proxy.url()];
    args.extend_from_slice(extra);
    let server = Server::start(&args, &[]);
    proxy.set_upstream(server.base_url());
    (server, proxy)
}

fn is_put(method: &str, path: &str) -> bool {
    method == "PUT" && path.starts_with("/uploadSessions/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_file_with_four_streams_arrives_intact() {
    let server = Server::start(&[], &[]);
    let dir = server.data_dir().display().to_string();
    let mint = |args: &[&str]| {
        let mut all = vec!["token", "--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        let out = common::run(&all, &[]);
        assert!(out.status.success(), "token: {}", text(&out.stderr));
        text(&out.stdout).trim().to_string()
    };
    let admin = mint(&[
        "--user",
        "admin@example.com",
        "--scopes",
        "Printer.FullControl.All PrinterShare.ReadWrite.All",
    ]);
    let user = mint(&[
        "--user",
        "alice@example.com",
        "--scopes",
        "PrintJob.ReadWrite PrinterShare.ReadBasic.All",
    ]);
    let api = Api::new(server.base_url()).with_token(&admin);
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(50 * MIB, 1);
    let file = client.file("report.pdf", &data);

    let out = client.run(&[
        "print",
        &file,
        "--share",
        "office",
        "--streams",
        "4",
        "--copies",
        "2",
        "--duplex",
        "long-edge",
        "--color",
        "bw",
        "--pages",
        "1-3,5",
        "--server",
        server.base_url(),
        "--token",
        &user,
        "--json",
    ]);
    let r = report(&out);
    assert_eq!(r["size"], data.len());
    assert_eq!(r["sha256"], sha256(&data));
    assert_eq!(r["contentType"], "application/pdf");
    assert_eq!(r["bytesSent"], data.len(), "every byte sent exactly once");
    assert_eq!(r["retries"], 0);
    assert_eq!(r["resumed"], false);
    assert_eq!(r["state"], "processing", "the job was started");
    assert_eq!(r["scope"], format!("shares/{share_id}"));
    // Not a terminal: plain progress lines on stderr.
    let progress = text(&out.stderr);
    assert!(
        progress.contains(&format!("uploaded {0}/{0} bytes (100%)", data.len())),
        "progress lines: {progress}"
    );

    let alice = Api::new(server.base_url()).with_token(&user);
    let got = download(&alice, &share_id, &r).await;
    assert_eq!(got.len(), data.len());
    assert_eq!(sha256(&got), sha256(&data), "the document is the file");

    // The options became the job's configuration; the document kept the file's name.
    let job = Api::expect(
        alice
            .get(&format!(
                "/print/shares/{share_id}/jobs/{}?$expand=documents",
                r["jobId"].as_str().unwrap()
            ))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        job["configuration"],
        json!({"copies": 2, "duplexMode": "flipOnLongEdge", "colorMode": "blackAndWhite",
               "pageRanges": [{"start": 1, "end": 3}, {"start": 5, "end": 5}]})
    );
    assert_eq!(job["documents"][0]["displayName"], "report.pdf");
    assert!(
        client.state_files().is_empty(),
        "the state is gone after success"
    );

    // The listing commands see it, as JSON and as a table.
    let connect = ["--server", server.base_url(), "--token", user.as_str()];
    let jobs = client.run(&[&["jobs", "--share", "Office", "--json"][..], &connect].concat());
    let jobs = report(&jobs);
    assert_eq!(jobs.as_array().unwrap().len(), 1);
    assert_eq!(jobs[0]["id"], r["jobId"]);
    let one = client.run(&[&["job", r["jobId"].as_str().unwrap()][..], &connect].concat());
    assert!(one.status.success(), "{}", text(&one.stderr));
    assert!(text(&one.stdout).contains("processing"));
    assert!(text(&one.stdout).contains("report.pdf"));
    let shares = client.run(&[&["shares"][..], &connect].concat());
    assert!(
        text(&shares.stdout).starts_with("ID"),
        "a table: {}",
        text(&shares.stdout)
    );
    assert!(text(&shares.stdout).contains(&share_id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_client_resumes_and_sends_only_what_is_missing() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let seg = 256 * 1024;
    let data = pdf(8 * MIB, 2);
    let file = client.file("big.pdf", &data);
    let args = [
        "print",
        &file,
        "--share",
        &share_id,
        "--streams",
        "2",
        "--segment-size",
        "256KiB",
        "--server",
        proxy.url(),
        "--json",
    ];

    // The first run: 20 segment PUTs (5 MiB) get through, every later one is held.
    let mut puts = 0;
    proxy.set_rule(Box::new(move |m, p, _| {
        if !is_put(m, p) {
            return Action::Forward;
        }
        puts += 1;
        if puts <= 20 {
            Action::Forward
        } else {
            Action::Hold
        }
    }));
    let mut first = client.spawn(&args);
    wait_for("20 acknowledged segments and 2 held ones", || {
        let acked = proxy
            .log()
            .iter()
            .filter(|s| is_put(&s.method, &s.path) && s.action == Action::Forward)
            .count();
        acked == 20 && proxy.holding() == 2
    });
    assert_eq!(client.state_files().len(), 1, "the state file was written");
    first.kill().unwrap();
    first.wait().unwrap();

    // What the service has now: 20 segments, nothing of the held ones.
    let state: Value =
        serde_json::from_slice(&std::fs::read(&client.state_files()[0]).unwrap()).unwrap();
    let url = state["uploadUrl"]
        .as_str()
        .unwrap()
        .replace(proxy.url(), server.base_url());
    wait_for("the 20 forwarded segments to be recorded", || {
        let status = blocking_json(&url);
        status.is_some_and(|s| missing_bytes(&s) == (data.len() - 20 * seg) as u64)
    });

    proxy.set_rule(forward_all());
    let second = report(&client.run(&args));
    assert_eq!(second["resumed"], true);
    assert_eq!(second["jobId"], state["jobId"], "the same job");
    let missing = data.len() - 20 * seg;
    assert_eq!(second["bytesAlreadyUploaded"], 20 * seg);
    let sent = second["bytesSent"].as_u64().unwrap() as usize;
    assert!(
        sent <= missing + 2 * seg && sent < data.len() / 2,
        "the second run sent {sent} bytes; {missing} were missing of {}",
        data.len()
    );
    assert!(sent >= missing, "it sent everything that was missing");
    let got = download(&api, &share_id, &second).await;
    assert_eq!(
        sha256(&got),
        sha256(&data),
        "the resumed document is intact"
    );
    assert!(client.state_files().is_empty());
}

/// Bytes in a session status's `nextExpectedRanges`.
fn missing_bytes(status: &Value) -> u64 {
    status["nextExpectedRanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let (a, b) = r.as_str().unwrap().split_once('-').unwrap();
            b.parse::<u64>().unwrap() - a.parse::<u64>().unwrap() + 1
        })
        .sum()
}

/// `GET url` as JSON, from a thread of its own (the test's runtime threads may be blocked
/// on client processes).
fn blocking_json(url: &str) -> Option<Value> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let resp = reqwest::get(&url).await.ok()?;
            resp.json().await.ok()
        })
    })
    .join()
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_rides_through_a_server_restart() {
    let (mut server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(4 * MIB, 3);
    let file = client.file("doc.pdf", &data);
    let mut puts = 0;
    proxy.set_rule(Box::new(move |m, p, _| {
        if !is_put(m, p) {
            return Action::Forward;
        }
        puts += 1;
        if puts <= 4 {
            Action::Forward
        } else {
            Action::Hold
        }
    }));
    // 12 retries: minutes of patience, however slowly a loaded machine restarts the server.
    let child = client.spawn(&[
        "print",
        &file,
        "--share",
        "Office",
        "--streams",
        "2",
        "--segment-size",
        "256KiB",
        "--retries",
        "12",
        "--server",
        proxy.url(),
        "--json",
    ]);
    wait_for("4 segments through and 2 held", || {
        proxy.answered() >= 4 + 3 && proxy.holding() == 2
    });
    // The server goes away with two segments in flight; they reach it only once it is down.
    server.kill();
    proxy.set_rule(forward_all());
    proxy.release();
    wait_for("the held segments to fail", || {
        proxy
            .log()
            .iter()
            .any(|s| s.method == "GET" && s.path.starts_with("/uploadSessions/"))
    });
    server.restart();
    proxy.set_upstream(server.base_url());
    let out = wait_output(child);
    let r = report(&out);
    assert!(r["retries"].as_u64().unwrap() >= 1, "it retried: {r}");
    assert!(
        r["bytesSent"].as_u64().unwrap() < (data.len() + 4 * 256 * 1024) as u64,
        "acknowledged segments were not sent again: {r}"
    );
    let api = Api::new(server.base_url());
    let got = download(&api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));
}

/// Waits for a spawned client to end and collects its output.
fn wait_output(child: Child) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(DEADLINE)
        .expect("the client ended in time")
        .expect("client output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_and_unavailability_are_retried_after_retry_after() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(MIB, 4);
    let file = client.file("doc.pdf", &data);
    // The first three segment PUTs: 503, 429, 503, each with Retry-After: 1.
    let mut puts = 0;
    proxy.set_rule(Box::new(move |m, p, _| {
        if !is_put(m, p) {
            return Action::Forward;
        }
        puts += 1;
        match puts {
            1 | 3 => Action::Respond {
                status: 503,
                retry_after: Some(1),
            },
            2 => Action::Respond {
                status: 429,
                retry_after: Some(1),
            },
            _ => Action::Forward,
        }
    }));
    let r = report(&client.run(&[
        "print",
        &file,
        "--share",
        "Office",
        "--streams",
        "1",
        "--segment-size",
        "256KiB",
        "--server",
        proxy.url(),
        "--json",
    ]));
    assert_eq!(r["retries"], 3);
    // Refused bodies may or may not have been taken by the transport before the answer.
    let sent = r["bytesSent"].as_u64().unwrap();
    assert!(sent >= data.len() as u64 && sent <= (data.len() + 3 * 256 * 1024) as u64);
    let got = download(&api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));

    // Each refusal was followed by a status GET (what is missing?) and the next attempt, both
    // no earlier than the Retry-After.
    let log: Vec<_> = proxy
        .log()
        .into_iter()
        .filter(|s| s.path.starts_with("/uploadSessions/"))
        .collect();
    let refused: Vec<usize> = (0..log.len())
        .filter(|&i| matches!(log[i].action, Action::Respond { .. }))
        .collect();
    assert_eq!(refused.len(), 3);
    for &i in &refused {
        let next = &log[i + 1];
        assert_eq!(next.method, "GET", "asked the session after the refusal");
        assert!(
            next.at.duration_since(log[i].at) >= Duration::from_secs(1),
            "the retry came {:?} after a Retry-After of 1s",
            next.at.duration_since(log[i].at)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_exit_non_zero_with_a_clear_message() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    share(&api, "Office").await;
    let client = Client::new();
    let file = client.file("doc.pdf", &pdf(300 * 1024, 5));
    proxy.set_rule(Box::new(|m, p, _| {
        if is_put(m, p) {
            Action::Respond {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Forward
        }
    }));
    let out = client.run(&[
        "print",
        &file,
        "--share",
        "Office",
        "--retries",
        "2",
        "--server",
        proxy.url(),
    ]);
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("gave up after 3 attempts") && err.contains("503"),
        "a clear message: {err}"
    );
    let puts = proxy
        .log()
        .iter()
        .filter(|s| is_put(&s.method, &s.path))
        .count();
    assert_eq!(puts, 3, "one attempt and two retries");
    assert_eq!(client.state_files().len(), 1, "kept for a later resume");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_no_document_is_refused_before_anything_is_created() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (printer, _) = share(&api, "Office").await;
    let client = Client::new();
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.extend(random_bytes(4096, 6));
    let file = client.file("report.pdf", &elf);
    let before = proxy.log().len();
    let out = client.run(&["print", &file, "--share", "Office", "--server", proxy.url()]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("is not a printable document") && err.contains("PDF"),
        "a clear message: {err}"
    );
    assert_eq!(proxy.log().len(), before, "not a single request was sent");
    let jobs = Api::expect(
        api.get(&format!("/print/printers/{printer}/jobs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(jobs["value"], json!([]));

    // Plain text is a document; --content-type overrides the check.
    let txt = client.file("notes.txt", "Grüße\n\tline two\n".as_bytes());
    let r = report(&client.run(&[
        "print",
        &txt,
        "--share",
        "Office",
        "--server",
        proxy.url(),
        "--json",
    ]));
    assert_eq!(r["contentType"], "text/plain");
    let r = report(&client.run(&[
        "print",
        &file,
        "--share",
        "Office",
        "--content-type",
        "application/octet-stream",
        "--server",
        proxy.url(),
        "--json",
    ]));
    assert_eq!(r["contentType"], "application/octet-stream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_follows_the_job_and_fails_when_it_is_canceled() {
    let server = Server::start(&["--insecure-dev-auth"], &[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let file = client.file("doc.pdf", &pdf(100_000, 7));
    let child = client.spawn(&[
        "print",
        &file,
        "--share",
        "Office",
        "--wait",
        "--server",
        server.base_url(),
        "--json",
    ]);
    // Once the job is processing, someone cancels it.
    let mut job = String::new();
    let deadline = Instant::now() + DEADLINE;
    while job.is_empty() {
        assert!(Instant::now() < deadline, "no processing job appeared");
        let list = Api::expect(
            api.get(&format!("/print/shares/{share_id}/jobs")).await,
            StatusCode::OK,
        )
        .await;
        if let Some(j) = list["value"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["status"]["state"] == "processing")
        {
            job = j["id"].as_str().unwrap().to_string();
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let resp = api
        .post(
            &format!("/print/shares/{share_id}/jobs/{job}/cancel"),
            json!({}),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("canceled"),
        "{}",
        text(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["state"], "canceled");
    assert_eq!(r["jobId"], job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_session_starts_over_and_no_resume_starts_fresh() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(2 * MIB, 8);
    let file = client.file("doc.pdf", &data);
    let args = [
        "print",
        &file,
        "--share",
        "Office",
        "--segment-size",
        "256KiB",
        "--retries",
        "0",
        "--server",
        proxy.url(),
        "--json",
    ];
    // A run that fails part-way (every PUT refused, no retries) leaves its state behind.
    proxy.set_rule(Box::new(|m, p, _| {
        if is_put(m, p) {
            Action::Respond {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Forward
        }
    }));
    assert_eq!(client.run(&args).status.code(), Some(1));
    let states = client.state_files();
    assert_eq!(states.len(), 1);
    let old: Value = serde_json::from_slice(&std::fs::read(&states[0]).unwrap()).unwrap();
    // The session vanishes (deleted, as expiry would): the next run starts over cleanly.
    let resp = api
        .http
        .delete(old["uploadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    proxy.set_rule(forward_all());
    let r = report(&client.run(&args));
    assert_eq!(r["resumed"], false);
    assert_ne!(r["jobId"], old["jobId"], "a new job");
    assert_eq!(r["bytesSent"], data.len());
    let got = download(&api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));
    let abandoned = Api::expect(
        api.get(&format!(
            "/print/shares/{share_id}/jobs/{}",
            old["jobId"].as_str().unwrap()
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        abandoned["status"]["state"], "canceled",
        "the abandoned job was canceled"
    );

    // --no-resume ignores a resumable state.
    proxy.set_rule(Box::new(|m, p, _| {
        if is_put(m, p) {
            Action::Respond {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Forward
        }
    }));
    assert_eq!(client.run(&args).status.code(), Some(1));
    proxy.set_rule(forward_all());
    let r = report(&client.run(&[&args[..], &["--no-resume"]].concat()));
    assert_eq!(r["resumed"], false);
    assert_eq!(r["bytesSent"], data.len());
    assert!(client.state_files().is_empty());
}

#[test]
fn usage_errors_exit_2_before_any_request() {
    let client = Client::new();
    let file = client.file("doc.pdf", b"%PDF-1.4\n");
    for (args, needle) in [
        (vec!["print", file.as_str()], "--share"),
        (
            vec!["print", file.as_str(), "--share", "x", "--pages", "3-1"],
            "--pages",
        ),
        (
            vec!["print", file.as_str(), "--share", "x", "--copies", "0"],
            "copies",
        ),
        (
            vec![
                "print",
                file.as_str(),
                "--share",
                "x",
                "--segment-size",
                "big",
            ],
            "--segment-size",
        ),
        (
            vec!["print", "/nonexistent/file.pdf", "--share", "x"],
            "nonexistent",
        ),
    ] {
        // Port 9 (discard) on loopback: any request would fail with exit 1, not 2.
        let out = client.run(&[&args[..], &["--server", "http://127.0.0.1:9"]].concat());
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    }
    // A directory is no document either.
    let dir = client.dir.path().display().to_string();
    let out = client.run(&[
        "print",
        &dir,
        "--share",
        "x",
        "--server",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("is not a file"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_interrupted_before_start_is_only_started_on_the_next_run() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(MIB, 9);
    let file = client.file("doc.pdf", &data);
    let args = [
        "print",
        &file,
        "--share",
        "Office",
        "--retries",
        "0",
        "--server",
        proxy.url(),
        "--json",
    ];
    // The upload completes, but starting the job fails.
    proxy.set_rule(Box::new(|m, p, _| {
        if m == "POST" && p.ends_with("/start") {
            Action::Respond {
                status: 503,
                retry_after: None,
            }
        } else {
            Action::Forward
        }
    }));
    let out = client.run(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let states = client.state_files();
    assert_eq!(states.len(), 1, "kept: the job is not started yet");
    let old: Value = serde_json::from_slice(&std::fs::read(&states[0]).unwrap()).unwrap();
    // Even once the completed session is gone, the next run only starts the job.
    let resp = api
        .http
        .delete(old["uploadUrl"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    proxy.set_rule(forward_all());
    let r = report(&client.run(&args));
    assert_eq!(r["jobId"], old["jobId"], "the same job");
    assert_eq!(r["resumed"], true);
    assert_eq!(r["bytesSent"], 0, "nothing sent again");
    assert_eq!(r["state"], "processing");
    let got = download(&api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_works_with_the_servers_certificate_and_only_with_it() {
    let server = Server::start(&["--insecure-dev-auth", "--tls-listen", "127.0.0.1:0"], &[]);
    let https = server.https_url().unwrap().to_string();
    let api = Api::new(server.base_url());
    let (printer, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let data = pdf(3 * MIB, 10);
    let file = client.file("doc.pdf", &data);
    let cert = server.data_dir().join("tls/cert.pem").display().to_string();

    let untrusted = client.run(&["print", &file, "--share", "Office", "--server", &https]);
    assert_eq!(untrusted.status.code(), Some(1));
    assert!(
        text(&untrusted.stderr).contains("GET /print/shares"),
        "{}",
        text(&untrusted.stderr)
    );
    // A certificate the client does not trust is not worth retrying.
    let untrusted = client.run(&[
        "print",
        &file,
        "--printer",
        &printer,
        "--server",
        &https,
        "--quiet",
    ]);
    assert_eq!(untrusted.status.code(), Some(1));
    let err = text(&untrusted.stderr);
    assert!(
        err.contains("POST /print/printers/") && !err.contains("gave up"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one error line, no retries: {err}");

    let r = report(&client.run(&[
        "print",
        &file,
        "--share",
        "Office",
        "--server",
        &https,
        "--ca-cert",
        &cert,
        "--json",
        "--segment-size",
        "1MiB",
    ]));
    assert_eq!(r["bytesSent"], data.len());
    // The download URL is on the HTTPS listener too.
    let pem = std::fs::read(&cert).unwrap();
    let https_api = Api {
        http: reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        base: https.clone(),
        version: "v1.0",
        token: None,
    };
    let got = download(&https_api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_config_file_names_the_server_and_the_token_command() {
    let server = Server::start(&[], &[]);
    let dir = server.data_dir().display().to_string();
    let out = common::run(
        &[
            "token",
            "--data-dir",
            &dir,
            "--user",
            "admin@example.com",
            "--scopes",
            "Printer.FullControl.All PrinterShare.ReadWrite.All",
        ],
        &[],
    );
    let admin = text(&out.stdout).trim().to_string();
    let api = Api::new(server.base_url()).with_token(&admin);
    let (printer, _) = share(&api, "Office").await;
    let client = Client::new();
    let token_file = client.file("token.txt", admin.as_bytes());
    let config = client.file(
        "client.toml",
        format!(
            "server = \"{}\"\ntoken_command = \"cat '{token_file}'\"\n",
            server.base_url()
        )
        .as_bytes(),
    );

    // Without a token the service refuses, and the message says why.
    let out = client.run(&["printers", "--server", server.base_url()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("401"), "{}", text(&out.stderr));

    // With the file: its server, and the token its command prints.
    let out = client.run(&["printers", "--client-config", &config]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.starts_with("ID") && table.contains(&printer),
        "{table}"
    );
    let out = client.run(&["printers", "--client-config", &config, "--json"]);
    let list = report(&out);
    assert_eq!(list[0]["id"], printer.as_str());

    // A token given directly wins over the command; a wrong one is refused.
    let out = client.run(&[
        "shares",
        "--client-config",
        &config,
        "--token",
        "not-a-token",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("InvalidAuthenticationToken"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_sends_exactly_the_gaps_even_when_the_service_lists_one_at_a_time() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    let (_, share_id) = share(&api, "Office").await;
    let client = Client::new();
    let seg = 256 * 1024;
    let data = pdf(16 * seg, 11);
    let file = client.file("doc.pdf", &data);
    let args = [
        "print",
        &file,
        "--share",
        "Office",
        "--streams",
        "4",
        "--segment-size",
        "256KiB",
        "--server",
        proxy.url(),
        "--json",
    ];
    // The first run: segments 2 and 5 (0-based) are held, every other one arrives.
    let held = [2 * seg, 5 * seg].map(|start| format!("bytes {start}-"));
    proxy.set_rule(Box::new(move |m, p, range| {
        if is_put(m, p) && range.is_some_and(|r| held.iter().any(|h| r.starts_with(h.as_str()))) {
            Action::Hold
        } else {
            Action::Forward
        }
    }));
    let mut first = client.spawn(&args);
    wait_for("14 segments through and 2 held", || {
        let through = proxy
            .log()
            .iter()
            .filter(|s| is_put(&s.method, &s.path) && s.action == Action::Forward)
            .count();
        through == 14 && proxy.holding() == 2 && proxy.answered() >= 14 + 3
    });
    first.kill().unwrap();
    first.wait().unwrap();
    let state: Value =
        serde_json::from_slice(&std::fs::read(&client.state_files()[0]).unwrap()).unwrap();
    let url = state["uploadUrl"]
        .as_str()
        .unwrap()
        .replace(proxy.url(), server.base_url());
    let truth = blocking_json(&url).unwrap();
    assert_eq!(
        truth["nextExpectedRanges"],
        json!([
            format!("{}-{}", 2 * seg, 3 * seg - 1),
            format!("{}-{}", 5 * seg, 6 * seg - 1)
        ]),
        "two gaps on the service"
    );

    // The second run sees one gap per answer, and still sends exactly the two segments.
    proxy.set_rule(Box::new(|m, p, _| {
        if m == "GET" && p.starts_with("/uploadSessions/") {
            Action::ForwardFirstGapOnly
        } else {
            Action::Forward
        }
    }));
    let r = report(&client.run(&args));
    assert_eq!(r["resumed"], true);
    assert_eq!(r["bytesSent"], 2 * seg, "only the gaps, each once");
    let got = download(&api, &share_id, &r).await;
    assert_eq!(sha256(&got), sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_exits_130_and_keeps_the_upload_resumable() {
    let (server, proxy) = proxied_server(&[]);
    let api = Api::new(server.base_url());
    share(&api, "Office").await;
    let client = Client::new();
    let file = client.file("doc.pdf", &pdf(MIB, 12));
    proxy.set_rule(Box::new(|m, p, _| {
        if is_put(m, p) {
            Action::Hold
        } else {
            Action::Forward
        }
    }));
    let child = client.spawn(&["print", &file, "--share", "Office", "--server", proxy.url()]);
    wait_for("a held segment", || proxy.holding() >= 1);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = wait_output(child);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("run the same command again"));
    assert_eq!(client.state_files().len(), 1, "resumable");
}
