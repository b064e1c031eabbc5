//! A set of byte offsets kept as sorted, disjoint, non-adjacent closed intervals.
//!
//! This is the bookkeeping at the heart of an upload session: which bytes were received
//! (committed), which are being written right now (claimed), and which are still missing
//! (the complement, reported as `nextExpectedRanges`). It is pure and allocation-light so that
//! it can be property-tested against a naive model.

use std::fmt;

/// A closed byte interval `start..=end`, as HTTP's Content-Range and Graph's
/// `nextExpectedRanges` spell them. Invariant: `start <= end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// Builds `start..=end`. Returns `None` when `start > end`.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start <= end).then_some(Self { start, end })
    }

    /// Number of bytes in the interval (never zero).
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Always false: a `ByteRange` holds at least one byte. Present for clippy's sake.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The common part of two intervals, if any.
    pub fn intersect(&self, other: &ByteRange) -> Option<ByteRange> {
        ByteRange::new(self.start.max(other.start), self.end.min(other.end))
    }
}

impl fmt::Display for ByteRange {
    /// Graph's closed form, `"start-end"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

/// Sorted, disjoint, non-adjacent closed intervals. Adjacent or overlapping inserts merge, so
/// two sets with the same members always have the same representation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<ByteRange>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from any intervals (overlapping, unsorted, adjacent: all fine).
    pub fn from_ranges<I: IntoIterator<Item = ByteRange>>(ranges: I) -> Self {
        let mut set = Self::new();
        for r in ranges {
            set.insert(r);
        }
        set
    }

    /// The intervals, sorted ascending, disjoint and non-adjacent.
    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Total number of bytes in the set.
    pub fn covered_len(&self) -> u64 {
        self.ranges.iter().map(ByteRange::len).sum()
    }

    /// Adds every byte of `r`, merging with neighbours it overlaps or touches.
    pub fn insert(&mut self, r: ByteRange) {
        let (lo, hi) = self.touched_by(r);
        if lo == hi {
            self.ranges.insert(lo, r);
            return;
        }
        let merged = ByteRange {
            start: self.ranges[lo].start.min(r.start),
            end: self.ranges[hi - 1].end.max(r.end),
        };
        self.ranges.splice(lo..hi, std::iter::once(merged));
    }

    /// Whether `r` overlaps or touches a range of the set, so inserting it adds no range.
    pub fn touches(&self, r: ByteRange) -> bool {
        let (lo, hi) = self.touched_by(r);
        lo != hi
    }

    /// The indices `lo..hi` of the ranges `r` overlaps or touches (empty: `lo == hi`, where
    /// `r` would go).
    fn touched_by(&self, r: ByteRange) -> (usize, usize) {
        // First interval that could merge with r: its end + 1 >= r.start.
        let lo = self
            .ranges
            .partition_point(|x| x.end.saturating_add(1) < r.start);
        // One past the last interval that could merge: x.start <= r.end + 1.
        let hi = self
            .ranges
            .partition_point(|x| x.start <= r.end.saturating_add(1));
        (lo, hi)
    }

    /// Removes every byte of `r`.
    pub fn remove(&mut self, r: ByteRange) {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        for x in &self.ranges {
            if x.end < r.start || x.start > r.end {
                out.push(*x);
                continue;
            }
            if x.start < r.start {
                out.push(ByteRange {
                    start: x.start,
                    end: r.start - 1,
                });
            }
            if x.end > r.end {
                out.push(ByteRange {
                    start: r.end + 1,
                    end: x.end,
                });
            }
        }
        self.ranges = out;
    }

    /// True when every byte of `r` is in the set.
    pub fn contains_range(&self, r: ByteRange) -> bool {
        let i = self.ranges.partition_point(|x| x.end < r.start);
        self.ranges
            .get(i)
            .is_some_and(|x| x.start <= r.start && r.end <= x.end)
    }

    /// True when at least one byte of `r` is in the set.
    pub fn intersects(&self, r: ByteRange) -> bool {
        let i = self.ranges.partition_point(|x| x.end < r.start);
        self.ranges.get(i).is_some_and(|x| x.start <= r.end)
    }

    /// The parts of `r` that are in the set, ascending.
    pub fn intersection(&self, r: ByteRange) -> Vec<ByteRange> {
        let i = self.ranges.partition_point(|x| x.end < r.start);
        self.ranges[i..]
            .iter()
            .take_while(|x| x.start <= r.end)
            .filter_map(|x| x.intersect(&r))
            .collect()
    }

    /// The parts of `r` that are not in the set, ascending.
    pub fn missing_within(&self, r: ByteRange) -> Vec<ByteRange> {
        let mut out = Vec::new();
        let mut cursor = r.start;
        for x in self.intersection(r) {
            if x.start > cursor {
                out.push(ByteRange {
                    start: cursor,
                    end: x.start - 1,
                });
            }
            match x.end.checked_add(1) {
                Some(next) => cursor = next,
                None => return out,
            }
        }
        if cursor <= r.end {
            out.push(ByteRange {
                start: cursor,
                end: r.end,
            });
        }
        out
    }

    /// The bytes of `0..total` that are not in the set: what an upload session still expects.
    /// Empty when `total` is zero.
    pub fn complement(&self, total: u64) -> Vec<ByteRange> {
        match total.checked_sub(1) {
            Some(last) => self.missing_within(ByteRange {
                start: 0,
                end: last,
            }),
            None => Vec::new(),
        }
    }

    /// True when every byte of `0..total` is in the set.
    pub fn covers(&self, total: u64) -> bool {
        total == 0
            || self.contains_range(ByteRange {
                start: 0,
                end: total - 1,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    #[test]
    fn inserts_merge_adjacent_and_overlapping() {
        let mut s = RangeSet::new();
        s.insert(r(10, 19));
        s.insert(r(0, 4));
        s.insert(r(5, 9));
        assert_eq!(s.ranges(), &[r(0, 19)]);
        s.insert(r(30, 40));
        s.insert(r(15, 31));
        assert_eq!(s.ranges(), &[r(0, 40)]);
    }

    #[test]
    fn complement_lists_every_gap_closed_and_sorted() {
        let s = RangeSet::from_ranges([r(0, 999), r(1100, 1499)]);
        assert_eq!(
            s.complement(2500)
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec!["1000-1099", "1500-2499"]
        );
        assert!(RangeSet::new().complement(0).is_empty());
        assert!(s.covers(1000) && !s.covers(1001));
    }

    #[test]
    fn extreme_offsets_do_not_overflow() {
        let mut s = RangeSet::new();
        s.insert(r(u64::MAX - 1, u64::MAX));
        s.insert(r(0, 0));
        assert_eq!(s.missing_within(r(0, u64::MAX)), vec![r(1, u64::MAX - 2)]);
        s.remove(r(u64::MAX, u64::MAX));
        assert_eq!(s.ranges(), &[r(0, 0), r(u64::MAX - 1, u64::MAX - 1)]);
    }

    /// The naive model: the set of member offsets, over a small universe.
    const UNIVERSE: u64 = 64;

    fn model_ranges(m: &BTreeSet<u64>) -> Vec<ByteRange> {
        let mut out: Vec<ByteRange> = Vec::new();
        for &x in m {
            match out.last_mut() {
                Some(last) if last.end + 1 == x => last.end = x,
                _ => out.push(r(x, x)),
            }
        }
        out
    }

    fn arb_range() -> impl Strategy<Value = ByteRange> {
        (0..UNIVERSE, 0..UNIVERSE).prop_map(|(a, b)| r(a.min(b), a.max(b)))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(ByteRange),
        Remove(ByteRange),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => arb_range().prop_map(Op::Insert),
            1 => arb_range().prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_like_a_set_of_offsets(ops in prop::collection::vec(arb_op(), 0..40), probe in arb_range(), total in 0..=UNIVERSE) {
            let mut set = RangeSet::new();
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Insert(x) => { set.insert(x); model.extend(x.start..=x.end); }
                    Op::Remove(x) => { set.remove(x); for i in x.start..=x.end { model.remove(&i); } }
                }
                // Canonical form: the same members always give the same intervals.
                prop_assert_eq!(set.ranges().to_vec(), model_ranges(&model));
            }
            prop_assert_eq!(set.covered_len(), model.len() as u64);

            let probe_members: BTreeSet<u64> = (probe.start..=probe.end).collect();
            let inside: BTreeSet<u64> = probe_members.intersection(&model).copied().collect();
            let outside: BTreeSet<u64> = probe_members.difference(&model).copied().collect();
            prop_assert_eq!(set.intersection(probe), model_ranges(&inside));
            prop_assert_eq!(set.missing_within(probe), model_ranges(&outside));
            prop_assert_eq!(set.intersects(probe), !inside.is_empty());
            prop_assert_eq!(set.contains_range(probe), outside.is_empty());
            // Touching means inserting adds no separate range.
            let mut with = set.clone();
            with.insert(probe);
            prop_assert_eq!(set.touches(probe), with.ranges().len() <= set.ranges().len());

            let all: BTreeSet<u64> = (0..total).collect();
            let gaps: BTreeSet<u64> = all.difference(&model).copied().collect();
            prop_assert_eq!(set.complement(total), model_ranges(&gaps));
            prop_assert_eq!(set.covers(total), gaps.is_empty());
        }
    }
}
