//! The HTTP/1 server: an accept loop over hyper with the edge limits of
//! `[server]` (README "Edge limits"):
//!
//! - at most `max_connections` connections are served at once; while that
//!   many are open, the loop stops accepting and new ones wait in the kernel's
//!   listen backlog (they are answered as soon as a slot frees up);
//! - a connection must deliver a complete request head within
//!   `header_timeout` of opening, or of its first byte after a keep-alive
//!   pause, else it is closed (slow-header clients, "slowloris");
//! - a keep-alive connection without a request for `idle_timeout` is closed.
//!
//! The deadlines live in the connection's I/O ([`Deadlines`]): hyper's own
//! header timer also runs while a kept-alive connection is idle, so it cannot
//! tell the two limits apart. A request being handled has no deadline here:
//! `request_timeout` (the router's) bounds it, slow bodies included.
//!
//! Graceful shutdown: stop accepting, let every connection finish the request
//! it is handling (idle ones close at once), then return.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

use crate::config::ServerConfig;

/// Serves `app` on `listener` until `shutdown` completes, then lets open
/// connections finish their requests and returns.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let slots = Arc::new(Semaphore::new(max));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    // The deadlines are ours (see the module doc); hyper's header timer would
    // also cut idle keep-alive connections at the header timeout.
    builder.header_read_timeout(None);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break, // never closed
            },
        };
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_failed(&e).await;
                    continue;
                }
            },
        };
        // Answers are small: send them at once rather than wait for an ACK.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            stream,
            app.clone(),
            builder.clone(),
            limits.clone(),
            stop_rx.clone(),
            slot,
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    // Every connection holds a slot until it closes.
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
    Ok(())
}

/// A failed `accept`: a connection that went away before it was accepted is
/// nothing; anything else (out of file descriptors…) is logged, and the loop
/// pauses a moment instead of spinning on it.
async fn accept_failed(e: &io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::warn!(error = %e, "could not accept a connection; pausing");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Serves one connection until it closes, or until shutdown lets it finish.
async fn connection(
    stream: TcpStream,
    app: Router,
    builder: http1::Builder,
    limits: ServerConfig,
    mut stop: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    let phase = Arc::new(Mutex::new(Phase::new()));
    let io = Deadlines::new(stream, phase.clone(), &limits);
    let service = Tracked { app, phase };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        true = async { stop.wait_for(|stopping| *stopping).await.is_ok() } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Deadlines, resets and malformed requests end here; nothing to answer.
        tracing::debug!(error = %e, "connection closed");
    }
}

/// Where a connection is: between requests (and since when), or handling some.
#[derive(Debug)]
struct Phase {
    state: State,
    /// Woken when the last request finishes, so the idle deadline starts
    /// even if hyper is not reading at that moment.
    reader: Option<Waker>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Waiting for a request head.
    Awaiting {
        /// When the connection opened, or the last request finished.
        since: Instant,
        /// When the first byte of the next head arrived.
        first_byte: Option<Instant>,
        /// No request yet on this connection.
        fresh: bool,
    },
    /// This many requests are being handled.
    Busy(usize),
}

impl Phase {
    fn new() -> Self {
        Phase {
            state: State::Awaiting {
                since: Instant::now(),
                first_byte: None,
                fresh: true,
            },
            reader: None,
        }
    }

    /// When the connection is closed if nothing changes.
    fn deadline(&self, header: Duration, idle: Duration) -> Option<Instant> {
        match self.state {
            State::Busy(_) => None,
            State::Awaiting { since, fresh, .. } if fresh => Some(since + header),
            State::Awaiting {
                first_byte: Some(at),
                ..
            } => Some(at + header),
            State::Awaiting { since, .. } => Some(since + idle),
        }
    }

    fn bytes_arrived(&mut self) {
        if let State::Awaiting {
            first_byte: first @ None,
            ..
        } = &mut self.state
        {
            *first = Some(Instant::now());
        }
    }

    fn request_started(&mut self) {
        self.state = match self.state {
            State::Busy(n) => State::Busy(n + 1),
            State::Awaiting { .. } => State::Busy(1),
        };
    }

    fn request_finished(&mut self) {
        self.state = match self.state {
            State::Busy(n) if n > 1 => State::Busy(n - 1),
            _ => State::Awaiting {
                since: Instant::now(),
                first_byte: None,
                fresh: false,
            },
        };
        if let Some(reader) = self.reader.take() {
            reader.wake();
        }
    }
}

fn lock(phase: &Mutex<Phase>) -> std::sync::MutexGuard<'_, Phase> {
    // A panic while holding this lock leaves plain data behind: keep using it.
    phase.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The router, marking the connection busy while a request is handled.
#[derive(Clone)]
struct Tracked {
    app: Router,
    phase: Arc<Mutex<Phase>>,
}

/// Marks the request finished when dropped (answered or cancelled).
struct Busy(Arc<Mutex<Phase>>);

impl Drop for Busy {
    fn drop(&mut self) {
        lock(&self.0).request_finished();
    }
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        lock(&self.phase).request_started();
        let busy = Busy(self.phase.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request.map(axum::body::Body::new)).await;
            drop(busy);
            response
        })
    }
}

/// A TCP stream whose reads fail with `TimedOut` once the connection's
/// header or idle deadline has passed; hyper then closes it.
struct Deadlines {
    stream: TcpStream,
    phase: Arc<Mutex<Phase>>,
    header: Duration,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Deadlines {
    fn new(stream: TcpStream, phase: Arc<Mutex<Phase>>, limits: &ServerConfig) -> Self {
        Deadlines {
            stream,
            phase,
            header: limits.header_timeout,
            idle: limits.idle_timeout,
            timer: Box::pin(tokio::time::sleep(limits.header_timeout)),
        }
    }
}

impl AsyncRead for Deadlines {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    lock(&this.phase).bytes_arrived();
                }
                return Poll::Ready(Ok(()));
            }
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => {}
        }
        let deadline = {
            let mut phase = lock(&this.phase);
            phase.reader = Some(cx.waker().clone());
            phase.deadline(this.header, this.idle)
        };
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no complete request head in time (header_timeout or idle_timeout)",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncWrite for Deadlines {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_the_phase() {
        let mut phase = Phase::new();
        let opened = Instant::now();
        // A new connection owes a whole head within the header timeout.
        assert_eq!(phase.deadline(HEADER, IDLE), Some(opened + HEADER));
        phase.bytes_arrived();
        assert_eq!(phase.deadline(HEADER, IDLE), Some(opened + HEADER));
        phase.request_started();
        phase.request_started();
        assert_eq!(phase.deadline(HEADER, IDLE), None, "busy: no deadline");
        phase.request_finished();
        assert_eq!(phase.deadline(HEADER, IDLE), None, "still one in flight");
        tokio::time::advance(Duration::from_secs(3)).await;
        phase.request_finished();
        let idle_from = Instant::now();
        assert_eq!(phase.deadline(HEADER, IDLE), Some(idle_from + IDLE));
        // The next head's first byte starts the header clock.
        tokio::time::advance(Duration::from_secs(30)).await;
        phase.bytes_arrived();
        let head_from = Instant::now();
        assert_eq!(phase.deadline(HEADER, IDLE), Some(head_from + HEADER));
    }
}
