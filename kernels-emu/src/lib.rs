//! zkfarm's CUDA kernels run on the CPU.
//!
//! The units of `kernels/cuda` are compiled as host C++ (see
//! `emu/cuda_host.h`) and launched thread by thread, so the same MSM and NTT
//! drivers that run on a GPU run here, on every machine, against
//! halo2curves. This checks the kernels' arithmetic and indexing and the
//! drivers' launch sequences; it does not check what only a GPU shows:
//! races between threads (they run one at a time, except in kernels that
//! synchronise), PTX-only code paths (`__CUDA_ARCH__`), or speed.

use std::ffi::{c_char, CString};

use anyhow::{anyhow, bail, ensure, Result};
use zkfarm_kernels::backend::{Arg, Backend};

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

impl EmuBuf {
    fn new(len: usize) -> EmuBuf {
        let b: Box<[u32]> = vec![0u32; len].into_boxed_slice();
        EmuBuf { len, ptr: Box::into_raw(b).cast::<u32>() }
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
        // SAFETY: ptr and len came from a boxed slice in `new`.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(self.ptr, self.len)) });
    }
}

fn range(len: usize, at: usize, words: usize) -> Result<std::ops::Range<usize>> {
    let end = at.checked_add(words).filter(|&e| e <= len);
    end.map(|e| at..e).ok_or_else(|| anyhow!("words {at}..{} outside a buffer of {len}", at + words))
}

impl Backend for Emu {
    type Buf = EmuBuf;

    fn name(&self) -> &'static str {
        "emu"
    }

    fn alloc(&self, words: usize) -> Result<EmuBuf> {
        Ok(EmuBuf::new(words.max(1)))
    }

    fn upload(&self, src: &[u32], dst: &mut EmuBuf, at: usize) -> Result<()> {
        let r = range(dst.len, at, src.len())?;
        dst.slice_mut()[r].copy_from_slice(src);
        Ok(())
    }

    fn download(&self, src: &EmuBuf, at: usize, dst: &mut [u32]) -> Result<()> {
        let r = range(src.len, at, dst.len())?;
        dst.copy_from_slice(&src.slice()[r]);
        Ok(())
    }

    fn copy(&self, src: &EmuBuf, dst: &mut EmuBuf, words: usize) -> Result<()> {
        ensure!(words <= src.len && words <= dst.len, "copy of {words} words between shorter buffers");
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
