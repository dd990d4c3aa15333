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

    #[tokio::test]
    async fn short_writes_resume_where_they_stopped() {
        let batch: Vec<Vec<u8>> = vec![b"hello".to_vec(), b"-".to_vec(), b"world!!".to_vec()];
        let mut w = Trickle(Vec::new());
        write_all_vectored(&mut w, &batch).await.expect("write");
        assert_eq!(w.0, b"hello-world!!");
    }
}
