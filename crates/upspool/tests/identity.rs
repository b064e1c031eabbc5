//! Identity end to end: bearer tokens, Graph permissions, share access lists and
//! pre-authenticated URLs, against the real binary.
//!
//! Tokens are signed in the test with keys generated in the test: an ES256 key published to the
//! server as a JWKS file (the deny matrix), an RS256 JWKS served by the test on loopback (key
//! rotation), and the embedded issuer's own key through `upspool token`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use common::api::{assert_graph_error, assert_session_gone, Api};
use common::Server;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const ISS: &str = "https://login.test/tenant-a/v2.0";
const AUD: &str = "api://print-test";
const TID: &str = "tenant-a";
const ADMIN_GROUP: &str = "7f1c3e9a-admins";

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A signing key made in the test, and its public JWK.
struct TestKey {
    kid: String,
    alg: Algorithm,
    enc: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn es256(kid: &str) -> TestKey {
        let pair = rcgen::KeyPair::generate().unwrap();
        let raw = pair.public_key_raw();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
                        "x": b64(&raw[1..33]), "y": b64(&raw[33..65])}),
        }
    }

    fn rs256(kid: &str) -> TestKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).unwrap();
        let pem = key.to_pkcs1_pem(rsa::pkcs1::LineEnding::LF).unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256",
                        "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())}),
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.enc).unwrap()
    }
}

fn jwks(keys: &[&TestKey]) -> String {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()}).to_string()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a delegated user token of the test issuer.
fn user_claims(oid: &str, upn: &str, scp: &str, groups: &[&str]) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "tid": TID, "iat": now(), "nbf": now() - 5, "exp": now() + 900,
        "oid": oid, "upn": upn, "name": upn, "scp": scp, "groups": groups,
    })
}

/// Claims of an application token of the test issuer.
fn app_claims(roles: &[&str]) -> Value {
    json!({
        "iss": ISS, "aud": AUD, "tid": TID, "iat": now(), "nbf": now() - 5, "exp": now() + 900,
        "oid": "app-oid-1", "azp": "app-1", "roles": roles, "idtyp": "app",
    })
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

/// A token whose header says `alg: none`, unsigned.
fn alg_none(claims: &Value) -> String {
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}

/// A raw request body and its headers.
type RawBody = (Vec<u8>, Vec<(&'static str, String)>);

/// One request of the matrix.
#[derive(Clone)]
struct Endpoint {
    name: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    /// Raw body and headers (the draft upload form).
    raw: Option<RawBody>,
    kind: Kind,
    /// Addresses one of alice's jobs (another user gets 404).
    own_job: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Graph supports it with delegated permissions only.
    DelegatedOnly,
    /// Graph supports it with application permissions only.
    ApplicationOnly,
    Both,
}

async fn call(api: &Api, token: Option<&str>, e: &Endpoint) -> reqwest::Response {
    let mut req = api.http.request(e.method.clone(), api.url(&e.path));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(b) = &e.body {
        req = req.json(b);
    }
    if let Some((bytes, headers)) = &e.raw {
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req = req.body(bytes.clone());
    }
    req.send().await.expect("request sent")
}

/// Everything a refused request could have changed, read by the administrator.
async fn snapshot(admin: &Api, printer: &str, closed: &str, upload_url: &str) -> Value {
    let get = |path: String| async move {
        Api::expect(admin.get(&path).await, StatusCode::OK).await["value"].clone()
    };
    let status = Api::expect(
        admin.http.get(upload_url).send().await.unwrap(),
        StatusCode::OK,
    )
    .await;
    json!({
        "printers": get("/print/printers".into()).await,
        "shares": get("/print/shares".into()).await,
        "jobs": get(format!("/print/printers/{printer}/jobs?$expand=documents")).await,
        "allowedUsers": get(format!("/print/shares/{closed}/allowedUsers")).await,
        "allowedGroups": get(format!("/print/shares/{closed}/allowedGroups")).await,
        "session": status,
    })
}

fn start_server(jwks_file: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--oidc-issuer",
        ISS,
        "--oidc-audience",
        AUD,
        "--oidc-jwks",
        jwks_file.to_str().unwrap(),
        "--oidc-tenant",
        TID,
        "--admin-group",
        ADMIN_GROUP,
    ];
    args.extend_from_slice(extra);
    Server::builder().args(&args).start()
}

#[tokio::test]
async fn deny_matrix_and_allow_paths() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::es256("key-1");
    let stranger = TestKey::es256("key-1"); // same kid, different key: a forged signature
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&key])).unwrap();
    let server = start_server(&jwks_file, &[]);
    let anon = Api::new(server.base_url());

    let admin_token = key.sign(&user_claims(
        "oid-admin",
        "admin@example.com",
        "PrintJob.ReadWrite.All",
        &[ADMIN_GROUP],
    ));
    let alice_claims = user_claims(
        "oid-alice",
        "alice@example.com",
        "PrintJob.ReadWrite",
        &["grp-alice"],
    );
    let alice_token = key.sign(&alice_claims);
    let bob_token = key.sign(&user_claims(
        "oid-bob",
        "bob@example.com",
        "PrintJob.ReadWrite",
        &[],
    ));
    let admin = anon.with_token(&admin_token);
    let alice = anon.with_token(&alice_token);
    let bob = anon.with_token(&bob_token);

    // The administrator sets up a printer, an open share and a closed one.
    let printer = admin.printer("Identity printer").await;
    let open = admin.share(&printer, "Open share").await;
    let closed = Api::expect(
        admin
            .post(
                "/print/shares",
                json!({"displayName": "Closed share", "allowAllUsers": false,
                       "printer@odata.bind": format!("{}/v1.0/print/printers/{printer}", anon.base)}),
            )
            .await,
        StatusCode::CREATED,
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let open_scope = format!("shares/{open}");
    // Alice's job with an active session, and one that is fully uploaded.
    let ja = alice.job(&open_scope).await;
    let session = alice.session(&ja, 8).await;
    let upload_url = session["uploadUrl"].as_str().unwrap().to_string();
    Api::expect(
        alice.put(&upload_url, 0, 8, b"abcd").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let jd = alice.job(&open_scope).await;
    let done_url = alice.session(&jd, 4).await["uploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    Api::expect(
        alice.put(&done_url, 0, 4, b"done").await,
        StatusCode::CREATED,
    )
    .await;
    // Someone on the closed share's lists, for the removal endpoints to remove.
    for (list, coll) in [("allowedUsers", "users"), ("allowedGroups", "groups")] {
        Api::expect(
            admin
                .post(
                    &format!("/print/shares/{closed}/{list}/$ref"),
                    json!({"@odata.id": format!("https://graph.microsoft.com/v1.0/{coll}/someone")}),
                )
                .await,
            StatusCode::NO_CONTENT,
        )
        .await;
    }

    let job = ja.job_path();
    let doc = ja.document_path();
    let ep = |name: &'static str,
              method: Method,
              path: String,
              body: Option<Value>,
              kind: Kind,
              own_job: bool| Endpoint {
        name,
        method,
        path,
        body,
        raw: None,
        kind,
        own_job,
    };
    use Kind::*;
    let mut endpoints = vec![
        ep(
            "create job on share",
            Method::POST,
            format!("/print/{open_scope}/jobs"),
            Some(json!({"configuration": {}})),
            DelegatedOnly,
            false,
        ),
        ep(
            "create job on printer",
            Method::POST,
            format!("/print/printers/{printer}/jobs"),
            Some(json!({"configuration": {}})),
            DelegatedOnly,
            false,
        ),
        ep(
            "list jobs",
            Method::GET,
            format!("/print/{open_scope}/jobs"),
            None,
            Both,
            false,
        ),
        ep("get job", Method::GET, job.clone(), None, Both, true),
        ep(
            "list documents",
            Method::GET,
            format!("{job}/documents"),
            None,
            Both,
            true,
        ),
        ep("get document", Method::GET, doc.clone(), None, Both, true),
        ep(
            "list tasks",
            Method::GET,
            format!("{job}/tasks"),
            None,
            Both,
            true,
        ),
        ep(
            "createUploadSession",
            Method::POST,
            format!("{doc}/createUploadSession"),
            Some(
                json!({"properties": {"documentName": "x.pdf", "contentType": "application/pdf", "size": 10}}),
            ),
            DelegatedOnly,
            true,
        ),
        ep(
            "start",
            Method::POST,
            format!("{job}/start"),
            None,
            DelegatedOnly,
            true,
        ),
        ep(
            "cancel",
            Method::POST,
            format!("{job}/cancel"),
            None,
            DelegatedOnly,
            true,
        ),
        ep(
            "$value",
            Method::GET,
            format!("{}/$value", jd.document_path()),
            None,
            Both,
            true,
        ),
        ep(
            "abort",
            Method::POST,
            format!("{job}/abort"),
            None,
            ApplicationOnly,
            false,
        ),
        ep(
            "redirect",
            Method::POST,
            format!("{job}/redirect"),
            Some(json!({"destinationPrinterId": printer})),
            ApplicationOnly,
            false,
        ),
        ep(
            "release",
            Method::POST,
            format!("/print/printers/{printer}/jobs/release"),
            None,
            DelegatedOnly,
            false,
        ),
        ep(
            "list printers",
            Method::GET,
            "/print/printers".into(),
            None,
            Both,
            false,
        ),
        ep(
            "get printer",
            Method::GET,
            format!("/print/printers/{printer}"),
            None,
            Both,
            false,
        ),
        ep(
            "create printer",
            Method::POST,
            "/print/printers".into(),
            Some(json!({"displayName": "Rogue"})),
            Both,
            false,
        ),
        ep(
            "delete printer",
            Method::DELETE,
            format!("/print/printers/{printer}"),
            None,
            Both,
            false,
        ),
        ep(
            "list shares",
            Method::GET,
            "/print/shares".into(),
            None,
            Both,
            false,
        ),
        ep(
            "get share",
            Method::GET,
            format!("/print/shares/{open}"),
            None,
            Both,
            false,
        ),
        ep(
            "create share",
            Method::POST,
            "/print/shares".into(),
            Some(
                json!({"displayName": "Rogue", "printer@odata.bind": format!("{}/v1.0/print/printers/{printer}", anon.base)}),
            ),
            Both,
            false,
        ),
        ep(
            "delete share",
            Method::DELETE,
            format!("/print/shares/{open}"),
            None,
            Both,
            false,
        ),
        ep(
            "list allowedUsers",
            Method::GET,
            format!("/print/shares/{closed}/allowedUsers"),
            None,
            Both,
            false,
        ),
        ep(
            "add allowedUser",
            Method::POST,
            format!("/print/shares/{closed}/allowedUsers/$ref"),
            Some(json!({"@odata.id": "https://graph.microsoft.com/v1.0/users/oid-mallory"})),
            Both,
            false,
        ),
        ep(
            "remove allowedUser",
            Method::DELETE,
            format!("/print/shares/{closed}/allowedUsers/someone/$ref"),
            None,
            Both,
            false,
        ),
        ep(
            "list allowedGroups",
            Method::GET,
            format!("/print/shares/{closed}/allowedGroups"),
            None,
            Both,
            false,
        ),
        ep(
            "add allowedGroup",
            Method::POST,
            format!("/print/shares/{closed}/allowedGroups/$ref"),
            Some(json!({"@odata.id": "https://graph.microsoft.com/v1.0/groups/grp-mallory"})),
            Both,
            false,
        ),
        ep(
            "remove allowedGroup",
            Method::DELETE,
            format!("/print/shares/{closed}/allowedGroups/someone/$ref"),
            None,
            Both,
            false,
        ),
    ];
    endpoints.push(Endpoint {
        name: "draft upload",
        method: Method::POST,
        path: format!("{doc}/uploadSession/$value"),
        body: None,
        raw: Some((
            b"efgh".to_vec(),
            vec![
                ("Content-Type", "application/octet-stream".into()),
                ("Content-Range", "bytes 4-7/8".into()),
                ("If-Match", session_id(&upload_url)),
            ],
        )),
        kind: DelegatedOnly,
        own_job: true,
    });

    // Tokens refused outright: 401 everywhere.
    let base = alice_claims.clone();
    let invalid: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        ("malformed", Some("not-a-jwt".into())),
        ("bad signature", Some(stranger.sign(&base))),
        ("alg none", Some(alg_none(&base))),
        (
            "algorithm confusion (HS256 with the public key)",
            Some({
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some("key-1".into());
                let secret = key.jwk.to_string();
                jsonwebtoken::encode(&h, &base, &EncodingKey::from_secret(secret.as_bytes()))
                    .unwrap()
            }),
        ),
        (
            "expired",
            Some(key.sign(&with(base.clone(), "exp", json!(now() - 600)))),
        ),
        (
            "not yet valid",
            Some(key.sign(&with(base.clone(), "nbf", json!(now() + 600)))),
        ),
        (
            "wrong aud",
            Some(key.sign(&with(base.clone(), "aud", json!("api://other")))),
        ),
        (
            "wrong iss",
            Some(key.sign(&with(
                base.clone(),
                "iss",
                json!("https://login.test/other/v2.0"),
            ))),
        ),
        (
            "wrong tenant",
            Some(key.sign(&with(base.clone(), "tid", json!("tenant-b")))),
        ),
        ("unknown kid", Some(TestKey::es256("key-9").sign(&base))),
    ];
    let before = snapshot(&admin, &printer, &closed, &upload_url).await;
    for (case, token) in &invalid {
        for e in &endpoints {
            let resp = call(&anon, token.as_deref(), e).await;
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            assert_eq!(
                resp.status(),
                StatusCode::UNAUTHORIZED,
                "{case} on {}",
                e.name
            );
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{case} on {}: WWW-Authenticate {challenge:?}",
                e.name
            );
            // RFC 6750 §3.1: a token that was sent and refused is an invalid_token; a request
            // without one gets the bare challenge. Upload URLs take no bearer token at all.
            if !e.path.contains("tempauthtoken") {
                assert_eq!(
                    challenge
                        .as_deref()
                        .is_some_and(|c| c.contains("error=\"invalid_token\"")),
                    token.is_some(),
                    "{case} on {}: WWW-Authenticate {challenge:?}",
                    e.name
                );
            }
            assert_graph_error(
                resp,
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                None,
            )
            .await;
        }
    }
    assert_eq!(
        snapshot(&admin, &printer, &closed, &upload_url).await,
        before,
        "401s changed nothing"
    );

    // Valid tokens without the permission: 403 (or 404 for other people's jobs).
    let no_scope = key.sign(&user_claims(
        "oid-alice",
        "alice@example.com",
        "User.Read",
        &[],
    ));
    let app = key.sign(&app_claims(&["PrintJob.ReadWrite.All"]));
    for e in &endpoints {
        let resp = call(&anon, Some(&no_scope), e).await;
        assert_graph_error(resp, StatusCode::FORBIDDEN, "accessDenied", None).await;
        if e.kind == DelegatedOnly {
            let resp = call(&anon, Some(&app), e).await;
            let v = assert_graph_error(resp, StatusCode::FORBIDDEN, "accessDenied", None).await;
            assert!(
                !v.to_string().contains(&app),
                "the message never echoes the token"
            );
        }
        if e.kind == ApplicationOnly {
            let resp = call(&anon, Some(&alice_token), e).await;
            assert_graph_error(resp, StatusCode::FORBIDDEN, "accessDenied", None).await;
        }
        if e.own_job {
            let resp = call(&anon, Some(&bob_token), e).await;
            assert_graph_error(resp, StatusCode::NOT_FOUND, "itemNotFound", None).await;
        }
        // Users with job permissions only may not administer printers or shares.
        if ADMIN_OPS.contains(&e.name) {
            let resp = call(&anon, Some(&alice_token), e).await;
            assert_graph_error(resp, StatusCode::FORBIDDEN, "accessDenied", None).await;
        }
    }
    // A share that does not allow alice.
    let resp = alice
        .post(
            &format!("/print/shares/{closed}/jobs"),
            json!({"configuration": {}}),
        )
        .await;
    assert_graph_error(resp, StatusCode::FORBIDDEN, "accessDenied", None).await;
    // Bob does not see alice's jobs in lists either.
    let listed = Api::expect(
        bob.get(&format!("/print/{open_scope}/jobs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["value"], json!([]), "bob sees none of alice's jobs");
    assert_eq!(
        snapshot(&admin, &printer, &closed, &upload_url).await,
        before,
        "403s and 404s changed nothing"
    );

    // Upload URLs: the tempauthtoken is the credential, bound to one session.
    let other = alice.session(&alice.job(&open_scope).await, 8).await["uploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let before = snapshot(&admin, &printer, &closed, &upload_url).await;
    let token_of = |url: &str| url.split_once("tempauthtoken=").unwrap().1.to_string();
    let mut tampered = token_of(&upload_url);
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let sid = session_id(&upload_url);
    let url_with = |t: &str| format!("{}/uploadSessions/{sid}?tempauthtoken={t}", anon.base);
    for (case, url) in [
        ("tampered token", url_with(&tampered)),
        ("another session's token", url_with(&token_of(&other))),
        ("no token", format!("{}/uploadSessions/{sid}", anon.base)),
    ] {
        for method in [Method::PUT, Method::GET, Method::DELETE] {
            let mut req = anon.http.request(method.clone(), &url);
            if method == Method::PUT {
                req = req
                    .header("Content-Range", "bytes 4-7/8")
                    .body(b"efgh".to_vec());
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{case} {method}");
            assert_graph_error(
                resp,
                StatusCode::UNAUTHORIZED,
                "InvalidAuthenticationToken",
                None,
            )
            .await;
        }
    }
    // A download URL opens its document only with its own token.
    let resp = alice.get(&format!("{}/$value", jd.document_path())).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    let (grant_url, dl_token) = location.split_once("tempauthtoken=").unwrap();
    let resp = anon
        .http
        .get(format!(
            "{grant_url}tempauthtoken={}",
            token_of(&upload_url)
        ))
        .send()
        .await
        .unwrap();
    assert_graph_error(
        resp,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        None,
    )
    .await;
    assert_eq!(
        snapshot(&admin, &printer, &closed, &upload_url).await,
        before,
        "refused URLs changed nothing"
    );

    // Allow paths. An Authorization header on upload and download URLs is ignored.
    let resp = anon
        .http
        .put(&upload_url)
        .header("Authorization", "Bearer garbage")
        .header("Content-Range", "bytes 4-7/8")
        .body(b"efgh".to_vec())
        .send()
        .await
        .unwrap();
    Api::expect(resp, StatusCode::CREATED).await;
    let bytes = anon
        .http
        .get(format!("{grant_url}tempauthtoken={dl_token}"))
        .header("Authorization", "Bearer garbage")
        .send()
        .await
        .unwrap();
    assert_eq!(bytes.status(), StatusCode::OK);
    assert_eq!(bytes.bytes().await.unwrap().as_ref(), b"done");
    let status = Api::expect(
        alice.post(&format!("{job}/start"), json!({})).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(status["state"], "processing");
    let own = Api::expect(
        alice.get(&format!("/print/{open_scope}/jobs")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        own["value"].as_array().unwrap().len(),
        3,
        "alice sees her three jobs"
    );
    // Read.All sees everyone's jobs but may not cancel them; an app with Read.All reads too.
    let reader = anon.with_token(&key.sign(&user_claims(
        "oid-carol",
        "carol@example.com",
        "PrintJob.Read.All",
        &[],
    )));
    Api::expect(reader.get(&job).await, StatusCode::OK).await;
    assert_graph_error(
        reader.post(&format!("{job}/cancel"), json!({})).await,
        StatusCode::FORBIDDEN,
        "accessDenied",
        None,
    )
    .await;
    let app_reader = anon.with_token(&key.sign(&app_claims(&["PrintJob.Read.All"])));
    let all = Api::expect(
        app_reader
            .get(&format!("/print/printers/{printer}/jobs"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(all["value"].as_array().unwrap().len(), 3);
    assert_eq!(
        app_reader
            .get(&format!("{}/$value", jd.document_path()))
            .await
            .status(),
        StatusCode::FOUND
    );
    // Abort is application-only and, past the permission check, not implemented.
    let manager = anon.with_token(&key.sign(&app_claims(&["PrintJob.Manage.All"])));
    assert_graph_error(
        manager.post(&format!("{job}/abort"), json!({})).await,
        StatusCode::NOT_IMPLEMENTED,
        "notSupported",
        None,
    )
    .await;

    // Share access lists: a group, then a user, open the closed share to alice.
    let closed_jobs = format!("/print/shares/{closed}/jobs");
    Api::expect(
        admin
            .post(
                &format!("/print/shares/{closed}/allowedGroups/$ref"),
                json!({"@odata.id": "https://graph.microsoft.com/v1.0/groups/grp-alice"}),
            )
            .await,
        StatusCode::NO_CONTENT,
    )
    .await;
    Api::expect(
        alice.post(&closed_jobs, json!({"configuration": {}})).await,
        StatusCode::CREATED,
    )
    .await;
    Api::expect(
        admin
            .send(
                Method::DELETE,
                &format!("/print/shares/{closed}/allowedGroups/grp-alice/$ref"),
                None,
            )
            .await,
        StatusCode::NO_CONTENT,
    )
    .await;
    assert_graph_error(
        alice.post(&closed_jobs, json!({"configuration": {}})).await,
        StatusCode::FORBIDDEN,
        "accessDenied",
        None,
    )
    .await;
    Api::expect(
        admin
            .post(
                &format!("/print/shares/{closed}/allowedUsers/$ref"),
                json!({"@odata.id": "https://graph.microsoft.com/v1.0/users/oid-alice"}),
            )
            .await,
        StatusCode::NO_CONTENT,
    )
    .await;
    let users = Api::expect(
        admin
            .get(&format!("/print/shares/{closed}/allowedUsers"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        users["value"],
        json!([{"id": "someone"}, {"id": "oid-alice"}])
    );
    Api::expect(
        alice.post(&closed_jobs, json!({"configuration": {}})).await,
        StatusCode::CREATED,
    )
    .await;
    assert_graph_error(
        bob.post(&closed_jobs, json!({"configuration": {}})).await,
        StatusCode::FORBIDDEN,
        "accessDenied",
        None,
    )
    .await;
    // Removing a member that is not listed is "not found".
    assert_graph_error(
        admin
            .send(
                Method::DELETE,
                &format!("/print/shares/{closed}/allowedUsers/nobody/$ref"),
                None,
            )
            .await,
        StatusCode::NOT_FOUND,
        "itemNotFound",
        None,
    )
    .await;

    // Canceling a job invalidates its upload URL.
    let jc = alice.job(&open_scope).await;
    let cancel_url = alice.session(&jc, 8).await["uploadUrl"]
        .as_str()
        .unwrap()
        .to_string();
    Api::expect(
        alice
            .post(&format!("{}/cancel", jc.job_path()), json!({}))
            .await,
        StatusCode::NO_CONTENT,
    )
    .await;
    let resp = anon.http.get(&cancel_url).send().await.unwrap();
    assert_session_gone(resp).await;

    // No token ever reaches the log.
    let log = server.stderr();
    for secret in [
        &admin_token,
        &alice_token,
        &bob_token,
        &app,
        &token_of(&upload_url),
        &dl_token.to_string(),
    ] {
        assert!(!log.contains(secret.as_str()), "a token appears in the log");
    }
}

const ADMIN_OPS: &[&str] = &[
    "create printer",
    "delete printer",
    "create share",
    "delete share",
    "add allowedUser",
    "remove allowedUser",
    "add allowedGroup",
    "remove allowedGroup",
];

fn session_id(upload_url: &str) -> String {
    upload_url
        .split("/uploadSessions/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_expired_session_url_opens_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = TestKey::es256("k");
    let jwks_file = dir.path().join("jwks.json");
    std::fs::write(&jwks_file, jwks(&[&key])).unwrap();
    let server = start_server(&jwks_file, &["--session-ttl", "2s"]);
    let admin = Api::new(server.base_url()).with_token(&key.sign(&user_claims(
        "a",
        "a@x",
        "PrintJob.ReadWrite",
        &[ADMIN_GROUP],
    )));
    let (_job, url) = admin.ready_upload(8).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = admin.http.get(&url).send().await.unwrap();
        if resp.status() == StatusCode::NOT_FOUND {
            assert_session_gone(resp).await;
            break;
        }
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let resp = admin.put(&url, 0, 8, b"abcdefgh").await;
    assert_session_gone(resp).await;
}

/// Serves a JWKS document on loopback and counts how often it is fetched.
async fn serve_jwks(doc: Arc<Mutex<String>>, hits: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/keys",
        axum::routing::get(move || {
            let doc = doc.clone();
            let hits = hits.clone();
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                let body = doc.lock().unwrap().clone();
                ([("content-type", "application/json")], body)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/keys")
}

#[tokio::test]
async fn jwks_rotation_over_loopback() {
    let k1 = TestKey::rs256("rsa-1");
    let k2 = TestKey::rs256("rsa-2");
    let doc = Arc::new(Mutex::new(jwks(&[&k1])));
    let hits = Arc::new(AtomicUsize::new(0));
    let url = serve_jwks(doc.clone(), hits.clone()).await;
    let server = Server::builder()
        .args(&[
            "--oidc-issuer",
            ISS,
            "--oidc-audience",
            AUD,
            "--oidc-jwks",
            &url,
            "--disable-embedded-issuer",
        ])
        .start();
    let api = Api::new(server.base_url());
    let claims = json!({
        "iss": ISS, "aud": AUD, "iat": now(), "nbf": now() - 5, "exp": now() + 900,
        "oid": "u", "upn": "u@example.com", "scp": "Printer.Read.All",
    });
    let t1 = k1.sign(&claims);
    let t2 = k2.sign(&claims);
    Api::expect(
        api.with_token(&t1).get("/print/printers").await,
        StatusCode::OK,
    )
    .await;
    Api::expect(
        api.with_token(&t1).get("/print/printers").await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the JWKS is cached");

    // The issuer rotates to k2: a token naming the new kid makes upspool fetch the keys again
    // (at most once per refresh interval, so poll).
    *doc.lock().unwrap() = jwks(&[&k2]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp = api.with_token(&t2).get("/print/printers").await;
        if resp.status() == StatusCode::OK {
            break;
        }
        assert_graph_error(
            resp,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            None,
        )
        .await;
        assert!(
            Instant::now() < deadline,
            "the rotated key was never picked up"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // The retired key no longer verifies anything.
    let resp = api.with_token(&t1).get("/print/printers").await;
    assert_graph_error(
        resp,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        None,
    )
    .await;

    // A burst of tokens with made-up kids does not make upspool hammer the issuer.
    let fetched = hits.load(Ordering::SeqCst);
    for i in 0..20 {
        let forged = TestKey::es256(&format!("made-up-{i}"));
        let mut c = claims.clone();
        c["n"] = json!(i);
        let resp = api
            .with_token(&forged.sign(&c))
            .get("/print/printers")
            .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    assert!(
        hits.load(Ordering::SeqCst) <= fetched + 1,
        "unknown kids refetched the JWKS {} times",
        hits.load(Ordering::SeqCst) - fetched
    );
}

#[tokio::test]
async fn embedded_issuer_tokens_from_the_token_command() {
    let server = Server::start(&[], &[]);
    let dir = server.data_dir().to_str().unwrap().to_string();
    let mint = |args: &[&str]| {
        let mut all = vec!["token", "--data-dir", dir.as_str()];
        all.extend_from_slice(args);
        let out = common::run(&all, &[]);
        assert!(
            out.status.success(),
            "token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let api = Api::new(server.base_url());
    // Without a token nothing is served.
    assert_graph_error(
        api.get("/print/printers").await,
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        None,
    )
    .await;
    // The key was created on first start, private.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(server.data_dir().join("identity/signing-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let admin = api.with_token(&mint(&[
        "--app",
        "provisioner",
        "--roles",
        "Printer.ReadWrite.All PrinterShare.ReadWrite.All",
    ]));
    let printer = admin.printer("Embedded").await;
    let share = admin.share(&printer, "All users").await;
    let alice = api.with_token(&mint(&[
        "--user",
        "alice@example.com",
        "--scopes",
        "PrintJob.ReadWrite",
        "--groups",
        "g1,g2",
    ]));
    let job = alice.job(&format!("shares/{share}")).await;
    let v = Api::expect(alice.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(v["createdBy"]["userPrincipalName"], "alice@example.com");
    // The application may not create jobs (delegated only).
    assert_graph_error(
        admin
            .post(&format!("/print/shares/{share}/jobs"), json!({}))
            .await,
        StatusCode::FORBIDDEN,
        "accessDenied",
        None,
    )
    .await;
    // Usage errors exit 2: a user without scopes, or both kinds at once.
    for bad in [
        vec!["token", "--user", "bob@example.com"],
        vec![
            "token", "--app", "a", "--roles", "x", "--user", "u", "--scopes", "s",
        ],
        vec!["token", "--user", "u", "--scopes", "s", "--ttl", "soon"],
    ] {
        let out = common::run(&bad, &[]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{bad:?} printed no token");
    }
}
