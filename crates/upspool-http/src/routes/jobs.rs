//! Print jobs: create, list, get, start, cancel (and the actions upspool does not implement).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use upspool_domain::access::Operation;
use upspool_domain::configuration::PrintJobConfiguration;
use upspool_domain::model::{Document, Job};
use upspool_domain::principal::Principal;
use upspool_domain::store::JobQuery;
use upspool_domain::DomainError;

use crate::auth::Caller;
use crate::extract::{opt_string, Addr, GraphJson};
use crate::graph_error::{ApiError, ApiResult};
use crate::odata::{self, QueryOptions, Target};
use crate::views::{self, context, scope_path, ApiVersion};
use crate::AppState;

const EXPANDABLE: &[&str] = &["documents", "tasks"];

/// Properties a create body may carry that the server assigns: accepted and ignored.
const READ_ONLY: &[&str] = &[
    "id",
    "createdDateTime",
    "createdBy",
    "status",
    "documents",
    "tasks",
    "isFetchable",
    "redirectedFrom",
    "redirectedTo",
    "errorCode",
    "acknowledgedDateTime",
    "completedDateTime",
];

pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    GraphJson(body): GraphJson,
) -> ApiResult<Response> {
    crate::extract::only_properties(&body, &["configuration", "displayName"], READ_ONLY)?;
    let configuration = match body.get("configuration") {
        None | Some(Value::Null) => PrintJobConfiguration::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| ApiError::invalid_request(format!("Invalid configuration: {e}.")))?,
    };
    let display_name = opt_string(&body, "displayName")?;
    let (job, document) = st
        .service
        .create_job(&who, addr.scope(), configuration, display_name)
        .await?;
    let mut v = views::job(
        &job,
        addr.version,
        Some(std::slice::from_ref(&document)),
        false,
    );
    v.insert("@odata.context".into(), json!(entity_context(&st, &addr)));
    Ok((StatusCode::CREATED, Json(Value::Object(v))).into_response())
}

fn entity_context(st: &AppState, addr: &Addr) -> String {
    context(
        &st.config.public_url,
        addr.version,
        &format!("{}/jobs/$entity", scope_path(addr.scope())),
    )
}

/// Applies `$select` (always keeping `id` and expanded relationships).
fn select(
    mut job: Map<String, Value>,
    opts: &QueryOptions,
    v: ApiVersion,
) -> ApiResult<Map<String, Value>> {
    let Some(fields) = &opts.select else {
        return Ok(job);
    };
    let known = views::job_properties(v);
    let mut keep: Vec<&str> = vec!["id"];
    for f in fields {
        let canonical = known
            .iter()
            .find(|k| k.eq_ignore_ascii_case(f))
            .ok_or_else(|| {
                ApiError::invalid_query(format!("$select names an unknown property '{f}'."))
            })?;
        keep.push(canonical);
    }
    keep.extend(opts.expand.iter().map(String::as_str));
    job.retain(|k, _| keep.contains(&k.as_str()));
    Ok(job)
}

async fn render(
    st: &AppState,
    job: &Job,
    opts: &QueryOptions,
    v: ApiVersion,
) -> ApiResult<Map<String, Value>> {
    let docs: Option<Vec<Document>> = if opts.expand.contains("documents") {
        Some(st.service.documents_of_job(job).await?)
    } else {
        None
    };
    select(
        views::job(job, v, docs.as_deref(), opts.expand.contains("tasks")),
        opts,
        v,
    )
}

pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let opts = odata::parse(q.as_deref(), Target::Item, EXPANDABLE)?;
    let job = st.service.get_job(&who, addr.scope(), addr.job()).await?;
    let mut v = render(&st, &job, &opts, addr.version).await?;
    v.insert("@odata.context".into(), json!(entity_context(&st, &addr)));
    Ok(Json(Value::Object(v)).into_response())
}

pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let opts = odata::parse(q.as_deref(), Target::List, EXPANDABLE)?;
    let limits = st.service.limits();
    let top = opts.top.map_or(limits.default_page_size, |t| {
        t.min(limits.max_page_size as u64) as u32
    });
    let skip = opts.skip.unwrap_or(0);
    let query = JobQuery {
        printer_id: uuid::Uuid::nil(),
        created_by_upn: opts.filter.created_by_upn.clone(),
        created_by_id: None,
        state: opts.filter.state,
        is_fetchable: opts.filter.is_fetchable,
        descending: opts.descending,
        skip,
        top,
    };
    let page = st.service.list_jobs(&who, addr.scope(), query).await?;
    let mut value = Vec::with_capacity(page.jobs.len());
    for job in &page.jobs {
        value.push(Value::Object(render(&st, job, &opts, addr.version).await?));
    }
    let scope = scope_path(addr.scope());
    let mut out = json!({
        "@odata.context": context(&st.config.public_url, addr.version, &format!("{scope}/jobs")),
        "value": value,
    });
    if page.has_more {
        let next = odata::next_link_query(&opts.raw, skip + page.jobs.len() as u64);
        out["@odata.nextLink"] = json!(format!(
            "{}/{}/{scope_url}/jobs?{next}",
            st.config.public_url,
            addr.version.as_str(),
            scope_url = scope_url(addr.scope()),
        ));
    }
    Ok(Json(out).into_response())
}

fn scope_url(scope: upspool_domain::JobScope) -> String {
    match scope {
        upspool_domain::JobScope::Printer(id) => format!("print/printers/{id}"),
        upspool_domain::JobScope::Share(id) => format!("print/shares/{id}"),
    }
}

pub async fn start(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let status = st.service.start_job(&who, addr.scope(), addr.job()).await?;
    let v = super::with_context(
        &st,
        &addr,
        views::status(&status, addr.version),
        "microsoft.graph.printJobStatus",
    );
    Ok(v.into_response())
}

pub async fn cancel(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<StatusCode> {
    st.service
        .cancel_job(&who, addr.scope(), addr.job())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET .../tasks`: upspool has no task triggers yet, so every job has none.
pub async fn tasks(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    st.service.get_job(&who, addr.scope(), addr.job()).await?;
    Ok(Json(json!({
        "@odata.context": context(
            &st.config.public_url,
            addr.version,
            &format!("{}/jobs('{}')/tasks", scope_path(addr.scope()), addr.job())
        ),
        "value": [],
    }))
    .into_response())
}

/// `abort` and `redirect` need task triggers, which upspool does not have yet. They are
/// application-only in Graph, and refused by the same permission rules before the `501`.
pub async fn not_implemented(Caller(who): Caller, State(st): State<AppState>) -> ApiError {
    not_supported(&st, &who, Operation::ManageJobs)
}

/// `release` (delegated-only in Graph), not implemented either.
pub async fn release(Caller(who): Caller, State(st): State<AppState>) -> ApiError {
    not_supported(&st, &who, Operation::ReleaseJob)
}

fn not_supported(st: &AppState, who: &Principal, op: Operation) -> ApiError {
    match st.service.check_allowed(who, op) {
        Err(e) => e.into(),
        Ok(()) => {
            DomainError::NotSupported("This action is not implemented by upspool yet.".into())
                .into()
        }
    }
}
