//! The API's listener: hyper HTTP/1.1 with a header-read timeout (which also bounds a
//! keep-alive connection waiting idle for its next request), a connection cap kept below the
//! descriptor limit, and hyper's own error answers (400, 431) rewritten into the API's JSON
//! error shape.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};

/// The listener's limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Time a client has to send a request's headers, and the longest a kept-alive
    /// connection may wait idle for its next request.
    pub header_read_timeout: Duration,
    /// Most connections open at once; beyond it a connection is answered 503 and closed.
    pub max_connections: usize,
    /// Time in-flight requests get on shutdown.
    pub grace: Duration,
}

/// The JSON error answer for a status hyper or the cap produces on its own.
pub fn json_error(status: u16, reason: &str, code: &str, message: &str) -> Vec<u8> {
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`, then drains for the grace period.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut over_cap_logged = false;
    let stop = async move {
        let _ = shutdown.wait_for(|s| *s).await;
    };
    tokio::pin!(stop);
    loop {
        let (stream, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors or similar: back off instead of spinning.
                    tracing::warn!(error = %e, "api accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if !over_cap_logged {
                tracing::warn!(%remote, cap = limits.max_connections, "api connection cap reached: answering 503");
                over_cap_logged = true;
            }
            let answer = json_error(
                503,
                "Service Unavailable",
                "unavailable",
                "too many connections to the API; try again",
            );
            let _ = stream.try_write(&answer);
            continue;
        };
        if slots.available_permits() > limits.max_connections / 2 {
            over_cap_logged = false;
        }
        let service = TowerToHyperService::new(app.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_header_size(32 * 1024)
            .max_buf_size(64 * 1024);
        let conn = http.serve_connection(TokioIo::new(JsonErrors::new(stream)), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%remote, error = %e, "api connection ended");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(limits.grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(grace = ?limits.grace, "in-flight requests did not finish within the grace period");
    }
}

/// A TCP stream whose writes are watched for hyper's own error answers (a response head with
/// an empty body and status 400 or 431, which the API's handlers never produce): those are
/// replaced by the API's JSON error.
struct JsonErrors {
    inner: TcpStream,
    /// A replacement answer still to write, and how much of it is written.
    pending: Option<(Vec<u8>, usize)>,
}

impl JsonErrors {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            pending: None,
        }
    }

    /// The JSON answer replacing hyper's bare one, if `buf` is one.
    fn replacement(buf: &[u8]) -> Option<Vec<u8>> {
        let head = std::str::from_utf8(buf.get(..buf.len().min(512))?).ok()?;
        let empty = head.contains("content-length: 0\r\n");
        if head.starts_with("HTTP/1.1 431 ") && empty {
            Some(json_error(
                431,
                "Request Header Fields Too Large",
                "too_large",
                "request headers are too large",
            ))
        } else if head.starts_with("HTTP/1.1 400 ") && empty {
            Some(json_error(
                400,
                "Bad Request",
                "invalid",
                "malformed HTTP request",
            ))
        } else {
            None
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done == bytes.len() {
                self.pending = None;
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        if let Some(replacement) = Self::replacement(buf) {
            // hyper's bytes count as written; ours go out instead (now or on the flush that
            // hyper always does next).
            self.pending = Some((replacement, 0));
            if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                return Poll::Ready(Err(e));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
