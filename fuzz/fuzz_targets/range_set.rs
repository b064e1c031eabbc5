//! `RangeSet` against a naive model (a set of offsets in a small universe): after any
//! sequence of inserts and removes, membership, complement, intersection, missing_within and
//! covers agree with the model, and the representation stays sorted, disjoint, non-adjacent.
#![no_main]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use upspool_domain::range_set::{ByteRange, RangeSet};

/// Offsets live in 0..UNIVERSE so the model stays small; a high base checks arithmetic near
/// u64::MAX too.
const UNIVERSE: u64 = 256;

fn expand(ranges: &[ByteRange]) -> BTreeSet<u64> {
    ranges.iter().flat_map(|r| r.start..=r.end).collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, ops)) = data.split_first() else {
        return;
    };
    let base = if flags & 1 == 1 {
        u64::MAX - UNIVERSE + 1
    } else {
        0
    };
    let mut set = RangeSet::new();
    let mut model = BTreeSet::new();
    for op in ops.chunks_exact(3) {
        let (a, b) = (op[1] as u64, op[2] as u64);
        let r = ByteRange::new(base + a.min(b), base + a.max(b)).expect("ordered");
        let members = r.start..=r.end;
        match op[0] % 4 {
            0 | 1 => {
                set.insert(r);
                model.extend(members);
            }
            2 => {
                set.remove(r);
                for x in members {
                    model.remove(&x);
                }
            }
            _ => {
                let inside: BTreeSet<u64> = members.clone().filter(|x| model.contains(x)).collect();
                let outside: BTreeSet<u64> = members.filter(|x| !model.contains(x)).collect();
                assert_eq!(expand(&set.intersection(r)), inside);
                assert_eq!(expand(&set.missing_within(r)), outside);
                assert_eq!(set.contains_range(r), outside.is_empty());
                assert_eq!(set.intersects(r), !inside.is_empty());
            }
        }
        let ranges = set.ranges();
        assert!(ranges
            .windows(2)
            .all(|w| w[0].end.saturating_add(1) < w[1].start));
        assert_eq!(expand(ranges), model);
        assert_eq!(set.covered_len(), model.len() as u64);
    }
    if base == 0 {
        let total = UNIVERSE;
        let missing: BTreeSet<u64> = (0..total).filter(|x| !model.contains(x)).collect();
        assert_eq!(expand(&set.complement(total)), missing);
        assert_eq!(set.covers(total), missing.is_empty());
    }
});
