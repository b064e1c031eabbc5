//! Parsing of the `Content-Range` header that every upload segment carries.
//!
//! Graph's own docs spell it two ways (`bytes 0-9/10`, the RFC form the SDKs send, and
//! `bytes=0-9/10` from a doc example), so both are accepted. Parsing checks syntax only;
//! whether the numbers make sense for a session (`start <= end < total`, total equals the
//! declared size) is decided by the upload engine, because the order of those checks decides
//! which error a client sees.

use thiserror::Error;

/// The three numbers of `bytes start-end/total`, exactly as sent (not yet validated).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentRange {
    pub start: u64,
    pub end: u64,
    pub total: u64,
}

/// Why a Content-Range header could not be parsed. The text is shown to clients.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum ContentRangeError {
    #[error("the Content-Range header must look like 'bytes {{start}}-{{end}}/{{total}}'")]
    Malformed,
    #[error("the Content-Range header must name the unit 'bytes'")]
    WrongUnit,
    #[error(
        "'*' is not accepted in Content-Range: give the exact range and the document's total size"
    )]
    Unknown,
    #[error("a Content-Range number is not a non-negative integer that fits in 64 bits")]
    BadNumber,
}

/// Parses `bytes a-b/N` or `bytes=a-b/N` (unit case-insensitive, surrounding whitespace ignored).
pub fn parse(header: &str) -> Result<ContentRange, ContentRangeError> {
    let h = header.trim();
    let unit_len = "bytes".len();
    if h.len() < unit_len || !h.is_char_boundary(unit_len) {
        return Err(ContentRangeError::Malformed);
    }
    let (unit, rest) = h.split_at(unit_len);
    if !unit.eq_ignore_ascii_case("bytes") {
        return Err(ContentRangeError::WrongUnit);
    }
    let rest = match rest.strip_prefix('=') {
        Some(r) => r.trim_start(),
        None if rest.starts_with([' ', '\t']) => rest.trim_start(),
        None => return Err(ContentRangeError::Malformed),
    };
    let (range, total) = rest.split_once('/').ok_or(ContentRangeError::Malformed)?;
    let (range, total) = (range.trim(), total.trim());
    if range == "*" || total == "*" {
        return Err(ContentRangeError::Unknown);
    }
    let (start, end) = range.split_once('-').ok_or(ContentRangeError::Malformed)?;
    Ok(ContentRange {
        start: number(start)?,
        end: number(end)?,
        total: number(total)?,
    })
}

/// Strict decimal: digits only, no sign, no spaces inside, no empty string.
fn number(s: &str) -> Result<u64, ContentRangeError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ContentRangeError::BadNumber);
    }
    s.parse().map_err(|_| ContentRangeError::BadNumber)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (u64, u64, u64) {
        let c = parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        (c.start, c.end, c.total)
    }

    #[test]
    fn accepts_both_spellings_and_any_case() {
        assert_eq!(ok("bytes 0-99/100"), (0, 99, 100));
        assert_eq!(
            ok("bytes=4533312-4533321/4533322"),
            (4533312, 4533321, 4533322)
        );
        assert_eq!(ok("  BYTES 5-9/10 "), (5, 9, 10));
        assert_eq!(ok("Bytes= 5-9 / 10"), (5, 9, 10));
        // Not validated here: the engine decides what reversed or oversized ranges mean.
        assert_eq!(ok("bytes 9-5/10"), (9, 5, 10));
    }

    #[test]
    fn refuses_everything_else() {
        use ContentRangeError::*;
        for (s, e) in [
            ("", Malformed),
            ("bytes", Malformed),
            ("bytes0-1/2", Malformed),
            ("items 0-1/2", WrongUnit),
            ("bytes 0-1", Malformed),
            ("bytes 0/2", Malformed),
            ("bytes */2", Unknown),
            ("bytes 0-1/*", Unknown),
            ("bytes -1-5/10", BadNumber),
            ("bytes 0--5/10", BadNumber),
            ("bytes +1-5/10", BadNumber),
            ("bytes a-5/10", BadNumber),
            ("bytes 0-1/18446744073709551616", BadNumber),
            ("bytes 0-1,3-4/10", BadNumber),
            ("bytes 0 -1/10", BadNumber),
            ("bÿtes 0-1/2", WrongUnit),
            ("bÿ", Malformed),
        ] {
            assert_eq!(parse(s), Err(e), "{s:?}");
        }
    }
}
