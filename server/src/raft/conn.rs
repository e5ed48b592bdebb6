//! Peer connections that give up in bounded time, and then drop what they had buffered.
//!
//! ```text
//!   TcpStream ──▶ PeerConn: a read pending with nothing read for READ_IDLE   ─┐
//!                           a write pending with nothing written for         ├▶ TimedOut error, and the
//!                           WRITE_STALL                                     ─┘   socket closes abortively
//!                           dropped after a silence of DROP_SILENCE, or after an error: abortive close too
//! ```
//!
//! Both ends of a peer connection (the dialer's and the peer server's) are wrapped, below TLS. h2 pings
//! every [`PING_INTERVAL`] (both ends send them, also while idle) keep a healthy connection from ever
//! being silent that long, as etcd's stream heartbeats do under its 5 s peer read and write timeouts.
//!
//! Why the close must be abortive: bytes written before a partition sit in the kernel's send buffer.
//! Closed normally, the socket lingers as an orphan and TCP delivers them when the network heals, long
//! after the client that asked for the write has given up (a forwarded proposal would be appended then).
//! With `SO_LINGER` 0 the close sends a reset and discards the buffer; a peer server that has given up
//! answers whatever still arrives with a reset too.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Longest silence of a connection a read waits on (etcd's `ConnReadTimeout`).
pub const READ_IDLE: Duration = Duration::from_secs(5);
/// Longest time a write may make no progress (etcd's `ConnWriteTimeout`).
pub const WRITE_STALL: Duration = Duration::from_secs(5);
/// h2 keep-alive pings on peer connections, from both ends, also on idle connections.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a ping may go unanswered; longer than [`READ_IDLE`], so the read timeout (which closes
/// abortively) is what ends a silent connection.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection dropped after this much silence is taken as given up on (closed abortively).
const DROP_SILENCE: Duration = Duration::from_secs(2);

/// A peer TCP connection with read and write timeouts (see the module docs).
pub struct PeerConn {
    tcp: TcpStream,
    read_idle: Duration,
    write_stall: Duration,
    last_read: Instant,
    read_timer: Pin<Box<Sleep>>,
    /// Armed while a write is pending.
    write_timer: Option<Pin<Box<Sleep>>>,
    /// A timeout fired or an I/O error happened: the socket is closed abortively.
    failed: bool,
}

impl PeerConn {
    pub fn new(tcp: TcpStream) -> PeerConn {
        PeerConn::with_timeouts(tcp, READ_IDLE, WRITE_STALL)
    }

    fn with_timeouts(tcp: TcpStream, read_idle: Duration, write_stall: Duration) -> PeerConn {
        let _ = tcp.set_nodelay(true);
        let now = Instant::now();
        PeerConn {
            tcp,
            read_idle,
            write_stall,
            last_read: now,
            read_timer: Box::pin(tokio::time::sleep_until(now + read_idle)),
            write_timer: None,
            failed: false,
        }
    }

    /// Marks the connection given up on: its close will discard what is buffered.
    fn give_up(&mut self, e: io::Error) -> io::Error {
        if !self.failed {
            self.failed = true;
            if let Err(err) = self.tcp.set_zero_linger() {
                tracing::debug!(%err, "peer connection: cannot set SO_LINGER 0");
            }
            tracing::debug!(peer = ?self.tcp.peer_addr().ok(), error = %e, "peer connection given up");
        }
        e
    }

    fn check<T>(&mut self, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(Err(e)) => Poll::Ready(Err(self.give_up(e))),
            other => other,
        }
    }
}

impl Drop for PeerConn {
    fn drop(&mut self) {
        if !self.failed && self.last_read.elapsed() >= DROP_SILENCE {
            // Dropped by its user after a silence (e.g. an unanswered h2 ping): given up on too.
            let _ = self.tcp.set_zero_linger();
        }
    }
}

impl AsyncRead for PeerConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.tcp).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_read = Instant::now();
                    this.read_timer.as_mut().reset(this.last_read + this.read_idle);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(this.give_up(e))),
            Poll::Pending => match this.read_timer.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    let e = io::Error::new(io::ErrorKind::TimedOut, format!("nothing read for {:?}", this.read_idle));
                    Poll::Ready(Err(this.give_up(e)))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl PeerConn {
    fn poll_write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        f: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match f(Pin::new(&mut self.tcp), cx) {
            Poll::Pending => {
                let stall = self.write_stall;
                let timer = self.write_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.write_timer = None;
                        let e = io::Error::new(io::ErrorKind::TimedOut, format!("nothing written for {stall:?}"));
                        Poll::Ready(Err(self.give_up(e)))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            ready => {
                self.write_timer = None;
                self.check(ready)
            }
        }
    }
}

impl AsyncWrite for PeerConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp, cx| tcp.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp, cx| tcp.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_write_with(cx, |tcp, cx| tcp.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.tcp).poll_shutdown(cx);
        self.check(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SHORT: Duration = Duration::from_millis(200);

    /// A wrapped accepted connection (short timeouts) and the other end.
    async fn pair() -> (PeerConn, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), l.accept());
        (PeerConn::with_timeouts(accepted.unwrap().0, SHORT, SHORT), client.unwrap())
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_is_reset() {
        let (mut conn, mut other) = pair().await;
        other.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(conn.read(&mut buf).await.unwrap(), 2);
        // Nothing more arrives: the read gives up.
        let e = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "nothing read for 200ms");
        // Closed abortively: the other end sees a reset, not an orderly end of stream.
        drop(conn);
        let e = other.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::ConnectionReset);
    }

    #[tokio::test]
    async fn a_stalled_write_times_out() {
        let (mut conn, _other) = pair().await;
        // The other end reads nothing: the socket buffers fill, then the write makes no progress.
        let chunk = vec![0u8; 1 << 16];
        let e = loop {
            if let Err(e) = conn.write_all(&chunk).await {
                break e;
            }
        };
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(e.to_string(), "nothing written for 200ms");
    }

    #[tokio::test]
    async fn a_healthy_connection_closes_in_order() {
        let (mut conn, mut other) = pair().await;
        conn.write_all(b"bye").await.unwrap();
        drop(conn);
        let mut got = Vec::new();
        other.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"bye");
    }
}
