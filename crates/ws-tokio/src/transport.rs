//! The byte streams a connection runs on.

use std::io;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a WebSocket connection can run on.
///
/// [`poll_read_ready`](Self::poll_read_ready) lets the driver wait for input
/// without holding a read buffer, which is what keeps an idle connection
/// small. Streams that cannot tell readiness apart from reading (a TLS
/// stream with its own buffers, an in-memory pipe) keep the default, which
/// reports ready at once: the driver then keeps a small read buffer while it
/// waits.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Polls until a read would make progress: bytes, end of stream or an
    /// error. May report ready spuriously; must not consume input.
    ///
    /// # Errors
    ///
    /// The stream's error, if it has failed.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

impl Transport for tokio::net::TcpStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::TcpStream::poll_read_ready(self, cx)
    }
}

#[cfg(unix)]
impl Transport for tokio::net::UnixStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        tokio::net::UnixStream::poll_read_ready(self, cx)
    }
}

impl Transport for tokio::io::DuplexStream {}

impl<T: Transport> Transport for Box<T> {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

/// TLS streams: rustls buffers decrypted bytes itself, so readiness of the
/// socket says nothing about them; the driver keeps a small read buffer.
#[cfg(feature = "rustls")]
impl<T: Transport> Transport for tokio_rustls::server::TlsStream<T> {}

#[cfg(feature = "rustls")]
impl<T: Transport> Transport for tokio_rustls::client::TlsStream<T> {}
