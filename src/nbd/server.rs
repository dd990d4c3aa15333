//! Listeners and connections: accept, limit, time out handshakes, hand
//! each connection to the handshake and then to transmission, and shut
//! down cleanly.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::handshake::{self, HandshakeError, Negotiated, Outcome};
use super::request::Session;
use super::transmission::{self, End, TransmissionError};
use super::ServerConfig;

/// After shutdown is signalled, how long open connections get to finish
/// the requests they have in flight before they are dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Pause after a failed `accept` (e.g. `EMFILE`) so that a persistent error
/// does not spin the accept loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A byte stream the server can speak NBD over. Transmission reads and
/// writes concurrently, so a connection must split into independent
/// halves: sockets split for free (`into_split`); a TLS stream uses
/// `tokio::io::split` (`nbd::tls`).
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    type Reader: AsyncRead + Unpin + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;
    fn into_halves(self) -> (Self::Reader, Self::Writer);
}

impl Connection for TcpStream {
    type Reader = tokio::net::tcp::OwnedReadHalf;
    type Writer = tokio::net::tcp::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        self.into_split()
    }
}

impl Connection for UnixStream {
    type Reader = tokio::net::unix::OwnedReadHalf;
    type Writer = tokio::net::unix::OwnedWriteHalf;
    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        self.into_split()
    }
}

/// In-memory connections, for tests.
impl Connection for tokio::io::DuplexStream {
    type Reader = tokio::io::ReadHalf<tokio::io::DuplexStream>;
    type Writer = tokio::io::WriteHalf<tokio::io::DuplexStream>;
    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}

/// Why one connection ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("transmission failed: {0}")]
    Transmission(#[from] TransmissionError),
}

/// Serves NBD on a TCP listener until `shutdown` becomes `true`, then waits
/// (up to 30 s) for open connections to answer what they have in flight.
/// A `shutdown` sender that is dropped without sending `true` never stops
/// the server.
pub async fn serve_tcp(
    listener: TcpListener,
    cfg: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    serve(Listener::Tcp(listener), cfg, shutdown).await
}

/// Serves NBD on a Unix socket listener; see [`serve_tcp`].
pub async fn serve_unix(
    listener: UnixListener,
    cfg: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    serve(Listener::Unix(listener), cfg, shutdown).await
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Listener {
    async fn accept(&self) -> io::Result<(Accepted, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                // Replies are batched by the writer already; Nagle would
                // only delay the last one of each batch.
                s.set_nodelay(true)?;
                Ok((Accepted::Tcp(s), addr.to_string()))
            }
            Listener::Unix(l) => {
                let (s, _) = l.accept().await?;
                Ok((Accepted::Unix(s), "unix socket".to_owned()))
            }
        }
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`], so
/// that a flood of connections cannot flood the log too.
#[derive(Default)]
struct Refusals {
    last_logged: Option<std::time::Instant>,
    unlogged: u64,
}

/// See [`Refusals`].
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

impl Refusals {
    fn refused(&mut self, peer: &str, max: usize) {
        self.unlogged += 1;
        let now = std::time::Instant::now();
        if self
            .last_logged
            .is_some_and(|t| now.duration_since(t) < REFUSAL_LOG_INTERVAL)
        {
            return;
        }
        tracing::warn!(
            %peer,
            refused = self.unlogged,
            "refusing connections: {max} already open (raise --max-connections to allow more)"
        );
        self.last_logged = Some(now);
        self.unlogged = 0;
    }
}

/// Resolves when `shutdown` is `true`; never, if its sender is gone.
pub(crate) async fn wait_for_shutdown(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|&stop| stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

async fn serve(
    listener: Listener,
    cfg: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) -> io::Result<()> {
    let limit = Arc::new(Semaphore::new(cfg.max_connections));
    let mut refusals = Refusals::default();
    let next_id = AtomicU64::new(1);
    let mut conns = JoinSet::new();
    let mut stop_rx = shutdown.clone();
    let stop = wait_for_shutdown(&mut stop_rx);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (conn, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    // Closed before the greeting, as nbdkit's limit filter
                    // does: no handshake or TLS work for a client we will
                    // not serve.
                    refusals.refused(&peer, cfg.max_connections);
                    continue; // dropping `conn` closes it
                };
                let id = next_id.fetch_add(1, Ordering::Relaxed);
                let (cfg, shutdown) = (cfg.clone(), shutdown.clone());
                conns.spawn(async move {
                    let _permit = permit;
                    match conn {
                        Accepted::Tcp(s) => handle(s, id, peer, cfg, shutdown).await,
                        Accepted::Unix(s) => handle(s, id, peer, cfg, shutdown).await,
                    }
                });
            }
        }
    }
    if !conns.is_empty() {
        tracing::info!(
            "shutting down: waiting for {} open connection(s) to finish",
            conns.len()
        );
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "{} connection(s) still busy after {SHUTDOWN_GRACE:?}; dropping them",
            conns.len()
        );
        conns.shutdown().await;
    }
    Ok(())
}

async fn handle<C: Connection>(
    conn: C,
    id: u64,
    peer: String,
    cfg: Arc<ServerConfig>,
    shutdown: watch::Receiver<bool>,
) {
    tracing::info!(conn = id, %peer, "client connected");
    match serve_connection(conn, cfg, shutdown).await {
        Ok(()) => tracing::info!(conn = id, %peer, "client disconnected"),
        Err(e) => tracing::info!(conn = id, %peer, "client disconnected: {e}"),
    }
}

/// Speaks NBD on one established connection: handshake, TLS upgrade if
/// the client asks for it (both bounded by `cfg.handshake_timeout`), then
/// transmission until the client disconnects or `shutdown` becomes `true`.
/// Generic over the stream so that TCP, Unix and in-memory streams plug in.
pub async fn serve_connection<C: Connection>(
    conn: C,
    cfg: Arc<ServerConfig>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    let timeout = cfg.handshake_timeout;
    let ready = {
        let negotiate = tokio::time::timeout(timeout, handshake(conn, &cfg));
        tokio::select! {
            r = negotiate => r.map_err(|_| HandshakeError::TimedOut(timeout))??,
            // Nothing is in flight during the handshake: just close.
            _ = wait_for_shutdown(&mut shutdown) => return Err(HandshakeError::ShuttingDown.into()),
        }
    };
    match ready {
        Ready::Aborted => {
            tracing::debug!("client aborted the handshake");
            Ok(())
        }
        Ready::Plain(conn, n) => transmit(conn, n, false, &cfg, shutdown).await,
        Ready::Tls(conn, n) => transmit(*conn, n, true, &cfg, shutdown).await,
    }
}

/// Where the handshake left a connection.
enum Ready<C> {
    Plain(C, Negotiated),
    Tls(Box<TlsStream<C>>, Negotiated),
    Aborted,
}

/// Greeting and option haggling, with the TLS upgrade in between when the
/// client sends `NBD_OPT_STARTTLS` (§ "TLS support").
async fn handshake<C: Connection>(
    mut conn: C,
    cfg: &ServerConfig,
) -> Result<Ready<C>, HandshakeError> {
    let mut hs = handshake::greet(&mut conn, cfg).await?;
    match hs.haggle(&mut conn).await? {
        Outcome::Aborted => return Ok(Ready::Aborted),
        Outcome::Transmission(n) => return Ok(Ready::Plain(conn, n)),
        Outcome::StartTls => {}
    }
    let acceptor = cfg.tls.acceptor().ok_or(HandshakeError::TlsStateBug)?;
    let mut tls = acceptor.accept(conn).await.map_err(HandshakeError::Tls)?;
    {
        let (_, session) = tls.get_ref();
        tracing::debug!(
            version = ?session.protocol_version(),
            cipher = ?session.negotiated_cipher_suite().map(|c| c.suite()),
            client_certificate = session.peer_certificates().is_some(),
            "TLS established"
        );
    }
    hs.tls_started();
    match hs.haggle(&mut tls).await? {
        Outcome::Transmission(n) => Ok(Ready::Tls(Box::new(tls), n)),
        Outcome::Aborted => {
            // Say goodbye properly (close_notify), as the client did.
            let _ = tls.shutdown().await;
            Ok(Ready::Aborted)
        }
        Outcome::StartTls => Err(HandshakeError::TlsStateBug),
    }
}

/// The transmission phase on the negotiated export.
async fn transmit<C: Connection>(
    conn: C,
    negotiated: Negotiated,
    tls: bool,
    cfg: &ServerConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), ConnectionError> {
    // `negotiate` only returns indices from `find_export`.
    let Some(export) = cfg.exports.get(negotiated.export) else {
        let e = HandshakeError::UnknownExport {
            name: format!("#{}", negotiated.export),
            available: cfg.export_names(),
        };
        return Err(e.into());
    };
    let device = export.device.clone();
    let session = Session {
        size: device.size(),
        read_only: device.is_read_only(),
        structured: negotiated.structured,
        base_allocation: negotiated.base_allocation,
    };
    tracing::info!(
        export = %export.name,
        size = session.size,
        read_only = session.read_only,
        structured = session.structured,
        base_allocation = session.base_allocation,
        tls,
        "transmission started"
    );
    let (reader, writer) = conn.into_halves();
    let end = transmission::run(reader, writer, device, session, shutdown).await?;
    match end {
        End::Disconnect => tracing::debug!("client sent NBD_CMD_DISC"),
        End::Eof => tracing::debug!("client closed the connection without NBD_CMD_DISC"),
        End::Shutdown => tracing::debug!("closed for server shutdown"),
    }
    Ok(())
}
