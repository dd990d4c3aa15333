//! The transmission phase: one reader, concurrent execution, one writer.
//!
//! ```text
//!  socket ─▶ reader (this task): header ─▶ validate ─▶ budget permit ─▶ payload
//!                                   │                                   │
//!                                   │ rejected: error reply             ▼ tokio::spawn per request
//!                                   ▼                          device call (inline if short,
//!                              mpsc of encoded replies ◀────── spawn_blocking if long or fsync)
//!                                   │
//!                                   ▼
//!                    writer task: drains the queue, one writev per batch ─▶ socket
//! ```
//!
//! Replies go out in completion order (§ "Transmission": "Replies need not
//! be sent in the same order as requests"). Each request holds a permit of
//! the connection's in-flight budget from before its payload is read until
//! its reply has been written, so a client that pipelines faster than we
//! answer, or stops reading, stops being read from instead of growing memory.

use std::io::{self, IoSlice};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::proto::{self, BlockDescriptor, Command, Errno, ProtoError, RequestHeader, REQUEST_HEADER_LEN};
use super::request::{validate, Request, Session};
use super::server::wait_for_shutdown;
use super::{BASE_ALLOCATION_ID, IN_FLIGHT_BUDGET, WRITE_DISCARD_LIMIT};
use crate::blockdev::{BlockDevice, DeviceError, Extent};

/// Socket read buffer: several 4 KiB write requests per `read(2)`, while a
/// large write payload bypasses it and lands straight in its own buffer.
const READ_BUFFER: usize = 128 << 10;
/// Requests at least this long run on the blocking pool: AES over 256 KiB
/// takes ~100 µs, long enough to stall other connections on a runtime worker.
const BLOCKING_THRESHOLD: u32 = 256 << 10;
/// Budget accounting unit (1 KiB).
const UNIT: usize = 1024;
/// Every request costs this much besides its payload, which also caps the
/// number of requests in flight (about `IN_FLIGHT_BUDGET / 16 KiB` = 4096).
const REQUEST_UNITS: u32 = 16;
/// The whole budget: the payload bytes plus the overhead of two requests,
/// so that two maximum-size requests fit at once. A single request must
/// always fit, or acquiring its permit would never complete.
const BUDGET_UNITS: usize = IN_FLIGHT_BUDGET / UNIT + 2 * REQUEST_UNITS as usize;
/// Most bytes one `NBD_CMD_BLOCK_STATUS` asks the device about. The spec
/// lets us answer less than asked; clients continue where we stopped.
const BLOCK_STATUS_MAX_QUERY: u32 = 256 << 20;
/// Most descriptors in one block status reply (512 KiB on the wire); the
/// spec asks for no more than 2^20.
const MAX_DESCRIPTORS: usize = 1 << 16;
/// Replies the writer gathers into one `writev`.
const MAX_BATCH: usize = 64;

/// Why the transmission phase ended abnormally. A clean end (DISC, EOF,
/// shutdown) is an [`End`], not an error.
#[derive(Debug, thiserror::Error)]
pub enum TransmissionError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed request: {0}")]
    Malformed(#[from] ProtoError),
    #[error("{command} payload of {length} bytes is too large to skip (limit {WRITE_DISCARD_LIMIT}); closing")]
    PayloadTooLarge { command: &'static str, length: u32 },
    #[error("could not send replies: {0}")]
    WriterFailed(io::Error),
}

/// How a healthy transmission phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The client sent `NBD_CMD_DISC`.
    Disconnect,
    /// The client closed the connection without `NBD_CMD_DISC`.
    Eof,
    /// The server is shutting down.
    Shutdown,
}

/// One encoded reply and the budget it holds until it is on the wire.
struct Outgoing {
    bytes: Vec<u8>,
    _permit: OwnedSemaphorePermit,
}

/// What every request task of a connection shares.
struct Ctx {
    device: Arc<dyn BlockDevice>,
    structured: bool,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Runs transmission until the client disconnects, the stream breaks, or
/// `shutdown` turns true. In-flight requests are always answered first
/// (§ "Terminating the transmission phase").
pub(crate) async fn run<R, W>(
    reader: R,
    writer: W,
    device: Arc<dyn BlockDevice>,
    session: Session,
    mut shutdown: watch::Receiver<bool>,
) -> Result<End, TransmissionError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let writer_task = tokio::spawn(write_loop(writer, rx));
    let ctx = Arc::new(Ctx { device, structured: session.structured, tx });
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);

    let result = read_loop(&mut reader, &ctx, &session, &mut shutdown).await;
    // The writer stops once every sender is gone: ours now, each request
    // task's when it has queued its reply.
    drop(ctx);
    let written = match writer_task.await {
        Ok(r) => r,
        Err(e) => Err(io::Error::other(format!("reply writer task failed: {e}"))),
    };
    match (result, written) {
        (Err(e), _) => Err(e),
        (Ok(_), Err(e)) => Err(TransmissionError::WriterFailed(e)),
        (Ok(end), Ok(())) => Ok(end),
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    ctx: &Arc<Ctx>,
    session: &Session,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<End, TransmissionError> {
    let budget = Arc::new(Semaphore::new(BUDGET_UNITS));
    let stop = wait_for_shutdown(shutdown);
    tokio::pin!(stop);
    loop {
        let mut hdr = [0u8; REQUEST_HEADER_LEN];
        tokio::select! {
            biased;
            _ = &mut stop => return Ok(End::Shutdown),
            r = reader.read_exact(&mut hdr) => match r {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(End::Eof),
                Err(e) => return Err(e.into()),
            },
        }
        if ctx.tx.is_closed() {
            // The writer died (client stopped reading?): nothing we do can reach it.
            return Err(TransmissionError::WriterFailed(io::Error::from(io::ErrorKind::BrokenPipe)));
        }
        let h = RequestHeader::decode(&hdr)?;
        match validate(&h, session) {
            Ok(Request::Disc) => return Ok(End::Disconnect),
            Ok(req) => {
                let permit = acquire(&budget, cost_units(&req)).await;
                let payload = match req {
                    Request::Write { len, .. } => {
                        let mut buf = vec![0u8; len as usize];
                        reader.read_exact(&mut buf).await?;
                        buf
                    }
                    _ => Vec::new(),
                };
                spawn_request(ctx.clone(), h.cookie, req, payload, permit);
            }
            Err(rej) => {
                tracing::debug!(cookie = h.cookie, "rejected request: {}", rej.message);
                if h.command == Command::Write {
                    skip_payload(reader, h.length).await?;
                }
                let permit = acquire(&budget, REQUEST_UNITS).await;
                let bytes = error_reply(h.cookie, ctx.structured, rej.errno, &rej.message);
                // A send error means the writer is gone; the next loop notices.
                let _ = ctx.tx.send(Outgoing { bytes, _permit: permit });
            }
        }
    }
}

async fn acquire(budget: &Arc<Semaphore>, units: u32) -> OwnedSemaphorePermit {
    // The semaphore is owned by `read_loop` and never closed.
    budget.clone().acquire_many_owned(units).await.expect("BUG: in-flight budget semaphore closed")
}

/// Budget a request holds: its payload in either direction, plus a fixed
/// overhead. Block status replies are bounded by `MAX_DESCRIPTORS`.
fn cost_units(req: &Request) -> u32 {
    let payload = match *req {
        Request::Read { len, .. } | Request::Write { len, .. } => len as usize,
        Request::BlockStatus { .. } => MAX_DESCRIPTORS * 8,
        _ => 0,
    };
    REQUEST_UNITS + payload.div_ceil(UNIT) as u32
}

/// Reads and drops the payload of a refused write so the stream stays in
/// sync, with a fixed-size buffer (no client-controlled allocation).
async fn skip_payload<R: AsyncRead + Unpin>(reader: &mut BufReader<R>, length: u32) -> Result<(), TransmissionError> {
    if u64::from(length) > WRITE_DISCARD_LIMIT {
        return Err(TransmissionError::PayloadTooLarge { command: Command::Write.name(), length });
    }
    let copied = tokio::io::copy(&mut reader.take(u64::from(length)), &mut tokio::io::sink()).await?;
    if copied < u64::from(length) {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

fn spawn_request(ctx: Arc<Ctx>, cookie: u64, req: Request, payload: Vec<u8>, permit: OwnedSemaphorePermit) {
    let blocking = match req {
        Request::Read { len, .. } | Request::Write { len, fua: false, .. } => len >= BLOCKING_THRESHOLD,
        // fsync, fallocate, or a scan of up to 256 MiB: never on a runtime worker.
        Request::Write { fua: true, .. }
        | Request::Flush
        | Request::Trim { .. }
        | Request::WriteZeroes { .. }
        | Request::BlockStatus { .. } => true,
        Request::Cache { .. } | Request::Disc => false,
    };
    tokio::spawn(async move {
        let device = ctx.device.clone();
        let structured = ctx.structured;
        let bytes = if blocking {
            let job = tokio::task::spawn_blocking(move || execute(device.as_ref(), structured, cookie, req, payload));
            match job.await {
                Ok(bytes) => bytes,
                Err(e) => panicked(cookie, req, structured, &e.to_string()),
            }
        } else {
            match catch_unwind(AssertUnwindSafe(|| execute(device.as_ref(), structured, cookie, req, payload))) {
                Ok(bytes) => bytes,
                Err(_) => panicked(cookie, req, structured, "device panicked"),
            }
        };
        let _ = ctx.tx.send(Outgoing { bytes, _permit: permit });
    });
}

/// A device that panics must not leave the client waiting forever.
fn panicked(cookie: u64, req: Request, structured: bool, what: &str) -> Vec<u8> {
    tracing::error!(cookie, ?req, "request failed: {what}");
    error_reply(cookie, structured, Errno::Io, "internal server error")
}

fn command_of(req: &Request) -> Command {
    match req {
        Request::Read { .. } => Command::Read,
        Request::Write { .. } => Command::Write,
        Request::Flush => Command::Flush,
        Request::Trim { .. } => Command::Trim,
        Request::WriteZeroes { .. } => Command::WriteZeroes,
        Request::Cache { .. } => Command::Cache,
        Request::BlockStatus { .. } => Command::BlockStatus,
        Request::Disc => Command::Disc,
    }
}

/// `DeviceError` to wire errno: the protocol edge is the only place this happens.
fn errno_of(e: &DeviceError) -> Errno {
    match e {
        DeviceError::OutOfRange { .. } => Errno::Inval,
        DeviceError::ReadOnly => Errno::Perm,
        DeviceError::NoSpace(_) => Errno::NoSpc,
        DeviceError::Io(_) => Errno::Io,
    }
}

/// An error reply in the form the connection negotiated. With structured
/// replies errors always go as `NBD_REPLY_TYPE_ERROR` with a message (and a
/// read must not get a simple reply at all, § "Structured reply chunk message").
fn error_reply(cookie: u64, structured: bool, errno: Errno, message: &str) -> Vec<u8> {
    if structured {
        let mut out = Vec::with_capacity(proto::STRUCTURED_HEADER_LEN + 6 + message.len());
        proto::encode_error_chunk(&mut out, cookie, errno, message);
        out
    } else {
        proto::simple_reply(cookie, Some(errno)).to_vec()
    }
}

fn ok_reply(cookie: u64) -> Vec<u8> {
    proto::simple_reply(cookie, None).to_vec()
}

/// Runs one validated request against the device and encodes its reply.
/// Synchronous: the caller decides which thread it blocks.
fn execute(dev: &dyn BlockDevice, structured: bool, cookie: u64, req: Request, mut payload: Vec<u8>) -> Vec<u8> {
    let result = match req {
        Request::Read { offset, len } => return read_reply(dev, structured, cookie, offset, len),
        Request::BlockStatus { offset, len, req_one } => {
            return block_status_reply(dev, structured, cookie, offset, len, req_one)
        }
        Request::Write { len: 0, .. } | Request::Trim { len: 0, .. } | Request::WriteZeroes { len: 0, .. } => Ok(()),
        Request::Write { offset, fua, .. } => dev.write_at(offset, &mut payload, fua),
        Request::Flush => dev.flush(),
        Request::Trim { offset, len, fua } => dev.trim(offset, u64::from(len), fua),
        Request::WriteZeroes { offset, len, may_trim, fua } => dev.write_zeroes(offset, u64::from(len), may_trim, fua),
        // A hint we may ignore (§ NBD_CMD_CACHE); reads come from the page cache anyway.
        Request::Cache { .. } | Request::Disc => Ok(()),
    };
    match result {
        Ok(()) => ok_reply(cookie),
        Err(e) => device_error_reply(command_of(&req), cookie, structured, &e),
    }
}

fn device_error_reply(cmd: Command, cookie: u64, structured: bool, e: &DeviceError) -> Vec<u8> {
    let message = format!("{}: {e}", cmd.name());
    tracing::debug!(cookie, "request failed: {message}");
    error_reply(cookie, structured, errno_of(e), &message)
}

/// The data is read straight into the reply buffer, after room left for the
/// header, so a read costs one allocation and no copy.
fn read_reply(dev: &dyn BlockDevice, structured: bool, cookie: u64, offset: u64, len: u32) -> Vec<u8> {
    let hdr = if structured { proto::OFFSET_DATA_HEADER_LEN } else { proto::SIMPLE_REPLY_LEN };
    if len == 0 {
        // Nothing to describe: a structured reply must not carry an empty
        // data chunk, so it is a lone NONE chunk.
        let mut out = Vec::new();
        if structured {
            proto::encode_none_chunk(&mut out, cookie);
        } else {
            out.extend_from_slice(&proto::simple_reply(cookie, None));
        }
        return out;
    }
    let mut buf = vec![0u8; hdr + len as usize];
    if let Err(e) = dev.read_at(offset, &mut buf[hdr..]) {
        return device_error_reply(Command::Read, cookie, structured, &e);
    }
    if structured {
        buf[..hdr].copy_from_slice(&proto::offset_data_header(cookie, offset, len));
    } else {
        buf[..hdr].copy_from_slice(&proto::simple_reply(cookie, None));
    }
    buf
}

fn block_status_reply(dev: &dyn BlockDevice, structured: bool, cookie: u64, offset: u64, len: u32, req_one: bool) -> Vec<u8> {
    let query = len.min(BLOCK_STATUS_MAX_QUERY);
    match dev.block_status(offset, u64::from(query)) {
        Ok(extents) => {
            let d = descriptors(&extents, query, req_one);
            let mut out = Vec::new();
            proto::encode_block_status_chunk(&mut out, cookie, BASE_ALLOCATION_ID, &d);
            out
        }
        Err(e) => device_error_reply(Command::BlockStatus, cookie, structured, &e),
    }
}

/// Turns the device's extents into `base:allocation` descriptors for a
/// query of `len` bytes: consecutive, nonzero, merged when their flags
/// match, never beyond `len`, at most [`MAX_DESCRIPTORS`], exactly one with
/// `REQ_ONE`. A device that reports nothing usable gets one extent of
/// status 0, which the spec says is always safe (§ NBD_CMD_BLOCK_STATUS).
fn descriptors(extents: &[Extent], len: u32, req_one: bool) -> Vec<BlockDescriptor> {
    let mut out: Vec<BlockDescriptor> = Vec::new();
    let mut left = len;
    for e in extents {
        if left == 0 || out.len() >= MAX_DESCRIPTORS {
            break;
        }
        // Within `left`, so within u32.
        let length = e.length.min(u64::from(left)) as u32;
        if length == 0 {
            continue;
        }
        let flags = if e.hole { proto::STATE_HOLE } else { 0 } | if e.zero { proto::STATE_ZERO } else { 0 };
        left -= length;
        match out.last_mut() {
            Some(last) if last.flags == flags => last.length += length,
            _ => out.push(BlockDescriptor { length, flags }),
        }
    }
    if out.is_empty() {
        out.push(BlockDescriptor { length: len, flags: 0 });
    }
    if req_one {
        out.truncate(1);
    }
    out
}

/// Sends replies as they come, gathering whatever is queued into one
/// `writev` so that a burst of small replies costs one system call.
async fn write_loop<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Outgoing>) -> io::Result<()> {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_all_vectored(&mut w, &batch).await?;
        // Dropping the replies returns their budget to the reader.
        batch.clear();
    }
    w.flush().await?;
    w.shutdown().await
}

async fn write_all_vectored<W: AsyncWrite + Unpin>(w: &mut W, batch: &[Outgoing]) -> io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len());
    while i < batch.len() {
        slices.clear();
        slices.push(IoSlice::new(&batch[i].bytes[off..]));
        slices.extend(batch[i + 1..].iter().map(|o| IoSlice::new(&o.bytes)));
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while i < batch.len() && n >= batch[i].bytes.len() - off {
            n -= batch[i].bytes.len() - off;
            off = 0;
            i += 1;
        }
        off += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(length: u64, hole: bool) -> Extent {
        Extent { length, hole, zero: hole }
    }

    #[test]
    fn descriptors_merge_clip_and_honour_req_one() {
        let e = [ext(4096, false), ext(4096, false), ext(8192, true), ext(1 << 20, false)];
        let d = descriptors(&e, 10_000, false);
        assert_eq!(
            d,
            [BlockDescriptor { length: 8192, flags: 0 }, BlockDescriptor { length: 1808, flags: 3 }]
        );
        assert_eq!(descriptors(&e, 10_000, true), [BlockDescriptor { length: 8192, flags: 0 }]);
        assert_eq!(descriptors(&e, 100, true), [BlockDescriptor { length: 100, flags: 0 }]);
    }

    #[test]
    fn descriptors_fall_back_to_status_zero_when_device_reports_nothing() {
        assert_eq!(descriptors(&[], 512, false), [BlockDescriptor { length: 512, flags: 0 }]);
        assert_eq!(descriptors(&[ext(0, true)], 512, true), [BlockDescriptor { length: 512, flags: 0 }]);
    }

    #[test]
    fn cost_is_bounded_by_the_budget() {
        let max = cost_units(&Request::Read { offset: 0, len: super::super::MAX_PAYLOAD });
        assert!(2 * max as usize <= BUDGET_UNITS, "two max-size requests fit");
        let bs = cost_units(&Request::BlockStatus { offset: 0, len: u32::MAX, req_one: false });
        assert!((bs as usize) < BUDGET_UNITS);
        assert_eq!(cost_units(&Request::Flush), REQUEST_UNITS);
    }
}
