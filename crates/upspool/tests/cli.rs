//! The `upspool` binary's contract: commands, configuration layers, exit codes, listeners,
//! TLS and shutdown. Each test runs the real binary in its own temporary directory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{run, run_in, Server};
use serde_json::Value;

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn json_of(out: &std::process::Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}, stderr:\n{}",
        out.status,
        stderr_of(out)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Runs `serve` with an invalid configuration and returns its stderr after checking exit 2.
fn serve_usage_error(args: &[&str], envs: &[(&str, &str)]) -> String {
    let mut all = vec!["serve", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let out = run(&all, envs);
    let err = stderr_of(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "args {args:?} envs {envs:?}; stderr:\n{err}"
    );
    err
}

#[test]
fn version_and_help() {
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("upspool {}", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );

    let out = run(&["help"], &[]);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("serve") && stdout.contains("admin"),
        "{stdout}"
    );

    let out = run(&["serve", "--help"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--data-dir",
        "--tls-listen",
        "--max-segment-size",
        "UPSPOOL_SESSION_TTL",
    ] {
        assert!(
            stdout.contains(flag),
            "{flag} missing from serve --help:\n{stdout}"
        );
    }

    let out = run(&["serve", "--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn admin_printer_add_then_share_add_print_json() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();

    let printer = json_of(&run_in(
        dir.path(),
        &[
            "admin",
            "printer",
            "add",
            "--name",
            "Front Desk",
            "--manufacturer",
            "ACME",
            "--model",
            "P1",
            "--data-dir",
            data,
        ],
        &[],
    ));
    let printer_id = printer["id"].as_str().expect("printer id").to_owned();
    assert!(uuid_like(&printer_id), "{printer}");
    assert_eq!(printer["displayName"], "Front Desk");

    let share = json_of(&run_in(
        dir.path(),
        &[
            "admin",
            "share",
            "add",
            "--printer",
            &printer_id,
            "--name",
            "Front Desk (all)",
            "--allow-all-users",
            "--data-dir",
            data,
        ],
        &[],
    ));
    assert!(
        uuid_like(share["id"].as_str().expect("share id")),
        "{share}"
    );
    assert_ne!(share["id"], printer["id"]);
    assert_eq!(share["displayName"], "Front Desk (all)");
    assert_eq!(share["allowAllUsers"], true);
    assert_eq!(share["printer"]["id"], printer_id.as_str());

    // The lists see them, through UPSPOOL_DATA_DIR this time.
    let printers = json_of(&run_in(
        dir.path(),
        &["admin", "printer", "list"],
        &[("UPSPOOL_DATA_DIR", data)],
    ));
    assert_eq!(printers.as_array().unwrap().len(), 1);
    assert_eq!(printers[0]["id"], printer_id.as_str());
    let shares = json_of(&run_in(
        dir.path(),
        &["admin", "share", "list", "--data-dir", data],
        &[],
    ));
    assert_eq!(shares[0]["id"], share["id"]);
    assert!(
        !dir.path().join("upspool-data").exists(),
        "--data-dir / UPSPOOL_DATA_DIR were ignored"
    );
}

#[test]
fn admin_errors_have_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let missing = "6a3c8f0e-5d7b-4c1a-9e2f-0b1d2c3e4f50";
    let out = run_in(
        dir.path(),
        &[
            "admin",
            "share",
            "add",
            "--printer",
            missing,
            "--name",
            "S",
            "--data-dir",
            "d",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(missing), "{}", stderr_of(&out));
    assert!(out.stdout.is_empty());

    let out = run_in(
        dir.path(),
        &["admin", "printer", "add", "--name", " ", "--data-dir", "d"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("displayName"),
        "{}",
        stderr_of(&out)
    );

    let out = run_in(
        dir.path(),
        &["admin", "share", "add", "--printer", "nope", "--name", "S"],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a malformed id is a usage error"
    );
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

#[test]
fn data_dir_precedence_flag_over_env_over_file() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("A"),
        dir.path().join("B"),
        dir.path().join("C"),
    );
    let toml = dir.path().join("upspool.toml");
    write(&toml, &format!("data_dir = {:?}\n", a.to_str().unwrap()));
    let toml = toml.to_str().unwrap();
    let db = |d: &Path| d.join("upspool.db").exists();

    // flag > env > file
    let mut s = Server::builder()
        .without_data_dir_flag()
        .args(&["--config", toml, "--data-dir", c.to_str().unwrap()])
        .env("UPSPOOL_DATA_DIR", b.to_str().unwrap())
        .start();
    assert!(db(&c) && !db(&b) && !db(&a), "expected only C to be used");
    assert!(s.stop_gracefully().success());

    // env > file (the file named through UPSPOOL_CONFIG this time)
    let mut s = Server::builder()
        .without_data_dir_flag()
        .envs(&[
            ("UPSPOOL_CONFIG", toml),
            ("UPSPOOL_DATA_DIR", b.to_str().unwrap()),
        ])
        .start();
    assert!(db(&b) && !db(&a), "expected B to be used");
    assert!(s.stop_gracefully().success());

    // file > default
    let mut s = Server::builder()
        .without_data_dir_flag()
        .args(&["--config", toml])
        .start();
    assert!(db(&a), "expected A to be used");
    assert!(!s.root().join("upspool-data").exists());
    assert!(s.stop_gracefully().success());

    // default: ./upspool-data in the working directory
    let mut s = Server::builder().without_data_dir_flag().start();
    assert!(
        db(&s.root().join("upspool-data")),
        "expected ./upspool-data"
    );
    assert!(s.stop_gracefully().success());
}

#[test]
fn listen_precedence_flag_over_env_over_file() {
    // Three distinct free ports, learned by binding and releasing them.
    let ports: Vec<u16> = (0..3)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let addr = |p: u16| format!("127.0.0.1:{p}");
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("upspool.toml");
    write(&toml, &format!("listen = {:?}\n", addr(ports[0])));
    let toml = toml.to_str().unwrap();

    let run = |args: &[&str], envs: &[(&str, &str)]| {
        let mut s = Server::builder()
            .without_listen_flag()
            .args(args)
            .envs(envs)
            .start();
        let url = s.base_url().to_owned();
        assert!(s.stop_gracefully().success());
        url
    };
    let env = addr(ports[1]);
    let flag = addr(ports[2]);
    let url = |p: u16| format!("http://127.0.0.1:{p}");
    assert_eq!(
        run(
            &["--config", toml, "--listen", &flag],
            &[("UPSPOOL_LISTEN", &env)]
        ),
        url(ports[2])
    );
    assert_eq!(
        run(&["--config", toml], &[("UPSPOOL_LISTEN", &env)]),
        url(ports[1])
    );
    assert_eq!(run(&["--config", toml], &[]), url(ports[0]));
}

#[test]
fn unknown_toml_key_is_a_usage_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("upspool.toml");
    write(&toml, "data_dirr = \"x\"\n");
    let err = serve_usage_error(&["--config", toml.to_str().unwrap()], &[]);
    assert!(err.contains("data_dirr"), "{err}");

    write(&toml, "[limits]\nmax_segmnt_size = \"1MiB\"\n");
    let err = serve_usage_error(&[], &[("UPSPOOL_CONFIG", toml.to_str().unwrap())]);
    assert!(err.contains("max_segmnt_size"), "{err}");

    let err = serve_usage_error(
        &[
            "--config",
            dir.path().join("missing.toml").to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn bad_values_are_usage_errors_naming_setting_and_source() {
    let err = serve_usage_error(&["--max-segment-size", "0"], &[]);
    assert!(
        err.contains("max_segment_size") && err.contains("--max-segment-size"),
        "{err}"
    );

    let err = serve_usage_error(&[], &[("UPSPOOL_MAX_DOCUMENT_SIZE", "4XB")]);
    assert!(
        err.contains("max_document_size") && err.contains("UPSPOOL_MAX_DOCUMENT_SIZE"),
        "{err}"
    );

    let err = serve_usage_error(
        &["--max-document-size", "1MiB", "--max-segment-size", "2MiB"],
        &[],
    );
    assert!(
        err.contains("max_segment_size") && err.contains("max_document_size"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("upspool.toml");
    write(&toml, "[limits]\nsession_ttl = \"soon\"\n");
    let err = serve_usage_error(&["--config", toml.to_str().unwrap()], &[]);
    assert!(
        err.contains("session_ttl") && err.contains("upspool.toml"),
        "{err}"
    );

    let err = serve_usage_error(&["--listen", "localhost"], &[]);
    assert!(err.contains("listen"), "{err}");

    let err = serve_usage_error(&["--tls-listen", "127.0.0.1:0", "--tls-cert", "c.pem"], &[]);
    assert!(err.contains("--tls-key"), "{err}");

    let err = serve_usage_error(&[], &[("UPSPOOL_INSECURE_DEV_AUTH", "perhaps")]);
    assert!(err.contains("UPSPOOL_INSECURE_DEV_AUTH"), "{err}");
}

#[test]
fn runtime_failures_exit_1_naming_address_or_path() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            &addr,
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr_of(&out));
    assert!(stderr_of(&out).contains(&addr), "{}", stderr_of(&out));

    // A data directory below a regular file cannot be created.
    let file = dir.path().join("file");
    write(&file, "");
    let bad = file.join("data");
    let out = run(
        &[
            "serve",
            "--data-dir",
            bad.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "stderr:\n{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains(bad.to_str().unwrap()),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn sigterm_with_no_requests_exits_0_promptly() {
    let mut s = Server::start(&[], &[]);
    let started = Instant::now();
    let status = s.stop_gracefully();
    assert!(status.success(), "{status:?}; stderr:\n{}", s.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(s.stderr().contains("shutting down"), "{}", s.stderr());
}

#[test]
fn listening_line_shows_bound_address_and_logs_show_the_rest() {
    let mut s = Server::start(
        &[
            "--public-url",
            "https://print.example.org/",
            "--insecure-dev-auth",
        ],
        &[],
    );
    let lines = s.stdout_lines();
    assert_eq!(lines.len(), 1, "{lines:?}");
    let port = lines[0]
        .strip_prefix("upspool listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected line {:?}", lines[0]));
    assert!(port.parse::<u16>().unwrap() > 0);
    assert!(s.stop_gracefully().success());
    let err = s.stderr();
    assert!(
        err.contains("https://print.example.org"),
        "public URL not logged:\n{err}"
    );
    assert!(
        err.contains(s.data_dir().to_str().unwrap()),
        "data dir not logged:\n{err}"
    );
    assert!(
        err.contains("WARN") && err.contains("never use this outside development"),
        "{err}"
    );
}

#[test]
fn json_logs() {
    let mut s = Server::start(&["--log-format", "json"], &[]);
    assert!(s.stop_gracefully().success());
    let err = s.stderr();
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}

/// Needs the lead's `/healthz` route in upspool-http.
#[tokio::test]
async fn http_healthz() {
    let s = Server::start(&[], &[]);
    let r = reqwest::get(format!("{}/healthz", s.base_url()))
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET /healthz");
}

/// The HTTPS GET needs the lead's `/healthz` route in upspool-http; the rest does not.
#[tokio::test]
async fn self_signed_tls_is_generated_trusted_and_reused() {
    let mut s = Server::start(&["--tls-listen", "127.0.0.1:0"], &[]);
    let https = s.https_url().expect("an https listening line").to_owned();
    assert!(https.starts_with("https://127.0.0.1:"), "{https}");
    let lines = s.stdout_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("upspool listening on https://127.0.0.1:"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("upspool listening on http://127.0.0.1:"),
        "{lines:?}"
    );

    let cert_path = s.data_dir().join("tls/cert.pem");
    let cert = std::fs::read(&cert_path).expect("tls/cert.pem in the data dir");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(s.data_dir().join("tls/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "key.pem mode");
    }

    // The TLS handshake succeeds with only the generated certificate trusted, whatever the
    // route answers; then /healthz itself.
    let client = s.https_client();
    let r = client
        .get(format!("{https}/healthz"))
        .send()
        .await
        .expect("HTTPS request");
    assert_eq!(r.status(), 200, "GET /healthz over HTTPS");

    s.restart();
    assert_eq!(
        std::fs::read(&cert_path).unwrap(),
        cert,
        "the certificate was not reused"
    );
    let https = s.https_url().unwrap().to_owned();
    let r = s
        .https_client()
        .get(format!("{https}/healthz"))
        .send()
        .await
        .expect("HTTPS request after restart");
    assert_eq!(r.status(), 200);
    assert!(s.stop_gracefully().success());
}

#[tokio::test]
async fn tls_with_given_cert_and_key() {
    // Make a certificate with a first server, then serve it as operator-provided files.
    let mut first = Server::start(&["--tls-listen", "127.0.0.1:0"], &[]);
    first.stop_gracefully();
    let cert = first.data_dir().join("tls/cert.pem");
    let key = first.data_dir().join("tls/key.pem");
    let mut s = Server::start(
        &["--tls-listen", "127.0.0.1:0"],
        &[
            ("UPSPOOL_TLS_CERT", cert.to_str().unwrap()),
            ("UPSPOOL_TLS_KEY", key.to_str().unwrap()),
        ],
    );
    assert!(
        !s.data_dir().join("tls").exists(),
        "no certificate may be generated"
    );
    let https = s.https_url().unwrap().to_owned();
    // Any HTTP answer proves the handshake with the given certificate.
    common::client_trusting(&cert)
        .get(format!("{https}/"))
        .send()
        .await
        .expect("HTTPS request with the given certificate");
    assert!(s.stop_gracefully().success());
}
