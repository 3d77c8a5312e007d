//! The MSM driver: fixed bases resident on a [`Backend`], and the launch
//! sequence of `cuda/msm.cu` for each set of scalars. The stages and their
//! host model are described in [`crate::msm_plan`].

use std::sync::Arc;

use anyhow::{bail, ensure, Result};
use halo2curves::bn256::{Fr, G1Affine, G1};
use halo2curves::group::Group;

use crate::backend::{blocks, read_word, upload_fr, Arg, Backend, BLOCK};
use crate::layout::{affine_from_words, affine_words, xyzz_to_g1, AFFINE_WORDS, FIELD_WORDS, XYZZ_WORDS};
use crate::msm_plan::{combine, Plan};
use crate::scan::exclusive_scan_u32;

/// Work split of the accumulation and reduction stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tuning {
    /// Sorted pairs per thread in each accumulation level (at least 4).
    pub seg: u32,
    /// Buckets per thread in the window sums; 0 picks it from the number
    /// of buckets ([`window_chunk`]).
    pub chunk: u32,
    /// Partial window sums added per thread in each reduction round (at least 2).
    pub group: u32,
    /// Window width without a table; 0 picks it from the size ([`Plan::new`]).
    /// For measuring which width is fastest where.
    pub window: u32,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning { seg: 16, chunk: 0, group: 32, window: 0 }
    }
}

/// Largest MSM: point indices carry a sign bit in 32 bits, and all windows'
/// pairs of one MSM are indexed by a u32.
pub const MAX_POINTS: usize = 1 << 28;

/// Bases uploaded once, and MSMs against any prefix of them.
pub struct Msm<B: Backend> {
    backend: Arc<B>,
    bases: B::Buf,
    len: usize,
    tuning: Tuning,
    table: Option<Table<B>>,
}

/// Multiples of the bases, `2^(c·w)·G_i` for every window `w`, so that an
/// MSM's windows share one set of buckets: the window sums shrink to one
/// window's and the final doublings vanish, for `windows` times the
/// bases' memory.
struct Table<B: Backend> {
    points: B::Buf,
    c: u32,
    windows: u32,
}

/// What the device leaves after the bucket and window stages of one MSM:
/// the bucket layout (one window of buckets with a table) and its sums.
struct Run<B: Backend> {
    plan: Plan,
    buckets: B::Buf,
    windows: B::Buf,
}

/// Bit length of the largest folded scalar, (p - 1)/2 < 2^253.
pub const MAX_FOLDED_BITS: u32 = 253;

/// The window width of a table for `len` bases: ⌊log2(len)⌋ − 2 (18 for
/// 2^20 bases), within 8..=20. One window of buckets costs 2^c additions to
/// sum and every window of the table one more addition per point, so the
/// buckets are a small part of the work at this width. A first choice, to
/// be set by `zkfarm-bench-kernels --sweep` on a GPU.
pub fn table_window(len: usize) -> u32 {
    let log_len = usize::BITS - 1 - len.max(1).leading_zeros();
    log_len.saturating_sub(2).clamp(8, 20)
}

/// Windows a table of width `c` needs for any folded scalar (the top one
/// takes the last signed digit's carry).
pub fn table_windows(c: u32) -> u32 {
    MAX_FOLDED_BITS.div_ceil(c) + 1
}

impl<B: Backend> Msm<B> {
    /// Uploads `bases`; every later MSM reuses them.
    pub fn new(backend: Arc<B>, bases: &[G1Affine]) -> Result<Self> {
        Self::from_words(backend, &affine_words(bases))
    }

    /// Uploads bases given as device words (sixteen per point: x then y,
    /// Montgomery form, as halo2's raw point serialisation writes them).
    pub fn from_words(backend: Arc<B>, words: &[u32]) -> Result<Self> {
        ensure!(words.len().is_multiple_of(AFFINE_WORDS), "{} words is not a whole number of points", words.len());
        let len = words.len() / AFFINE_WORDS;
        ensure!(len <= MAX_POINTS, "{len} bases is more than the MSM supports ({MAX_POINTS})");
        let mut buf = backend.alloc_uninit(words.len())?;
        backend.upload(words, &mut buf, 0)?;
        Ok(Msm { backend, bases: buf, len, tuning: Tuning::default(), table: None })
    }

    /// Builds, on the device, the table of window width `c` (see
    /// [`table_window`]); every later MSM goes through it.
    pub fn with_table(mut self, c: u32) -> Result<Self> {
        ensure!((2..=24).contains(&c), "a table window of {c} bits is outside 2..=24");
        let windows = table_windows(c);
        // Point indices carry a sign bit in 32 bits.
        ensure!(
            (self.len as u64) * windows as u64 <= 1 << 31,
            "a table of {windows} windows over {} bases has too many points",
            self.len
        );
        let b = &*self.backend;
        let points = b.alloc_uninit(self.len * windows as usize * AFFINE_WORDS)?;
        if self.len > 0 {
            b.launch(
                "msm_table",
                blocks(self.len, BLOCK)?,
                BLOCK,
                &[Arg::Buf(&self.bases), Arg::U32(self.len as u32), Arg::U32(c), Arg::U32(windows), Arg::Buf(&points)],
            )?;
        }
        self.table = Some(Table { points, c, windows });
        Ok(self)
    }

    /// The table's points, window after window (for checking the device's
    /// table build); `None` without a table.
    pub fn table_points(&self) -> Result<Option<Vec<G1Affine>>> {
        let Some(t) = &self.table else { return Ok(None) };
        let mut words = vec![0u32; self.len * t.windows as usize * AFFINE_WORDS];
        self.backend.download(&t.points, 0, &mut words)?;
        words.chunks_exact(AFFINE_WORDS).map(affine_from_words).collect::<Result<Vec<_>>>().map(Some)
    }

    /// Device memory the table holds, in bytes (0 without one).
    pub fn table_bytes(&self) -> usize {
        self.table.as_ref().map_or(0, |t| self.len * t.windows as usize * AFFINE_WORDS * 4)
    }

    pub fn with_tuning(mut self, tuning: Tuning) -> Result<Self> {
        ensure!(tuning.seg >= 4, "a segment must hold at least four pairs");
        ensure!(tuning.group >= 2, "groups need two sums");
        ensure!(tuning.window <= 24, "a window of {} bits is wider than 24", tuning.window);
        self.tuning = tuning;
        Ok(self)
    }

    /// Number of resident bases.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// `sum scalars[i] · bases[i]` over the first `scalars.len()` bases.
    pub fn msm(&self, scalars: &[Fr]) -> Result<G1> {
        let buf = upload_fr(&*self.backend, scalars)?;
        self.msm_device(&buf, scalars.len())
    }

    /// The same with the `n` scalars already on the device (eight words
    /// each, Montgomery form).
    pub fn msm_device(&self, scalars: &B::Buf, n: usize) -> Result<G1> {
        let Some(run) = self.run(scalars, n)? else { return Ok(G1::identity()) };
        let sums = self.read_points(&run.windows, run.plan.windows as usize)?;
        Ok(combine(&sums, run.plan.c))
    }

    /// The plan and every bucket's sum, for checking the device stage by
    /// stage against [`crate::msm_plan`]; `None` when all scalars are zero.
    pub fn bucket_sums(&self, scalars: &[Fr]) -> Result<Option<(Plan, Vec<G1>)>> {
        let buf = upload_fr(&*self.backend, scalars)?;
        let Some(run) = self.run(&buf, scalars.len())? else { return Ok(None) };
        let sums = self.read_points(&run.buckets, run.plan.buckets())?;
        Ok(Some((run.plan, sums)))
    }

    /// The first `count` XYZZ points of `buf`, each checked to be on the curve.
    fn read_points(&self, buf: &B::Buf, count: usize) -> Result<Vec<G1>> {
        let mut words = vec![0u32; count * XYZZ_WORDS];
        self.backend.download(buf, 0, &mut words)?;
        words.chunks_exact(XYZZ_WORDS).map(xyzz_to_g1).collect()
    }

    /// Stages 1 to 5 on the device.
    fn run(&self, scalars: &B::Buf, n: usize) -> Result<Option<Run<B>>> {
        if n > self.len {
            bail!("{n} scalars but only {} resident bases", self.len);
        }
        ensure!(self.backend.words(scalars) >= n * FIELD_WORDS, "the scalar buffer holds fewer than {n} scalars");
        if n == 0 {
            return Ok(None);
        }
        let b = &*self.backend;
        let n32 = n as u32;

        // Stage 1: fold, and the largest folded bit length.
        let folded = b.alloc_uninit(n * FIELD_WORDS)?;
        let negated = b.alloc_uninit(n)?;
        let max_bits = b.alloc(1)?; // zeroed: atomicMax from 0
        b.launch(
            "msm_fold",
            blocks(n, BLOCK)?,
            BLOCK,
            &[Arg::Buf(scalars), Arg::U32(n32), Arg::Buf(&folded), Arg::Buf(&negated), Arg::Buf(&max_bits)],
        )?;
        let bits = read_word(b, &max_bits, 0)?;
        if bits == 0 {
            return Ok(None);
        }
        // With a table every window's digits share one window of buckets
        // and index the table; without, each window has its own buckets.
        // Scalars narrower than the table's window would leave most of its
        // one window of buckets empty, yet summed: they take the plain path.
        let (digits, plan, key_stride, point_stride, bases) = match &self.table {
            Some(t) if bits + 1 >= t.c => {
                let digits = Plan::with_window(bits, t.c);
                debug_assert!(digits.windows <= t.windows);
                (digits, Plan { windows: 1, ..digits }, 0, self.len as u32, &t.points)
            }
            _ => {
                let plan = match self.tuning.window {
                    0 => Plan::new(n, bits),
                    c => Plan::with_window(bits, c),
                };
                (plan, plan, plan.buckets_per_window(), 0, &self.bases)
            }
        };
        let slots = digits.windows as usize * n;
        ensure!(slots < u32::MAX as usize, "{n} scalars of {bits} bits need too many pairs for one MSM");

        // Stage 2: signed digits as (bucket, point) pairs and the bucket
        // histogram, with one extra count so the scan also yields the total.
        let buckets = plan.buckets();
        let mut counts = b.alloc(buckets + 1)?;
        let keys = b.alloc_uninit(slots)?;
        let vals = b.alloc_uninit(slots)?;
        b.launch(
            "msm_digits",
            blocks(n, BLOCK)?,
            BLOCK,
            &[
                Arg::Buf(&folded),
                Arg::Buf(&negated),
                Arg::U32(n32),
                Arg::U32(digits.c),
                Arg::U32(digits.windows),
                Arg::U32(key_stride),
                Arg::U32(point_stride),
                Arg::Buf(&keys),
                Arg::Buf(&vals),
                Arg::Buf(&counts),
            ],
        )?;
        drop((folded, negated));

        // Stage 3: counting sort.
        exclusive_scan_u32(b, &mut counts, buckets + 1)?;
        let total = read_word(b, &counts, buckets)? as usize;
        let mut cursor = b.alloc_uninit(buckets)?;
        b.copy(&counts, &mut cursor, buckets)?;
        let sorted_keys = b.alloc_uninit(total)?;
        let sorted_vals = b.alloc_uninit(total)?;
        b.launch(
            "msm_scatter",
            blocks(slots, BLOCK)?,
            BLOCK,
            &[
                Arg::Buf(&keys),
                Arg::Buf(&vals),
                Arg::U32(slots as u32),
                Arg::Buf(&cursor),
                Arg::Buf(&sorted_keys),
                Arg::Buf(&sorted_vals),
            ],
        )?;
        drop((keys, vals, cursor, counts));

        // Stage 4: bucket sums, level by level. A zeroed XYZZ point has
        // ZZ = 0, the identity, so buckets that no pair reaches need no clearing.
        let bucket_sums = b.alloc(buckets * XYZZ_WORDS)?;
        self.accumulate(sorted_keys, sorted_vals, total, bases, &bucket_sums)?;

        // Stage 5: window sums.
        let windows = self.window_sums(&bucket_sums, &plan)?;
        Ok(Some(Run { plan, buckets: bucket_sums, windows }))
    }

    /// Stage 4: the first level reads the sorted pairs; each later level
    /// reads the partial sums the previous one left, until one segment
    /// holds the whole list and nothing is left over.
    fn accumulate(&self, keys: B::Buf, vals: B::Buf, total: usize, bases: &B::Buf, buckets: &B::Buf) -> Result<()> {
        let b = &*self.backend;
        let seg = self.tuning.seg as usize;
        let mut len = total;
        let mut level: Option<(B::Buf, B::Buf)> = None;
        loop {
            let segments = len.div_ceil(seg);
            let next_keys = b.alloc_uninit(2 * segments)?;
            let next_points = b.alloc_uninit(2 * segments * XYZZ_WORDS)?;
            let grid = blocks(segments, BLOCK)?;
            let (len32, seg32) = (len as u32, seg as u32);
            match &level {
                None => b.launch(
                    "msm_accumulate_pairs",
                    grid,
                    BLOCK,
                    &[
                        Arg::Buf(&keys),
                        Arg::Buf(&vals),
                        Arg::U32(len32),
                        Arg::Buf(bases),
                        Arg::U32(seg32),
                        Arg::Buf(buckets),
                        Arg::Buf(&next_keys),
                        Arg::Buf(&next_points),
                    ],
                )?,
                Some((k, p)) => b.launch(
                    "msm_accumulate_partials",
                    grid,
                    BLOCK,
                    &[
                        Arg::Buf(k),
                        Arg::Buf(p),
                        Arg::U32(len32),
                        Arg::U32(seg32),
                        Arg::Buf(buckets),
                        Arg::Buf(&next_keys),
                        Arg::Buf(&next_points),
                    ],
                )?,
            }
            // One segment cuts no run, so its level finishes every bucket.
            if segments <= 1 {
                return Ok(());
            }
            len = 2 * segments;
            level = Some((next_keys, next_points));
        }
    }

    /// Stage 5: each window's `sum (b + 1)·B_b`, by chunks of buckets and
    /// then rounds of grouped additions.
    fn window_sums(&self, buckets: &B::Buf, plan: &Plan) -> Result<B::Buf> {
        let b = &*self.backend;
        let Tuning { chunk, group, .. } = self.tuning;
        let half = plan.buckets_per_window();
        let chunk = window_chunk(chunk, plan.windows, half);
        let mut len = half.div_ceil(chunk);
        let mut sums = b.alloc_uninit((plan.windows * len) as usize * XYZZ_WORDS)?;
        let threads = (plan.windows * len) as usize;
        b.launch(
            "msm_window_chunks",
            blocks(threads, BLOCK)?,
            BLOCK,
            &[Arg::Buf(buckets), Arg::U32(plan.windows), Arg::U32(half), Arg::U32(chunk), Arg::Buf(&sums)],
        )?;
        while len > 1 {
            let out_len = len.div_ceil(group);
            let threads = (plan.windows * out_len) as usize;
            let out = b.alloc_uninit(threads * XYZZ_WORDS)?;
            b.launch(
                "msm_reduce",
                blocks(threads, BLOCK)?,
                BLOCK,
                &[Arg::Buf(&sums), Arg::U32(plan.windows), Arg::U32(len), Arg::U32(group), Arg::Buf(&out)],
            )?;
            sums = out;
            len = out_len;
        }
        Ok(sums)
    }
}

/// Threads the window sums aim for: about a quarter of the threads an H200
/// holds at once, and a full wave at the register use of a point addition.
const WINDOW_THREADS: u32 = 1 << 16;

/// Buckets per thread in the window sums: `chunk` when given (nonzero),
/// else 32, or fewer (down to four) where 32 would leave under
/// [`WINDOW_THREADS`] threads. Each thread's work is a chain of dependent
/// additions, so when the windows are few (small scalars need two) shorter
/// chains on more threads finish sooner, even though every chunk pays a
/// multiplication by its offset.
pub fn window_chunk(chunk: u32, windows: u32, half: u32) -> u32 {
    if chunk != 0 {
        return chunk;
    }
    let per_thread = (windows as u64 * half as u64 / WINDOW_THREADS as u64) as u32;
    per_thread.clamp(4, 32)
}

#[cfg(test)]
mod tests {
    use super::window_chunk;

    #[test]
    fn few_windows_get_short_chunks() {
        // 2^20 random scalars: 16 windows of 2^17 buckets, 65 536 threads of 32.
        assert_eq!(window_chunk(0, 16, 1 << 17), 32);
        assert_eq!(window_chunk(0, 13, 1 << 20), 32);
        // 16-bit scalars: two windows of 2^16 buckets, 32 768 threads of 4.
        assert_eq!(window_chunk(0, 2, 1 << 16), 4);
        assert_eq!(window_chunk(0, 1, 2), 4);
        // A chunk given is kept.
        assert_eq!(window_chunk(3, 2, 8), 3);
        assert_eq!(window_chunk(64, 16, 1 << 17), 64);
    }
}
