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

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, BufReader};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::execute::{error_reply, execute, panicked, MAX_DESCRIPTORS};
use super::pool::BufferPool;
use super::proto::{Command, ProtoError, RequestHeader, REQUEST_HEADER_LEN};
use super::request::{validate, Request, Session};
use super::server::wait_for_shutdown;
use super::writer::{write_loop, Outgoing};
use super::{IN_FLIGHT_BUDGET, WRITE_DISCARD_LIMIT};
use crate::blockdev::BlockDevice;

/// Socket read buffer: several 4 KiB write requests per `read(2)`, while a
/// large write payload bypasses it and lands straight in its own buffer.
const READ_BUFFER: usize = 128 << 10;
/// Reads and writes at least this long run on the blocking pool; shorter
/// ones run on the runtime worker that read them, right after the reader
/// yields, while the data is still in that core's cache. Measured with fio
/// (1 MiB writes, QD8): handing every 256 KiB+ request to the blocking pool
/// cost ~50% more CPU per byte (cross-core copies, thread wake-ups) and lost
/// throughput. Above 4 MiB a request (with AES, over a millisecond) would
/// hold a worker too long for other connections' small requests.
const BLOCKING_THRESHOLD: u32 = 4 << 20;
/// Budget accounting unit (1 KiB).
const UNIT: usize = 1024;
/// Every request costs this much besides its payload, which also caps the
/// number of requests in flight (about `IN_FLIGHT_BUDGET / 16 KiB` = 4096).
const REQUEST_UNITS: u32 = 16;
/// The whole budget: the payload bytes plus the overhead of two requests,
/// so that two maximum-size requests fit at once. A single request must
/// always fit, or acquiring its permit would never complete.
const BUDGET_UNITS: usize = IN_FLIGHT_BUDGET / UNIT + 2 * REQUEST_UNITS as usize;

/// Why the transmission phase ended abnormally. A clean end (DISC, EOF,
/// shutdown) is not an error.
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

/// Aborts a task when dropped; a no-op once the task has finished.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every request task of a connection shares.
struct Ctx {
    device: Arc<dyn BlockDevice>,
    pool: Arc<BufferPool>,
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
    let pool = Arc::new(BufferPool::default());
    let writer_task = tokio::spawn(write_loop(writer, rx, pool.clone()));
    // If this connection's task is dropped (forced shutdown), the writer must
    // not linger on a client that stopped reading.
    let _abort_writer = AbortOnDrop(writer_task.abort_handle());
    let ctx = Arc::new(Ctx {
        device,
        pool,
        structured: session.structured,
        tx,
    });
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
            return Err(TransmissionError::WriterFailed(io::Error::from(
                io::ErrorKind::BrokenPipe,
            )));
        }
        let h = RequestHeader::decode(&hdr)?;
        match validate(&h, session) {
            Ok(Request::Disc) => return Ok(End::Disconnect),
            Ok(req) => {
                let permit = acquire(&budget, cost_units(&req)).await;
                let payload = match req {
                    Request::Write { len, .. } => read_payload(reader, &ctx.pool, len).await?,
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
                let _ = ctx.tx.send(Outgoing {
                    bytes,
                    _permit: permit,
                });
            }
        }
    }
}

async fn acquire(budget: &Arc<Semaphore>, units: u32) -> OwnedSemaphorePermit {
    // The semaphore is owned by `read_loop` and never closed.
    budget
        .clone()
        .acquire_many_owned(units)
        .await
        .expect("BUG: in-flight budget semaphore closed")
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

/// Reads a write payload into a buffer of exactly `len` bytes, reused from
/// the pool when possible.
async fn read_payload<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    pool: &BufferPool,
    len: u32,
) -> Result<Vec<u8>, TransmissionError> {
    let mut buf = pool.take(len as usize);
    reader.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Reads and drops the payload of a refused write so the stream stays in
/// sync, with a fixed-size buffer (no client-controlled allocation).
async fn skip_payload<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    length: u32,
) -> Result<(), TransmissionError> {
    if u64::from(length) > WRITE_DISCARD_LIMIT {
        return Err(TransmissionError::PayloadTooLarge {
            command: Command::Write.name(),
            length,
        });
    }
    let copied =
        tokio::io::copy(&mut reader.take(u64::from(length)), &mut tokio::io::sink()).await?;
    if copied < u64::from(length) {
        return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
    }
    Ok(())
}

fn spawn_request(
    ctx: Arc<Ctx>,
    cookie: u64,
    req: Request,
    payload: Vec<u8>,
    permit: OwnedSemaphorePermit,
) {
    let blocking = match req {
        Request::Read { len, .. }
        | Request::Write {
            len, fua: false, ..
        } => len >= BLOCKING_THRESHOLD,
        // fsync, fallocate, or a scan of up to 256 MiB: never on a runtime worker.
        Request::Write { fua: true, .. }
        | Request::Flush
        | Request::Trim { .. }
        | Request::WriteZeroes { .. }
        | Request::BlockStatus { .. } => true,
        Request::Cache { .. } | Request::Disc => false,
    };
    tokio::spawn(async move {
        let bytes = if blocking {
            let c = ctx.clone();
            let job = tokio::task::spawn_blocking(move || run_one(&c, cookie, req, payload));
            match job.await {
                Ok(bytes) => bytes,
                Err(e) => panicked(cookie, req, ctx.structured, &e.to_string()),
            }
        } else {
            match catch_unwind(AssertUnwindSafe(|| run_one(&ctx, cookie, req, payload))) {
                Ok(bytes) => bytes,
                Err(_) => panicked(cookie, req, ctx.structured, "device panicked"),
            }
        };
        let _ = ctx.tx.send(Outgoing {
            bytes,
            _permit: permit,
        });
    });
}

/// Executes a request and recycles its payload buffer.
fn run_one(ctx: &Ctx, cookie: u64, req: Request, mut payload: Vec<u8>) -> Vec<u8> {
    let dev = ctx.device.as_ref();
    let bytes = execute(dev, &ctx.pool, ctx.structured, cookie, req, &mut payload);
    ctx.pool.give(payload);
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_is_bounded_by_the_budget() {
        let max = cost_units(&Request::Read {
            offset: 0,
            len: super::super::MAX_PAYLOAD,
        });
        assert!(
            2 * max as usize <= BUDGET_UNITS,
            "two max-size requests fit"
        );
        let bs = cost_units(&Request::BlockStatus {
            offset: 0,
            len: u32::MAX,
            req_one: false,
        });
        assert!((bs as usize) < BUDGET_UNITS);
        assert_eq!(cost_units(&Request::Flush), REQUEST_UNITS);
    }
}
