//! The MSM algorithm the CUDA kernels run (`cuda/msm.cu`), stage by stage,
//! with a host model of each stage on halo2curves points. The model is the
//! specification the kernels follow and is tested against halo2curves'
//! own MSM, so the decomposition, sorting, work split and reductions are
//! checked on every machine, GPU or not.
//!
//! Stages:
//! 1. **Fold**: a scalar above (p-1)/2 is replaced by p - s and its point
//!    negated, so small negative values (p - s) become small. The largest
//!    folded bit length decides how many windows are needed: 16-bit ML
//!    witnesses need one or two windows instead of the ~13 of random scalars.
//! 2. **Digits**: signed windows of c bits; a digit d != 0 of window w
//!    emits the pair (bucket w·2^(c-1) + |d| - 1, point index and sign).
//!    Zero digits, hence zero scalars, emit nothing.
//! 3. **Sort** the pairs by bucket (a counting sort on the device).
//! 4. **Accumulate** by levels: the sorted list is cut into segments of
//!    `seg` entries, one per thread, whatever the buckets. A run of one
//!    bucket wholly inside a segment is that bucket's sum; a run cut by a
//!    segment edge becomes a partial sum in the next level's list, at most
//!    two per segment. Every thread does the same work, so a bucket that
//!    holds half the points (repeated scalars) is split across many threads
//!    instead of stalling one.
//! 5. **Window sums**: each window's buckets are split into chunks; a chunk
//!    gives `sum (b - base)·B_b` by running sums plus `base·sum B_b`, and the
//!    chunks of a window are added.
//! 6. **Combine** the window sums by Horner's rule, `c` doublings apart.

use halo2curves::bn256::{Fr, G1Affine, G1};
use halo2curves::group::{Curve, Group};

use crate::digits::{limbs, signed_digits};

/// A pair's bucket key when it carries nothing (an empty slot of a level list).
pub const EMPTY: u32 = u32::MAX;

/// Window layout for one MSM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Bit length of the largest folded scalar.
    pub bits: u32,
    /// Window width.
    pub c: u32,
    /// Number of windows, including the one that takes the top digit's carry.
    pub windows: u32,
}

impl Plan {
    /// The window width for `n` points whose folded scalars fit in `bits`.
    /// Wider windows mean fewer bucket additions per point but more buckets
    /// to reduce; about log2(n) - 3 balances them, and a window never needs
    /// to be wider than the scalars.
    pub fn new(n: usize, bits: u32) -> Plan {
        let bits = bits.max(1);
        let log_n = usize::BITS - n.max(1).leading_zeros();
        let c = log_n.saturating_sub(3).clamp(4, 20).min(bits + 1);
        Plan { bits, c, windows: bits.div_ceil(c) + 1 }
    }

    /// Windows of width `c` for folded scalars of `bits` bits, as a table
    /// of multiples fixes `c` whatever the number of points.
    pub fn with_window(bits: u32, c: u32) -> Plan {
        let bits = bits.max(1);
        Plan { bits, c, windows: bits.div_ceil(c) + 1 }
    }

    /// Buckets per window: signed digits need only 2^(c-1).
    pub fn buckets_per_window(&self) -> u32 {
        1 << (self.c - 1)
    }

    pub fn buckets(&self) -> usize {
        (self.windows * self.buckets_per_window()) as usize
    }
}

/// Stage 1: `(|s|, negated)` with `|s| <= (p-1)/2`.
pub fn fold(s: &Fr) -> ([u64; 4], bool) {
    let l = limbs(s);
    let n = limbs(&-*s);
    // s > (p-1)/2 exactly when p - s < s as integers.
    let less = n.iter().rev().cmp(l.iter().rev()) == std::cmp::Ordering::Less;
    if less {
        (n, true)
    } else {
        (l, false)
    }
}

/// The bit length of the largest folded scalar (0 when all are zero).
pub fn folded_bits(scalars: &[Fr]) -> u32 {
    scalars
        .iter()
        .map(|s| {
            let (l, _) = fold(s);
            (0..4).rev().find(|&i| l[i] != 0).map_or(0, |i| 64 * i as u32 + 64 - l[i].leading_zeros())
        })
        .max()
        .unwrap_or(0)
}

/// Stage 2: the (bucket, point·2 + sign) pairs of every scalar, each
/// window with its own buckets.
pub fn pairs(scalars: &[Fr], plan: &Plan) -> Vec<(u32, u32)> {
    strided_pairs(scalars, plan, plan.buckets_per_window(), 0)
}

/// Stage 2 over a table of multiples (`table_len` points per window): all
/// windows share one window of buckets, and window w's digit of scalar i
/// names point `w·table_len + i` of the table.
pub fn table_pairs(scalars: &[Fr], plan: &Plan, table_len: usize) -> Vec<(u32, u32)> {
    strided_pairs(scalars, plan, 0, table_len as u32)
}

/// Window w's digit d goes to bucket `w·key_stride + |d| - 1` with point
/// `w·point_stride + i`.
fn strided_pairs(scalars: &[Fr], plan: &Plan, key_stride: u32, point_stride: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for (i, s) in scalars.iter().enumerate() {
        let (l, negated) = fold(s);
        let digits = signed_digits(&l, plan.bits as usize, plan.c as usize);
        debug_assert!(digits.len() <= plan.windows as usize);
        for (w, &d) in digits.iter().enumerate() {
            if d != 0 {
                let key = w as u32 * key_stride + d.unsigned_abs() as u32 - 1;
                let sign = u32::from((d < 0) != negated);
                out.push((key, (w as u32 * point_stride + i as u32) << 1 | sign));
            }
        }
    }
    out
}

/// Stage 3: pairs sorted by bucket.
pub fn sort(mut pairs: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    pairs.sort_by_key(|p| p.0);
    pairs
}

/// One level of stage 4 over `list`: complete runs are written to
/// `buckets`; the next level's list (two slots per segment) is returned.
pub fn accumulate_level(list: &[(u32, G1)], seg: usize, buckets: &mut [G1]) -> Vec<(u32, G1)> {
    let segments = list.len().div_ceil(seg);
    let mut next = vec![(EMPTY, G1::identity()); 2 * segments];
    for t in 0..segments {
        let (start, end) = (t * seg, ((t + 1) * seg).min(list.len()));
        let mut partial = Vec::new();
        let mut i = start;
        while i < end {
            let key = list[i].0;
            let mut sum = G1::identity();
            let run = i;
            while i < end && list[i].0 == key {
                sum += list[i].1;
                i += 1;
            }
            if key == EMPTY {
                continue;
            }
            let cut_before = run == start && start > 0 && list[start - 1].0 == key;
            let cut_after = i == end && end < list.len() && list[end].0 == key;
            if cut_before || cut_after {
                partial.push((key, sum));
            } else {
                buckets[key as usize] = sum;
            }
        }
        // Slot layout keeps equal keys adjacent across segments: a single
        // partial is padded with an identity point under the same key.
        match partial[..] {
            [] => {}
            [(k, p)] if start > 0 && list[start - 1].0 == k && list[start].0 == k => {
                next[2 * t] = (k, p);
                next[2 * t + 1] = (k, G1::identity());
            }
            [(k, p)] => {
                next[2 * t] = (k, G1::identity());
                next[2 * t + 1] = (k, p);
            }
            [a, b] => {
                next[2 * t] = a;
                next[2 * t + 1] = b;
            }
            _ => unreachable!("at most the first and last run of a segment are cut"),
        }
    }
    next
}

/// Stage 4: every bucket's sum, from the sorted pairs.
pub fn accumulate(sorted: &[(u32, u32)], bases: &[G1Affine], plan: &Plan, seg: usize) -> Vec<G1> {
    // Each segment leaves two slots, so a level shrinks the list only when a
    // segment holds more than four entries or the list fits in one segment.
    assert!(seg >= 4, "a segment must hold at least four entries");
    let mut buckets = vec![G1::identity(); plan.buckets()];
    let mut list: Vec<(u32, G1)> = sorted
        .iter()
        .map(|&(k, v)| {
            let p = G1::from(bases[(v >> 1) as usize]);
            (k, if v & 1 == 1 { -p } else { p })
        })
        .collect();
    while !list.is_empty() {
        list = accumulate_level(&list, seg, &mut buckets);
        if list.iter().all(|e| e.0 == EMPTY) {
            break;
        }
    }
    buckets
}

/// Stage 5: `sum_b (b + 1)·B_b` of each window, by chunks of `chunk` buckets.
pub fn window_sums(buckets: &[G1], plan: &Plan, chunk: usize) -> Vec<G1> {
    let half = plan.buckets_per_window() as usize;
    (0..plan.windows as usize)
        .map(|w| {
            let window = &buckets[w * half..(w + 1) * half];
            window
                .chunks(chunk)
                .enumerate()
                .map(|(j, part)| {
                    // Running sums from the top give sum (b - base + 1)·B_b.
                    let (mut running, mut local) = (G1::identity(), G1::identity());
                    for b in part.iter().rev() {
                        running += b;
                        local += running;
                    }
                    local + running * Fr::from((j * chunk) as u64)
                })
                .fold(G1::identity(), |a, b| a + b)
        })
        .collect()
}

/// Stage 6: `sum_w 2^(c·w)·W_w`.
pub fn combine(windows: &[G1], c: u32) -> G1 {
    windows.iter().rev().fold(G1::identity(), |acc, w| {
        let mut acc = acc;
        for _ in 0..c {
            acc = acc.double();
        }
        acc + w
    })
}

/// The table of multiples: `2^(c·w)·bases[i]` at `w·len + i`.
pub fn table(bases: &[G1Affine], c: u32, windows: u32) -> Vec<G1Affine> {
    let mut proj: Vec<G1> = bases.iter().map(|&p| p.into()).collect();
    let mut out = Vec::with_capacity(bases.len() * windows as usize);
    for w in 0..windows {
        if w > 0 {
            for p in &mut proj {
                for _ in 0..c {
                    *p = p.double();
                }
            }
        }
        let mut aff = vec![G1Affine::default(); proj.len()];
        G1::batch_normalize(&proj, &mut aff);
        out.extend(aff);
    }
    out
}

/// The pipeline over a table of width `c`: one window of buckets, whose
/// weighted sum is the MSM.
pub fn msm_table_model(scalars: &[Fr], bases: &[G1Affine], c: u32, seg: usize, chunk: usize) -> G1 {
    assert_eq!(scalars.len(), bases.len());
    let bits = folded_bits(scalars);
    if bits == 0 {
        return G1::identity();
    }
    let digits = Plan::with_window(bits, c);
    let table = table(bases, c, digits.windows);
    let sorted = sort(table_pairs(scalars, &digits, bases.len()));
    let plan = Plan { windows: 1, ..digits };
    let buckets = accumulate(&sorted, &table, &plan, seg);
    window_sums(&buckets, &plan, chunk)[0]
}

/// The whole pipeline on the host.
pub fn msm_model(scalars: &[Fr], bases: &[G1Affine], seg: usize, chunk: usize) -> G1 {
    assert_eq!(scalars.len(), bases.len());
    let bits = folded_bits(scalars);
    if bits == 0 {
        return G1::identity();
    }
    let plan = Plan::new(scalars.len(), bits);
    let sorted = sort(pairs(scalars, &plan));
    let buckets = accumulate(&sorted, bases, &plan, seg);
    combine(&window_sums(&buckets, &plan, chunk), plan.c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2curves::ff::Field;

    #[test]
    fn folding_makes_small_negatives_small_and_skips_zeros() {
        assert_eq!(folded_bits(&[Fr::ZERO, Fr::ZERO]), 0);
        assert_eq!(folded_bits(&[-Fr::from(65535), Fr::from(3)]), 16);
        assert_eq!(fold(&-Fr::from(5)), ([5, 0, 0, 0], true));
        assert_eq!(fold(&Fr::from(5)), ([5, 0, 0, 0], false));
        assert!(folded_bits(&[Fr::from(2).pow([200])]) == 201);
        // 16-bit scalars need two windows (one plus the carry), random ones ~13.
        let p = Plan::new(1 << 20, 16);
        assert_eq!((p.c, p.windows), (17, 2));
        let p = Plan::new(1 << 20, 254);
        assert_eq!((p.c, p.windows), (18, 16));
        // Zero scalars emit no pairs at all.
        let plan = Plan::new(4, 8);
        assert!(pairs(&[Fr::ZERO; 4], &plan).is_empty());
    }
}
