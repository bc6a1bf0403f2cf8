//! Sorted address ranges found by address in about constant time. A binary search over a
//! million ranges costs some twenty cache misses; a table from each 4 KiB page the ranges cover
//! to the first range that reaches it leaves a search among that page's few. Ranges far apart
//! (a process's main heap and its mmapped chunks) are split into runs, each with its own table.

const PAGE_SHIFT: u32 = 12;
/// A gap this wide between two ranges starts a new run.
const RUN_GAP: u64 = 1 << 26;
/// Table entries allowed per range: beyond this the ranges are searched whole instead.
const PAGES_PER_RANGE: u64 = 16;

pub(super) struct Spans<T> {
    /// `(start, end, value)`, ascending by start.
    ranges: Vec<(u64, u64, T)>,
    /// Runs of ranges with no gap of [`RUN_GAP`] between them, ascending. Empty when the ranges
    /// overlap or would need too large a table.
    runs: Vec<Run>,
}

struct Run {
    /// Its first page.
    base: u64,
    /// Entry `p`: the index (into all ranges) of the first range that ends after page
    /// `base + p` starts; one entry per page up to the run's last.
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
        if ranges.len() < u32::MAX as usize && ranges.windows(2).all(|w| w[0].1 <= w[1].0) {
            // The runs, as [at, end) of the ranges, and the pages each covers.
            let mut bounds = Vec::new();
            let mut at = 0;
            while at < ranges.len() {
                let mut end = at + 1;
                while end < ranges.len() && ranges[end].0 - ranges[end - 1].1 < RUN_GAP {
                    end += 1;
                }
                let base = ranges[at].0 >> PAGE_SHIFT;
                let pages = (ranges[end - 1].1.saturating_sub(1) >> PAGE_SHIFT).saturating_sub(base) + 1;
                bounds.push((at, end, base, pages));
                at = end;
            }
            let budget = PAGES_PER_RANGE.saturating_mul(ranges.len() as u64).max(1024);
            if bounds.iter().map(|b| b.3).sum::<u64>() <= budget {
                runs = bounds
                    .into_iter()
                    .map(|(at, end, base, pages)| {
                        let mut first = Vec::with_capacity(pages as usize);
                        let mut i = at;
                        for p in 0..pages {
                            let page_start = (base + p) << PAGE_SHIFT;
                            while i < end && ranges[i].1 <= page_start {
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
        Spans { ranges, runs }
    }

    /// The range holding `v`: its value and `v`'s offset from its start.
    pub(super) fn find(&self, v: u64) -> Option<(T, u64)> {
        let among = if self.runs.is_empty() {
            &self.ranges[..]
        } else {
            let run = &self.runs[self
                .runs
                .partition_point(|r| r.base <= v >> PAGE_SHIFT)
                .checked_sub(1)?];
            let p = usize::try_from((v >> PAGE_SHIFT) - run.base).ok()?;
            let lo = *run.first.get(p)? as usize;
            // The ranges that reach page p: from the first that ends after it starts, up to the
            // first that ends after the next page starts (which may start in this one).
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
        let mut checked = 0;
        for (list, runs) in [(ranges, 1), (two_runs, 2), (sparse, 0), (overlapping, 0)] {
            let spans = Spans::new(list.iter().rev().copied().collect());
            assert_eq!(spans.runs.len(), runs);
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
        assert_eq!(checked, 7 * (3000 + 3002 + 100 + 3000));
        assert_eq!(Spans::<u32>::new(Vec::new()).find(0), None);
    }
}
