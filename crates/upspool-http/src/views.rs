//! JSON shapes of Graph resources, built from domain values. Every timestamp goes through
//! [`timestamp`] (UTC, 7 fractional digits, `Z`: the Python SDK refuses naive values).

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use upspool_domain::model::{Document, Job, JobStatus, Printer, Share};
use upspool_domain::range_set::ByteRange;
use upspool_domain::service::JobScope;
use upspool_domain::upload::SessionStatus;

/// Which Graph version a request came through. Beta adds a few properties.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    V1,
    Beta,
}

impl ApiVersion {
    pub fn as_str(&self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1.0",
            ApiVersion::Beta => "beta",
        }
    }
}

/// `2020-10-25T02:19:38.1694207Z`.
pub fn timestamp(t: DateTime<Utc>) -> String {
    format!(
        "{}.{:07}Z",
        t.format("%Y-%m-%dT%H:%M:%S"),
        t.timestamp_subsec_nanos() / 100
    )
}

fn opt_ts(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| json!(timestamp(t)))
}

/// `"start-end"` strings, as `nextExpectedRanges` wants them.
pub fn ranges(r: &[ByteRange]) -> Vec<String> {
    r.iter().map(ToString::to_string).collect()
}

/// `{base}/{version}/$metadata#{path}`.
pub fn context(base: &str, v: ApiVersion, path: &str) -> String {
    format!("{base}/{}/$metadata#{path}", v.as_str())
}

/// `print/printers('{id}')` or `print/shares('{id}')`.
pub fn scope_path(scope: JobScope) -> String {
    match scope {
        JobScope::Printer(id) => format!("print/printers('{id}')"),
        JobScope::Share(id) => format!("print/shares('{id}')"),
    }
}

/// `printer`, as listed and created.
pub fn printer(p: &Printer) -> Value {
    json!({
        "id": p.id.to_string(),
        "displayName": p.display_name,
        "manufacturer": p.manufacturer,
        "model": p.model,
        "registeredDateTime": timestamp(p.created),
        "isShared": false,
        "isAcceptingJobs": true,
        "status": {"state": "idle", "description": "", "details": []},
    })
}

/// `printerShare`. The printer is included only when expanded, as in Graph.
pub fn share(s: &Share, printer: Option<&Printer>) -> Value {
    let mut v = json!({
        "id": s.id.to_string(),
        "displayName": s.display_name,
        "createdDateTime": timestamp(s.created),
        "allowAllUsers": s.allow_all_users,
        "isAcceptingJobs": true,
    });
    if let Some(p) = printer {
        v["printer"] = self::printer(p);
    }
    v
}

/// `printJobStatus`; beta also carries the deprecated mirrors of its properties.
pub fn status(s: &JobStatus, v: ApiVersion) -> Value {
    let mut out = json!({
        "state": s.state,
        "description": s.description(),
        "isAcquiredByPrinter": s.is_acquired_by_printer,
        "details": s.details,
    });
    if v == ApiVersion::Beta {
        out["processingState"] = json!(s.state);
        out["processingStateDescription"] = json!(s.description());
        out["acquiredByPrinter"] = json!(s.is_acquired_by_printer);
    }
    out
}

/// `printDocument`.
pub fn document(d: &Document, v: ApiVersion) -> Value {
    let mut out = json!({
        "id": d.id.to_string(),
        "displayName": d.display_name,
        "contentType": d.content_type,
        "size": d.size,
        "uploadedDateTime": opt_ts(d.uploaded),
        "downloadedDateTime": opt_ts(d.downloaded),
    });
    if v == ApiVersion::Beta {
        out["configuration"] = Value::Null;
    }
    out
}

/// The `201` body that completes an upload: the document, plus `documentName` as the
/// upload docs' example shows it. No `@odata.context` on upload URL responses.
pub fn completed_document(d: &Document) -> Value {
    let mut out = document(d, ApiVersion::V1);
    out["documentName"] = json!(d.display_name);
    out
}

/// The `202` / `GET {uploadUrl}` body.
pub fn session_status(s: &SessionStatus) -> Value {
    json!({
        "expirationDateTime": timestamp(s.expires),
        "nextExpectedRanges": ranges(&s.missing),
    })
}

/// Every job property name for a version, for `$select` validation.
pub fn job_properties(v: ApiVersion) -> &'static [&'static str] {
    /// v1.0's properties, then the beta-only ones.
    const ALL: &[&str] = &[
        "id",
        "createdDateTime",
        "createdBy",
        "status",
        "configuration",
        "isFetchable",
        "redirectedFrom",
        "redirectedTo",
        "errorCode",
        "acknowledgedDateTime",
        "documents",
        "tasks",
        "displayName",
        "completedDateTime",
    ];
    match v {
        ApiVersion::V1 => &ALL[..ALL.len() - 2],
        ApiVersion::Beta => ALL,
    }
}

/// `printJob`, without `@odata.context` (added for single entities by the caller).
/// `documents` and `tasks` appear only when given (expanded).
pub fn job(
    j: &Job,
    v: ApiVersion,
    documents: Option<&[Document]>,
    tasks: bool,
) -> Map<String, Value> {
    let mut out = Map::new();
    out.insert("id".into(), json!(j.id.to_string()));
    out.insert("createdDateTime".into(), json!(timestamp(j.created)));
    out.insert(
        "createdBy".into(),
        json!({
            "id": j.created_by.id,
            "displayName": j.created_by.display_name,
            "userPrincipalName": j.created_by.user_principal_name,
            "ipAddress": null,
        }),
    );
    out.insert("status".into(), status(&j.status, v));
    out.insert(
        "configuration".into(),
        serde_json::to_value(&j.configuration).unwrap_or_else(|_| json!({})),
    );
    out.insert("isFetchable".into(), json!(j.is_fetchable));
    out.insert("redirectedFrom".into(), Value::Null);
    out.insert("redirectedTo".into(), Value::Null);
    out.insert("errorCode".into(), json!(j.error_code));
    out.insert("acknowledgedDateTime".into(), opt_ts(j.acknowledged));
    if v == ApiVersion::Beta {
        out.insert("displayName".into(), json!(j.display_name));
        out.insert("completedDateTime".into(), opt_ts(j.completed));
    }
    if let Some(docs) = documents {
        out.insert(
            "documents".into(),
            Value::Array(docs.iter().map(|d| document(d, v)).collect()),
        );
    }
    if tasks {
        out.insert("tasks".into(), json!([]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn timestamps_have_seven_digits_and_z() {
        let t = Utc.timestamp_opt(1_603_592_378, 169_420_799).unwrap();
        assert_eq!(timestamp(t), "2020-10-25T02:19:38.1694207Z");
        let whole = Utc.timestamp_opt(0, 0).unwrap();
        assert_eq!(timestamp(whole), "1970-01-01T00:00:00.0000000Z");
    }
}
