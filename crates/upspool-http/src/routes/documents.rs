//! Documents of a job: list, get, createUploadSession, and `$value` (a redirect to a
//! pre-authenticated download URL).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use upspool_domain::upload::UploadProperties;

use crate::auth::Caller;
use crate::extract::{only_properties, Addr, GraphJson};
use crate::graph_error::{ApiError, ApiResult};
use crate::views::{self, context, scope_path};
use crate::AppState;

pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let docs = st.service.documents(&who, addr.scope(), addr.job()).await?;
    Ok(Json(json!({
        "@odata.context": context(
            &st.config.public_url,
            addr.version,
            &format!("{}/jobs('{}')/documents", scope_path(addr.scope()), addr.job())
        ),
        "value": docs.iter().map(|d| views::document(d, addr.version)).collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let doc = st
        .service
        .get_document(&who, addr.scope(), addr.job(), addr.document())
        .await?;
    let v = super::with_context(
        &st,
        &addr,
        views::document(&doc, addr.version),
        &format!(
            "{}/jobs('{}')/documents/$entity",
            scope_path(addr.scope()),
            addr.job()
        ),
    );
    Ok(v.into_response())
}

/// `{"properties":{"documentName","contentType","size"}}`, type-checked.
fn upload_properties(body: &Map<String, Value>) -> ApiResult<UploadProperties> {
    only_properties(body, &["properties"], &[])?;
    let props = match body.get("properties") {
        Some(Value::Object(p)) => p,
        _ => return Err(ApiError::invalid_request(
            "The property 'properties' is required: {\"documentName\",\"contentType\",\"size\"}.",
        )),
    };
    let props: Map<String, Value> = props
        .iter()
        .filter(|(k, _)| !k.starts_with("@odata."))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    only_properties(&props, &["documentName", "contentType", "size"], &[])?;
    let size = match props.get("size") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid_request(
            "properties.size is required and must be an integer of at least 1.",
        )
    })?;
    let content_type = match props.get("contentType") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ApiError::invalid_request(
                "properties.contentType is required and must be a MIME type string such as 'application/pdf'.",
            ))
        }
    };
    let document_name = match props.get("documentName") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(ApiError::invalid_request(
                "properties.documentName must be a string.",
            ))
        }
    };
    Ok(UploadProperties {
        document_name,
        content_type,
        size,
    })
}

pub async fn create_upload_session(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    GraphJson(body): GraphJson,
) -> ApiResult<Response> {
    let props = upload_properties(&body)?;
    let new = st
        .service
        .create_upload_session(&who, addr.scope(), addr.job(), addr.document(), props)
        .await?;
    Ok(Json(json!({
        "@odata.context": context(&st.config.public_url, addr.version, "microsoft.graph.uploadSession"),
        "uploadUrl": format!(
            "{}/uploadSessions/{}?tempauthtoken={}",
            st.config.public_url, new.session.id, new.token
        ),
        "expirationDateTime": views::timestamp(new.session.expires),
        "nextExpectedRanges": views::ranges(&new.missing),
    }))
    .into_response())
}

/// `302` to a pre-authenticated download URL on the same scheme and host as the API.
pub async fn content(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let dl = st
        .service
        .create_download(&who, addr.scope(), addr.job(), addr.document())
        .await?;
    let location = format!(
        "{}/downloads/{}?tempauthtoken={}",
        st.config.public_url, dl.grant.id, dl.token
    );
    Ok((StatusCode::FOUND, [(header::LOCATION, location)]).into_response())
}
