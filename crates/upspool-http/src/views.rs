//! JSON shapes of Graph resources, built from domain values.

use serde_json::{json, Value};
use upspool_domain::model::Printer;

/// `printer`, as listed and created.
pub fn printer(p: &Printer) -> Value {
    json!({ "id": p.id.to_string(), "displayName": p.display_name })
}
