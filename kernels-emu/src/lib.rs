//! zkfarm's CUDA kernels run on the CPU.
//!
//! The units of `kernels/cuda` are compiled as host C++ (see
//! `emu/cuda_host.h`) and launched thread by thread, so the same MSM and NTT
//! drivers that run on a GPU run here, on every machine, against
//! halo2curves. This checks the kernels' arithmetic and indexing and the
//! drivers' launch sequences; it does not check what only a GPU shows:
//! races between threads (they run one at a time, except in kernels that
//! synchronise), PTX-only code paths (`__CUDA_ARCH__`), or speed.
//!
//! It does model the ordering the GPU backend gives (`kernels/src/gpu.rs`),
//! at its least forgiving, so that a driver or backend that relies on an
//! order the device does not promise fails here too:
//! - kernels, device copies and fills form one queue, the compute stream,
//!   and run as late as they may: when a download needs their results, or
//!   an upload must wait for them;
//! - uploads, the copy stream, happen at once, after only the queued work
//!   their buffer's events name (the launches that used the buffer, and the
//!   work queued before its allocation), as cudarc orders them on the GPU;
//! - memory freed while work is queued goes back to a pool, and the next
//!   allocation of the same size takes it at once, as CUDA's stream-ordered
//!   pool hands memory freed on a stream to that stream's next allocation
//!   before the work queued ahead of the free has run.
//!
//! An upload that does not wait for queued kernels still using its memory
//! therefore overwrites what they read, every time, not only when a GPU's
//! timing lines up (issue 15: the H200 inverse NTT from 2^20 on).

use std::alloc::Layout;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};

use anyhow::{bail, Result};
use zkfarm_kernels::backend::{in_bounds, Arg, Backend};

mod compiled;
pub use compiled::EmuKernel;

extern "C" {
    fn zkfarm_emu_launch(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *const u64,
        kinds: *const c_char,
        n: usize,
        run: i32,
    ) -> i32;
}

/// The CPU emulation backend. Every `Emu` is the same emulated device,
/// with one queue, as the workers of a farm share one `Gpu`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emu;

/// Host memory standing in for a device buffer. Kernels write through the
/// pointer while the host holds shared references, as on a device.
pub struct EmuBuf {
    ptr: *mut u32,
    len: usize,
    /// The queue positions an upload into this buffer waits for (0: none),
    /// as cudarc's read and write events: the last queued launch or copy
    /// that used the buffer, and the last queued work that wrote it or
    /// preceded its allocation.
    read: AtomicU64,
    write: AtomicU64,
}

// SAFETY: the buffer is plain memory owned by this value; launches that
// write to it are serialised by the emulator.
unsafe impl Send for EmuBuf {}
unsafe impl Sync for EmuBuf {}

/// What an uninitialised buffer holds here: not zero, so that a kernel
/// that reads words nobody wrote gets results a test notices (as bucket
/// indices they are far out of range, as points off the curve).
const POISON: u32 = 0xa5a5_a5a5;

/// Buffers are aligned as the CUDA allocator aligns them; the kernels'
/// element types rely on it (field elements are 16-byte aligned).
const ALIGN: usize = 256;

/// A block of host memory of some number of words.
struct Block(*mut u32);

// SAFETY: a block is plain memory; who may touch it is the device's business.
unsafe impl Send for Block {}

fn layout(len: usize) -> Result<Layout> {
    let bytes = len.checked_mul(4).ok_or_else(|| anyhow::anyhow!("{len} words is too many"))?;
    Ok(Layout::from_size_align(bytes, ALIGN)?)
}

/// Compute-stream work, run in order when something waits for it.
enum Op {
    /// `tables` holds the address arrays that `Bufs` arguments point at.
    Launch {
        name: CString,
        grid: u32,
        block: u32,
        slots: Vec<u64>,
        kinds: CString,
        tables: Vec<Vec<u64>>,
    },
    /// A kernel compiled at run time.
    Call {
        kernel: std::sync::Arc<EmuKernel>,
        grid: u32,
        block: u32,
        slots: Vec<u64>,
        tables: Vec<Vec<u64>>,
    },
    Fill {
        at: Block,
        len: usize,
        word: u32,
    },
    Copy {
        from: Block,
        to: Block,
        len: usize,
    },
}

impl Op {
    fn run(self) -> Result<()> {
        match self {
            Op::Launch { name, grid, block, slots, kinds, tables: _tables } => {
                // SAFETY: checked against the kernel's signature when queued;
                // the buffers' memory outlives the queue (freed memory waits
                // in the pool until the queue is empty).
                let rc = unsafe {
                    zkfarm_emu_launch(name.as_ptr(), grid, block, slots.as_ptr(), kinds.as_ptr(), slots.len(), 1)
                };
                if rc != 0 {
                    bail!("the emulator failed on {} ({rc})", name.to_string_lossy());
                }
            }
            // SAFETY: the slots were checked against the kernel when
            // queued, and their memory outlives the queue, as above.
            Op::Call { kernel, grid, block, slots, tables: _tables } => unsafe { kernel.run(&slots, grid, block) },
            // SAFETY: both hold `len` words (checked when queued) that live
            // until the queue is empty.
            Op::Fill { at, len, word } => unsafe { std::slice::from_raw_parts_mut(at.0, len) }.fill(word),
            Op::Copy { from, to, len } => unsafe { std::ptr::copy(from.0, to.0, len) },
        }
        Ok(())
    }
}

/// The emulated device: its compute-stream queue and its memory pool.
struct Device {
    /// Queued work, oldest first; the front is position `done + 1`.
    queue: VecDeque<Op>,
    /// Positions run so far.
    done: u64,
    /// Memory freed while work was queued, by length in words. The queue
    /// may still use it, so it is released only once the queue is empty;
    /// until then an allocation of the same length takes it, the most
    /// recently freed first.
    pool: HashMap<usize, Vec<Block>>,
}

static DEVICE: LazyLock<Mutex<Device>> =
    LazyLock::new(|| Mutex::new(Device { queue: VecDeque::new(), done: 0, pool: HashMap::new() }));

fn device() -> MutexGuard<'static, Device> {
    DEVICE.lock().unwrap_or_else(|p| p.into_inner())
}

impl Device {
    /// The position of the last queued work.
    fn queued(&self) -> u64 {
        self.done + self.queue.len() as u64
    }

    fn enqueue(&mut self, op: Op) -> u64 {
        self.queue.push_back(op);
        self.queued()
    }

    /// Runs the queue up to and including position `to`.
    fn run_to(&mut self, to: u64) -> Result<()> {
        while self.done < to {
            let Some(op) = self.queue.pop_front() else { break };
            self.done += 1;
            op.run()?;
        }
        if self.queue.is_empty() {
            for (len, blocks) in self.pool.drain() {
                for b in blocks {
                    // SAFETY: allocated by `take` with this layout, and no
                    // queued work is left to use it.
                    unsafe { std::alloc::dealloc(b.0.cast(), layout(len).expect("was allocated")) };
                }
            }
        }
        Ok(())
    }

    /// Memory for `len` words: freed memory of that length, which queued
    /// work may still use (true), or new memory that no one uses (false).
    fn take(&mut self, len: usize) -> Result<(*mut u32, bool)> {
        if let Some(b) = self.pool.get_mut(&len).and_then(Vec::pop) {
            return Ok((b.0, true));
        }
        // SAFETY: the layout has a non-zero size (len >= 1).
        let ptr = unsafe { std::alloc::alloc(layout(len)?) }.cast::<u32>();
        if ptr.is_null() {
            bail!("the emulator cannot allocate {len} words");
        }
        Ok((ptr, false))
    }
}

impl EmuBuf {
    fn new(ptr: *mut u32, len: usize, write: u64) -> EmuBuf {
        EmuBuf { ptr, len, read: AtomicU64::new(0), write: AtomicU64::new(write) }
    }

    /// What an upload into this buffer must wait for.
    fn pending(&self) -> u64 {
        self.read.load(Ordering::Relaxed).max(self.write.load(Ordering::Relaxed))
    }

    fn slice(&self) -> &[u32] {
        // SAFETY: ptr holds len words for the life of self; callers hold the
        // device, so no queued work runs while the host reads.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn slice_mut(&mut self) -> &mut [u32] {
        // SAFETY: as above, and &mut self excludes other host access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for EmuBuf {
    fn drop(&mut self) {
        let mut d = device();
        if d.queue.is_empty() {
            if let Ok(layout) = layout(self.len) {
                // SAFETY: ptr was allocated by `take` with this layout, and
                // no queued work uses it.
                unsafe { std::alloc::dealloc(self.ptr.cast(), layout) };
            }
        } else {
            // Freed in stream order: queued work may still use it.
            d.pool.entry(self.len).or_default().push(Block(self.ptr));
        }
    }
}

impl Backend for Emu {
    type Buf = EmuBuf;

    fn name(&self) -> &'static str {
        "emu"
    }

    fn alloc(&self, words: usize) -> Result<EmuBuf> {
        let len = words.max(1);
        let mut d = device();
        let (ptr, _) = d.take(len)?;
        // Zeroed in stream order, as cudarc's memset after the allocation,
        // which is also the write an upload waits for.
        let write = d.enqueue(Op::Fill { at: Block(ptr), len, word: 0 });
        Ok(EmuBuf::new(ptr, len, write))
    }

    fn alloc_uninit(&self, words: usize) -> Result<EmuBuf> {
        let len = words.max(1);
        let mut d = device();
        let (ptr, reused) = d.take(len)?;
        if reused {
            // Poisoned in stream order, after the work that used the memory.
            d.enqueue(Op::Fill { at: Block(ptr), len, word: POISON });
        } else {
            // SAFETY: new memory of len words that nothing else holds.
            unsafe { std::slice::from_raw_parts_mut(ptr, len) }.fill(POISON);
        }
        // An upload into the buffer waits for the work queued before its
        // allocation, which may still use the memory: `Gpu::alloc_uninit`
        // records the same event.
        Ok(EmuBuf::new(ptr, len, d.queued()))
    }

    fn upload(&self, src: &[u32], dst: &mut EmuBuf, at: usize) -> Result<()> {
        let r = in_bounds(at, src.len(), dst.len)?;
        // The copy stream waits for the buffer's events, and for nothing else.
        let mut d = device();
        d.run_to(dst.pending())?;
        dst.slice_mut()[r].copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &EmuBuf, at: usize, dst: &mut [u32]) -> Result<()> {
        let r = in_bounds(at, dst.len(), src.len)?;
        // On the compute stream, after everything queued, and the host waits.
        let mut d = device();
        let to = d.queued();
        d.run_to(to)?;
        dst.copy_from_slice(&src.slice()[r]);
        Ok(())
    }

    fn copy(&self, src: &EmuBuf, dst: &mut EmuBuf, words: usize) -> Result<()> {
        in_bounds(0, words, src.len.min(dst.len))?;
        let at = device().enqueue(Op::Copy { from: Block(src.ptr), to: Block(dst.ptr), len: words });
        src.read.fetch_max(at, Ordering::Relaxed);
        dst.write.fetch_max(at, Ordering::Relaxed);
        Ok(())
    }

    fn launch(&self, kernel: &'static str, grid: u32, block: u32, args: &[Arg<'_, EmuBuf>]) -> Result<()> {
        let (slots, kinds, tables) = slots(args)?;
        let name = CString::new(kernel)?;
        // SAFETY: with `run` 0 the launcher only checks the name, arity and
        // argument kinds against the kernel's signature.
        let rc =
            unsafe { zkfarm_emu_launch(name.as_ptr(), grid, block, slots.as_ptr(), kinds.as_ptr(), slots.len(), 0) };
        match rc {
            0 => {}
            1 => bail!("the emulator has no kernel named {kernel}"),
            2 => bail!("{kernel} launched with {} arguments, not as many as it declares", args.len()),
            3 => bail!("{kernel} launched with a buffer where it takes a value, or the reverse"),
            other => bail!("the emulator failed on {kernel} ({other})"),
        }
        let at = device().enqueue(Op::Launch { name, grid, block, slots, kinds, tables });
        mark_read(args, at);
        Ok(())
    }

    type Kernel = std::sync::Arc<EmuKernel>;

    fn compile_kernel(&self, source: &str, name: &str) -> Result<std::sync::Arc<EmuKernel>> {
        compiled::compile(source, name)
    }

    fn launch_compiled(
        &self,
        kernel: &std::sync::Arc<EmuKernel>,
        grid: u32,
        block: u32,
        args: &[Arg<'_, EmuBuf>],
    ) -> Result<()> {
        let (slots, kinds, tables) = slots(args)?;
        kernel.check(&kinds)?;
        let at = device().enqueue(Op::Call { kernel: kernel.clone(), grid, block, slots, tables });
        mark_read(args, at);
        Ok(())
    }

    fn words(&self, buf: &EmuBuf) -> usize {
        buf.len
    }
}

/// A launch's arguments as 64-bit slots, their kinds ('p' a buffer, 'u' a
/// value), and the address arrays that `Bufs` arguments point at.
fn slots(args: &[Arg<'_, EmuBuf>]) -> Result<(Vec<u64>, CString, Vec<Vec<u64>>)> {
    let mut slots = Vec::with_capacity(args.len());
    let mut kinds = Vec::with_capacity(args.len() + 1);
    let mut tables: Vec<Vec<u64>> = Vec::new();
    for a in args {
        match a {
            Arg::Buf(b) => {
                slots.push(b.ptr as u64);
                kinds.push(b'p');
            }
            Arg::U32(v) => {
                slots.push(u64::from(*v));
                kinds.push(b'u');
            }
            Arg::Bufs(list) => {
                // The Vec's heap data does not move when the Vec does.
                let table: Vec<u64> = list.iter().map(|b| b.ptr as u64).chain([0]).collect();
                slots.push(table.as_ptr() as u64);
                kinds.push(b'p');
                tables.push(table);
            }
        }
    }
    Ok((slots, CString::new(kinds)?, tables))
}

/// As cudarc does for buffers passed by shared reference (the drivers pass
/// every buffer so): a later upload waits for the launch queued at `at`.
fn mark_read(args: &[Arg<'_, EmuBuf>], at: u64) {
    for a in args {
        match a {
            Arg::Buf(b) => {
                b.read.fetch_max(at, Ordering::Relaxed);
            }
            Arg::Bufs(list) => {
                for b in list.iter() {
                    b.read.fetch_max(at, Ordering::Relaxed);
                }
            }
            Arg::U32(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2curves::bn256::Fr;
    use halo2curves::ff::Field;
    use zkfarm_kernels::backend::upload_fr;
    use zkfarm_kernels::layout::read_fr_into;

    /// The tests here watch the one queue and pool; they take turns.
    fn alone() -> MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `data *= c` over n elements, frees `c` while the launch is
    /// still queued and uploads `k` into a new buffer of the same size,
    /// which takes c's memory; `tamper` runs on the new buffer before the
    /// upload. Returns what `data` holds then.
    fn scale_then_reuse(x: Fr, c: Fr, k: Fr, tamper: impl FnOnce(&EmuBuf)) -> Fr {
        let _turn = alone();
        let e = Emu;
        let data = upload_fr(&e, &[x]).unwrap();
        let cb = upload_fr(&e, &[c]).unwrap();
        e.launch("fr_scale", 1, 1, &[Arg::Buf(&data), Arg::Buf(&cb), Arg::U32(1)]).unwrap();
        let old = cb.ptr;
        drop(cb);
        let mut kb = e.alloc_uninit(8).unwrap();
        assert_eq!(kb.ptr, old, "freed memory goes to the next allocation of its size while work is queued");
        tamper(&kb);
        e.upload(zkfarm_kernels::layout::fr_words(&[k]).as_ref(), &mut kb, 0).unwrap();
        let mut out = [Fr::ZERO];
        read_fr_into(&mut out, |w| e.download(&data, 0, w)).unwrap();
        out[0]
    }

    #[test]
    fn an_upload_into_reused_memory_waits_for_the_kernels_queued_before() {
        let (x, c, k) = (Fr::from(3), Fr::from(5), Fr::from(7));
        assert_eq!(scale_then_reuse(x, c, k, |_| {}), x * c);
        // The model does show the fault it guards against: with the new
        // buffer's allocation event left unrecorded, as cudarc leaves it
        // (issue 15), the upload overtakes the queued launch, which then
        // reads k in place of c.
        let unordered = scale_then_reuse(x, c, k, |b| b.write.store(0, Ordering::Relaxed));
        assert_eq!(unordered, x * k);
    }

    #[test]
    fn an_upload_waits_for_the_launches_that_use_its_buffer() {
        let _turn = alone();
        let e = Emu;
        let mut data = upload_fr(&e, &[Fr::from(3)]).unwrap();
        let c = upload_fr(&e, &[Fr::from(5)]).unwrap();
        e.launch("fr_scale", 1, 1, &[Arg::Buf(&data), Arg::Buf(&c), Arg::U32(1)]).unwrap();
        // Overwrites the scaled value, not the input the launch has yet to read.
        e.upload(zkfarm_kernels::layout::fr_words(&[Fr::from(11)]).as_ref(), &mut data, 0).unwrap();
        let mut out = [Fr::ZERO];
        read_fr_into(&mut out, |w| e.download(&data, 0, w)).unwrap();
        assert_eq!(out[0], Fr::from(11));
        let mut out = [Fr::ZERO];
        read_fr_into(&mut out, |w| e.download(&c, 0, w)).unwrap();
        assert_eq!(out[0], Fr::from(5));
    }

    #[test]
    fn launches_are_checked_against_the_kernel_signature() {
        let _turn = alone();
        let e = Emu;
        let buf = e.alloc(8).unwrap();
        let err = |args: &[Arg<'_, EmuBuf>]| e.launch("fr_scale", 1, 1, args).unwrap_err().to_string();
        assert!(err(&[Arg::Buf(&buf), Arg::Buf(&buf)]).contains("2 arguments"));
        assert!(err(&[Arg::Buf(&buf), Arg::U32(1), Arg::U32(1)]).contains("a buffer where it takes a value"));
        let e2 = e.launch("no_such_kernel", 1, 1, &[]).unwrap_err().to_string();
        assert!(e2.contains("no kernel named no_such_kernel"), "{e2}");
        // The right signature runs.
        e.launch("fr_scale", 1, 1, &[Arg::Buf(&buf), Arg::Buf(&buf), Arg::U32(1)]).unwrap();
    }

    #[test]
    fn compiled_kernels_run_in_queue_order_and_check_their_arguments() {
        let _turn = alone();
        let e = Emu;
        let source = r#"
#include "field.cuh"
extern "C" __global__ void times_plus(Fr* data, const Fr* k, u32 n) {
    u32 i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    Fr x = data[i];
    data[i] = Fr::add(Fr::mul(x, *k), *k);
}
"#;
        let kernel = e.compile_kernel(source, "times_plus").unwrap();
        let values: Vec<Fr> = (0..37u64).map(Fr::from).collect();
        let mut data = upload_fr(&e, &values).unwrap();
        let k = upload_fr(&e, &[Fr::from(9)]).unwrap();
        // Two blocks of 32 cover 37 elements; the second launch sees the first's writes.
        for _ in 0..2 {
            e.launch_compiled(&kernel, 2, 32, &[Arg::Buf(&data), Arg::Buf(&k), Arg::U32(37)]).unwrap();
        }
        // An upload into a buffer the queued launches use waits for them.
        e.upload(zkfarm_kernels::layout::fr_words(&[Fr::from(5)]).as_ref(), &mut data, 0).unwrap();
        let mut out = vec![Fr::ZERO; 37];
        read_fr_into(&mut out, |w| e.download(&data, 0, w)).unwrap();
        let nine = Fr::from(9);
        let want: Vec<Fr> = values.iter().map(|&x| (x * nine + nine) * nine + nine).collect();
        assert_eq!(out[0], Fr::from(5));
        assert_eq!(out[1..], want[1..]);
        // The same source is compiled once.
        assert!(std::sync::Arc::ptr_eq(&kernel, &e.compile_kernel(source, "times_plus").unwrap()));
        let err = e.launch_compiled(&kernel, 1, 1, &[Arg::Buf(&data), Arg::U32(1)]).unwrap_err().to_string();
        assert!(err.contains("2 arguments; it declares 3"), "{err}");
        let err = e.launch_compiled(&kernel, 1, 1, &[Arg::Buf(&data), Arg::U32(1), Arg::U32(1)]).unwrap_err();
        assert!(err.to_string().contains("a buffer where it takes a value"), "{err}");
        let err = e.compile_kernel("this is not C++", "broken").unwrap_err().to_string();
        assert!(err.contains("failed on the generated kernel broken"), "{err}");
        assert!(e.compile_kernel(source, "no such name").is_err());
    }

    #[test]
    fn copies_outside_a_buffer_are_refused() {
        let _turn = alone();
        let e = Emu;
        let mut buf = e.alloc(4).unwrap();
        assert!(e.upload(&[1, 2, 3], &mut buf, 2).unwrap_err().to_string().contains("outside a buffer of 4"));
        let mut out = [0u32; 2];
        e.upload(&[7, 9], &mut buf, 2).unwrap();
        e.download(&buf, 2, &mut out).unwrap();
        assert_eq!(out, [7, 9]);
        assert!(e.download(&buf, 3, &mut out).is_err());
    }
}
