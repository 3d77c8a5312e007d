//! Where kernels run. The MSM and NTT drivers speak to a [`Backend`]: the
//! CUDA device ([`crate::gpu::Gpu`]) in production, or a CPU emulation of
//! the same kernels (crate `zkfarm-kernels-emu`) that lets every machine
//! check the kernels' logic and the launch sequences that drive them.
//!
//! Device memory is handled as buffers of 32-bit words: field elements are
//! eight little-endian words of Montgomery form, the bytes halo2curves
//! keeps, so host data moves without conversion.

use anyhow::Result;
use halo2curves::bn256::Fr;

use crate::layout::fr_words;

/// One argument of a kernel launch.
pub enum Arg<'a, B> {
    Buf(&'a B),
    U32(u32),
    /// Several buffers as one device array of their addresses (a kernel
    /// parameter `const T* const*`), for kernels that read a varying number
    /// of polynomials. The launch uses every buffer in it, as `Buf` does.
    Bufs(&'a [&'a B]),
}

/// A device that holds word buffers and runs the kernels of
/// [`crate::source::UNITS`] by name.
pub trait Backend: Send + Sync + 'static {
    type Buf: Send + Sync;

    /// A short name for logs and metrics ("cuda", "emu").
    fn name(&self) -> &'static str;

    /// A zeroed buffer of `words` 32-bit words.
    fn alloc(&self, words: usize) -> Result<Self::Buf>;

    /// A buffer of `words` words whose contents are unspecified, for data
    /// that is written before it is read: it saves the zeroing pass.
    fn alloc_uninit(&self, words: usize) -> Result<Self::Buf>;

    /// Copies `src` into `dst` from word `at` on. The copy may overtake
    /// queued work, but not the launches and copies queued before it that
    /// use `dst`, nor anything queued before `dst` was allocated: a new
    /// buffer may reuse the memory of one freed while kernels that use it
    /// were still queued.
    fn upload(&self, src: &[u32], dst: &mut Self::Buf, at: usize) -> Result<()>;

    /// Copies words `at..at + dst.len()` of `src` into `dst`.
    fn download(&self, src: &Self::Buf, at: usize, dst: &mut [u32]) -> Result<()>;

    /// Copies the first `words` words of `src` into `dst`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf, words: usize) -> Result<()>;

    /// Runs `kernel` on `grid` blocks of `block` threads. Launches are
    /// ordered: a launch sees what earlier launches and copies wrote.
    fn launch(&self, kernel: &'static str, grid: u32, block: u32, args: &[Arg<'_, Self::Buf>]) -> Result<()>;

    /// A kernel compiled at run time from generated source.
    type Kernel: Send + Sync;

    /// Compiles `source`, CUDA C++ that may include `field.cuh` and
    /// `curve.cuh`, and returns its kernel `name`: an `extern "C"
    /// __global__` function that does not synchronise its block. Backends
    /// keep what they compiled, by name and source, so the same source
    /// compiles once.
    fn compile_kernel(&self, source: &str, name: &str) -> Result<Self::Kernel>;

    /// Runs a compiled kernel, ordered with the other launches as `launch` is.
    fn launch_compiled(&self, kernel: &Self::Kernel, grid: u32, block: u32, args: &[Arg<'_, Self::Buf>]) -> Result<()>;

    /// The length of a buffer in words.
    fn words(&self, buf: &Self::Buf) -> usize;
}

/// Threads per block for the one-thread-per-element kernels.
pub const BLOCK: u32 = 256;

/// Blocks of `block` threads that cover `threads` threads.
pub fn blocks(threads: usize, block: u32) -> Result<u32> {
    u32::try_from(threads.div_ceil(block as usize)).map_err(|_| anyhow::anyhow!("{threads} threads is too many"))
}

/// Words `at..at + words` of a buffer of `len` words, or an error naming them.
pub fn in_bounds(at: usize, words: usize, len: usize) -> Result<std::ops::Range<usize>> {
    match at.checked_add(words) {
        Some(end) if end <= len => Ok(at..end),
        _ => anyhow::bail!("words {at}..{} lie outside a buffer of {len}", at.saturating_add(words)),
    }
}

/// A new buffer holding `v` (eight words per scalar, Montgomery form).
pub fn upload_fr<B: Backend>(b: &B, v: &[Fr]) -> Result<B::Buf> {
    let words = fr_words(v);
    let mut buf = b.alloc_uninit(words.len())?;
    b.upload(&words, &mut buf, 0)?;
    Ok(buf)
}

/// Reads one word back.
pub fn read_word<B: Backend>(b: &B, buf: &B::Buf, at: usize) -> Result<u32> {
    let mut w = [0u32];
    b.download(buf, at, &mut w)?;
    Ok(w[0])
}
