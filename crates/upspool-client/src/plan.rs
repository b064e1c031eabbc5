//! Byte ranges and the segment planner: what to send, cut from what the service says is
//! missing (`nextExpectedRanges`), so that nothing it already has is sent again.

use crate::error::{ClientError, Result};

/// The domain's closed byte interval, the same as `Content-Range` and `nextExpectedRanges`
/// spell it.
pub use upspool_domain::range_set::ByteRange;

/// Parses `nextExpectedRanges` for a document of `size` bytes: `"a-b"` closed, or `"a-"` /
/// `"a"` open to the end (Graph writes both forms). Ranges past the end are refused.
pub fn parse_ranges(items: &[String], size: u64) -> Result<Vec<ByteRange>> {
    let bad = |s: &str| ClientError::Protocol {
        what: "an upload session".into(),
        detail: format!("nextExpectedRanges entry {s:?} is not a range of a {size}-byte document"),
    };
    let mut out = Vec::with_capacity(items.len());
    for s in items {
        let (a, b) = s.split_once('-').unwrap_or((s.as_str(), ""));
        let start: u64 = a.trim().parse().map_err(|_| bad(s))?;
        let end: u64 = if b.trim().is_empty() {
            size.checked_sub(1).ok_or_else(|| bad(s))?
        } else {
            b.trim().parse().map_err(|_| bad(s))?
        };
        if start > end || end >= size {
            return Err(bad(s));
        }
        out.push(ByteRange { start, end });
    }
    out.sort();
    Ok(out)
}

/// Total bytes in `ranges`.
pub fn total(ranges: &[ByteRange]) -> u64 {
    ranges.iter().map(ByteRange::len).sum()
}

/// Cuts the missing ranges into segments of at most `segment_size` bytes, in order.
/// Segments never cross a gap, so each one is a single `PUT` of bytes the service lacks.
pub fn plan(missing: &[ByteRange], segment_size: u64) -> Vec<ByteRange> {
    let seg = segment_size.max(1);
    let mut out = Vec::new();
    for r in missing {
        let mut start = r.start;
        while start <= r.end {
            let end = r.end.min(start.saturating_add(seg - 1));
            out.push(ByteRange { start, end });
            if end == u64::MAX {
                break;
            }
            start = end + 1;
        }
    }
    out
}

/// The parts of `range` that are still in `missing`.
pub fn still_missing(range: &ByteRange, missing: &[ByteRange]) -> Vec<ByteRange> {
    missing.iter().filter_map(|m| range.intersect(m)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn parses_closed_and_open_ranges() {
        let items = vec!["10-19".to_string(), "0-4".into(), "30-".into()];
        assert_eq!(
            parse_ranges(&items, 40).unwrap(),
            vec![r(0, 4), r(10, 19), r(30, 39)]
        );
        assert!(parse_ranges(&["5-50".to_string()], 40).is_err());
        assert!(parse_ranges(&["x-1".to_string()], 40).is_err());
        assert!(parse_ranges(&["9-3".to_string()], 40).is_err());
    }

    #[test]
    fn plans_within_gaps() {
        assert_eq!(
            plan(&[r(0, 9), r(20, 24)], 4),
            vec![r(0, 3), r(4, 7), r(8, 9), r(20, 23), r(24, 24)]
        );
    }

    #[test]
    fn still_missing_keeps_only_missing_parts() {
        let missing = [r(0, 9), r(20, 29)];
        assert_eq!(still_missing(&r(5, 24), &missing), vec![r(5, 9), r(20, 24)]);
        assert!(still_missing(&r(10, 19), &missing).is_empty());
    }

    proptest! {
        /// The plan covers exactly the missing bytes, in order, each segment within the size.
        #[test]
        fn plan_covers_missing_exactly(
            cuts in proptest::collection::btree_set(0u64..10_000, 2..20),
            seg in 1u64..3000,
        ) {
            let cuts: Vec<u64> = cuts.into_iter().collect();
            let missing: Vec<ByteRange> = cuts
                .chunks(2)
                .filter(|c| c.len() == 2)
                .map(|c| r(c[0], c[1]))
                .collect();
            let segments = plan(&missing, seg);
            prop_assert_eq!(total(&segments), total(&missing));
            for w in segments.windows(2) {
                prop_assert!(w[0].end < w[1].start);
            }
            for s in &segments {
                prop_assert!(s.len() <= seg);
                prop_assert_eq!(still_missing(s, &missing), vec![*s]);
            }
        }
    }
}
