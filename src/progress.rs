//! Progress of long-running work (snapshot create, restore and copy,
//! volume copy). The library only counts bytes through this trait; the
//! CLI decides how to show them (a bar on a terminal, plain lines in logs),
//! and the serving process, which has nobody to show them to, stays silent.

/// Receives progress from any worker thread.
pub trait Progress: Sync {
    /// The work is `total` bytes; called once, before any `advance`.
    fn start(&self, total: u64);
    /// `bytes` more of the total are done (written, skipped as never
    /// written, or found already stored: everything counts).
    fn advance(&self, bytes: u64);
}

/// Shows nothing: for callers without a user to tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Silent;

impl Progress for Silent {
    fn start(&self, _total: u64) {}
    fn advance(&self, _bytes: u64) {}
}
