//! IO adapters: a body that counts bytes into a metric, and a stream that
//! closes after a period with no traffic.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Frame;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::files::Body;

// ---------------------------------------------------------------------------
// IO helpers.

/// Counts response body bytes into a metric as they are sent.
pub(crate) struct CountingBody {
    pub(crate) inner: Body,
    pub(crate) counter: prometheus_client::metrics::counter::Counter,
}

impl hyper::body::Body for CountingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, std::io::Error>>> {
        let p = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &p {
            if let Some(d) = f.data_ref() {
                self.counter.inc_by(d.len() as u64);
            }
        }
        p
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Closes a connection on which no byte has moved, in either direction,
/// for `timeout` (idle keep-alive connections, stalled clients).
pub(crate) struct IdleTimeout<T> {
    inner: T,
    timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    last_progress: tokio::time::Instant,
}

impl<T> IdleTimeout<T> {
    pub(crate) fn new(inner: T, timeout: Duration) -> Self {
        IdleTimeout {
            inner,
            timeout,
            sleep: Box::pin(tokio::time::sleep(timeout)),
            last_progress: tokio::time::Instant::now(),
        }
    }

    /// Notes traffic. Cheap on purpose (called per read and write): the
    /// timer is moved only when it fires, see [`Self::check`].
    fn progress(&mut self) {
        self.last_progress = tokio::time::Instant::now();
    }

    /// A write's result: bytes written are progress; a pending write checks
    /// the idle timer.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<usize>>,
    ) -> Poll<std::io::Result<usize>> {
        match r {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx),
        }
    }

    /// The inner stream is Pending: so is this one, unless the connection
    /// has been idle too long (then it fails with `TimedOut`).
    fn pending<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        match self.check(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        loop {
            match self.sleep.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) => {
                    let deadline = self.last_progress + self.timeout;
                    if deadline <= tokio::time::Instant::now() {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "idle timeout",
                        ));
                    }
                    // There was traffic since the timer was set: re-arm it.
                    self.sleep.as_mut().reset(deadline);
                }
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleTimeout<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleTimeout<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    // A peer that stops reading shows up as a flush or shutdown that stays
    // Pending (with write batching, the last bytes of a response are sent
    // there): the idle timer is checked then too.
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.inner).poll_shutdown(cx) {
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }
}

/// Bytes of TLS data gathered before they go to the socket while a bulk
/// body is being written (below rustls' 64 KiB send buffer limit, so a
/// write never finds that buffer full while data is held back).
const BATCH: usize = 48 * 1024;
/// Writes of at least this many bytes between two flushes are bulk data.
const BULK: usize = 8 * 1024;

/// Sends HTTP/2 bulk data to the socket in batches of about [`BATCH`] bytes
/// instead of one `writev` per 16 KiB DATA frame.
///
/// h2 flushes after every DATA frame (the peer's frame size, 16 KiB for
/// curl), and tokio-rustls writes to the socket on every write: a large
/// download became one system call, one TCP segment and one wake-up of the
/// client per 16 KiB. Here writes are encrypted into rustls' own buffer
/// (no extra copy) and sent once [`BATCH`] bytes are waiting. A flush after
/// bulk writes returns at once and *wakes the task*: the data goes out at
/// the latest on the connection's next poll, where hyper and h2 always
/// flush again (that flush, with no write since the last one, is real, as
/// is every flush after small writes, so request/response traffic is sent
/// at once). Reads and shutdown send anything held back first.
pub(crate) struct Batched<T> {
    inner: tokio_rustls::server::TlsStream<T>,
    /// Plaintext bytes accepted by rustls and not yet sent.
    held: usize,
    /// Plaintext bytes written since the last flush.
    since_flush: usize,
}

impl<T> Batched<T> {
    pub(crate) fn new(inner: tokio_rustls::server::TlsStream<T>) -> Self {
        Batched {
            inner,
            held: 0,
            since_flush: 0,
        }
    }
}

/// `std::io::Write` over an `AsyncWrite`, for rustls' `write_tls`.
struct SyncWriter<'a, 'b, T> {
    io: &'a mut T,
    cx: &'a mut Context<'b>,
}

impl<T: AsyncWrite + Unpin> std::io::Write for SyncWriter<'_, '_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> Batched<T> {
    /// Sends everything rustls holds.
    fn send(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let (io, conn) = self.inner.get_mut();
        while conn.wants_write() {
            match conn.write_tls(&mut SyncWriter { io, cx }) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.held = 0;
        Poll::Ready(Ok(()))
    }

    fn write_with(
        &mut self,
        cx: &mut Context<'_>,
        write: impl Fn(&mut rustls::ServerConnection) -> std::io::Result<usize>,
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let n = write(self.inner.get_mut().1)?;
            self.held += n;
            self.since_flush += n;
            if self.held < BATCH && n > 0 {
                return Poll::Ready(Ok(n));
            }
            match self.send(cx) {
                Poll::Ready(Ok(())) if n == 0 => continue,
                Poll::Ready(Ok(())) => return Poll::Ready(Ok(n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if n == 0 => return Poll::Pending,
                Poll::Pending => return Poll::Ready(Ok(n)),
            }
        }
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncRead for Batched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.held > 0 {
            if let Poll::Ready(Err(e)) = self.send(cx) {
                return Poll::Ready(Err(e));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for Batched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.write_with(cx, |c| std::io::Write::write(&mut c.writer(), data))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        if bufs.iter().all(|b| b.is_empty()) {
            return Poll::Ready(Ok(0));
        }
        self.write_with(cx, |c| {
            std::io::Write::write_vectored(&mut c.writer(), bufs)
        })
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let bulk = std::mem::take(&mut self.since_flush) >= BULK;
        if bulk && self.held > 0 {
            // Sent on the next poll at the latest (see the type's doc).
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        std::task::ready!(self.send(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.send(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
