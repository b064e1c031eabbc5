//! OData query options for job lists and items: `$top`, `$skip`, `$filter`, `$expand`,
//! `$select`, `$orderby`. The `$` is optional (Graph accepts both spellings), values are
//! percent-decoded, and anything unsupported is refused with `invalidQueryOption` rather than
//! ignored, so a client never silently gets a different result than it asked for.

use std::collections::BTreeSet;

use percent_encoding::percent_decode_str;
use upspool_domain::model::JobState;

use crate::graph_error::ApiError;

/// Parsed query options. Unset options are `None` / empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryOptions {
    pub top: Option<u64>,
    pub skip: Option<u64>,
    pub filter: JobFilter,
    pub expand: BTreeSet<String>,
    pub select: Option<Vec<String>>,
    pub descending: bool,
    /// The options as received (decoded), in order, for building `@odata.nextLink`.
    pub raw: Vec<(String, String)>,
}

/// The supported `$filter` comparisons, joined with `and`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub created_by_upn: Option<String>,
    pub state: Option<JobState>,
    pub is_fetchable: Option<bool>,
}

/// Longest query string accepted; far above any real client's.
const MAX_QUERY: usize = 8 * 1024;

/// Which options a route accepts: lists take all, single items only `$expand`/`$select`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    List,
    Item,
}

fn decode(s: &str) -> Result<String, ApiError> {
    let plus_as_space = s.replace('+', " ");
    percent_decode_str(&plus_as_space)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| {
            ApiError::invalid_query("The query string is not valid UTF-8 after percent-decoding.")
        })
}

fn number(name: &str, value: &str) -> Result<u64, ApiError> {
    let v = value.trim();
    if v.starts_with('-') {
        return Err(ApiError::invalid_query(format!(
            "${name} must not be negative."
        )));
    }
    v.parse::<u64>().map_err(|_| {
        ApiError::invalid_query(format!(
            "${name} must be a non-negative integer, not '{value}'."
        ))
    })
}

/// Parses a raw (still percent-encoded) query string.
pub fn parse(
    query: Option<&str>,
    target: Target,
    expandable: &[&str],
) -> Result<QueryOptions, ApiError> {
    let mut out = QueryOptions::default();
    let Some(q) = query.filter(|q| !q.is_empty()) else {
        return Ok(out);
    };
    if q.len() > MAX_QUERY {
        return Err(ApiError::invalid_query(format!(
            "The query string is longer than {MAX_QUERY} characters."
        )));
    }
    let mut seen = BTreeSet::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k)?;
        let value = decode(v)?;
        let name = key.strip_prefix('$').unwrap_or(&key).to_ascii_lowercase();
        let known = matches!(
            name.as_str(),
            "top"
                | "skip"
                | "filter"
                | "expand"
                | "select"
                | "orderby"
                | "count"
                | "search"
                | "format"
                | "skiptoken"
        );
        if !known {
            if key.starts_with('$') {
                return Err(ApiError::invalid_query(format!(
                    "The query option '{key}' is not supported."
                )));
            }
            // Not an OData option: Graph ignores other parameters.
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(ApiError::invalid_query(format!(
                "The query option '${name}' is given more than once."
            )));
        }
        let list_only = matches!(name.as_str(), "top" | "skip" | "filter" | "orderby");
        if list_only && target == Target::Item {
            return Err(ApiError::invalid_query(format!(
                "The query option '${name}' applies to collections only."
            )));
        }
        match name.as_str() {
            "top" => out.top = Some(number("top", &value)?),
            "skip" => out.skip = Some(number("skip", &value)?),
            "filter" => out.filter = parse_filter(&value)?,
            "expand" => {
                for item in value.split(',').map(str::trim) {
                    let canonical = expandable
                        .iter()
                        .find(|e| e.eq_ignore_ascii_case(item))
                        .ok_or_else(|| {
                            ApiError::invalid_query(format!(
                                "$expand '{item}' is not supported; expandable: {}.",
                                expandable.join(", ")
                            ))
                        })?;
                    out.expand.insert((*canonical).to_string());
                }
            }
            "select" => out.select = Some(value.split(',').map(|s| s.trim().to_string()).collect()),
            "orderby" => out.descending = parse_orderby(&value)?,
            other => {
                return Err(ApiError::invalid_query(format!(
                    "The query option '${other}' is not supported here."
                )))
            }
        }
        out.raw.push((format!("${name}"), value));
    }
    Ok(out)
}

fn parse_orderby(v: &str) -> Result<bool, ApiError> {
    let mut words = v.split_whitespace();
    let field = words.next().unwrap_or("");
    let dir = words.next();
    if !field.eq_ignore_ascii_case("createdDateTime") || words.next().is_some() {
        return Err(ApiError::invalid_query(format!(
            "$orderby '{v}' is not supported; use 'createdDateTime asc' or 'createdDateTime desc'."
        )));
    }
    match dir.map(str::to_ascii_lowercase).as_deref() {
        None | Some("asc") => Ok(false),
        Some("desc") => Ok(true),
        Some(d) => Err(ApiError::invalid_query(format!(
            "$orderby direction '{d}' must be asc or desc."
        ))),
    }
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
}

fn tokens(s: &str) -> Result<Vec<Tok>, ApiError> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut lit = String::new();
            loop {
                match chars.next() {
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        lit.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => lit.push(ch),
                    None => {
                        return Err(ApiError::invalid_query(
                            "$filter has an unterminated string literal.",
                        ))
                    }
                }
            }
            out.push(Tok::Str(lit));
        } else {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_whitespace() || ch == '\'' {
                    break;
                }
                w.push(ch);
                chars.next();
            }
            out.push(Tok::Word(w));
        }
    }
    Ok(out)
}

const FILTER_HELP: &str =
    "supported: createdBy/userPrincipalName eq '...', status/state eq '...', \
isFetchable eq true|false, joined with 'and'";

/// `clause ('and' clause)*`.
fn parse_filter(s: &str) -> Result<JobFilter, ApiError> {
    let bad = |detail: &str| {
        ApiError::invalid_query(format!(
            "$filter '{s}' is not supported ({detail}); {FILTER_HELP}."
        ))
    };
    let toks = tokens(s)?;
    let mut f = JobFilter::default();
    let mut i = 0;
    loop {
        let (Some(Tok::Word(field)), Some(Tok::Word(op)), Some(value)) =
            (toks.get(i), toks.get(i + 1), toks.get(i + 2))
        else {
            return Err(bad("expected a comparison"));
        };
        if !op.eq_ignore_ascii_case("eq") {
            return Err(bad(&format!("operator '{op}'")));
        }
        let field = field.to_ascii_lowercase();
        match (field.as_str(), value) {
            ("createdby/userprincipalname", Tok::Str(upn)) if f.created_by_upn.is_none() => {
                f.created_by_upn = Some(upn.clone())
            }
            ("status/state", Tok::Str(state)) if f.state.is_none() => {
                f.state = Some(
                    JobState::parse(state)
                        .ok_or_else(|| bad(&format!("unknown state '{state}'")))?,
                )
            }
            ("isfetchable", Tok::Word(b)) if f.is_fetchable.is_none() => {
                f.is_fetchable = Some(match b.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(&format!("'{b}' is not true or false"))),
                })
            }
            _ => return Err(bad("unsupported or repeated comparison")),
        }
        i += 3;
        match toks.get(i) {
            None => return Ok(f),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => i += 1,
            Some(_) => return Err(bad("expected 'and'")),
        }
    }
}

/// Query string for a next page: the original options with `$skip` moved on.
pub fn next_link_query(raw: &[(String, String)], next_skip: u64) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const VALUE: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~')
        .remove(b'/');
    let mut parts: Vec<String> = raw
        .iter()
        .filter(|(k, _)| k != "$skip")
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, VALUE)))
        .collect();
    parts.push(format!("$skip={next_skip}"));
    parts.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(q: &str) -> Result<QueryOptions, ApiError> {
        parse(Some(q), Target::List, &["documents", "tasks"])
    }

    #[test]
    fn accepts_supported_options_with_or_without_dollar() {
        let o = list("$top=5&skip=10&%24filter=createdBy%2FuserPrincipalName%20eq%20%27o%27%27brien%40x.org%27%20and%20isFetchable%20eq%20false&$expand=Documents&$orderby=createdDateTime%20desc&x=1").unwrap();
        assert_eq!(o.top, Some(5));
        assert_eq!(o.skip, Some(10));
        assert_eq!(o.filter.created_by_upn.as_deref(), Some("o'brien@x.org"));
        assert_eq!(o.filter.is_fetchable, Some(false));
        assert!(o.expand.contains("documents"));
        assert!(o.descending);
    }

    #[test]
    fn refuses_what_it_cannot_honour() {
        for q in [
            "$top=-1",
            "$top=abc",
            "$skip=1e3",
            "$count=true",
            "$search=x",
            "$filter=id eq '1'",
            "$filter=status/state eq 'sleeping'",
            "$filter=isFetchable eq maybe",
            "$filter=createdBy/userPrincipalName eq 'unterminated",
            "$filter=isFetchable eq true or isFetchable eq false",
            "$expand=printer",
            "$orderby=id",
            "$bogus=1",
            "$top=1&$top=2",
        ] {
            assert!(list(q).is_err(), "{q} should be refused");
        }
        assert!(parse(Some("$top=1"), Target::Item, &[]).is_err());
    }

    #[test]
    fn next_link_keeps_options_and_moves_skip() {
        let o = list("$top=2&$filter=status/state eq 'paused'&$skip=2").unwrap();
        let q = next_link_query(&o.raw, 4);
        assert_eq!(q, "$top=2&$filter=status/state%20eq%20%27paused%27&$skip=4");
        assert_eq!(list(&q).unwrap().skip, Some(4));
    }
}
