//! The route table. Every Graph route exists under `/v1.0` and `/beta`, and every job route
//! under both `/print/printers/{id}` and `/print/shares/{id}`.

use axum::routing::{delete, get, post, put};
use axum::Router;

use axum::Json;
use serde_json::{json, Value};

use crate::extract::Addr;
use crate::AppState;

mod documents;
mod downloads;
mod jobs;
mod ops;
mod printers;
mod share_access;
mod shares;
mod uploads;

pub fn router() -> Router<AppState> {
    let mut r = Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route(
            "/uploadSessions/{session}",
            put(uploads::put)
                .get(uploads::status)
                .delete(uploads::delete),
        )
        .route(
            "/downloads/{grant}",
            get(downloads::get).head(downloads::get),
        );
    for v in ["/v1.0", "/beta"] {
        r = r
            .route(
                &format!("{v}/print/printers"),
                get(printers::list).post(printers::create),
            )
            .route(
                &format!("{v}/print/printers/{{id}}"),
                get(printers::get).delete(printers::delete),
            )
            .route(
                &format!("{v}/print/shares"),
                get(shares::list).post(shares::create),
            )
            .route(
                &format!("{v}/print/shares/{{id}}"),
                get(shares::get).delete(shares::delete),
            )
            .route(
                &format!("{v}/print/shares/{{id}}/printer"),
                get(shares::printer),
            );
        for list in ["allowedUsers", "allowedGroups"] {
            let base = format!("{v}/print/shares/{{id}}/{list}");
            r = r
                .route(&base, get(share_access::list))
                .route(&format!("{base}/$ref"), post(share_access::add))
                .route(
                    &format!("{base}/{{member}}/$ref"),
                    delete(share_access::remove),
                );
        }
        for kind in ["printers", "shares"] {
            let base = format!("{v}/print/{kind}/{{scope}}/jobs");
            let job = format!("{base}/{{job}}");
            let doc = format!("{job}/documents/{{document}}");
            r = r
                .route(&base, get(jobs::list).post(jobs::create))
                .route(&format!("{base}/release"), post(jobs::release))
                .route(&job, get(jobs::get))
                .route(&format!("{job}/start"), post(jobs::start))
                .route(&format!("{job}/cancel"), post(jobs::cancel))
                .route(&format!("{job}/abort"), post(jobs::not_implemented))
                .route(&format!("{job}/redirect"), post(jobs::not_implemented))
                .route(&format!("{job}/tasks"), get(jobs::tasks))
                .route(&format!("{job}/documents"), get(documents::list))
                .route(&doc, get(documents::get))
                .route(
                    &format!("{doc}/createUploadSession"),
                    post(documents::create_upload_session),
                )
                .route(&format!("{doc}/$value"), get(documents::content))
                .route(
                    &format!("{doc}/uploadSession/$value"),
                    post(uploads::post_draft),
                );
        }
    }
    r
}

/// `value` with its `@odata.context` (`{base}/{version}/$metadata#{path}`), for single entities.
fn with_context(st: &AppState, addr: &Addr, mut value: Value, path: &str) -> Json<Value> {
    value["@odata.context"] = json!(crate::views::context(
        &st.config.public_url,
        addr.version,
        path
    ));
    Json(value)
}

/// Path segments matched case-insensitively, in their canonical spelling.
pub const CANONICAL_SEGMENTS: &[&str] = &[
    "v1.0",
    "beta",
    "print",
    "printers",
    "shares",
    "printer",
    "jobs",
    "documents",
    "tasks",
    "start",
    "cancel",
    "abort",
    "redirect",
    "release",
    "createUploadSession",
    "uploadSession",
    "$value",
    "uploadSessions",
    "downloads",
    "allowedUsers",
    "allowedGroups",
    "$ref",
];
