//! A share's access list, as Graph manages it: `GET .../allowedUsers`, `POST
//! .../allowedUsers/$ref` with `{"@odata.id": ".../users/{id}"}`, `DELETE
//! .../allowedUsers/{id}/$ref`, and the same for `allowedGroups`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use upspool_domain::model::ShareMember;
use upspool_domain::JobScope;

use crate::auth::Caller;
use crate::extract::Addr;
use crate::graph_error::{ApiError, ApiResult};
use crate::views::context;
use crate::AppState;

/// Which list a request addresses, from its path.
#[derive(Clone, Copy)]
enum List {
    Users,
    Groups,
}

impl List {
    fn of(uri: &Uri) -> List {
        if uri.path().contains("/allowedGroups") {
            List::Groups
        } else {
            List::Users
        }
    }
    fn name(self) -> &'static str {
        match self {
            List::Users => "allowedUsers",
            List::Groups => "allowedGroups",
        }
    }
    /// The directory collection a `$ref` points into.
    fn collection(self) -> &'static str {
        match self {
            List::Users => "users",
            List::Groups => "groups",
        }
    }
    fn member(self, id: String) -> ShareMember {
        match self {
            List::Users => ShareMember::User(id),
            List::Groups => ShareMember::Group(id),
        }
    }
}

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
    uri: Uri,
) -> ApiResult<Response> {
    let list = List::of(&uri);
    let share = share_id(&addr)?;
    let access = st.service.share_access(&who, share).await?;
    let ids = match list {
        List::Users => access.users,
        List::Groups => access.groups,
    };
    Ok(Json(json!({
        "@odata.context": context(
            &st.config.public_url,
            addr.version,
            &format!("print/shares('{share}')/{}", list.name())
        ),
        "value": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// The id at the end of `{"@odata.id": "https://graph.microsoft.com/v1.0/users/{id}"}`.
fn referenced_id(body: &[u8], list: List) -> ApiResult<String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("The body is not valid JSON: {e}.")))?;
    let url = value
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "The body must be {{\"@odata.id\": \"https://graph.microsoft.com/v1.0/{}/{{id}}\"}}.",
                list.collection()
            ))
        })?;
    let marker = format!("/{}/", list.collection());
    let id = url
        .trim_end_matches('/')
        .rsplit_once(&marker)
        .map(|(_, id)| id.trim())
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| {
            ApiError::invalid_request(format!(
                "'@odata.id' must name a member of {}: '{url}'.",
                list.collection()
            ))
        })?;
    Ok(id.to_string())
}

pub async fn add(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    uri: Uri,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let list = List::of(&uri);
    let share = share_id(&addr)?;
    let id = referenced_id(&body, list)?;
    st.service
        .allow_on_share(&who, share, list.member(id))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn remove(
    State(st): State<AppState>,
    Caller(who): Caller,
    addr: Addr,
    uri: Uri,
    Path((_, member)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let list = List::of(&uri);
    let share = share_id(&addr)?;
    st.service
        .disallow_on_share(&who, share, list.member(member))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
