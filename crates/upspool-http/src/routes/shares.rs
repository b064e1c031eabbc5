//! `/print/shares`: create (with `printer@odata.bind`), list, get (`$expand=printer`), delete,
//! and the `printer` navigation (`GET /print/shares/{id}/printer`, the SDKs' `.printer.get()`).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use upspool_domain::JobScope;

use crate::auth::Caller;
use crate::extract::{only_properties, opt_string, parse_uuid, Addr, GraphJson};
use crate::graph_error::{ApiError, ApiResult};
use crate::odata::{self, Target};
use crate::views::{self, context};
use crate::AppState;

fn share_id(addr: &Addr) -> ApiResult<uuid::Uuid> {
    match addr.scope {
        Some(JobScope::Share(id)) => Ok(id),
        _ => Err(ApiError::not_found("printer share")),
    }
}

pub async fn list(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<Response> {
    let shares = st.service.list_shares(&who).await?;
    Ok(Json(json!({
        "@odata.context": context(&st.config.public_url, addr.version, "print/shares"),
        "value": shares.iter().map(|s| views::share(s, None)).collect::<Vec<_>>(),
    }))
    .into_response())
}

pub async fn get(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let opts = odata::parse(q.as_deref(), Target::Item, &["printer"])?;
    if opts.select.is_some() {
        return Err(ApiError::invalid_query(
            "$select is not supported on printer shares.",
        ));
    }
    let share = st.service.get_share(&who, share_id(&addr)?).await?;
    let printer = if opts.expand.contains("printer") {
        Some(st.service.printer_of_share(&who, &share).await?)
    } else {
        None
    };
    let v = super::with_context(
        &st,
        &addr,
        views::share(&share, printer.as_ref()),
        "print/shares/$entity",
    );
    Ok(v.into_response())
}

/// `GET /print/shares/{id}/printer`: the shared printer, readable by whoever may read the
/// share with `$expand=printer` (the same check). Microsoft's SDKs generate this navigation
/// (`client.print.shares.by_printer_share_id(s).printer.get()`).
pub async fn printer(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let opts = odata::parse(q.as_deref(), Target::Item, &[])?;
    if opts.select.is_some() {
        return Err(ApiError::invalid_query(
            "$select is not supported on printers.",
        ));
    }
    let id = share_id(&addr)?;
    let share = st.service.get_share(&who, id).await?;
    let printer = st.service.printer_of_share(&who, &share).await?;
    let v = super::with_context(
        &st,
        &addr,
        views::printer(&printer),
        &format!("print/shares('{id}')/printer/$entity"),
    );
    Ok(v.into_response())
}

pub async fn delete(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
) -> ApiResult<StatusCode> {
    st.service.delete_share(&who, share_id(&addr)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The printer id at the end of a `printer@odata.bind` URL (`.../print/printers/{id}`).
fn bound_printer(v: Option<&Value>) -> ApiResult<uuid::Uuid> {
    let url = match v {
        Some(Value::String(s)) => s.as_str(),
        _ => return Err(ApiError::invalid_request(
            "The property 'printer@odata.bind' is required: the URL of the printer to share, such as 'https://host/v1.0/print/printers/{id}'.",
        )),
    };
    let id = url
        .trim_end_matches('/')
        .rsplit_once("printers/")
        .map(|(_, id)| id)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "'printer@odata.bind' is not a printer URL: '{url}'."
            ))
        })?;
    parse_uuid(id, "printer").map_err(|_| {
        ApiError::invalid_request(format!(
            "'printer@odata.bind' names no valid printer id: '{url}'."
        ))
    })
}

pub async fn create(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    GraphJson(body): GraphJson,
) -> ApiResult<Response> {
    only_properties(
        &body,
        &["displayName", "allowAllUsers", "printer@odata.bind"],
        &[],
    )?;
    let name = opt_string(&body, "displayName")?
        .ok_or_else(|| ApiError::invalid_request("The property 'displayName' is required."))?;
    let allow_all = match body.get("allowAllUsers") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid_request(
                "The property 'allowAllUsers' must be true or false.",
            ))
        }
    };
    let printer = bound_printer(body.get("printer@odata.bind"))?;
    let share = st
        .service
        .create_share(&who, name, printer, allow_all)
        .await?;
    let v = super::with_context(
        &st,
        &addr,
        views::share(&share, None),
        "print/shares/$entity",
    );
    Ok((StatusCode::CREATED, v).into_response())
}
