//! The HTTP/1.1 server (hyper on tokio, optional TLS with rustls) and its
//! limits, so that slow or hostile clients cannot hold it:
//!
//! - at most [`Limits::max_connections`] connections at once (further
//!   clients wait in the kernel's accept backlog);
//! - a TLS handshake must finish within [`Limits::handshake_timeout`];
//! - request headers within [`Limits::header_timeout`] (hyper's
//!   `header_read_timeout`, which also closes idle keep-alive connections),
//!   at most 64 KiB of them;
//! - a body within [`Limits::body_timeout`] and at most
//!   [`Limits::max_body`] bytes (413 beyond);
//! - a connection lives at most [`Limits::max_connection_age`].
//!
//! Each request is handled by [`Api::handle`] on a blocking thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use super::error::ApiError;
use super::protocol::{Api, Incoming, Outgoing};

/// Resource limits of the server.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub max_body: usize,
    pub handshake_timeout: Duration,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            // KMS requests are small: a 4 KiB plaintext or a 6 KiB blob in
            // base64, or a 32 KiB key policy. 1 MiB leaves room for imported
            // key material and tags without letting a client buffer much.
            max_body: 1 << 20,
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(600),
        }
    }
}

/// Largest request head hyper buffers.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Server errors (set-up only; per-request failures become responses).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] crate::tlsconf::TlsConfError),
}

/// A TLS acceptor from PEM files: a certificate chain and its private key.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServeError> {
    let mut cfg = crate::tlsconf::server_config(&crate::tlsconf::ServerFiles {
        cert,
        key,
        client_ca: None,
    })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Serves `api` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    api: Arc<Api>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let limits = Arc::new(limits);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let (api, limits, tls) = (api.clone(), limits.clone(), tls.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => connection(stream, peer, api, limits).await,
                Some(acceptor) => {
                    match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(s)) => connection(s, peer, api, limits).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn connection<S>(stream: S, peer: SocketAddr, api: Arc<Api>, limits: Arc<Limits>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc_limits = limits.clone();
    let svc = service_fn(move |req| handle(req, peer, api.clone(), svc_limits.clone()));
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = tokio::time::sleep(limits.max_connection_age) => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(limits.body_timeout, conn.as_mut()).await {
                Ok(r) => r,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

async fn handle(
    req: Request<Body>,
    peer: SocketAddr,
    api: Arc<Api>,
    limits: Arc<Limits>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        ApiError::client(
            "ValidationException",
            format!(
                "the request body is larger than {} bytes, the most this KMS accepts",
                limits.max_body
            ),
        )
        .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    if declared.is_some_and(|n| n > limits.max_body as u64) {
        return Ok(error_response(too_large(), &request_id, true));
    }
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(body, limits.max_body).collect(),
    )
    .await;
    let body = match collected {
        Ok(Ok(c)) => Zeroizing::new(c.to_bytes().to_vec()),
        Ok(Err(e)) => {
            let err = if e.is::<http_body_util::LengthLimitError>() {
                too_large()
            } else {
                ApiError::client("ValidationException", "the request body could not be read")
            };
            return Ok(error_response(err, &request_id, true));
        }
        Err(_) => {
            let err = ApiError::client(
                "RequestTimeoutException",
                format!(
                    "the request body did not arrive within {} seconds",
                    limits.body_timeout.as_secs()
                ),
            )
            .with_status(StatusCode::REQUEST_TIMEOUT);
            return Ok(error_response(err, &request_id, true));
        }
    };
    let rid = request_id.clone();
    let out = tokio::task::spawn_blocking(move || {
        let incoming = Incoming {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers: &parts.headers,
            body: &body,
        };
        api.handle(&incoming, &rid)
    })
    .await;
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(request_id, error = %e, "request handler panicked");
            return Ok(error_response(
                ApiError::internal("KMSInternalException", &request_id),
                &request_id,
                false,
            ));
        }
    };
    log_request(&out, peer, &request_id);
    Ok(response(out, &request_id))
}

fn log_request(out: &Outgoing, peer: SocketAddr, request_id: &str) {
    tracing::info!(
        request_id,
        %peer,
        operation = %out.operation,
        principal = out.principal.as_deref().unwrap_or("-"),
        status = out.status.as_u16(),
        outcome = out.outcome,
        "request"
    );
}

fn response(out: Outgoing, request_id: &str) -> Response<Full<Bytes>> {
    // XXX: the response bytes (which may hold a plaintext data key in
    // base64) are handed to hyper and freed without zeroizing.
    let mut resp = Response::new(Full::new(Bytes::from(out.body)));
    *resp.status_mut() = out.status;
    let h = resp.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(out.content_type),
    );
    if let Ok(v) = http::HeaderValue::from_str(request_id) {
        h.insert("x-amzn-requestid", v);
    }
    resp
}

fn error_response(e: ApiError, request_id: &str, close: bool) -> Response<Full<Bytes>> {
    let mut resp = response(
        Outgoing {
            status: e.status,
            content_type: super::protocol::JSON_CONTENT_TYPE,
            body: e.json_body(),
            operation: String::new(),
            principal: None,
            outcome: e.aws_type,
        },
        request_id,
    );
    if close {
        // The rest of an unread body would be taken for the next request.
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
    }
    resp
}

#[cfg(test)]
mod tests;
