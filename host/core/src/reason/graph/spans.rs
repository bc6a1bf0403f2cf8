//! Sorted address ranges found by address in about constant time. A binary search over a
//! million ranges costs some twenty cache misses; a table from each grain of memory the ranges
//! cover to the first range that reaches it leaves a search among that grain's few. The grain
//! is the finest power of two from 16 bytes to a 4 KiB page that keeps the table within a few
//! entries per range (a heap of 32-byte chunks gets 16-byte grains, a chunk or part of one each).
//! Ranges far apart (a process's main heap and its mmapped chunks) are split into runs, each
//! with its own table.

/// The finest and the coarsest grain, as shifts.
const FINEST_SHIFT: u32 = 4;
const PAGE_SHIFT: u32 = 12;
/// A gap this wide between two ranges starts a new run.
const RUN_GAP: u64 = 1 << 26;
/// Table entries allowed per range for a grain finer than a page.
const GRAINS_PER_RANGE: u64 = 4;
/// Table entries allowed per range with page grains: beyond this the ranges are searched whole
/// instead.
const PAGES_PER_RANGE: u64 = 16;

pub(super) struct Spans<T> {
    /// `(start, end, value)`, ascending by start.
    ranges: Vec<(u64, u64, T)>,
    /// Runs of ranges with no gap of [`RUN_GAP`] between them, ascending. Empty when the ranges
    /// overlap or would need too large a table.
    runs: Vec<Run>,
    /// log2 of the grain the runs' tables have an entry for.
    shift: u32,
}

struct Run {
    /// Its first grain.
    base: u64,
    /// Entry `p`: the index (into all ranges) of the first range that ends after grain
    /// `base + p` starts; one entry per grain up to the run's last.
    first: Vec<u32>,
    /// One past its last range's index.
    last: u32,
}

impl<T: Copy> Spans<T> {
    /// `ranges`, sorted here. Overlapping ones are searched as a plain binary search would:
    /// the last range that starts at or below an address holds it, or none does.
    pub(super) fn new(mut ranges: Vec<(u64, u64, T)>) -> Spans<T> {
        ranges.sort_unstable_by_key(|r| r.0);
        let mut runs = Vec::new();
        let mut shift = PAGE_SHIFT;
        if ranges.len() < u32::MAX as usize && ranges.windows(2).all(|w| w[0].1 <= w[1].0) {
            // The runs, as [at, end) of the ranges.
            let mut bounds = Vec::new();
            let mut at = 0;
            while at < ranges.len() {
                let mut end = at + 1;
                while end < ranges.len() && ranges[end].0 - ranges[end - 1].1 < RUN_GAP {
                    end += 1;
                }
                bounds.push((at, end));
                at = end;
            }
            // Run [at, end)'s first grain and how many grains it covers.
            let extent = |at: usize, end: usize, shift: u32| -> (u64, u64) {
                let base = ranges[at].0 >> shift;
                (
                    base,
                    (ranges[end - 1].1.saturating_sub(1) >> shift).saturating_sub(base) + 1,
                )
            };
            let grains = |shift: u32| -> u64 { bounds.iter().map(|&(at, end)| extent(at, end, shift).1).sum() };
            let n = ranges.len() as u64;
            let fits = |shift: u32| {
                let per_range = if shift == PAGE_SHIFT {
                    PAGES_PER_RANGE
                } else {
                    GRAINS_PER_RANGE
                };
                grains(shift) <= per_range.saturating_mul(n).max(1024)
            };
            if let Some(s) = (FINEST_SHIFT..=PAGE_SHIFT).find(|&s| fits(s)) {
                shift = s;
                runs = bounds
                    .into_iter()
                    .map(|(at, end)| {
                        let (base, count) = extent(at, end, shift);
                        let mut first = Vec::with_capacity(count as usize);
                        let mut i = at;
                        for p in 0..count {
                            let grain_start = (base + p) << shift;
                            while i < end && ranges[i].1 <= grain_start {
                                i += 1;
                            }
                            first.push(i as u32);
                        }
                        Run {
                            base,
                            first,
                            last: end as u32,
                        }
                    })
                    .collect();
            }
        }
        Spans { ranges, runs, shift }
    }

    /// The range holding `v`: its value and `v`'s offset from its start.
    pub(super) fn find(&self, v: u64) -> Option<(T, u64)> {
        let among = if self.runs.is_empty() {
            &self.ranges[..]
        } else {
            let grain = v >> self.shift;
            let run = &self.runs[self.runs.partition_point(|r| r.base <= grain).checked_sub(1)?];
            let p = usize::try_from(grain - run.base).ok()?;
            let lo = *run.first.get(p)? as usize;
            // The ranges that reach grain p: from the first that ends after it starts, up to
            // the first that ends after the next grain starts (which may start in this one).
            let hi = run
                .first
                .get(p + 1)
                .map_or(run.last as usize, |&h| (h as usize + 1).min(run.last as usize));
            &self.ranges[lo..hi]
        };
        let i = among.partition_point(|r| r.0 <= v).checked_sub(1)?;
        let (start, end, value) = among[i];
        (v < end).then_some((value, v - start))
    }

    /// The ranges, ascending.
    pub(super) fn ranges(&self) -> &[(u64, u64, T)] {
        &self.ranges
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every address around every range edge, against a plain search of the list.
    #[test]
    fn finds_what_a_search_of_every_range_finds() {
        let mut ranges = Vec::new();
        let mut at = 0x5555_0000_0010u64;
        for i in 0..3000u32 {
            let len = 16 + u64::from(i * 7919 % 13) * 24;
            ranges.push((at, at + len, i));
            at += len + u64::from(i * 104_729 % 5) * 4096 / 3;
        }
        // Far away, as mmapped chunks are from the main heap: a second run.
        let mut two_runs = ranges.clone();
        two_runs.push((0x7fff_0000_0000, 0x7fff_0000_0040, 9999));
        two_runs.push((0x7fff_0000_1000, 0x7fff_0000_2040, 10000));
        // Spread too wide for a table (32 MiB apart: one run).
        let sparse: Vec<_> = (0..100u32)
            .map(|i| (u64::from(i) << 25, (u64::from(i) << 25) + 64, i))
            .collect();
        // One range over the next: no table either.
        let mut overlapping = ranges.clone();
        overlapping[100].1 = overlapping[101].1 + 8;
        // A heap of 32-byte chunks, one after the other: the finest grain.
        let dense: Vec<_> = (0..3000u32)
            .map(|i| {
                (
                    0x5555_0000_0010 + u64::from(i) * 32,
                    0x5555_0000_0030 + u64::from(i) * 32,
                    i,
                )
            })
            .collect();
        let mut checked = 0;
        for (list, runs, shift) in [
            (ranges, 1, 10),
            (two_runs, 2, 10),
            (sparse, 0, PAGE_SHIFT),
            (overlapping, 0, PAGE_SHIFT),
            (dense, 1, FINEST_SHIFT),
        ] {
            let spans = Spans::new(list.iter().rev().copied().collect());
            assert_eq!((spans.runs.len(), spans.shift), (runs, shift));
            // The last range starting at or below v, as HeapView::landing searched before.
            let plain = |v: u64| {
                let r = list.iter().rev().find(|r| r.0 <= v)?;
                (v < r.1).then_some((r.2, v - r.0))
            };
            for &(s, e, _) in &list {
                for v in [s.wrapping_sub(1), s, s + 1, e - 1, e, e + 4096, s.wrapping_sub(4096)] {
                    assert_eq!(spans.find(v), plain(v), "{v:#x}");
                    checked += 1;
                }
            }
            assert_eq!(spans.find(u64::MAX), None);
        }
        assert_eq!(checked, 7 * (3000 + 3002 + 100 + 3000 + 3000));
        assert_eq!(Spans::<u32>::new(Vec::new()).find(0), None);
    }
}
