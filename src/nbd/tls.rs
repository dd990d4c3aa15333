//! NBD over TLS (§ "TLS support"): the server's policy, its certificates
//! from a qemu-nbd/nbdkit-style directory, and TLS streams as connections.
//!
//! The upgrade itself happens in the handshake: `NBD_OPT_STARTTLS` is
//! acknowledged, the TLS handshake runs on the same socket, and option
//! haggling continues inside TLS (`server::handshake`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use super::server::Connection;
use crate::tlsconf::{self, ServerFiles, TlsConfError};

/// File names inside `--tls-certificates DIR`, as qemu-nbd
/// (`tls-creds-x509,dir=DIR`) and nbdkit (`--tls-certificates DIR`) lay it out.
pub const CA_CERT: &str = "ca-cert.pem";
pub const SERVER_CERT: &str = "server-cert.pem";
pub const SERVER_KEY: &str = "server-key.pem";

/// How the server treats TLS; the spec's three modes (§ "Server-side
/// requirements").
#[derive(Clone, Default)]
pub enum TlsPolicy {
    /// NOTLS: `NBD_OPT_STARTTLS` is refused with `NBD_REP_ERR_POLICY`.
    #[default]
    Off,
    /// SELECTIVETLS with no TLS-only export: clients may upgrade, plaintext
    /// clients are still served.
    Allow(TlsAcceptor),
    /// FORCEDTLS: every option but `NBD_OPT_STARTTLS` and `NBD_OPT_ABORT`
    /// is refused with `NBD_REP_ERR_TLS_REQD` until TLS is up.
    Require(TlsAcceptor),
}

impl TlsPolicy {
    pub(crate) fn acceptor(&self) -> Option<&TlsAcceptor> {
        match self {
            TlsPolicy::Off => None,
            TlsPolicy::Allow(a) | TlsPolicy::Require(a) => Some(a),
        }
    }

    pub(crate) fn required(&self) -> bool {
        matches!(self, TlsPolicy::Require(_))
    }
}

impl fmt::Debug for TlsPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsPolicy::Off => "Off",
            TlsPolicy::Allow(_) => "Allow",
            TlsPolicy::Require(_) => "Require",
        })
    }
}

/// A TLS acceptor from `DIR/server-cert.pem` and `DIR/server-key.pem`;
/// with `verify_peer`, clients must present a certificate signed by a CA in
/// `DIR/ca-cert.pem` (qemu-nbd's `verify-peer=on`, nbdkit's
/// `--tls-verify-peer`).
pub fn acceptor_from_dir(dir: &Path, verify_peer: bool) -> Result<TlsAcceptor, TlsConfError> {
    let (cert, key, ca) = (
        dir.join(SERVER_CERT),
        dir.join(SERVER_KEY),
        dir.join(CA_CERT),
    );
    let cfg = tlsconf::server_config(&ServerFiles {
        cert: &cert,
        key: &key,
        client_ca: verify_peer.then_some(ca.as_path()),
    })?;
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

/// Transmission reads and writes at once; a TLS session is one state
/// machine, so its halves share it through `tokio::io::split`'s lock.
impl<C: Connection> Connection for TlsStream<C> {
    type Reader = tokio::io::ReadHalf<TlsStream<C>>;
    type Writer = tokio::io::WriteHalf<TlsStream<C>>;
    fn into_halves(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }
}
