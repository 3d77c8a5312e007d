//! Exclusive prefix sums of 32-bit words on the device (`msm_scan_block`
//! and `msm_scan_add` in msm.cu): the MSM's counting sort and the lookup
//! permutation's ranks use them.

use anyhow::Result;

use crate::backend::{blocks, Arg, Backend};

/// Threads per block of the scan kernels and entries each thread scans
/// (`SCAN_THREADS` and `SCAN_ITEMS` in msm.cu).
const SCAN_THREADS: u32 = 256;
const SCAN_ITEMS: u32 = 16;

/// In-place exclusive prefix sum of the first `len` words of `data`.
pub fn exclusive_scan_u32<B: Backend>(b: &B, data: &mut B::Buf, len: usize) -> Result<()> {
    let grid = blocks(len, SCAN_THREADS * SCAN_ITEMS)?;
    let mut totals = b.alloc_uninit(grid as usize)?;
    b.launch("msm_scan_block", grid, SCAN_THREADS, &[Arg::Buf(data), Arg::U32(len as u32), Arg::Buf(&totals)])?;
    if grid > 1 {
        exclusive_scan_u32(b, &mut totals, grid as usize)?;
        b.launch("msm_scan_add", grid, SCAN_THREADS, &[Arg::Buf(data), Arg::U32(len as u32), Arg::Buf(&totals)])?;
    }
    Ok(())
}
