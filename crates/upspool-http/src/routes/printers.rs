//! `/print/printers`: list, get, delete, and the upspool extension `POST` (Graph registers
//! printers through a device flow instead; see the README).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::auth::Caller;
use crate::extract::{only_properties, opt_string, Addr, GraphJson};
use crate::graph_error::{ApiError, ApiResult};
use crate::views::{self, context};
use crate::AppState;

pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let printers = st.service.list_printers(&who).await?;
    Ok(Json(json!({
        "@odata.context": context(&st.config.public_url, addr.version, "print/printers"),
        "value": printers.iter().map(views::printer).collect::<Vec<_>>(),
    }))
    .into_response())
}

fn printer_id(addr: &Addr) -> ApiResult<uuid::Uuid> {
    match addr.scope {
        Some(upspool_domain::JobScope::Printer(id)) => Ok(id),
        _ => Err(ApiError::not_found("printer")),
    }
}

pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let p = st.service.get_printer(&who, printer_id(&addr)?).await?;
    let v = super::with_context(&st, &addr, views::printer(&p), "print/printers/$entity");
    Ok(v.into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<StatusCode> {
    st.service.delete_printer(&who, printer_id(&addr)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    GraphJson(body): GraphJson,
) -> ApiResult<Response> {
    only_properties(&body, &["displayName", "manufacturer", "model"], &[])?;
    let name = opt_string(&body, "displayName")?
        .ok_or_else(|| ApiError::invalid_request("The property 'displayName' is required."))?;
    let p = st
        .service
        .create_printer(
            &who,
            name,
            opt_string(&body, "manufacturer")?,
            opt_string(&body, "model")?,
        )
        .await?;
    let v = super::with_context(&st, &addr, views::printer(&p), "print/printers/$entity");
    Ok((StatusCode::CREATED, v).into_response())
}
