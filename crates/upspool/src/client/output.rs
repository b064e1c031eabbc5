//! What the client commands print on stdout: JSON for scripts, aligned tables for people.

use serde_json::Value;

use upspool_client::Scope;

/// One JSON document on stdout.
pub fn json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Left-aligned columns, two spaces apart.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

pub fn printers(items: &[Value]) {
    table(
        &["ID", "NAME", "MANUFACTURER", "MODEL", "STATE"],
        items
            .iter()
            .map(|p| {
                vec![
                    text(&p["id"]),
                    text(&p["displayName"]),
                    text(&p["manufacturer"]),
                    text(&p["model"]),
                    text(&p["status"]["state"]),
                ]
            })
            .collect(),
    );
}

pub fn shares(items: &[Value]) {
    table(
        &["ID", "NAME", "ALL USERS", "CREATED"],
        items
            .iter()
            .map(|s| {
                vec![
                    text(&s["id"]),
                    text(&s["displayName"]),
                    text(&s["allowAllUsers"]),
                    text(&s["createdDateTime"]),
                ]
            })
            .collect(),
    );
}

pub fn jobs(items: &[Value]) {
    table(
        &["ID", "STATE", "CREATED", "BY"],
        items
            .iter()
            .map(|j| {
                vec![
                    text(&j["id"]),
                    text(&j["status"]["state"]),
                    text(&j["createdDateTime"]),
                    text(&j["createdBy"]["userPrincipalName"]),
                ]
            })
            .collect(),
    );
}

pub fn job(j: &Value, scope: &Scope) {
    let doc = &j["documents"][0];
    let rows = [
        ("id", text(&j["id"])),
        ("where", scope.path()),
        ("state", text(&j["status"]["state"])),
        ("description", text(&j["status"]["description"])),
        ("details", text(&j["status"]["details"])),
        ("created", text(&j["createdDateTime"])),
        ("by", text(&j["createdBy"]["userPrincipalName"])),
        ("configuration", text(&j["configuration"])),
        ("document", text(&doc["displayName"])),
        ("type", text(&doc["contentType"])),
        ("size", text(&doc["size"])),
        ("uploaded", text(&doc["uploadedDateTime"])),
    ];
    for (k, v) in rows {
        println!("{k:<14}{v}");
    }
}
