//! The reply writer: one task per connection that owns the socket's write
//! half and sends replies in the order they complete.

use std::io::{self, IoSlice};
use std::sync::Arc;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::pool::BufferPool;

/// Replies the writer gathers into one `writev`.
const MAX_BATCH: usize = 64;

/// One encoded reply and the in-flight budget it holds until it is on the wire.
pub(crate) struct Outgoing {
    pub bytes: Vec<u8>,
    pub _permit: OwnedSemaphorePermit,
}

impl AsRef<[u8]> for Outgoing {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Sends replies as they come, gathering whatever is queued into one
/// `writev` so that a burst of small replies costs one system call.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    pool: Arc<BufferPool>,
) -> io::Result<()> {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        write_all_vectored(&mut w, &batch).await?;
        // A TLS stream may keep part of what it accepted in its own buffer
        // (tokio-rustls returns from a write once the socket would block);
        // only a flush pushes that out. Without it the last replies of a
        // burst waited for the next reply, and a client waiting for them
        // hung forever. For a plain socket this is a no-op.
        w.flush().await?;
        // Dropping a reply returns its budget to the reader; its buffer
        // goes back to the pool for the next read.
        for sent in batch.drain(..) {
            pool.give(sent.bytes);
        }
    }
    w.flush().await?;
    w.shutdown().await
}

/// Writes every buffer in order, resuming correctly after short writes.
async fn write_all_vectored<W: AsyncWrite + Unpin, B: AsRef<[u8]>>(
    w: &mut W,
    batch: &[B],
) -> io::Result<()> {
    let (mut i, mut off) = (0usize, 0usize);
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len());
    while i < batch.len() {
        slices.clear();
        slices.push(IoSlice::new(&batch[i].as_ref()[off..]));
        slices.extend(batch[i + 1..].iter().map(|o| IoSlice::new(o.as_ref())));
        let mut n = w.write_vectored(&slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        while i < batch.len() && n >= batch[i].as_ref().len() - off {
            n -= batch[i].as_ref().len() - off;
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
    use std::pin::Pin;
    use std::task::{Context, Poll};

    /// A writer that accepts at most 3 bytes per call, to exercise resumption.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(3);
            self.get_mut().0.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &b[..]);
            self.poll_write(cx, first)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// Like a TLS stream: accepts writes into a buffer that only a flush
    /// moves to the wire.
    #[derive(Clone, Default)]
    struct HoldsUntilFlush {
        held: Arc<std::sync::Mutex<Vec<u8>>>,
        wire: Arc<std::sync::Mutex<Vec<u8>>>,
    }

    impl AsyncWrite for HoldsUntilFlush {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.held.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            let mut held = self.held.lock().unwrap();
            self.wire.lock().unwrap().append(&mut held);
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.poll_flush(cx)
        }
    }

    /// Regression: over TLS the last replies of a burst stayed in the TLS
    /// buffer until the next reply came (nbdcopy hung reading the end of a
    /// disk through `--tls require`).
    #[tokio::test]
    async fn each_batch_reaches_the_wire_without_waiting_for_the_next() {
        let w = HoldsUntilFlush::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let pool = Arc::new(BufferPool::default());
        let task = tokio::spawn(write_loop(w.clone(), rx, pool));
        let budget = Arc::new(tokio::sync::Semaphore::new(1));
        let permit = budget.clone().acquire_owned().await.unwrap();
        tx.send(Outgoing {
            bytes: b"reply".to_vec(),
            _permit: permit,
        })
        .unwrap_or_else(|_| panic!("writer gone"));
        // The sender stays open: no more replies are coming for now.
        let sent = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while w.wire.lock().unwrap().is_empty() {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(sent.is_ok(), "reply held back until the next one");
        assert_eq!(&*w.wire.lock().unwrap(), b"reply");
        drop(tx);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn short_writes_resume_where_they_stopped() {
        let batch: Vec<Vec<u8>> = vec![b"hello".to_vec(), b"-".to_vec(), b"world!!".to_vec()];
        let mut w = Trickle(Vec::new());
        write_all_vectored(&mut w, &batch).await.expect("write");
        assert_eq!(w.0, b"hello-world!!");
    }
}
