//! zkfarm's CUDA kernels run on the CPU.
//!
//! The units of `kernels/cuda` are compiled as host C++ (see
//! `emu/cuda_host.h`) and launched thread by thread, so the same MSM and NTT
//! drivers that run on a GPU run here, on every machine, against
//! halo2curves. This checks the kernels' arithmetic and indexing and the
//! drivers' launch sequences; it does not check what only a GPU shows:
//! races between threads (they run one at a time, except in kernels that
//! synchronise), PTX-only code paths (`__CUDA_ARCH__`), or speed.

use std::alloc::Layout;
use std::ffi::{c_char, CString};

use anyhow::{bail, Result};
use zkfarm_kernels::backend::{in_bounds, Arg, Backend};

extern "C" {
    fn zkfarm_emu_launch(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *const u64,
        kinds: *const c_char,
        n: usize,
    ) -> i32;
}

/// The CPU emulation backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct Emu;

/// Host memory standing in for a device buffer. Kernels write through the
/// pointer while the host holds shared references, as on a device.
pub struct EmuBuf {
    ptr: *mut u32,
    len: usize,
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

impl EmuBuf {
    /// `len` (at least one) words, each set to `fill`.
    fn new(len: usize, fill: u32) -> Result<EmuBuf> {
        let layout = Self::layout(len)?;
        // SAFETY: the layout has a non-zero size (len >= 1).
        let ptr = unsafe { std::alloc::alloc(layout) }.cast::<u32>();
        if ptr.is_null() {
            bail!("the emulator cannot allocate {len} words");
        }
        // SAFETY: ptr holds len words, written here before any read.
        unsafe { std::slice::from_raw_parts_mut(ptr, len) }.fill(fill);
        Ok(EmuBuf { ptr, len })
    }

    fn layout(len: usize) -> Result<Layout> {
        let bytes = len.checked_mul(4).ok_or_else(|| anyhow::anyhow!("{len} words is too many"))?;
        Ok(Layout::from_size_align(bytes, ALIGN)?)
    }

    fn slice(&self) -> &[u32] {
        // SAFETY: ptr holds len words for the life of self; no launch runs
        // while the host reads (launches are synchronous here).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn slice_mut(&mut self) -> &mut [u32] {
        // SAFETY: as above, and &mut self excludes other host access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for EmuBuf {
    fn drop(&mut self) {
        if let Ok(layout) = Self::layout(self.len) {
            // SAFETY: ptr was allocated in `new` with this layout.
            unsafe { std::alloc::dealloc(self.ptr.cast(), layout) };
        }
    }
}

impl Backend for Emu {
    type Buf = EmuBuf;

    fn name(&self) -> &'static str {
        "emu"
    }

    fn alloc(&self, words: usize) -> Result<EmuBuf> {
        EmuBuf::new(words.max(1), 0)
    }

    fn alloc_uninit(&self, words: usize) -> Result<EmuBuf> {
        EmuBuf::new(words.max(1), POISON)
    }

    fn upload(&self, src: &[u32], dst: &mut EmuBuf, at: usize) -> Result<()> {
        let r = in_bounds(at, src.len(), dst.len)?;
        dst.slice_mut()[r].copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &EmuBuf, at: usize, dst: &mut [u32]) -> Result<()> {
        let r = in_bounds(at, dst.len(), src.len)?;
        dst.copy_from_slice(&src.slice()[r]);
        Ok(())
    }

    fn copy(&self, src: &EmuBuf, dst: &mut EmuBuf, words: usize) -> Result<()> {
        in_bounds(0, words, src.len.min(dst.len))?;
        dst.slice_mut()[..words].copy_from_slice(&src.slice()[..words]);
        Ok(())
    }

    fn launch(&self, kernel: &'static str, grid: u32, block: u32, args: &[Arg<'_, EmuBuf>]) -> Result<()> {
        let mut slots = Vec::with_capacity(args.len());
        let mut kinds = Vec::with_capacity(args.len() + 1);
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
            }
        }
        let name = CString::new(kernel)?;
        let kinds = CString::new(kinds)?;
        // SAFETY: the launcher checks the name, arity and argument kinds
        // against the kernel's signature; the pointers are live buffers.
        let rc = unsafe { zkfarm_emu_launch(name.as_ptr(), grid, block, slots.as_ptr(), kinds.as_ptr(), slots.len()) };
        match rc {
            0 => Ok(()),
            1 => bail!("the emulator has no kernel named {kernel}"),
            2 => bail!("{kernel} launched with {} arguments, not as many as it declares", args.len()),
            3 => bail!("{kernel} launched with a buffer where it takes a value, or the reverse"),
            other => bail!("the emulator failed on {kernel} ({other})"),
        }
    }

    fn words(&self, buf: &EmuBuf) -> usize {
        buf.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launches_are_checked_against_the_kernel_signature() {
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
    fn copies_outside_a_buffer_are_refused() {
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
