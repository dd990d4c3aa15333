//! The server's limits against raw TCP clients: oversized bodies, slow
//! headers, slow bodies, and the connection limit.

#![allow(clippy::unwrap_used)]

use std::time::Instant;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::kms::api::{Backend, CredentialStore};
use crate::kms::error::KmsError;
use crate::kms::iam::{Credential, IamError};
use crate::kms::service::Caller;

struct Nothing;

impl Backend for Nothing {
    fn region(&self) -> &str {
        "us-east-1"
    }
    fn call(&self, _: &Caller, _: &str, _: Value, _: Option<String>) -> Result<Value, KmsError> {
        Ok(Value::Null)
    }
}

impl CredentialStore for Nothing {
    fn credential(&self, _: &str) -> Result<Option<Credential>, IamError> {
        Ok(None)
    }
}

fn limits() -> Limits {
    Limits {
        max_connections: 2,
        max_body: 1024,
        handshake_timeout: Duration::from_millis(300),
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        max_connection_age: Duration::from_secs(30),
    }
}

async fn start() -> (SocketAddr, watch::Sender<bool>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let api = Arc::new(Api::new(Arc::new(Nothing), Arc::new(Nothing)));
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve(l, None, api, limits(), rx));
    (addr, tx)
}

/// Sends `req`, returns everything the server sends until it closes (or
/// 5 s pass).
async fn exchange(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

const HEAD: &str = "POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.ListKeys\r\n\
                    Content-Type: application/x-amz-json-1.1\r\n";

#[tokio::test]
async fn an_oversized_body_is_refused_with_413_before_it_is_read() {
    let (addr, _stop) = start().await;
    let resp = exchange(
        addr,
        format!("{HEAD}Content-Length: 2000000\r\n\r\n{{").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(
        resp.contains("ValidationException") && resp.contains("1024 bytes"),
        "{resp}"
    );
    // Chunked, with no length announced: cut off at the limit.
    let chunk = "a".repeat(2000);
    let req = format!(
        "{HEAD}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    );
    let resp = exchange(addr, req.as_bytes()).await;
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
}

#[tokio::test]
async fn an_unsigned_request_gets_an_aws_error_and_the_server_keeps_serving() {
    let (addr, _stop) = start().await;
    let resp = exchange(
        addr,
        format!("{HEAD}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        resp.contains("MissingAuthenticationTokenException"),
        "{resp}"
    );
    assert!(
        resp.to_ascii_lowercase().contains("x-amzn-requestid"),
        "{resp}"
    );
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let (addr, _stop) = start().await;
    let t = Instant::now();
    // Half a request line, then nothing.
    let resp = exchange(addr, b"POST / HT").await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "held {:?}",
        t.elapsed()
    );
    assert!(!resp.contains("200"), "{resp}");
    // Headers complete, body never arrives.
    let t = Instant::now();
    let resp = exchange(
        addr,
        format!("{HEAD}Content-Length: 10\r\n\r\n{{").as_bytes(),
    )
    .await;
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "held {:?}",
        t.elapsed()
    );
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
}

#[tokio::test]
async fn idle_connections_cannot_hold_every_slot() {
    let (addr, _stop) = start().await;
    // Two idle connections take both slots...
    let idle1 = TcpStream::connect(addr).await.unwrap();
    let idle2 = TcpStream::connect(addr).await.unwrap();
    // ...until the header timeout closes them; then a third is served.
    let t = Instant::now();
    let resp = exchange(
        addr,
        format!("{HEAD}Content-Length: 2\r\nConnection: close\r\n\r\n{{}}").as_bytes(),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "waited {:?}",
        t.elapsed()
    );
    drop((idle1, idle2));
}
