//! The NTT driver: forward, inverse and coset NTTs of batches of columns,
//! on host slices or on device buffers, with `cuda/ntt.cu`. Twiddle and
//! coset-power tables are computed on the device on first use and kept.
//!
//! Conventions are halo2's: the forward transform of `a` over a domain of
//! 2^log_n is `A_j = sum_i a_i w^(ij)` with `w` the domain's root of unity
//! ([`crate::twiddles::omega`]), in natural order; the inverse includes
//! the 1/n; the coset transform multiplies `a_i` by `g^i` first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{ensure, Result};
use halo2curves::bn256::Fr;
use halo2curves::ff::{Field, PrimeField};

use crate::backend::{blocks, upload_fr, Arg, Backend, BLOCK};
use crate::layout::{read_fr_into, FIELD_WORDS};
use crate::twiddles::omega;

/// Stages per shared-memory pass (`NTT_MAX_PASS` in ntt.cu).
const MAX_PASS: u32 = 10;

/// The stages of each pass for a transform of 2^log_n: as few passes as
/// `MAX_PASS` allows, split evenly (2^24 as 8 + 8 + 8). Blocks are filled by
/// packing groups ([`groups_per_block`]) whatever the split, so the even
/// split only keeps the passes alike.
pub fn pass_sizes(log_n: u32) -> impl Iterator<Item = u32> {
    let passes = log_n.div_ceil(MAX_PASS);
    (0..passes).map(move |i| log_n / passes + u32::from(i < log_n % passes))
}

/// log2 of the (column, group) pairs one block of a `pass`-stage pass takes:
/// enough to fill the `2^MAX_PASS`-element shared array, but no more than
/// the `pairs` there are, so small transforms do not launch idle threads.
pub fn groups_per_block(pass: u32, pairs: usize) -> u32 {
    let fill = MAX_PASS - pass;
    fill.min(pairs.next_power_of_two().trailing_zeros())
}

/// Device tables, by what they hold.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Table {
    /// `w^0 .. w^(n/2 - 1)` for the domain of 2^log_n (or its inverse root).
    Twiddles { log_n: u32, inverse: bool },
    /// `g^0 .. g^(n - 1)` for a coset generator, by its canonical bytes.
    Powers { log_n: u32, g: [u8; 32] },
    /// The single element 1/n.
    InverseSize { log_n: u32 },
}

/// NTTs on one backend.
pub struct Ntt<B: Backend> {
    backend: Arc<B>,
    tables: Mutex<HashMap<Table, Arc<B::Buf>>>,
}

impl<B: Backend> Ntt<B> {
    pub fn new(backend: Arc<B>) -> Self {
        Ntt { backend, tables: Mutex::default() }
    }

    pub fn backend(&self) -> &Arc<B> {
        &self.backend
    }

    /// Forward NTT of each column of 2^log_n in `data`, in place.
    pub fn forward(&self, data: &mut [Fr], log_n: u32) -> Result<()> {
        self.on_host(data, log_n, |buf, cols| self.forward_device(buf, log_n, cols))
    }

    /// Inverse NTT (including 1/n) of each column, in place.
    pub fn inverse(&self, data: &mut [Fr], log_n: u32) -> Result<()> {
        self.on_host(data, log_n, |buf, cols| self.inverse_device(buf, log_n, cols))
    }

    /// Forward NTT of each column after multiplying its i-th element by g^i.
    pub fn coset_forward(&self, data: &mut [Fr], log_n: u32, g: Fr) -> Result<()> {
        self.on_host(data, log_n, |buf, cols| self.coset_forward_device(buf, log_n, cols, g))
    }

    /// Forward NTT of `cols` columns of 2^log_n held one after another in `buf`.
    pub fn forward_device(&self, buf: &B::Buf, log_n: u32, cols: usize) -> Result<()> {
        self.transform(buf, log_n, cols, false).map(drop)
    }

    pub fn inverse_device(&self, buf: &B::Buf, log_n: u32, cols: usize) -> Result<()> {
        let len = self.transform(buf, log_n, cols, true)?;
        let inv_n = self.table(Table::InverseSize { log_n })?;
        self.backend.launch(
            "fr_scale",
            blocks(len, BLOCK)?,
            BLOCK,
            &[Arg::Buf(buf), Arg::Buf(&inv_n), Arg::U32(len as u32)],
        )
    }

    pub fn coset_forward_device(&self, buf: &B::Buf, log_n: u32, cols: usize, g: Fr) -> Result<()> {
        self.shift_device(buf, log_n, cols, g)?;
        self.transform(buf, log_n, cols, false).map(drop)
    }

    /// Multiplies the i-th element of each column by g^i: the coset shift
    /// on its own, e.g. after an inverse transform to leave a coset.
    pub fn shift_device(&self, buf: &B::Buf, log_n: u32, cols: usize, g: Fr) -> Result<()> {
        let len = self.check(buf, log_n, cols)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(g.to_repr().as_ref());
        let powers = self.table(Table::Powers { log_n, g: key })?;
        self.backend.launch(
            "ntt_coset_shift",
            blocks(len, BLOCK)?,
            BLOCK,
            &[Arg::Buf(buf), Arg::Buf(&powers), Arg::U32(log_n), Arg::U32(cols as u32)],
        )
    }

    /// Uploads `data`, runs `op` on it as columns of 2^log_n and reads it back.
    fn on_host(&self, data: &mut [Fr], log_n: u32, op: impl FnOnce(&B::Buf, usize) -> Result<()>) -> Result<()> {
        ensure!(log_n <= Fr::S, "the scalar field has no domain of 2^{log_n}");
        let n = 1usize << log_n;
        ensure!(data.len().is_multiple_of(n), "{} elements are not whole columns of 2^{log_n}", data.len());
        let cols = data.len() / n;
        if cols == 0 {
            return Ok(());
        }
        let b = &*self.backend;
        let buf = upload_fr(b, data)?;
        op(&buf, cols)?;
        read_fr_into(data, |w| b.download(&buf, 0, w))
    }

    /// The number of elements, after checking that they fit the buffer and
    /// the kernels' 32-bit indices.
    fn check(&self, buf: &B::Buf, log_n: u32, cols: usize) -> Result<usize> {
        ensure!(log_n <= Fr::S, "the scalar field has no domain of 2^{log_n}");
        let len = cols << log_n;
        ensure!(len < 1 << 32 && cols < 1 << 32, "{cols} columns of 2^{log_n} are too many for one launch");
        ensure!(
            self.backend.words(buf) >= len * FIELD_WORDS,
            "the buffer holds fewer than {cols} columns of 2^{log_n}"
        );
        Ok(len)
    }

    /// Bit reversal, then the stages in shared-memory passes; returns the
    /// number of elements transformed.
    fn transform(&self, buf: &B::Buf, log_n: u32, cols: usize, inverse: bool) -> Result<usize> {
        let len = self.check(buf, log_n, cols)?;
        if log_n == 0 || cols == 0 {
            return Ok(len);
        }
        let b = &*self.backend;
        let twiddles = self.table(Table::Twiddles { log_n, inverse })?;
        b.launch(
            "ntt_bit_reverse",
            blocks(len, BLOCK)?,
            BLOCK,
            &[Arg::Buf(buf), Arg::U32(log_n), Arg::U32(cols as u32)],
        )?;
        let mut s = 0;
        for pass in pass_sizes(log_n) {
            let pairs = len >> pass;
            let log_per_block = groups_per_block(pass, pairs);
            b.launch(
                "ntt_pass",
                blocks(pairs, 1 << log_per_block)?,
                1 << (pass - 1 + log_per_block),
                &[
                    Arg::Buf(buf),
                    Arg::U32(log_n),
                    Arg::U32(s),
                    Arg::U32(pass),
                    Arg::U32(log_per_block),
                    Arg::U32(pairs as u32),
                    Arg::Buf(&twiddles),
                ],
            )?;
            s += pass;
        }
        Ok(len)
    }

    /// A table, computed on the device the first time it is asked for.
    fn table(&self, which: Table) -> Result<Arc<B::Buf>> {
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = tables.get(&which) {
            return Ok(t.clone());
        }
        let t = Arc::new(self.compute_table(which)?);
        tables.insert(which, t.clone());
        Ok(t)
    }

    fn compute_table(&self, which: Table) -> Result<B::Buf> {
        let (base, count) = match which {
            Table::Twiddles { log_n, inverse } => {
                let w = omega(log_n);
                let w = if inverse { w.invert().unwrap_or(Fr::ONE) } else { w };
                (w, (1usize << log_n) / 2)
            }
            Table::Powers { log_n, g } => {
                let g = Option::<Fr>::from(Fr::from_repr(g)).unwrap_or(Fr::ONE);
                (g, 1usize << log_n)
            }
            Table::InverseSize { log_n } => {
                return self.constant(Fr::from(1u64 << log_n).invert().unwrap_or(Fr::ONE));
            }
        };
        let b = &*self.backend;
        let base = self.constant(base)?;
        let out = b.alloc(count.max(1) * FIELD_WORDS)?;
        b.launch(
            "fr_powers",
            blocks(count, BLOCK)?,
            BLOCK,
            &[Arg::Buf(&out), Arg::Buf(&base), Arg::U32(count as u32)],
        )?;
        Ok(out)
    }

    fn constant(&self, v: Fr) -> Result<B::Buf> {
        upload_fr(&*self.backend, std::slice::from_ref(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_cover_every_stage_evenly_and_as_few_as_fit() {
        assert_eq!(pass_sizes(24).collect::<Vec<_>>(), [8, 8, 8]);
        assert_eq!(pass_sizes(22).collect::<Vec<_>>(), [8, 7, 7]);
        assert_eq!(pass_sizes(0).count(), 0);
        for log_n in 1..=Fr::S {
            let p: Vec<u32> = pass_sizes(log_n).collect();
            assert_eq!(p.iter().sum::<u32>(), log_n);
            assert_eq!(p.len() as u32, log_n.div_ceil(MAX_PASS));
            assert!(p.iter().all(|&b| (1..=MAX_PASS).contains(&b)));
            assert!(p.iter().max().unwrap() - p.iter().min().unwrap() <= 1);
        }
    }

    #[test]
    fn blocks_fill_the_shared_array_unless_the_transform_is_smaller() {
        for pass in 1..=MAX_PASS {
            for pairs in [1usize, 2, 3, 5, 64, 1000, 1 << 20] {
                let lpb = groups_per_block(pass, pairs);
                let elements = 1usize << (pass + lpb);
                assert!(elements <= 1 << MAX_PASS, "pass {pass}, {pairs} pairs: over the shared array");
                let filled = elements == 1 << MAX_PASS;
                let all_in_one = (1usize << lpb) >= pairs;
                assert!(filled || all_in_one, "pass {pass}, {pairs} pairs: a partly empty block");
                assert!(lpb == 0 || (1usize << (lpb - 1)) < pairs, "pass {pass}, {pairs} pairs: an idle half");
            }
        }
    }
}
