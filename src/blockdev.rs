//! The seam between the NBD server and what it serves.
//!
//! `nbd` speaks only to [`BlockDevice`]; `volume::Volume` implements it with
//! encryption, holes and read-modify-write, and [`MemDevice`] implements it
//! in memory for protocol tests. Offsets and lengths arriving here have
//! already been validated against [`BlockDevice::size`] by the protocol layer.

use std::sync::Mutex;

/// What a device operation can fail with. The NBD layer maps each variant to
/// an errno on the wire (`EIO`, `ENOSPC`, `EPERM`, `EINVAL`).
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The range `offset..offset+len` reaches past the end of the device.
    #[error("range {offset}+{len} is past the end of the device ({size} bytes)")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    /// The device is exported read-only.
    #[error("the device is read-only")]
    ReadOnly,
    /// The backing store is full (`ENOSPC`).
    #[error("no space left on the backing store: {0}")]
    NoSpace(#[source] std::io::Error),
    /// Any other I/O failure of the backing store.
    #[error("I/O error on the backing store: {0}")]
    Io(#[source] std::io::Error),
}

impl From<std::io::Error> for DeviceError {
    fn from(e: std::io::Error) -> Self {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull {
            DeviceError::NoSpace(e)
        } else {
            DeviceError::Io(e)
        }
    }
}

/// One run of a device's allocation map, as NBD `base:allocation` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub length: u64,
    /// Never written, trimmed or zeroed: no storage behind it.
    pub hole: bool,
    /// Reads as zeros.
    pub zero: bool,
}

/// A random-access block device. All methods take `&self` and may be called
/// from many threads at once; implementations use positional I/O, never a
/// shared seek position.
pub trait BlockDevice: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The unit the device encrypts (or otherwise stores) in: reads and
    /// writes aligned to it avoid read-modify-write.
    fn sector_size(&self) -> u32;
    fn is_read_only(&self) -> bool;
    /// Fills `buf` with the bytes at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Writes `data` at `offset`. `data` is scratch space: implementations may
    /// transform it in place (encrypt), so its contents afterwards are
    /// unspecified. With `fua`, the data is durable before this returns.
    fn write_at(&self, offset: u64, data: &mut [u8], fua: bool) -> Result<(), DeviceError>;
    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), DeviceError>;
    /// Discards a range: afterwards it reads as zeros.
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError>;
    /// Zeroes a range; with `may_trim` the range may be deallocated.
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        may_trim: bool,
        fua: bool,
    ) -> Result<(), DeviceError>;
    /// Allocation map of `offset..offset+len`: consecutive extents starting at
    /// `offset`, covering at least one byte and at most `len` bytes.
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, DeviceError>;
}

/// An in-memory device for protocol tests: a plain byte vector with a lock.
/// Sectors of all zeros report as holes.
#[derive(Debug)]
pub struct MemDevice {
    data: Mutex<Vec<u8>>,
    read_only: bool,
}

impl MemDevice {
    pub fn new(size: usize, read_only: bool) -> Self {
        MemDevice {
            data: Mutex::new(vec![0; size]),
            read_only,
        }
    }

    fn check(&self, offset: u64, len: u64) -> Result<(usize, usize), DeviceError> {
        let size = self.size();
        match offset.checked_add(len) {
            Some(end) if end <= size => Ok((offset as usize, end as usize)),
            _ => Err(DeviceError::OutOfRange { offset, len, size }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // A poisoned lock means a test thread panicked; the bytes are still usable.
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Granularity of [`MemDevice`] allocation reports.
const MEM_SECTOR: u64 = 4096;

impl BlockDevice for MemDevice {
    fn size(&self) -> u64 {
        self.lock().len() as u64
    }
    fn sector_size(&self) -> u32 {
        MEM_SECTOR as u32
    }
    fn is_read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        let (s, e) = self.check(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.lock()[s..e]);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &mut [u8], _fua: bool) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let (s, e) = self.check(offset, data.len() as u64)?;
        self.lock()[s..e].copy_from_slice(data);
        Ok(())
    }
    fn flush(&self) -> Result<(), DeviceError> {
        Ok(())
    }
    fn trim(&self, offset: u64, len: u64, fua: bool) -> Result<(), DeviceError> {
        self.write_zeroes(offset, len, true, fua)
    }
    fn write_zeroes(
        &self,
        offset: u64,
        len: u64,
        _may_trim: bool,
        _fua: bool,
    ) -> Result<(), DeviceError> {
        if self.read_only {
            return Err(DeviceError::ReadOnly);
        }
        let (s, e) = self.check(offset, len)?;
        self.lock()[s..e].fill(0);
        Ok(())
    }
    fn block_status(&self, offset: u64, len: u64) -> Result<Vec<Extent>, DeviceError> {
        let (s, e) = self.check(offset, len)?;
        let data = self.lock();
        let mut out: Vec<Extent> = Vec::new();
        let mut pos = s as u64;
        while pos < e as u64 {
            let next = ((pos / MEM_SECTOR + 1) * MEM_SECTOR).min(e as u64);
            let zero = data[pos as usize..next as usize].iter().all(|&b| b == 0);
            match out.last_mut() {
                Some(last) if last.zero == zero => last.length += next - pos,
                _ => out.push(Extent {
                    length: next - pos,
                    hole: zero,
                    zero,
                }),
            }
            pos = next;
        }
        Ok(out)
    }
}
