//! The CUDA backend: one device, every kernel unit compiled by NVRTC for
//! its architecture at start-up, and two streams. Kernels, device copies
//! and downloads run in order on the compute stream; uploads run on a copy
//! stream of their own, so that a copy into a buffer the device already
//! holds waits only for the work that uses that buffer, not for everything
//! queued before it. cudarc orders the two streams through events it
//! records on every buffer: a kernel waits for the uploads into the buffers
//! it is given, an upload for the kernels that used its buffer and, for a
//! new buffer, for the work queued before its allocation, which may still
//! use its memory (see `alloc_uninit`). An upload into a new buffer, as of
//! one MSM's scalars, therefore waits for the kernels already queued, other
//! workers' included (the farm's workers share one `Gpu`). Large uploads
//! go through two pinned staging buffers in turn, so that filling one (on
//! all host cores) overlaps the DMA from the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use cudarc::driver::result::{device, mem_pool};
use cudarc::driver::sys::CUmemPool_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig, PinnedHostSlice,
    PushKernelArg,
};
use rayon::prelude::*;

use crate::backend::{in_bounds, Arg, Backend};
use crate::source::{compile, KERNELS, UNITS};

/// A CUDA device with the kernels loaded.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    /// Kernels, device copies, downloads and allocations.
    stream: Arc<CudaStream>,
    /// Uploads.
    copy: Arc<CudaStream>,
    functions: HashMap<&'static str, CudaFunction>,
    name: String,
    arch: &'static str,
    /// Pinned buffers for staged uploads, allocated on the first large one.
    staging: Mutex<Vec<PinnedHostSlice<u32>>>,
    /// Kernels compiled from generated source, by name and source.
    compiled: Mutex<HashMap<(String, String), CudaFunction>>,
}

/// Words per pinned staging buffer (16 MiB).
const STAGE_WORDS: usize = 4 << 20;

impl Gpu {
    /// Opens the first device and compiles every unit for it, or says why
    /// it cannot (no driver, no device, no NVRTC, a compile error).
    pub fn open() -> Result<Gpu> {
        let ctx = crate::device::open()?;
        let (major, minor) = ctx.compute_capability().context("reading the compute capability")?;
        let arch = arch_name(major, minor)?;
        let stream = ctx.new_stream().context("creating a CUDA stream")?;
        let copy = ctx.new_stream().context("creating a CUDA stream")?;
        if let Err(e) = keep_freed_memory(&ctx) {
            // Only speed depends on it.
            tracing::warn!("device memory pool left at its defaults: {e:#}");
        }
        let mut functions = HashMap::new();
        for (unit, src) in UNITS {
            let module = ctx.load_module(compile(unit, src, arch)?).with_context(|| format!("loading {unit}.cu"))?;
            let names = KERNELS.iter().find(|(n, _)| n == unit).map_or(&[][..], |(_, k)| *k);
            for name in names {
                let f = module.load_function(name).with_context(|| format!("{unit}.cu has no kernel {name}"))?;
                functions.insert(*name, f);
            }
        }
        let name = ctx.name().unwrap_or_else(|_| "unknown CUDA device".into());
        Ok(Gpu { ctx, stream, copy, functions, name, arch, staging: Mutex::default(), compiled: Mutex::default() })
    }

    /// The device's name and architecture, e.g. "NVIDIA H200 (sm_90)".
    pub fn describe(&self) -> String {
        format!("{} ({})", self.name, self.arch)
    }

    /// The device's memory in bytes.
    pub fn total_memory(&self) -> Result<u64> {
        driver(self.ctx.total_mem(), "memory query").map(|b| b as u64)
    }

    /// The most device memory the stream-ordered pool (every buffer of the
    /// kernels and drivers) has held since the last
    /// [`Gpu::reset_peak_memory`], in bytes.
    pub fn peak_memory(&self) -> Result<u64> {
        let mut value = 0u64;
        // SAFETY: the pool is the device's own, and the attribute is a u64.
        unsafe {
            let pool = driver(device::get_default_mem_pool(self.ctx.cu_device()), "memory pool")?;
            let out = (&mut value as *mut u64).cast();
            driver(
                mem_pool::get_attribute(pool, CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, out),
                "memory pool",
            )?;
        }
        Ok(value)
    }

    /// Starts a new peak from the memory held now.
    pub fn reset_peak_memory(&self) -> Result<()> {
        let mut zero = 0u64;
        // SAFETY: as above; resetting the high-water mark takes a zero u64.
        unsafe {
            let pool = driver(device::get_default_mem_pool(self.ctx.cu_device()), "memory pool")?;
            let value = (&mut zero as *mut u64).cast();
            driver(
                mem_pool::set_attribute(pool, CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH, value),
                "memory pool",
            )
        }
    }

    /// The device memory free now, in bytes (other processes' use counts).
    pub fn free_memory(&self) -> Result<u64> {
        driver(self.ctx.mem_get_info(), "memory query").map(|(free, _)| free as u64)
    }

    /// Copies `src` to `dst[at..]` straight from pageable memory (the
    /// driver stages it itself); returns when `src` may be reused.
    fn upload_pageable(&self, src: &[u32], dst: &mut CudaSlice<u32>, at: usize) -> Result<()> {
        in_bounds(at, src.len(), dst.len())?;
        let mut view = dst.slice_mut(at..at + src.len());
        driver(self.copy.memcpy_htod(src, &mut view), "host-to-device copy")
    }

    /// Copies `src` to `dst[at..]` through the pinned staging buffers: the
    /// host fills one while the device reads the other. Returns when `src`
    /// may be reused; the last copies may still be in flight, and kernels
    /// given `dst` wait for them.
    fn upload_staged(&self, src: &[u32], dst: &mut CudaSlice<u32>, at: usize) -> Result<()> {
        in_bounds(at, src.len(), dst.len())?;
        let mut staging = self.staging.lock().unwrap_or_else(|p| p.into_inner());
        while staging.len() < 2 {
            // SAFETY: the buffer is written in full before any copy reads it.
            staging.push(driver(unsafe { self.ctx.alloc_pinned::<u32>(STAGE_WORDS) }, "pinned allocation")?);
        }
        let whole = src.len() / STAGE_WORDS * STAGE_WORDS;
        for (i, chunk) in src[..whole].chunks_exact(STAGE_WORDS).enumerate() {
            let buf = &mut staging[i % 2];
            // Waits until the copy that last read this buffer is done.
            let host = driver(buf.as_mut_slice(), "pinned buffer")?;
            host.par_chunks_mut(1 << 16).zip(chunk.par_chunks(1 << 16)).for_each(|(d, s)| d.copy_from_slice(s));
            let off = at + i * STAGE_WORDS;
            let mut view = dst.slice_mut(off..off + STAGE_WORDS);
            driver(self.copy.memcpy_htod(&*buf, &mut view), "host-to-device copy")?;
        }
        if whole < src.len() {
            self.upload_pageable(&src[whole..], dst, at + whole)?;
        }
        Ok(())
    }

    /// Waits for all queued work.
    pub fn synchronize(&self) -> Result<()> {
        driver(self.copy.synchronize(), "copy stream")?;
        driver(self.stream.synchronize(), "compute stream")
    }
}

/// Keeps device memory that buffers free in the stream-ordered pool, up
/// to half of the device, instead of handing it back to the driver at every
/// synchronisation (the pool's default): each MSM allocates its working
/// buffers afresh, and reusing pooled memory is far cheaper than mapping it
/// again.
fn keep_freed_memory(ctx: &CudaContext) -> Result<()> {
    if !ctx.has_async_alloc() {
        return Ok(());
    }
    let mut keep = driver(ctx.total_mem(), "memory query")? as u64 / 2;
    // SAFETY: the device is the context's own, and the release threshold
    // attribute takes a u64, which `keep` is.
    unsafe {
        let pool = driver(device::get_default_mem_pool(ctx.cu_device()), "memory pool")?;
        let value = (&mut keep as *mut u64).cast();
        driver(
            mem_pool::set_attribute(pool, CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, value),
            "memory pool",
        )
    }
}

/// The NVRTC architecture to compile for on a device of this compute capability.
fn arch_name(major: i32, minor: i32) -> Result<&'static str> {
    const KNOWN: &[(i32, i32, &str)] = &[
        (7, 0, "sm_70"),
        (7, 5, "sm_75"),
        (8, 0, "sm_80"),
        (8, 6, "sm_86"),
        (8, 9, "sm_89"),
        (9, 0, "sm_90"),
        (10, 0, "sm_100"),
        (12, 0, "sm_120"),
    ];
    // PTX for an architecture runs on every later one, so the newest known
    // architecture not above the device's is the one to compile for.
    match KNOWN.iter().rev().find(|(a, b, _)| (*a, *b) <= (major, minor)) {
        Some((_, _, n)) => Ok(n),
        None => bail!("compute capability {major}.{minor} is too old: the kernels need 7.0 or later"),
    }
}

fn driver<T>(r: Result<T, cudarc::driver::DriverError>, what: &str) -> Result<T> {
    r.map_err(|e| anyhow!("CUDA {what}: {e}"))
}

impl Backend for Gpu {
    type Buf = CudaSlice<u32>;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn alloc(&self, words: usize) -> Result<CudaSlice<u32>> {
        // A zero-length allocation is legal but has no address; one word keeps
        // every buffer a real pointer. The zeroing, on the compute stream,
        // records the buffer's write event, which orders uploads into it
        // after the work queued before it (see `alloc_uninit`).
        driver(self.stream.alloc_zeros::<u32>(words.max(1)), "allocation")
    }

    fn alloc_uninit(&self, words: usize) -> Result<CudaSlice<u32>> {
        // SAFETY: every bit pattern is a valid u32, and callers write the
        // words they read (the trait's contract).
        let mut buf = driver(unsafe { self.stream.alloc::<u32>(words.max(1)) }, "allocation")?;
        // The pool may hand out memory that a buffer freed on the compute
        // stream while kernels queued there still use it: safe on that
        // stream, which runs them first, but cudarc leaves a new buffer's
        // events unrecorded, so an upload on the copy stream would wait for
        // nothing and overwrite the memory under them. It did (issue 15):
        // the first inverse NTT of a size frees the constant w^-1 as soon as
        // the fr_powers launch that reads it is queued, then uploads 1/n,
        // which gets the same memory. From 2^20 elements the data's upload
        // is staged and still holds the copy stream, so the two constants
        // land back to back, before fr_powers runs: it built the inverse
        // twiddles from 1/n. Recording the write event here, as the zeroing
        // in `alloc` does, makes every upload into the buffer wait for the
        // work queued before it.
        let (_, record) = buf.device_ptr_mut(&self.stream);
        drop(record);
        Ok(buf)
    }

    fn upload(&self, src: &[u32], dst: &mut CudaSlice<u32>, at: usize) -> Result<()> {
        if src.len() >= 2 * STAGE_WORDS {
            self.upload_staged(src, dst, at)
        } else {
            self.upload_pageable(src, dst, at)
        }
    }

    fn download(&self, src: &CudaSlice<u32>, at: usize, dst: &mut [u32]) -> Result<()> {
        in_bounds(at, dst.len(), src.len())?;
        let view = src.slice(at..at + dst.len());
        driver(self.stream.memcpy_dtoh(&view, dst), "device-to-host copy")
    }

    fn copy(&self, src: &CudaSlice<u32>, dst: &mut CudaSlice<u32>, words: usize) -> Result<()> {
        in_bounds(0, words, src.len().min(dst.len()))?;
        let from = src.slice(..words);
        let mut to = dst.slice_mut(..words);
        driver(self.stream.memcpy_dtod(&from, &mut to), "device copy")
    }

    fn launch(&self, kernel: &'static str, grid: u32, block: u32, args: &[Arg<'_, CudaSlice<u32>>]) -> Result<()> {
        let f = self.functions.get(kernel).ok_or_else(|| anyhow!("no kernel named {kernel}"))?;
        self.launch_function(f, kernel, grid, block, args)
    }

    type Kernel = (CudaFunction, String);

    fn compile_kernel(&self, source: &str, name: &str) -> Result<(CudaFunction, String)> {
        let key = (name.to_string(), source.to_string());
        if let Some(f) = self.compiled.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok((f.clone(), name.to_string()));
        }
        // NVRTC runs without the lock: launches of kernels already compiled
        // need not wait for it.
        let module =
            self.ctx.load_module(compile(name, source, self.arch)?).with_context(|| format!("loading {name}"))?;
        let f = module.load_function(name).with_context(|| format!("generated source has no kernel {name}"))?;
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        Ok((compiled.entry(key).or_insert(f).clone(), name.to_string()))
    }

    fn launch_compiled(
        &self,
        kernel: &(CudaFunction, String),
        grid: u32,
        block: u32,
        args: &[Arg<'_, CudaSlice<u32>>],
    ) -> Result<()> {
        self.launch_function(&kernel.0, &kernel.1, grid, block, args)
    }

    fn words(&self, buf: &CudaSlice<u32>) -> usize {
        buf.len()
    }
}

impl Gpu {
    /// Launches `f` on the compute stream; `kernel` names it in errors.
    fn launch_function(
        &self,
        f: &CudaFunction,
        kernel: &str,
        grid: u32,
        block: u32,
        args: &[Arg<'_, CudaSlice<u32>>],
    ) -> Result<()> {
        if grid == 0 {
            return Ok(());
        }
        // Address tables first: each buffer in one is read on the compute
        // stream after its writes (device_ptr waits for them), and the
        // guards record the launch as its last read when they drop, after
        // the launch is queued. A table is freed in stream order, after the
        // launch that reads it.
        let mut guards = Vec::new();
        let mut tables = Vec::new();
        for a in args {
            if let Arg::Bufs(list) = a {
                let mut addrs = Vec::with_capacity(list.len().max(1));
                for b in list.iter() {
                    let (ptr, guard) = b.device_ptr(&self.stream);
                    addrs.push(ptr);
                    guards.push(guard);
                }
                if addrs.is_empty() {
                    addrs.push(0);
                }
                tables.push(driver(self.stream.clone_htod(&addrs), "address table")?);
            }
        }
        let mut launch = self.stream.launch_builder(f);
        let mut next_table = tables.iter();
        for a in args {
            match a {
                Arg::Buf(b) => launch.arg(*b),
                Arg::U32(v) => launch.arg(v),
                Arg::Bufs(_) => launch.arg(next_table.next().expect("one table per Bufs argument")),
            };
        }
        let cfg = LaunchConfig { grid_dim: (grid, 1, 1), block_dim: (block, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: every kernel is launched by its driver in this crate with
        // the argument list its CUDA signature declares, and buffers sized
        // for the threads launched (each driver documents its sizes).
        let launched = driver(unsafe { launch.launch(cfg) }.map(|_| ()), kernel);
        drop(launch);
        drop(guards);
        launched
    }
}
