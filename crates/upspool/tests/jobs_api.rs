//! Printers, shares, jobs, documents, downloads and operations endpoints against the real
//! server: shapes, state changes, OData options and every error answer.

mod common;

use common::api::{assert_graph_error, assert_session_gone, random_bytes, Api};
use common::Server;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

fn dev_server() -> Server {
    Server::start(&["--insecure-dev-auth"], &[])
}

#[tokio::test]
async fn without_dev_auth_every_graph_call_needs_a_token() {
    let server = Server::start(&[], &[]);
    let api = Api::new(server.base_url());
    for (method, path) in [
        (Method::GET, "/print/printers"),
        (Method::POST, "/print/printers"),
        (Method::GET, "/print/shares"),
        (
            Method::POST,
            "/print/printers/3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46/jobs",
        ),
    ] {
        let resp = api.send(method, path, Some(json!({}))).await;
        assert_eq!(
            resp.headers()["www-authenticate"].to_str().unwrap(),
            "Bearer realm=\"upspool\""
        );
        assert_graph_error(
            resp,
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            None,
        )
        .await;
    }
    // Operations endpoints stay open.
    assert_eq!(
        api.http
            .get(format!("{}/healthz", server.base_url()))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn printers_and_shares_are_created_listed_and_deleted() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let p = Api::expect(
        api.post(
            "/print/printers",
            json!({"displayName": "Lab", "manufacturer": "ACME", "model": "L1"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let pid = p["id"].as_str().unwrap();
    assert_eq!(p["manufacturer"], "ACME");
    let got = Api::expect(
        api.get(&format!("/print/printers/{pid}")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["displayName"], "Lab");
    assert_eq!(
        got["@odata.context"],
        format!(
            "{}/v1.0/$metadata#print/printers/$entity",
            server.base_url()
        )
    );

    let sid = api.share(pid, "Lab share").await;
    let s = Api::expect(
        api.get(&format!("/print/shares/{sid}?$expand=printer"))
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(s["allowAllUsers"], true);
    assert_eq!(s["printer"]["id"], pid);
    let list = Api::expect(api.get("/print/shares").await, StatusCode::OK).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);

    for body in [
        json!({}),
        json!({"displayName": 5}),
        json!({"displayName": "x", "colour": "red"}),
        json!({"displayName": ""}),
    ] {
        assert_graph_error(
            api.post("/print/printers", body).await,
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            None,
        )
        .await;
    }
    for body in [
        json!({"displayName": "s"}),
        json!({"displayName": "s", "printer@odata.bind": "https://x/v1.0/print/printers/not-an-id"}),
        json!({"displayName": "s", "printer@odata.bind": format!("{}/v1.0/print/printers/3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46", server.base_url())}),
        json!({"displayName": "s", "allowAllUsers": "yes", "printer@odata.bind": format!("/print/printers/{pid}")}),
    ] {
        assert_graph_error(
            api.post("/print/shares", body).await,
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            None,
        )
        .await;
    }

    // Deleting the printer removes its shares and jobs.
    let job = api.job(&format!("printers/{pid}")).await;
    assert_eq!(
        api.send(Method::DELETE, &format!("/print/printers/{pid}"), None)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_graph_error(
        api.get(&format!("/print/printers/{pid}")).await,
        StatusCode::NOT_FOUND,
        "itemNotFound",
        None,
    )
    .await;
    assert_graph_error(
        api.get(&format!("/print/shares/{sid}")).await,
        StatusCode::NOT_FOUND,
        "itemNotFound",
        None,
    )
    .await;
    assert_graph_error(
        api.get(&job.job_path()).await,
        StatusCode::NOT_FOUND,
        "itemNotFound",
        None,
    )
    .await;
}

#[tokio::test]
async fn a_new_job_has_one_empty_document_and_waits_for_its_upload() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let pid = api.printer("P").await;
    let resp = api
        .post(
            &format!("/print/printers/{pid}/jobs"),
            json!({
                "@odata.type": "microsoft.graph.printJob",
                "id": "ignored",
                "configuration": {"@odata.type": "microsoft.graph.printJobConfiguration",
                                  "copies": 2, "duplexMode": "FLIPONLONGEDGE", "finishings": null,
                                  "multipageLayout": "counterClockwiseFromTopLeft",
                                  "margin": {"top": 1000, "bottom": 1000}}
            }),
        )
        .await;
    let job = Api::expect(resp, StatusCode::CREATED).await;
    let id = job["id"].as_str().unwrap();
    assert!(
        id.bytes().all(|b| b.is_ascii_digit()),
        "decimal job id: {id}"
    );
    assert_eq!(
        job["@odata.context"],
        format!(
            "{}/v1.0/$metadata#print/printers('{pid}')/jobs/$entity",
            server.base_url()
        )
    );
    assert_eq!(
        job["status"],
        json!({"state": "paused", "description": "The job is not a candidate for processing yet.",
               "isAcquiredByPrinter": false, "details": ["uploadPending"]})
    );
    assert_eq!(job["configuration"]["duplexMode"], "flipOnLongEdge");
    assert_eq!(
        job["configuration"]["multipageLayout"],
        "counterclockwiseFromTopLeft"
    );
    assert_eq!(job["configuration"]["copies"], 2);
    assert_eq!(job["isFetchable"], false);
    assert_eq!(job["createdBy"]["userPrincipalName"], "dev@upspool.invalid");
    assert!(job["createdBy"]["ipAddress"].is_null());
    let docs = job["documents"].as_array().unwrap();
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["displayName"], "");
    assert_eq!(docs[0]["size"], 0);
    assert!(job["createdDateTime"].as_str().unwrap().ends_with('Z'));

    // A plain get omits documents; $expand brings them; $select trims.
    let got = Api::expect(
        api.get(&format!("/print/printers/{pid}/jobs/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(got.get("documents").is_none());
    let got = Api::expect(
        api.get(&format!(
            "/print/printers/{pid}/jobs/{id}?$expand=documents"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(got["documents"][0]["id"], docs[0]["id"]);
    let got = Api::expect(
        api.get(&format!(
            "/print/printers/{pid}/jobs/{id}?$select=status,isFetchable"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let keys: Vec<&str> = got
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}"); // @odata.context, id, status, isFetchable
    assert_graph_error(
        api.get(&format!("/print/printers/{pid}/jobs/{id}?$select=colour"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("invalidQueryOption"),
    )
    .await;

    // Beta carries the beta-only properties.
    let mut beta = Api::new(server.base_url());
    beta.version = "beta";
    let got = Api::expect(
        beta.get(&format!("/print/printers/{pid}/jobs/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(got.as_object().unwrap().contains_key("displayName"));
    assert_eq!(got["status"]["processingState"], "paused");
    let v1 = Api::expect(
        api.get(&format!("/print/printers/{pid}/jobs/{id}")).await,
        StatusCode::OK,
    )
    .await;
    assert!(!v1.as_object().unwrap().contains_key("displayName"));

    // Bad create bodies.
    for body in [
        json!({"configuration": {"colorMode": "sepia"}}),
        json!({"configuration": {"colour": "color"}}),
        json!({"configuration": {"copies": "two"}}),
        json!({"configuration": {"copies": 0}}),
        json!({"unknownProperty": 1}),
        json!([1, 2]),
    ] {
        assert_graph_error(
            api.post(&format!("/print/printers/{pid}/jobs"), body).await,
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            None,
        )
        .await;
    }
    let resp = api
        .http
        .post(api.url(&format!("/print/printers/{pid}/jobs")))
        .header("Content-Type", "application/json")
        .body("{\"configuration\": ")
        .send()
        .await
        .unwrap();
    assert_graph_error(resp, StatusCode::BAD_REQUEST, "invalidRequest", None).await;
    let resp = api
        .http
        .post(api.url(&format!("/print/printers/{pid}/jobs")))
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_graph_error(
        resp,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalidRequest",
        None,
    )
    .await;
}

#[tokio::test]
async fn start_and_cancel_follow_the_job_lifecycle() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(10).await;
    let start = format!("{}/start", job.job_path());

    let v = assert_graph_error(
        api.post(&start, json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        None,
    )
    .await;
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("has not been uploaded"));

    Api::expect(api.put(&url, 0, 10, &[1u8; 10]).await, StatusCode::CREATED).await;
    let j = Api::expect(api.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(j["status"]["state"], "paused");
    assert_eq!(j["status"]["details"], json!([]));

    let s = Api::expect(api.post(&start, json!({})).await, StatusCode::OK).await;
    assert_eq!(s["state"], "processing");
    assert!(
        s.get("id").is_none(),
        "start answers a printJobStatus, not a job"
    );
    assert_eq!(
        s["@odata.context"],
        format!(
            "{}/v1.0/$metadata#microsoft.graph.printJobStatus",
            server.base_url()
        )
    );
    // Idempotent; and an empty body works like `{}`.
    let resp = api.http.post(api.url(&start)).send().await.unwrap();
    assert_eq!(
        Api::expect(resp, StatusCode::OK).await["state"],
        "processing"
    );
    let j = Api::expect(api.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(j["isFetchable"], true);

    let cancel = format!("{}/cancel", job.job_path());
    assert_eq!(
        api.post(&cancel, json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.post(&cancel, json!({})).await.status(),
        StatusCode::NO_CONTENT
    );
    let j = Api::expect(api.get(&job.job_path()).await, StatusCode::OK).await;
    assert_eq!(j["status"]["state"], "canceled");
    assert_eq!(j["isFetchable"], false);
    assert_graph_error(
        api.post(&start, json!({})).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        None,
    )
    .await;
}

#[tokio::test]
async fn canceling_a_job_ends_its_upload_session_and_frees_its_bytes() {
    let server = Server::start(&["--insecure-dev-auth", "--sweep-interval", "1s"], &[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(100).await;
    Api::expect(
        api.put(&url, 0, 100, &[1u8; 50]).await,
        StatusCode::ACCEPTED,
    )
    .await;
    cancel(&api, &job).await;
    assert_session_gone(api.put(&url, 50, 100, &[1u8; 50]).await).await;
    assert_eq!(blob_files(&server), 0);

    // A completed document of a canceled job is removed by the sweeper.
    let (job, url) = api.ready_upload(10).await;
    Api::expect(api.put(&url, 0, 10, &[1u8; 10]).await, StatusCode::CREATED).await;
    assert_eq!(blob_files(&server), 1);
    // `$value` refuses at once; the sweep deletes the file a little later.
    cancel_then_value_is_refused(&api, &job).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while blob_files(&server) > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "bytes of a canceled job were never swept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Files in the server's byte store.
fn blob_files(server: &Server) -> usize {
    std::fs::read_dir(server.data_dir().join("blobs"))
        .unwrap()
        .count()
}

/// Cancels `job`: `204`.
async fn cancel(api: &Api, job: &common::api::JobRef) {
    assert_eq!(
        api.post(&format!("{}/cancel", job.job_path()), json!({}))
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
}

/// Cancels `job` and checks that its document's `$value` is refused at once.
async fn cancel_then_value_is_refused(api: &Api, job: &common::api::JobRef) {
    cancel(api, job).await;
    assert_graph_error(
        api.get(&format!("{}/$value", job.document_path())).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        None,
    )
    .await;
}

/// Between a job's cancelation and the sweep that deletes its bytes, neither `$value` nor a
/// download URL issued before the cancelation serves them (the sweep never runs here).
#[tokio::test]
async fn a_canceled_jobs_document_is_not_served_before_the_sweep() {
    let server = Server::start(&["--insecure-dev-auth", "--sweep-interval", "1h"], &[]);
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(10).await;
    Api::expect(api.put(&url, 0, 10, &[7u8; 10]).await, StatusCode::CREATED).await;
    let (location, bytes) = api.download(&job).await;
    assert_eq!(bytes, [7u8; 10]);
    cancel_then_value_is_refused(&api, &job).await;
    assert_graph_error(
        reqwest::get(&location).await.expect("download"),
        StatusCode::NOT_FOUND,
        "itemNotFound",
        None,
    )
    .await;
    // The bytes are still on disk (no sweep ran): only the refusal kept them from the caller.
    assert_eq!(blob_files(&server), 1);
}

#[tokio::test]
async fn job_lists_page_filter_and_order() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let pid = api.printer("P").await;
    let sid = api.share(&pid, "S").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        // Jobs made through the share belong to its printer too.
        let scope = if i % 2 == 0 {
            format!("printers/{pid}")
        } else {
            format!("shares/{sid}")
        };
        ids.push(api.job(&scope).await.job);
    }
    let other = api.printer("Other").await;
    api.job(&format!("printers/{other}")).await;

    // Follow nextLink verbatim through pages of two.
    let mut seen = Vec::new();
    let mut next = Some(api.url(&format!("/print/shares/{sid}/jobs?$top=2")));
    while let Some(url) = next {
        let page = Api::expect(api.http.get(&url).send().await.unwrap(), StatusCode::OK).await;
        assert!(page["value"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_string()),
        );
        assert!(page["value"][0].get("documents").is_none());
        next = page["@odata.nextLink"].as_str().map(str::to_string);
    }
    assert_eq!(seen, ids);

    let desc = Api::expect(
        api.get(&format!(
            "/print/printers/{pid}/jobs?$orderby=createdDateTime%20desc&$skip=1&$top=2"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    let got: Vec<&str> = desc["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, vec![ids[3].as_str(), ids[2].as_str()]);

    let filtered = Api::expect(
        api.get(&format!("/print/printers/{pid}/jobs?$filter=createdBy/userPrincipalName%20eq%20'DEV@upspool.invalid'&$expand=documents")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(filtered["value"].as_array().unwrap().len(), 5);
    assert_eq!(
        filtered["value"][0]["documents"].as_array().unwrap().len(),
        1
    );
    let none = Api::expect(
        api.get(&format!(
            "/print/printers/{pid}/jobs?$filter=createdBy/userPrincipalName%20eq%20'someone@else'"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(none["value"], json!([]));
    let processing = Api::expect(
        api.get(&format!(
            "/print/printers/{pid}/jobs?$filter=status/state%20eq%20'processing'"
        ))
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(processing["value"], json!([]));

    for q in [
        "$top=-1",
        "$skip=x",
        "$count=true",
        "$search=a",
        "$filter=id%20eq%20'1'",
        "$expand=printer",
        "$orderby=id",
        "$bogus=1",
    ] {
        assert_graph_error(
            api.get(&format!("/print/printers/{pid}/jobs?{q}")).await,
            StatusCode::BAD_REQUEST,
            "invalidRequest",
            Some("invalidQueryOption"),
        )
        .await;
    }
}

#[tokio::test]
async fn foreign_and_malformed_ids_are_not_found() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let (job, _) = api.ready_upload(10).await;
    let (second, _) = api.ready_upload(10).await;
    let other = api.printer("Other").await;
    // Each answer names what is missing: the printer only when the printer itself is.
    for (path, missing) in [
        (
            format!("/print/printers/{other}/jobs/{}", job.job),
            "print job",
        ),
        (
            format!(
                "/print/printers/3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46/jobs/{}",
                job.job
            ),
            "printer",
        ),
        (
            format!("/print/printers/not-a-guid/jobs/{}", job.job),
            "printer",
        ),
        (format!("/print/{}/jobs/99999999", job.scope), "print job"),
        (format!("/print/{}/jobs/-1", job.scope), "print job"),
        (format!("/print/{}/jobs/..%2f..%2f", job.scope), "print job"),
        (
            format!(
                "/print/{}/jobs/{}/documents/3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46",
                job.scope, job.job
            ),
            "print document",
        ),
        (
            format!(
                "/print/{}/jobs/{}/documents/{}",
                job.scope, job.job, second.document
            ),
            "print document",
        ),
        (
            format!(
                "/print/printers/{other}/jobs/{}/documents/{}",
                job.job, job.document
            ),
            "print job",
        ),
        (
            format!(
                "/print/printers/3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46/jobs/{}/documents/{}",
                job.job, job.document
            ),
            "printer",
        ),
        ("/print/nothing".to_string(), ""),
    ] {
        let v = assert_graph_error(
            api.get(&path).await,
            StatusCode::NOT_FOUND,
            "itemNotFound",
            None,
        )
        .await;
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("{missing} ")),
            "{path}: {message} should name the {missing}"
        );
    }
}

#[tokio::test]
async fn documents_are_listed_read_and_downloaded_with_ranges() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let (job, url) = api.ready_upload(1000).await;
    let value = format!("{}/$value", job.document_path());
    assert_graph_error(
        api.get(&value).await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        None,
    )
    .await;

    let data = random_bytes(1000, 9);
    Api::expect(api.put(&url, 0, 1000, &data).await, StatusCode::CREATED).await;
    let docs = Api::expect(
        api.get(&format!("{}/documents", job.job_path())).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(docs["value"][0]["size"], 1000);
    let doc = Api::expect(api.get(&job.document_path()).await, StatusCode::OK).await;
    assert_eq!(doc["contentType"], "application/pdf");
    assert!(doc["downloadedDateTime"].is_null());

    // $value on either path form and in any case redirects.
    let resp = api.get(&value.replace("$value", "%24VALUE")).await;
    assert_eq!(resp.status(), StatusCode::FOUND);
    let location = resp.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{}/downloads/", server.base_url())));

    let full = api.http.get(&location).send().await.unwrap();
    assert_eq!(full.status(), StatusCode::OK);
    let etag = full.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(full.headers()["content-type"], "application/pdf");
    assert_eq!(full.headers()["content-length"], "1000");
    assert_eq!(full.bytes().await.unwrap().to_vec(), data);
    let doc = Api::expect(api.get(&job.document_path()).await, StatusCode::OK).await;
    assert!(doc["downloadedDateTime"].as_str().unwrap().ends_with('Z'));

    let head = api.http.head(&location).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(head.headers()["content-length"], "1000");
    assert_eq!(head.bytes().await.unwrap().len(), 0);

    let range = |r: &'static str| api.http.get(&location).header("Range", r).send();
    for (r, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=990-", 990, 999),
        ("bytes=-5", 995, 999),
        ("bytes=900-5000", 900, 999),
    ] {
        let resp = range(r).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{r}");
        assert_eq!(
            resp.headers()["content-range"],
            format!("bytes {start}-{end}/1000").as_str()
        );
        assert_eq!(
            resp.bytes().await.unwrap().to_vec(),
            data[start..=end].to_vec(),
            "{r}"
        );
    }
    let resp = range("bytes=1000-").await.unwrap();
    assert_eq!(resp.headers()["content-range"], "bytes */1000");
    assert_graph_error(
        resp,
        StatusCode::RANGE_NOT_SATISFIABLE,
        "invalidRange",
        None,
    )
    .await;
    assert_eq!(
        range("bytes=0-1,5-6").await.unwrap().status(),
        StatusCode::OK
    );

    let cached = api
        .http
        .get(&location)
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);
    let stale = api
        .http
        .get(&location)
        .header("Range", "bytes=0-9")
        .header("If-Range", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::OK);
    let fresh = api
        .http
        .get(&location)
        .header("Range", "bytes=0-9")
        .header("If-Range", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::PARTIAL_CONTENT);

    // The download URL opens this document only, and only with its token.
    let tampered = format!("{}x", location);
    assert_graph_error(
        api.http.get(&tampered).send().await.unwrap(),
        StatusCode::UNAUTHORIZED,
        "InvalidAuthenticationToken",
        None,
    )
    .await;
    let other_grant = location.replacen("/downloads/", "/downloads/0", 1);
    assert_eq!(
        api.http.get(&other_grant).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn routes_match_case_insensitively_and_unsupported_methods_say_so() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let pid = api.printer("P").await;
    let resp = api
        .http
        .get(format!(
            "{}/V1.0/Print/PRINTERS/{pid}/Jobs",
            server.base_url()
        ))
        .send()
        .await
        .unwrap();
    Api::expect(resp, StatusCode::OK).await;
    let job = api.job(&format!("printers/{pid}")).await;

    let resp = api.send(Method::DELETE, &job.document_path(), None).await;
    assert!(resp.headers().contains_key("allow"));
    assert_graph_error(resp, StatusCode::METHOD_NOT_ALLOWED, "notSupported", None).await;
    assert_graph_error(
        api.post(&format!("/print/printers/{pid}/jobs/release"), json!({}))
            .await,
        StatusCode::NOT_IMPLEMENTED,
        "notSupported",
        None,
    )
    .await;
    let tasks = Api::expect(
        api.get(&format!("{}/tasks", job.job_path())).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(tasks["value"], json!([]));
}

#[tokio::test]
async fn request_ids_are_returned_and_echoed() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let resp = api
        .http
        .get(api.url("/print/printers"))
        .header("client-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["client-request-id"], "abc-123");
    let rid = resp.headers()["request-id"].to_str().unwrap().to_string();
    assert_eq!(rid.len(), 36);
    let resp = api
        .http
        .get(api.url("/print/printers/nope"))
        .header("client-request-id", "xyz")
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["innerError"]["client-request-id"], "xyz");
    assert!(v["error"]["innerError"]["date"]
        .as_str()
        .unwrap()
        .ends_with('Z'));
}

#[tokio::test]
async fn operations_endpoints_report_health_readiness_and_metrics() {
    let server = dev_server();
    let api = Api::new(server.base_url());
    let get = |p: &str| api.http.get(format!("{}{p}", server.base_url())).send();
    assert_eq!(get("/healthz").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/readyz").await.unwrap().status(), StatusCode::OK);

    let (_, url) = api.ready_upload(4096).await;
    Api::expect(
        api.put(&url, 0, 4096, &[3u8; 4096]).await,
        StatusCode::CREATED,
    )
    .await;
    let text = get("/metrics").await.unwrap().text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from metrics:\n{text}"))
    };
    assert_eq!(value("upspool_upload_bytes_written_total"), 4096.0);
    assert_eq!(value("upspool_upload_sessions_active"), 0.0);
    api.ready_upload(10).await;
    let text2 = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(
        text2.contains("upspool_upload_sessions_active 1"),
        "{text2}"
    );
    assert!(value("upspool_upload_sync_seconds_count") >= 1.0);
    assert!(value("upspool_upload_commit_seconds_count") >= 1.0);
    // The streaming split is observed once per segment that streamed a body.
    assert_eq!(value("upspool_upload_body_wait_seconds_count"), 1.0);
    assert_eq!(value("upspool_upload_store_wait_seconds_count"), 1.0);
    // Its one block was gathered for a direct write, from the pool or the heap. (Needs a
    // filesystem that takes O_DIRECT for the temporary directory, as ext4 and tmpfs do; on
    // one that refuses it the store writes through the page cache and gathers nothing.)
    let gathered: f64 = text
        .lines()
        .filter(|l| l.starts_with("upspool_upload_blocks_gathered_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(gathered, 1.0, "{text}");
    assert!(text.contains("upspool_http_requests_total{method=\"PUT\",route=\"/uploadSessions/{session}\",status=\"201\"} 1"), "{text}");
    // Each request's time is observed under its route template (the one segment above), in
    // seconds, not at zero.
    let put = "{method=\"PUT\",route=\"/uploadSessions/{session}\"}";
    assert_eq!(
        value(&format!("upspool_http_request_duration_seconds_count{put}")),
        1.0
    );
    let took = value(&format!("upspool_http_request_duration_seconds_sum{put}"));
    assert!(took > 0.0 && took < 60.0, "{took}");
}

/// `--upload-buffer-pool` sizes the memory upload blocks are gathered in: by default a 1 MiB
/// upload's four blocks come from the pool, with 0 from the heap (the blocks counter tells).
#[tokio::test]
async fn the_upload_buffer_pool_can_be_switched_off() {
    for (args, from) in [
        (&["--insecure-dev-auth"][..], "pool"),
        (
            &["--insecure-dev-auth", "--upload-buffer-pool", "0"][..],
            "heap",
        ),
    ] {
        let server = Server::start(args, &[]);
        let api = Api::new(server.base_url());
        let (_, url) = api.ready_upload(1 << 20).await;
        Api::expect(
            api.put(&url, 0, 1 << 20, &random_bytes(1 << 20, 5)).await,
            StatusCode::CREATED,
        )
        .await;
        let sample =
            |memory| format!("upspool_upload_blocks_gathered_total{{memory=\"{memory}\"}}");
        // (Needs a filesystem that takes O_DIRECT for the temporary directory, as in the
        // metrics test above.)
        let pool = common::sdk::metric(&api.base, &api.http, &sample("pool")).await;
        let heap = common::sdk::metric(&api.base, &api.http, &sample("heap")).await;
        assert_eq!(if from == "pool" { pool } else { heap }, 4, "{args:?}");
        assert_eq!(pool + heap, 4, "{args:?}");
    }
}

/// `GET /print/shares/{id}/printer`, the navigation Microsoft's SDKs generate
/// (`.printer.get()`): the shared printer for whoever may read the share, Graph's errors
/// otherwise.
#[tokio::test]
async fn a_share_navigates_to_its_printer() {
    let server = Server::start(&[], &[]);
    let api = Api::new(server.base_url());
    let admin = api.with_token(&common::sdk::mint(
        &server,
        &[
            "--user",
            "admin@example.com",
            "--scopes",
            "Printer.FullControl.All PrinterShare.ReadWrite.All",
        ],
    ));
    let printer = admin.printer("Hall").await;
    let share = admin.share(&printer, "Hall share").await;
    let reader = api.with_token(&common::sdk::mint(
        &server,
        &[
            "--user",
            "alice@example.com",
            "--scopes",
            "PrintJob.ReadWrite PrinterShare.ReadBasic.All",
        ],
    ));
    let v = Api::expect(
        reader.get(&format!("/print/shares/{share}/printer")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["id"], printer.as_str());
    assert_eq!(v["displayName"], "Hall");
    assert_eq!(
        v["@odata.context"],
        format!(
            "{}/v1.0/$metadata#print/shares('{share}')/printer/$entity",
            server.base_url()
        )
    );
    // Matched case-insensitively, like every navigation segment.
    let v = Api::expect(
        reader.get(&format!("/print/shares/{share}/Printer")).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["id"], printer.as_str());
    // Without a share permission: 403; unknown or malformed shares: 404; unsupported options.
    let printing_only = api.with_token(&common::sdk::mint(
        &server,
        &[
            "--user",
            "bob@example.com",
            "--scopes",
            "PrintJob.ReadWrite",
        ],
    ));
    assert_graph_error(
        printing_only
            .get(&format!("/print/shares/{share}/printer"))
            .await,
        StatusCode::FORBIDDEN,
        "accessDenied",
        None,
    )
    .await;
    for missing in ["3f2b4c9e-1d6a-4e8b-9c0f-5a7d2e1b8c46", "nope"] {
        assert_graph_error(
            reader
                .get(&format!("/print/shares/{missing}/printer"))
                .await,
            StatusCode::NOT_FOUND,
            "itemNotFound",
            None,
        )
        .await;
    }
    assert_graph_error(
        reader
            .get(&format!("/print/shares/{share}/printer?$select=id"))
            .await,
        StatusCode::BAD_REQUEST,
        "invalidRequest",
        Some("invalidQueryOption"),
    )
    .await;
    assert_graph_error(
        reader
            .send(
                Method::DELETE,
                &format!("/print/shares/{share}/printer"),
                None,
            )
            .await,
        StatusCode::METHOD_NOT_ALLOWED,
        "notSupported",
        None,
    )
    .await;
}
