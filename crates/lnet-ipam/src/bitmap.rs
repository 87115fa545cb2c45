//! A run-length allocation bitmap over the ordinals `0..=last`.
//!
//! An IPv6 /64 has 2^64 addresses, so a bitmap with one bit per address is
//! out of the question. [`Bitmap`] stores only the *allocated intervals*
//! ("runs") in a `BTreeMap<start, end_inclusive>`, which makes memory and
//! time grow with the number of runs, not with the number of ordinals.
//!
//! # Invariants
//!
//! Every public method preserves these, and the tests check them after each
//! operation:
//!
//! 1. every run satisfies `start <= end <= last`;
//! 2. runs are **sorted** (the map is keyed by `start`);
//! 3. runs are **disjoint**: no ordinal is in two runs;
//! 4. runs are **non-adjacent**: for consecutive runs `a` and `b`,
//!    `a.end + 1 < b.start`. Adjacent runs are merged on `set`, so
//!    allocating a whole range in order leaves exactly one run;
//! 5. `set_count` equals the sum of the run lengths.
//!
//! Invariant 4 is what makes "lowest free ordinal at or after `s`" a single
//! lookup: if `s` is inside a run, `run.end + 1` is free (or past `last`).

use std::collections::BTreeMap;

/// Errors from [`Bitmap`] operations; they mean the caller passed ordinals
/// the bitmap does not have, and nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BitmapError {
    /// An ordinal past the end of the bitmap.
    #[error("ordinal {ordinal} is outside the bitmap: ordinals run from 0 to {last}")]
    OutOfRange {
        /// The offending ordinal.
        ordinal: u64,
        /// The highest ordinal of the bitmap.
        last: u64,
    },
    /// A search range that is empty or reaches past the end of the bitmap.
    #[error(
        "range {start}..={end} is not a valid search range: it must be non-empty and end at or \
         before the last ordinal {last}"
    )]
    InvalidRange {
        /// First ordinal of the requested range.
        start: u64,
        /// Last ordinal (inclusive) of the requested range.
        end: u64,
        /// The highest ordinal of the bitmap.
        last: u64,
    },
}

/// A set of allocated ordinals in `0..=last`, stored as sorted, disjoint,
/// non-adjacent runs (see the [module docs](self) for the invariants).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bitmap {
    /// `start -> end` (inclusive) of every allocated run.
    runs: BTreeMap<u64, u64>,
    /// Highest valid ordinal; a `last` rather than a length so that a full
    /// 2^64-ordinal bitmap is representable in a `u64`.
    last: u64,
    /// Kept alongside the runs so `free_count` does not walk them.
    set_count: u128,
}

impl Bitmap {
    /// A bitmap of `len` ordinals (`0..len`), all free. `None` when `len` is
    /// 0 or more than 2^64, the largest bitmap a `u64` ordinal can address.
    pub fn new(len: u128) -> Option<Self> {
        let last = u64::try_from(len.checked_sub(1)?).ok()?;
        Some(Self::with_last(last))
    }

    /// A bitmap of the ordinals `0..=last`, all free.
    pub fn with_last(last: u64) -> Self {
        Self {
            runs: BTreeMap::new(),
            last,
            set_count: 0,
        }
    }

    /// The highest valid ordinal.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// How many ordinals the bitmap has (`last + 1`, up to 2^64).
    pub fn capacity(&self) -> u128 {
        u128::from(self.last) + 1
    }

    /// How many ordinals are set.
    pub fn set_count(&self) -> u128 {
        self.set_count
    }

    /// How many ordinals are free.
    pub fn free_count(&self) -> u128 {
        self.capacity() - self.set_count
    }

    /// How many runs the set ordinals form; a measure of fragmentation.
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// The allocated runs as `(start, end_inclusive)`, in ascending order.
    pub fn runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs.iter().map(|(&s, &e)| (s, e))
    }

    /// The run containing `ordinal`, if any.
    fn run_containing(&self, ordinal: u64) -> Option<(u64, u64)> {
        let (&start, &end) = self.runs.range(..=ordinal).next_back()?;
        (end >= ordinal).then_some((start, end))
    }

    fn check(&self, ordinal: u64) -> Result<(), BitmapError> {
        if ordinal > self.last {
            return Err(BitmapError::OutOfRange {
                ordinal,
                last: self.last,
            });
        }
        Ok(())
    }

    /// Whether `ordinal` is set; ordinals past the end are never set.
    pub fn is_set(&self, ordinal: u64) -> bool {
        self.run_containing(ordinal).is_some()
    }

    /// Sets `ordinal`. `Ok(true)` if it was free, `Ok(false)` if it was
    /// already set (nothing changes then).
    pub fn set(&mut self, ordinal: u64) -> Result<bool, BitmapError> {
        self.check(ordinal)?;
        if self.is_set(ordinal) {
            return Ok(false);
        }
        self.insert_free(ordinal);
        Ok(true)
    }

    /// Inserts an ordinal known to be free and in range, merging with the
    /// neighbouring runs to keep invariant 4. Extends the run before it in
    /// place when there is one, so sequential allocation costs two lookups.
    fn insert_free(&mut self, ordinal: u64) {
        // A run starting right after `ordinal` gets absorbed.
        let end = match ordinal.checked_add(1).and_then(|n| self.runs.remove(&n)) {
            Some(after_end) => after_end,
            None => ordinal,
        };
        // `ordinal` is free, so the last run starting below it ends below it.
        let before = self.runs.range_mut(..ordinal).next_back();
        match before {
            Some((_, before_end)) if *before_end + 1 == ordinal => *before_end = end,
            _ => {
                self.runs.insert(ordinal, end);
            }
        }
        self.set_count += 1;
    }

    /// Clears `ordinal`. `Ok(true)` if it was set, `Ok(false)` if it was
    /// already free (nothing changes then, in particular not the counts).
    pub fn unset(&mut self, ordinal: u64) -> Result<bool, BitmapError> {
        self.check(ordinal)?;
        let Some((&start, end)) = self.runs.range_mut(..=ordinal).next_back() else {
            return Ok(false);
        };
        let old_end = *end;
        if old_end < ordinal {
            return Ok(false);
        }
        if start == ordinal {
            self.runs.remove(&start);
        } else {
            // Trimming the value in place is one lookup cheaper than a
            // remove and re-insert.
            *end = ordinal - 1;
        }
        if ordinal < old_end {
            self.runs.insert(ordinal + 1, old_end);
        }
        self.set_count -= 1;
        Ok(true)
    }

    fn check_range(&self, start: u64, end: u64) -> Result<(), BitmapError> {
        if start > end || end > self.last {
            return Err(BitmapError::InvalidRange {
                start,
                end,
                last: self.last,
            });
        }
        Ok(())
    }

    /// The lowest free ordinal in `start..=end`, without setting it.
    pub fn first_free_in_range(&self, start: u64, end: u64) -> Result<Option<u64>, BitmapError> {
        self.check_range(start, end)?;
        Ok(self.first_free_unchecked(start, end))
    }

    fn first_free_unchecked(&self, start: u64, end: u64) -> Option<u64> {
        let candidate = match self.run_containing(start) {
            // Runs are non-adjacent, so the ordinal after a run is free.
            Some((_, run_end)) => run_end.checked_add(1)?,
            None => start,
        };
        (candidate <= end).then_some(candidate)
    }

    /// Finds a free ordinal in `start..=end`, sets it and returns it;
    /// `Ok(None)` when the range is full.
    ///
    /// Without `serial_from` the lowest free ordinal is taken. With
    /// `serial_from = Some(c)` the search starts at `c` (clamped into the
    /// range) and wraps around to `start`, so recently freed ordinals below
    /// `c` are not reused before the rest of the range is exhausted.
    pub fn set_any_in_range(
        &mut self,
        start: u64,
        end: u64,
        serial_from: Option<u64>,
    ) -> Result<Option<u64>, BitmapError> {
        self.check_range(start, end)?;
        let found = match serial_from {
            Some(cursor) if cursor > start && cursor <= end => self
                .first_free_unchecked(cursor, end)
                .or_else(|| self.first_free_unchecked(start, cursor - 1)),
            _ => self.first_free_unchecked(start, end),
        };
        if let Some(ordinal) = found {
            self.insert_free(ordinal);
        }
        Ok(found)
    }

    /// How many ordinals in `start..=end` are set. Walks the runs that
    /// overlap the range, so it costs O(log runs + runs in range).
    pub fn count_set_in_range(&self, start: u64, end: u64) -> Result<u128, BitmapError> {
        self.check_range(start, end)?;
        if start == 0 && end == self.last {
            return Ok(self.set_count);
        }
        let mut count = 0u128;
        let first = self
            .runs
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        for (&s, &e) in self.runs.range(first..=end) {
            let lo = s.max(start);
            let hi = e.min(end);
            if lo <= hi {
                count += u128::from(hi - lo) + 1;
            }
        }
        Ok(count)
    }

    /// Checks the module invariants; used by tests after every operation.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        let mut prev_end: Option<u64> = None;
        let mut total = 0u128;
        for (&s, &e) in &self.runs {
            assert!(s <= e, "run {s}..={e} is inverted");
            assert!(e <= self.last, "run {s}..={e} passes last {}", self.last);
            if let Some(p) = prev_end {
                assert!(p + 1 < s, "run ending {p} touches run starting {s}");
            }
            prev_end = Some(e);
            total += u128::from(e - s) + 1;
        }
        assert_eq!(total, self.set_count, "set_count drifted from the runs");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn new_rejects_empty_and_oversized() {
        assert!(Bitmap::new(0).is_none());
        assert!(Bitmap::new(1u128 << 64).is_some_and(|b| b.last() == u64::MAX));
        assert!(Bitmap::new((1u128 << 64) + 1).is_none());
        assert_eq!(Bitmap::new(256).map(|b| b.capacity()), Some(256));
    }

    #[test]
    fn ordered_allocation_keeps_one_run() {
        let mut b = Bitmap::with_last(65_535);
        for i in 0..=65_535u64 {
            assert_eq!(b.set_any_in_range(0, 65_535, None), Ok(Some(i)));
            assert_eq!(b.run_count(), 1);
        }
        assert_eq!(b.set_any_in_range(0, 65_535, None), Ok(None));
        assert_eq!(b.free_count(), 0);
        b.assert_invariants();
    }

    #[test]
    fn set_merges_both_neighbours() {
        let mut b = Bitmap::with_last(10);
        assert_eq!(b.set(3), Ok(true));
        assert_eq!(b.set(5), Ok(true));
        assert_eq!(b.run_count(), 2);
        assert_eq!(b.set(4), Ok(true));
        assert_eq!(b.runs().collect::<Vec<_>>(), vec![(3, 5)]);
        assert_eq!(b.set(4), Ok(false));
        assert_eq!(b.set_count(), 3);
        b.assert_invariants();
    }

    #[test]
    fn unset_splits_and_ignores_free() {
        let mut b = Bitmap::with_last(10);
        for i in 2..=6 {
            b.set(i).unwrap();
        }
        assert_eq!(b.unset(4), Ok(true));
        assert_eq!(b.runs().collect::<Vec<_>>(), vec![(2, 3), (5, 6)]);
        assert_eq!(b.unset(4), Ok(false));
        assert_eq!(b.unset(9), Ok(false));
        assert_eq!(b.set_count(), 4);
        b.assert_invariants();
    }

    #[test]
    fn out_of_range_is_an_error_and_changes_nothing() {
        let mut b = Bitmap::with_last(7);
        let before = b.clone();
        assert_eq!(
            b.set(8),
            Err(BitmapError::OutOfRange {
                ordinal: 8,
                last: 7
            })
        );
        b.unset(8).unwrap_err();
        b.set_any_in_range(3, 8, None).unwrap_err();
        b.set_any_in_range(4, 3, None).unwrap_err();
        assert_eq!(b, before);
        assert!(
            b.set(8)
                .unwrap_err()
                .to_string()
                .contains("ordinal 8 is outside the bitmap: ordinals run from 0 to 7")
        );
    }

    #[test]
    fn serial_wraps_to_range_start() {
        let mut b = Bitmap::with_last(9);
        assert_eq!(b.set_any_in_range(2, 5, Some(4)), Ok(Some(4)));
        assert_eq!(b.set_any_in_range(2, 5, Some(5)), Ok(Some(5)));
        assert_eq!(b.set_any_in_range(2, 5, Some(6)), Ok(Some(2)));
        assert_eq!(b.set_any_in_range(2, 5, Some(3)), Ok(Some(3)));
        assert_eq!(b.set_any_in_range(2, 5, Some(3)), Ok(None));
    }

    #[test]
    fn full_u64_space_works_at_both_ends() {
        let mut b = Bitmap::with_last(u64::MAX);
        assert_eq!(b.set(u64::MAX), Ok(true));
        assert_eq!(b.set(u64::MAX - 1), Ok(true));
        assert_eq!(b.run_count(), 1);
        assert_eq!(
            b.set_any_in_range(u64::MAX - 1, u64::MAX, None),
            Ok(None),
            "the run ends at u64::MAX, so there is no ordinal after it"
        );
        assert_eq!(b.set_any_in_range(0, u64::MAX, Some(u64::MAX)), Ok(Some(0)));
        assert_eq!(b.free_count(), (1u128 << 64) - 3);
        assert_eq!(b.count_set_in_range(1, u64::MAX), Ok(2));
        b.assert_invariants();
    }

    #[test]
    fn count_set_in_range_clips_runs() {
        let mut b = Bitmap::with_last(100);
        for i in (10..=20).chain(30..=40) {
            b.set(i).unwrap();
        }
        assert_eq!(b.count_set_in_range(15, 35), Ok(12));
        assert_eq!(b.count_set_in_range(0, 9), Ok(0));
        assert_eq!(b.count_set_in_range(21, 29), Ok(0));
        assert_eq!(b.count_set_in_range(0, 100), Ok(22));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set(u64),
        Unset(u64),
        Any {
            start: u64,
            end: u64,
            serial: Option<u64>,
        },
    }

    fn ops(last: u64) -> impl Strategy<Value = Vec<Op>> {
        // Ordinals slightly past `last` exercise the error paths.
        let ord = 0..=last + 2;
        let op = prop_oneof![
            ord.clone().prop_map(Op::Set),
            ord.clone().prop_map(Op::Unset),
            (ord.clone(), ord.clone(), proptest::option::of(ord)).prop_map(|(a, b, serial)| {
                Op::Any {
                    start: a.min(b),
                    end: a.max(b),
                    serial,
                }
            }),
        ];
        proptest::collection::vec(op, 0..300)
    }

    fn model_first_free(model: &BTreeSet<u64>, start: u64, end: u64) -> Option<u64> {
        (start..=end).find(|o| !model.contains(o))
    }

    proptest! {
        #[test]
        fn matches_btreeset_model(last in 0u64..64, ops in ops(64)) {
            let mut b = Bitmap::with_last(last);
            let mut model = BTreeSet::new();
            for op in ops {
                match op {
                    Op::Set(o) => {
                        let r = b.set(o);
                        if o > last {
                            prop_assert!(r.is_err());
                        } else {
                            prop_assert_eq!(r, Ok(model.insert(o)));
                        }
                    }
                    Op::Unset(o) => {
                        let r = b.unset(o);
                        if o > last {
                            prop_assert!(r.is_err());
                        } else {
                            prop_assert_eq!(r, Ok(model.remove(&o)));
                        }
                    }
                    Op::Any { start, end, serial } => {
                        let r = b.set_any_in_range(start, end, serial);
                        if end > last {
                            prop_assert!(r.is_err());
                        } else {
                            let expect = match serial {
                                Some(c) if c > start && c <= end => model_first_free(&model, c, end)
                                    .or_else(|| model_first_free(&model, start, c - 1)),
                                _ => model_first_free(&model, start, end),
                            };
                            if let Some(o) = expect {
                                model.insert(o);
                            }
                            prop_assert_eq!(r, Ok(expect));
                        }
                    }
                }
                b.assert_invariants();
                prop_assert_eq!(b.set_count(), model.len() as u128);
                prop_assert_eq!(b.free_count(), u128::from(last) + 1 - model.len() as u128);
            }
            for o in 0..=last + 1 {
                prop_assert_eq!(b.is_set(o), model.contains(&o));
            }
            let (s, e) = (last / 3, last - last / 3);
            let in_range = model.range(s..=e).count() as u128;
            prop_assert_eq!(b.count_set_in_range(s, e), Ok(in_range));
        }

        /// The same model near the top of a full 2^64 bitmap, where `+ 1`
        /// overflows if the code is careless.
        #[test]
        fn matches_model_at_u64_max(offsets in proptest::collection::vec((any::<bool>(), 0u64..16), 0..100)) {
            let mut b = Bitmap::with_last(u64::MAX);
            let mut model = BTreeSet::new();
            for (set, off) in offsets {
                let o = u64::MAX - off;
                if set {
                    prop_assert_eq!(b.set(o), Ok(model.insert(o)));
                } else {
                    prop_assert_eq!(b.unset(o), Ok(model.remove(&o)));
                }
                b.assert_invariants();
                let lo = u64::MAX - 15;
                prop_assert_eq!(
                    b.first_free_in_range(lo, u64::MAX),
                    Ok((lo..=u64::MAX).find(|x| !model.contains(x)))
                );
            }
        }
    }
}
