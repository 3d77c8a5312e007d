//! The prover's backend on a kernel device: every polynomial is a device
//! buffer, every step a sequence of kernel launches, and only scalars
//! (challenges, evaluations, a grand product's last value) and commitments
//! cross to the host.
//!
//! Each step computes exactly what the CPU backend computes (field
//! arithmetic is exact, and the lookup permutation is a function of the
//! two multisets), so a proof made here equals the CPU's byte for byte.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, ensure, Context, Result};
use halo2_proofs::halo2curves::bn256::{Fr, G1Affine, G1};
use halo2_proofs::halo2curves::ff::{Field, PrimeField};
use halo2_proofs::halo2curves::group::Curve;
use zkfarm_kernels::backend::{blocks, read_word, upload_fr, Arg, Backend as Device, BLOCK};
use zkfarm_kernels::layout::{fr_words, read_fr_into, FIELD_WORDS};
use zkfarm_kernels::ntt::Ntt;
use zkfarm_kernels::scan::exclusive_scan_u32;
use zkfarm_plonk::backend::{BackendError, BackendResult, Factor, Permuted, Unmatched};
use zkfarm_plonk::constraints::Compiled;
use zkfarm_plonk::domain::Grid;
use zkfarm_plonk::program::Program;
use zkfarm_plonk::{Backend, Basis, Domain};

use crate::bases::DeviceBases;
use crate::program::{compile_for, cuda_source, DeviceProgram, ProgramKernel, GENERATED_KERNEL};

/// Threads per block of the scans and sums (`PSCAN_THREADS`,
/// `SUM_THREADS`) and elements one scan block covers (`PSCAN_SPAN`).
const SCAN_THREADS: u32 = 256;
const SCAN_SPAN: usize = 256 * 8;
const SUM_THREADS: u32 = 256;
/// Coefficients per thread in evaluations and divisions (`EVAL_CHUNK`,
/// `DIV_CHUNK`).
const EVAL_CHUNK: usize = 64;
const DIV_CHUNK: usize = 256;

/// Bytes of polynomials a backend holds now and at most since the last
/// reset: the prover's working set on the device, less the short-lived
/// scratch of single steps.
#[derive(Debug, Default)]
pub struct Meter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl Meter {
    fn add(&self, bytes: u64) {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }

    fn sub(&self, bytes: u64) {
        self.live.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts a new peak from what is held now.
    pub fn reset_peak(&self) {
        self.peak.store(self.live(), Ordering::Relaxed);
    }
}

/// A polynomial on the device: `len` field elements at the start of `buf`.
pub struct DevicePoly<D: Device> {
    buf: D::Buf,
    len: usize,
    meter: Arc<Meter>,
}

impl<D: Device> DevicePoly<D> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bytes(&self) -> u64 {
        (self.len * FIELD_WORDS * 4) as u64
    }
}

impl<D: Device> Drop for DevicePoly<D> {
    fn drop(&mut self) {
        self.meter.sub(self.bytes());
    }
}

/// The prover's backend on `D`, for one domain and one set of resident bases.
pub struct DeviceBackend<D: Device> {
    device: Arc<D>,
    domain: Domain,
    ntt: Ntt<D>,
    bases: Arc<DeviceBases<D>>,
    /// 1/(X^n − 1) on the coset, one period.
    vanishing: D::Buf,
    meter: Arc<Meter>,
    programs: ProgramKernel,
}

fn failed(e: anyhow::Error) -> BackendError {
    BackendError(format!("{e:#}"))
}

impl<D: Device> DeviceBackend<D> {
    /// A backend for `domain` committing with `bases`, which must hold at
    /// least the domain's 2^k points.
    pub fn new(domain: Domain, bases: Arc<DeviceBases<D>>) -> Result<Self> {
        ensure!(
            bases.len() >= domain.n,
            "the resident bases hold {} points, fewer than the 2^{} rows",
            bases.len(),
            domain.k
        );
        let device = bases.backend().clone();
        let vanishing = upload_fr(&*device, &domain.vanishing_inv).context("uploading 1/(X^n - 1)")?;
        let programs = ProgramKernel::from_env()?;
        Ok(DeviceBackend {
            ntt: Ntt::new(device.clone()),
            device,
            domain,
            bases,
            vanishing,
            meter: Arc::default(),
            programs,
        })
    }

    /// Evaluates constraint programs with `kind` (by default the
    /// interpreter, or what `ZKFARM_PROGRAM_KERNEL` names).
    pub fn with_programs(mut self, kind: ProgramKernel) -> Self {
        self.programs = kind;
        self
    }

    pub fn programs(&self) -> ProgramKernel {
        self.programs
    }

    /// Whether every constraint program of a compiled key fits the device
    /// kernel's registers; if not, the key proves on the CPU instead.
    pub fn supports(&self, compiled: &Compiled) -> Result<()> {
        self.device_programs(compiled).map(drop)
    }

    /// Compiles the key's generated program kernels now (with
    /// [`ProgramKernel::Generated`]), so that its first proof does not
    /// wait for the compiler; the interpreter needs nothing.
    pub fn prepare(&self, compiled: &Compiled) -> Result<()> {
        if self.programs != ProgramKernel::Generated {
            return Ok(());
        }
        for p in self.device_programs(compiled)? {
            self.device.compile_kernel(&cuda_source(&p), GENERATED_KERNEL).context("compiling a constraint program")?;
        }
        Ok(())
    }

    /// Every constraint program of a compiled key as the device runs it:
    /// the quotient's on the extended coset, the lookups' on the rows.
    /// Scalars take placeholder values, which the code does not depend on.
    fn device_programs(&self, compiled: &Compiled) -> Result<Vec<DeviceProgram>> {
        // As the prover passes them: θ, β, γ and y to the quotient, θ to
        // the lookups (the constant table's layout depends on the count).
        let scalars = [Fr::ZERO; 4];
        let programs = [(&compiled.quotient, Grid::Extended, 4)]
            .into_iter()
            .chain(compiled.lookup_inputs.iter().chain(&compiled.lookup_tables).map(|p| (p, Grid::Rows, 1)));
        let limit = self.programs.registers();
        programs
            .map(|(program, grid, count)| {
                let (size, step, x0, dx) = grid.shape(&self.domain);
                compile_for(program, &scalars[..count], size, step, x0, dx, limit).map_err(|e| {
                    anyhow!("a constraint program needs {} registers; the device kernel has {limit}", e.needed)
                })
            })
            .collect()
    }

    /// What the backend's polynomials occupy on the device.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    pub fn device(&self) -> &Arc<D> {
        &self.device
    }

    /// A polynomial of `len` elements whose contents the caller writes.
    fn alloc(&self, len: usize) -> Result<DevicePoly<D>> {
        let buf = self.device.alloc_uninit(len * FIELD_WORDS)?;
        Ok(self.wrap(buf, len))
    }

    /// A polynomial of `len` zeros.
    fn zeros(&self, len: usize) -> Result<DevicePoly<D>> {
        let buf = self.device.alloc(len * FIELD_WORDS)?;
        Ok(self.wrap(buf, len))
    }

    fn wrap(&self, buf: D::Buf, len: usize) -> DevicePoly<D> {
        let poly = DevicePoly { buf, len, meter: self.meter.clone() };
        self.meter.add(poly.bytes());
        poly
    }

    fn launch(&self, kernel: &'static str, threads: usize, args: &[Arg<'_, D::Buf>]) -> Result<()> {
        self.device.launch(kernel, blocks(threads, BLOCK)?, BLOCK, args)
    }

    /// A copy of the first `len` elements of `p` (len ≤ p.len) in a buffer
    /// of `room` elements, zero beyond `len` when `zeroed`.
    fn copy_of(&self, p: &DevicePoly<D>, len: usize, room: usize, zeroed: bool) -> Result<DevicePoly<D>> {
        let mut out = if zeroed { self.zeros(room)? } else { self.alloc(room)? };
        self.device.copy(&p.buf, &mut out.buf, len * FIELD_WORDS)?;
        Ok(out)
    }

    /// Elements `start..start + len` of `p` as a new polynomial.
    fn range(&self, p: &DevicePoly<D>, start: usize, len: usize) -> Result<DevicePoly<D>> {
        let out = self.alloc(len)?;
        self.launch(
            "poly_copy_range",
            len,
            &[Arg::Buf(&out.buf), Arg::Buf(&p.buf), Arg::U32(u32_of(start)?), Arg::U32(u32_of(len)?)],
        )?;
        Ok(out)
    }

    fn upload_at(&self, values: &[Fr], p: &mut DevicePoly<D>, at: usize) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        ensure!(at + values.len() <= p.len, "writing past the end of a polynomial");
        self.device.upload(&fr_words(values), &mut p.buf, at * FIELD_WORDS)
    }

    fn read(&self, buf: &D::Buf, at: usize, count: usize) -> Result<Vec<Fr>> {
        let mut out = vec![Fr::ZERO; count];
        read_fr_into(&mut out, |w| self.device.download(buf, at * FIELD_WORDS, w))?;
        Ok(out)
    }

    /// Inclusive product scan of the first `n` elements, from the first
    /// up, or from the last down when `reverse`.
    fn product_scan(&self, buf: &D::Buf, n: usize, reverse: bool) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let d = &*self.device;
        let grid = blocks(n, SCAN_SPAN as u32)?;
        let totals = d.alloc_uninit(grid as usize * FIELD_WORDS)?;
        let rev = Arg::U32(u32::from(reverse));
        d.launch(
            "poly_scan_block",
            grid,
            SCAN_THREADS,
            &[Arg::Buf(buf), Arg::U32(u32_of(n)?), Arg::Buf(&totals), rev],
        )?;
        if grid > 1 {
            self.product_scan(&totals, grid as usize, false)?;
            self.launch(
                "poly_scan_apply",
                n,
                &[Arg::Buf(buf), Arg::U32(u32_of(n)?), Arg::Buf(&totals), Arg::U32(u32::from(reverse))],
            )?;
        }
        Ok(())
    }

    /// `Π (a[i] + s·b[i] + c)` over `factors` for rows `0..m`.
    fn factors(&self, factors: &[Factor<'_, DevicePoly<D>>], m: usize) -> Result<D::Buf> {
        let out = self.device.alloc_uninit(m.max(1) * FIELD_WORDS)?;
        if factors.is_empty() {
            let ones = vec![Fr::ONE; m];
            let mut out = out;
            self.device.upload(&fr_words(&ones), &mut out, 0)?;
            return Ok(out);
        }
        for (i, f) in factors.iter().enumerate() {
            ensure!(f.a.len >= m, "a grand product factor is shorter than the rows");
            let (b, s) = match f.b {
                Some((b, s)) => {
                    ensure!(b.len >= m, "a grand product factor is shorter than the rows");
                    (b, s)
                }
                None => (f.a, Fr::ZERO),
            };
            let sc = upload_fr(&*self.device, &[s, f.c])?;
            self.launch(
                "poly_factor",
                m,
                &[
                    Arg::Buf(&out),
                    Arg::Buf(&f.a.buf),
                    Arg::Buf(&b.buf),
                    Arg::Buf(&sc),
                    Arg::U32(u32_of(m)?),
                    Arg::U32(u32::from(f.b.is_some())),
                    Arg::U32(u32::from(i == 0)),
                ],
            )?;
        }
        Ok(out)
    }

    /// Sorts the first `len` values of `p` as integers, in a buffer of
    /// `len.next_power_of_two()` canonical values padded with all ones.
    fn sorted_canonical(&self, p: &DevicePoly<D>, len: usize) -> Result<D::Buf> {
        let total = len.next_power_of_two();
        let d = &*self.device;
        let out = d.alloc_uninit(total * FIELD_WORDS)?;
        self.launch(
            "poly_to_canonical",
            total,
            &[Arg::Buf(&out), Arg::Buf(&p.buf), Arg::U32(u32_of(len)?), Arg::U32(u32_of(total)?)],
        )?;
        let n32 = u32_of(total)?;
        let mut k = 2u32;
        while (k as usize) <= total {
            let mut j = k / 2;
            while j > 0 {
                self.launch("poly_bitonic_step", total, &[Arg::Buf(&out), Arg::U32(n32), Arg::U32(j), Arg::U32(k)])?;
                j /= 2;
            }
            k = k.checked_mul(2).ok_or_else(|| anyhow!("{total} values are too many to sort"))?;
        }
        Ok(out)
    }

    fn permute(
        &self,
        input: &DevicePoly<D>,
        table: &DevicePoly<D>,
        usable: usize,
        input_blinding: &[Fr],
        table_blinding: &[Fr],
    ) -> Result<Permuted<DevicePoly<D>>> {
        let n = self.domain.n;
        ensure!(input.len >= usable && table.len >= usable, "a lookup column is shorter than its usable rows");
        ensure!(usable + input_blinding.len() == n && usable + table_blinding.len() == n, "blinding rows");
        let d = &*self.device;
        let u32n = u32_of(usable)?;
        let a = self.sorted_canonical(input, usable)?;
        let s = self.sorted_canonical(table, usable)?;

        let mut missing = d.alloc_uninit(1)?;
        d.upload(&[u32::MAX], &mut missing, 0)?;
        let mut repeat_rank = d.alloc_uninit(usable.max(1))?;
        self.launch(
            "lookup_input_runs",
            usable,
            &[Arg::Buf(&a), Arg::Buf(&s), Arg::U32(u32n), Arg::Buf(&repeat_rank), Arg::Buf(&missing)],
        )?;
        let first_missing = read_word(d, &missing, 0)?;
        if first_missing != u32::MAX {
            // The smallest input value the table lacks, reported at the
            // first row that holds it, as the CPU backend reports it.
            let mut words = vec![0u32; FIELD_WORDS];
            d.download(&a, first_missing as usize * FIELD_WORDS, &mut words)?;
            let value = canonical_to_fr(&words)?;
            let rows = self.read(&input.buf, 0, usable)?;
            let row = rows.iter().position(|v| *v == value).ok_or_else(|| anyhow!("a sorted value left the input"))?;
            return Ok(Err(Unmatched { row }));
        }
        exclusive_scan_u32(d, &mut repeat_rank, usable)?;
        let mut leftover_rank = d.alloc_uninit(usable.max(1))?;
        self.launch(
            "lookup_table_leftovers",
            usable,
            &[Arg::Buf(&a), Arg::Buf(&s), Arg::U32(u32n), Arg::Buf(&leftover_rank)],
        )?;
        exclusive_scan_u32(d, &mut leftover_rank, usable)?;

        let slot_of_rank = d.alloc_uninit(usable.max(1))?;
        let mut permuted_table = self.alloc(n)?;
        self.launch(
            "lookup_place_starts",
            usable,
            &[
                Arg::Buf(&a),
                Arg::Buf(&repeat_rank),
                Arg::U32(u32n),
                Arg::Buf(&slot_of_rank),
                Arg::Buf(&permuted_table.buf),
            ],
        )?;
        self.launch(
            "lookup_place_leftovers",
            usable,
            &[
                Arg::Buf(&a),
                Arg::Buf(&s),
                Arg::Buf(&leftover_rank),
                Arg::Buf(&slot_of_rank),
                Arg::U32(u32n),
                Arg::Buf(&permuted_table.buf),
            ],
        )?;
        let mut permuted_input = self.alloc(n)?;
        d.copy(&a, &mut permuted_input.buf, usable * FIELD_WORDS)?;
        for p in [&permuted_input, &permuted_table] {
            self.launch("poly_to_montgomery", usable, &[Arg::Buf(&p.buf), Arg::U32(u32n)])?;
        }
        self.upload_at(input_blinding, &mut permuted_input, usable)?;
        self.upload_at(table_blinding, &mut permuted_table, usable)?;
        Ok(Ok((permuted_input, permuted_table)))
    }

    fn running_product(
        &self,
        num: &[Factor<'_, DevicePoly<D>>],
        den: &[Factor<'_, DevicePoly<D>>],
        first: Fr,
        blinding: &[Fr],
    ) -> Result<(DevicePoly<D>, Fr)> {
        let n = self.domain.n;
        ensure!(blinding.len() < n, "more blinding rows than rows");
        let computed = n - blinding.len();
        // Ratios for rows 0..m; z has m + 1 computed values.
        let m = computed - 1;
        let mut z = self.alloc(n)?;
        if m == 0 {
            self.upload_at(&[first], &mut z, 0)?;
            self.upload_at(blinding, &mut z, computed)?;
            return Ok((z, first));
        }
        let prefix_num = self.factors(num, m)?;
        let suffix_den = self.factors(den, m)?;
        self.product_scan(&prefix_num, m, false)?;
        self.product_scan(&suffix_den, m, true)?;
        let total = self.read(&suffix_den, 0, 1)?[0];
        let inverse = Option::<Fr>::from(total.invert())
            .ok_or_else(|| anyhow!("a grand product's denominator is zero on some row"))?;
        let c = upload_fr(&*self.device, &[first * inverse, first])?;
        self.launch(
            "poly_grand_product",
            m + 1,
            &[Arg::Buf(&z.buf), Arg::Buf(&prefix_num), Arg::Buf(&suffix_den), Arg::Buf(&c), Arg::U32(u32_of(m)?)],
        )?;
        self.upload_at(blinding, &mut z, computed)?;
        let last = self.read(&z.buf, m, 1)?[0];
        Ok((z, last))
    }

    fn program(
        &self,
        program: &Program,
        leaves: &[&DevicePoly<D>],
        scalars: &[Fr],
        grid: Grid,
    ) -> Result<DevicePoly<D>> {
        let (size, step, x0, dx) = grid.shape(&self.domain);
        ensure!(leaves.len() >= program.slots, "the program reads {} slots", program.slots);
        ensure!(leaves.iter().all(|l| l.len == size), "every leaf has the grid's size");
        let limit = self.programs.registers();
        let compiled = compile_for(program, scalars, size, step, x0, dx, limit)
            .map_err(|e| anyhow!("a constraint program needs {} registers; the device kernel has {limit}", e.needed))?;
        let d = &*self.device;
        let consts = upload_fr(d, &compiled.consts)?;
        let bufs: Vec<&D::Buf> = leaves.iter().map(|l| &l.buf).collect();
        let out = self.alloc(size)?;
        if self.programs == ProgramKernel::Generated {
            let kernel = d
                .compile_kernel(&cuda_source(&compiled), GENERATED_KERNEL)
                .context("compiling a constraint program for the device")?;
            d.launch_compiled(
                &kernel,
                blocks(size, BLOCK)?,
                BLOCK,
                &[Arg::Buf(&out.buf), Arg::Bufs(&bufs), Arg::Buf(&consts), Arg::U32(u32_of(size)?)],
            )?;
            return Ok(out);
        }
        let mut code = d.alloc_uninit(compiled.code.len().max(1))?;
        d.upload(&compiled.code, &mut code, 0)?;
        self.launch(
            "poly_program",
            size,
            &[
                Arg::Buf(&out.buf),
                Arg::Bufs(&bufs),
                Arg::Buf(&code),
                Arg::U32(u32_of(compiled.instructions())?),
                Arg::Buf(&consts),
                Arg::U32(u32_of(size)?),
                Arg::U32(compiled.output),
            ],
        )?;
        Ok(out)
    }

    fn evaluations(&self, queries: &[(&DevicePoly<D>, Fr)]) -> Result<Vec<Fr>> {
        if queries.is_empty() {
            return Ok(Vec::new());
        }
        let d = &*self.device;
        let longest = queries.iter().map(|(p, _)| p.len).max().unwrap_or(0);
        let chunks = longest.div_ceil(EVAL_CHUNK).max(1);
        let count = queries.len();
        let bufs: Vec<&D::Buf> = queries.iter().map(|(p, _)| &p.buf).collect();
        let lens: Vec<u32> = queries.iter().map(|(p, _)| u32_of(p.len)).collect::<Result<_>>()?;
        let mut lens_buf = d.alloc_uninit(count)?;
        d.upload(&lens, &mut lens_buf, 0)?;
        let points: Vec<Fr> = queries.iter().map(|(_, x)| *x).collect();
        let points = upload_fr(d, &points)?;
        let partials = d.alloc_uninit(count * chunks * FIELD_WORDS)?;
        self.launch(
            "poly_eval_chunks",
            count * chunks,
            &[
                Arg::Bufs(&bufs),
                Arg::Buf(&lens_buf),
                Arg::Buf(&points),
                Arg::U32(u32_of(count)?),
                Arg::U32(u32_of(chunks)?),
                Arg::Buf(&partials),
            ],
        )?;
        let sums = d.alloc_uninit(count * FIELD_WORDS)?;
        d.launch(
            "fr_sum_rows",
            u32_of(count)?,
            SUM_THREADS,
            &[Arg::Buf(&partials), Arg::U32(u32_of(chunks)?), Arg::Buf(&sums)],
        )?;
        self.read(&sums, 0, count)
    }

    fn combination(&self, terms: &[(&DevicePoly<D>, Fr)], low: &[Fr]) -> Result<DevicePoly<D>> {
        let len = terms.iter().map(|(p, _)| p.len).max().unwrap_or(0).max(low.len());
        let out = self.zeros(len)?;
        let d = &*self.device;
        // One upload for every scale factor, read by index.
        let mut scalars: Vec<Fr> = terms.iter().map(|(_, s)| *s).collect();
        scalars.push(Fr::ONE);
        let scalars = upload_fr(d, &scalars)?;
        let axpy = |p: &D::Buf, at: usize, n: usize| {
            self.launch(
                "poly_axpy",
                n,
                &[Arg::Buf(&out.buf), Arg::Buf(p), Arg::Buf(&scalars), Arg::U32(u32_of(at)?), Arg::U32(u32_of(n)?)],
            )
        };
        for (i, (p, _)) in terms.iter().enumerate() {
            axpy(&p.buf, i, p.len)?;
        }
        if !low.is_empty() {
            let low_buf = upload_fr(d, low)?;
            axpy(&low_buf, terms.len(), low.len())?;
        }
        Ok(out)
    }

    fn division(&self, poly: &DevicePoly<D>, roots: &[Fr]) -> Result<DevicePoly<D>> {
        let len = poly.len;
        if len < 2 || roots.is_empty() {
            // Nothing above the constant term: the quotient is zero.
            return if roots.is_empty() { self.copy_of(poly, len, len, false) } else { self.zeros(len) };
        }
        let d = &*self.device;
        let m = len - 1;
        let chunks = m.div_ceil(DIV_CHUNK);
        let carry = d.alloc_uninit(chunks * FIELD_WORDS)?;
        let mut current: Option<DevicePoly<D>> = None;
        for &b in roots {
            let a = current.as_ref().unwrap_or(poly);
            let q = self.zeros(len)?;
            let bp = upload_fr(d, &[b, b.pow_vartime([DIV_CHUNK as u64])])?;
            let (m32, c32) = (u32_of(m)?, u32_of(chunks)?);
            self.launch(
                "div_chunks",
                chunks,
                &[Arg::Buf(&a.buf), Arg::Buf(&q.buf), Arg::U32(m32), Arg::Buf(&bp), Arg::Buf(&carry)],
            )?;
            d.launch("div_carries", 1, 1, &[Arg::Buf(&carry), Arg::U32(c32), Arg::Buf(&bp)])?;
            self.launch("div_fix", chunks, &[Arg::Buf(&q.buf), Arg::Buf(&bp), Arg::Buf(&carry), Arg::U32(c32)])?;
            current = Some(q);
        }
        Ok(current.expect("at least one root"))
    }
}

fn u32_of(v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| anyhow!("{v} is too large for a kernel's 32-bit index"))
}

/// A canonical value read back from the device (eight little-endian words).
fn canonical_to_fr(words: &[u32]) -> Result<Fr> {
    let mut repr = <Fr as PrimeField>::Repr::default();
    for (chunk, w) in repr.as_mut().chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    Option::from(Fr::from_repr(repr)).ok_or_else(|| anyhow!("the device returned a value above the modulus"))
}

impl<D: Device> Backend for DeviceBackend<D> {
    type Poly = DevicePoly<D>;

    fn name(&self) -> &'static str {
        self.device.name()
    }

    fn domain(&self) -> &Domain {
        &self.domain
    }

    fn upload(&self, values: Vec<Fr>) -> BackendResult<DevicePoly<D>> {
        let buf = upload_fr(&*self.device, &values).map_err(failed)?;
        Ok(self.wrap(buf, values.len()))
    }

    fn download(&self, poly: &DevicePoly<D>) -> BackendResult<Vec<Fr>> {
        self.read(&poly.buf, 0, poly.len).map_err(failed)
    }

    fn commit(&self, polys: &[&DevicePoly<D>], basis: Basis) -> BackendResult<Vec<G1Affine>> {
        let points: Vec<G1> = polys
            .iter()
            .map(|p| {
                self.bases
                    .msm_device(basis, &p.buf, p.len)
                    .with_context(|| format!("a {}-basis commitment of {} values", basis.name(), p.len))
            })
            .collect::<Result<_>>()
            .map_err(failed)?;
        let mut affine = vec![G1Affine::default(); points.len()];
        G1::batch_normalize(&points, &mut affine);
        Ok(affine)
    }

    fn lagrange_to_coeff(&self, polys: &[&DevicePoly<D>]) -> BackendResult<Vec<DevicePoly<D>>> {
        let d = &self.domain;
        polys
            .iter()
            .map(|p| {
                ensure!(p.len == d.n, "a polynomial of n values");
                let out = self.copy_of(p, d.n, d.n, false)?;
                self.ntt.inverse_device(&out.buf, d.k, 1)?;
                Ok(out)
            })
            .collect::<Result<_>>()
            .map_err(failed)
    }

    fn coeff_to_extended(&self, polys: &[&DevicePoly<D>]) -> BackendResult<Vec<DevicePoly<D>>> {
        let d = &self.domain;
        polys
            .iter()
            .map(|p| {
                ensure!(p.len == d.n, "a polynomial of n coefficients");
                let out = self.copy_of(p, d.n, d.extended_n, true)?;
                self.ntt.coset_forward_device(&out.buf, d.extended_k, 1, d.zeta)?;
                Ok(out)
            })
            .collect::<Result<_>>()
            .map_err(failed)
    }

    fn extended_to_coeff(&self, poly: &DevicePoly<D>, len: usize) -> BackendResult<DevicePoly<D>> {
        let d = &self.domain;
        let run = || {
            ensure!(poly.len == d.extended_n && len <= d.extended_n, "values on the extended coset");
            let full = self.copy_of(poly, d.extended_n, d.extended_n, false)?;
            self.ntt.inverse_device(&full.buf, d.extended_k, 1)?;
            // Off the coset: coefficient i times ζ^-i.
            self.ntt.shift_device(&full.buf, d.extended_k, 1, d.zeta_inv)?;
            if len == d.extended_n {
                return Ok(full);
            }
            self.copy_of(&full, len, len, false)
        };
        run().map_err(failed)
    }

    fn split(&self, poly: &DevicePoly<D>, len: usize) -> BackendResult<Vec<DevicePoly<D>>> {
        if len == 0 {
            return Err(BackendError("pieces of zero length".into()));
        }
        (0..poly.len)
            .step_by(len)
            .map(|start| self.range(poly, start, len.min(poly.len - start)))
            .collect::<Result<_>>()
            .map_err(failed)
    }

    fn evaluate_program(
        &self,
        program: &Program,
        leaves: &[&DevicePoly<D>],
        scalars: &[Fr],
        grid: Grid,
    ) -> BackendResult<DevicePoly<D>> {
        self.program(program, leaves, scalars, grid).map_err(failed)
    }

    fn grand_product(
        &self,
        num: &[Factor<'_, DevicePoly<D>>],
        den: &[Factor<'_, DevicePoly<D>>],
        first: Fr,
        blinding: &[Fr],
    ) -> BackendResult<(DevicePoly<D>, Fr)> {
        self.running_product(num, den, first, blinding).map_err(failed)
    }

    fn lookup_permute(
        &self,
        input: &DevicePoly<D>,
        table: &DevicePoly<D>,
        usable: usize,
        input_blinding: &[Fr],
        table_blinding: &[Fr],
    ) -> BackendResult<Permuted<DevicePoly<D>>> {
        self.permute(input, table, usable, input_blinding, table_blinding).map_err(failed)
    }

    fn divide_by_vanishing(&self, poly: &mut DevicePoly<D>) -> BackendResult<()> {
        let period = self.domain.vanishing_inv.len();
        let run = || {
            if period == 0 {
                bail!("no values of 1/(X^n - 1)");
            }
            self.launch(
                "poly_mul_periodic",
                poly.len,
                &[
                    Arg::Buf(&poly.buf),
                    Arg::Buf(&self.vanishing),
                    Arg::U32(u32_of(poly.len)?),
                    Arg::U32(u32_of(period)?),
                ],
            )
        };
        run().map_err(failed)
    }

    fn evaluate_at(&self, queries: &[(&DevicePoly<D>, Fr)]) -> BackendResult<Vec<Fr>> {
        self.evaluations(queries).map_err(failed)
    }

    fn linear_combination(&self, terms: &[(&DevicePoly<D>, Fr)], low: &[Fr]) -> BackendResult<DevicePoly<D>> {
        self.combination(terms, low).map_err(failed)
    }

    fn divide_by_linear(&self, poly: &DevicePoly<D>, roots: &[Fr]) -> BackendResult<DevicePoly<D>> {
        self.division(poly, roots).map_err(failed)
    }

    fn synchronize(&self) -> BackendResult<()> {
        // A download runs after everything queued and the host waits for it.
        read_word(&*self.device, &self.vanishing, 0).map(drop).map_err(failed)
    }
}

#[cfg(test)]
mod tests {
    use halo2_proofs::halo2curves::bn256::Bn256;
    use halo2_proofs::poly::kzg::commitment::ParamsKZG;
    use halo2_proofs::poly::EvaluationDomain;
    use rand::SeedableRng;
    use zkfarm_kernels_emu::Emu;

    use super::*;

    /// Product scans past 2048 blocks, where the block totals are scanned
    /// in more than one block themselves (above 2^22 elements: grand
    /// products of k = 23 and more), both ways, against a running product.
    #[test]
    fn product_scans_span_two_levels_of_blocks() {
        let params = ParamsKZG::<Bn256>::setup(3, rand_chacha::ChaCha20Rng::seed_from_u64(1));
        let bases = Arc::new(DeviceBases::upload(Arc::new(Emu), &params).unwrap());
        let backend = DeviceBackend::new(Domain::of(&EvaluationDomain::<Fr>::new(4, 3)), bases).unwrap();
        let n = SCAN_SPAN * SCAN_SPAN + 3 * SCAN_SPAN + 5;
        // Small factors, cheap to make; their products are full-width.
        let values: Vec<Fr> = (0..n as u64).map(|i| Fr::from(i % 1000 + 2)).collect();
        for reverse in [false, true] {
            let buf = upload_fr(&*backend.device, &values).unwrap();
            backend.product_scan(&buf, n, reverse).unwrap();
            let got = backend.read(&buf, 0, n).unwrap();
            let mut acc = Fr::ONE;
            let order: Box<dyn Iterator<Item = usize>> = if reverse { Box::new((0..n).rev()) } else { Box::new(0..n) };
            let mut wrong = Vec::new();
            for i in order {
                acc *= values[i];
                if got[i] != acc {
                    wrong.push(i);
                }
            }
            assert!(wrong.is_empty(), "reverse {reverse}: {} of {n} differ, the first at {}", wrong.len(), wrong[0]);
        }
    }
}
