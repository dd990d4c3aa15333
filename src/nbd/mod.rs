//! The NBD server: wire protocol, handshake, transmission, listeners.
//!
//! It serves any [`BlockDevice`] (in production `volume::Volume`) to real
//! NBD clients: the Linux kernel (`nbd-client`), qemu, libnbd tools
//! (`nbdinfo`, `nbdcopy`, `nbdfuse`) and fio. It is written from the
//! protocol specification (`doc/proto.md` in the NetworkBlockDevice/nbd
//! repository), which every constant here cites.
//!
//! # Layout
//!
//! - [`proto`]: transmission-phase wire types (request header, simple and
//!   structured replies), sans I/O.
//! - [`option`]: handshake-phase wire types (option requests and replies), sans I/O.
//! - [`request`]: every request validated once, before the device is
//!   touched (nbdkit's `validate_request`).
//! - `handshake`: fixed newstyle option haggling.
//! - `transmission`: one reader, concurrent request execution, bounded in-flight budget.
//! - `execute`: one validated request against the device, reply encoded.
//! - `writer`: one batching reply writer per connection.
//! - `pool`: reuse of large I/O buffers within a connection.
//! - `server`: TCP / Unix listeners, connection limit, handshake timeout, shutdown.
//! - [`tls`]: TLS policy, certificates from a qemu-nbd-style directory.
//!
//! # What the server promises
//!
//! - `NBD_FLAG_CAN_MULTI_CONN`: [`BlockDevice::flush`] makes every completed
//!   write durable whichever connection made it, so a flush on any
//!   connection covers all of them.
//! - Bounded memory: no request or option length can make the server
//!   allocate more than [`MAX_PAYLOAD`] for one request, and each connection
//!   keeps at most [`IN_FLIGHT_BUDGET`] bytes of payload in flight.
//! - Nothing a client sends can panic the server; a malformed stream (bad
//!   magic) closes only its own connection.
//!
//! - TLS per [`ServerConfig::tls`] (`NBD_OPT_STARTTLS`, § "TLS support"):
//!   off, allowed, or required; the handshake timeout covers the TLS
//!   handshake too.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::blockdev::BlockDevice;

mod execute;
mod handshake;
pub mod option;
mod pool;
pub mod proto;
pub mod request;
mod server;
pub mod tls;
mod transmission;
mod writer;

#[cfg(test)]
mod tests;

pub use handshake::HandshakeError;
pub use server::{serve_connection, serve_tcp, serve_unix, Connection, ConnectionError};
pub use tls::TlsPolicy;
pub use transmission::TransmissionError;

/// Largest READ or WRITE payload we accept, advertised as the maximum in
/// `NBD_INFO_BLOCK_SIZE`. 32 MiB is the size the spec says clients may
/// always use (§ "Size constraints") and what qemu and nbdkit use.
pub const MAX_PAYLOAD: u32 = 32 << 20;
/// Advertised minimum block size: the spec's interoperable default (§ "Size
/// constraints"). Unaligned requests are still served (the device does
/// read-modify-write), so this is a hint, not an enforced rule.
pub const MIN_BLOCK_SIZE: u32 = 512;
/// Advertised preferred block size unless the device's sector is larger:
/// I/O aligned to it avoids read-modify-write in the volume.
pub const PREFERRED_BLOCK_SIZE: u32 = 4096;
/// Payload bytes one connection may have in flight (read or written but not
/// yet replied to): two maximum-size requests, or a QD16 of 1 MiB requests
/// with room to spare. Keeps memory bounded when a client pipelines faster
/// than the device answers or stops reading replies.
pub const IN_FLIGHT_BUDGET: usize = 64 << 20;
/// A write whose header failed validation is followed by its payload, which
/// must be read and thrown away to keep the stream in sync. Up to this many
/// bytes we do that (without allocating) and keep the connection; beyond it
/// the client is deemed hostile (§ "Size constraints" lets us disconnect).
pub const WRITE_DISCARD_LIMIT: u64 = 2 * MAX_PAYLOAD as u64;
/// Option data we read into memory. Strings are at most 4096 bytes, so a
/// well-formed option is far smaller.
pub const MAX_OPTION_LEN: u32 = 64 << 10;
/// Option data longer than [`MAX_OPTION_LEN`] but within this is skipped and
/// answered with `NBD_REP_ERR_TOO_BIG`; longer still closes the connection.
pub const OPTION_DISCARD_LIMIT: u32 = 1 << 20;
/// Options one connection may send before we give up on it: a client that
/// loops in option haggling is not going anywhere (nbdkit does the same).
pub const MAX_OPTIONS: usize = 512;
/// The metadata context id we hand out for `base:allocation`.
pub const BASE_ALLOCATION_ID: u32 = 1;
/// Name of the one metadata context we support (§ "`base:allocation` metadata context").
pub const BASE_ALLOCATION: &str = "base:allocation";
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 128;
/// Default time a client gets to finish the handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// One named device the server offers.
#[derive(Clone)]
pub struct Export {
    /// What clients put in the URI (`nbd://host/NAME`). Must be unique.
    pub name: String,
    /// Shown by `nbdinfo` and in `NBD_OPT_LIST`; may be empty.
    pub description: String,
    pub device: Arc<dyn BlockDevice>,
}

impl Export {
    pub fn new(name: impl Into<String>, device: Arc<dyn BlockDevice>) -> Self {
        Export {
            name: name.into(),
            description: String::new(),
            device,
        }
    }
}

impl fmt::Debug for Export {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Export")
            .field("name", &self.name)
            .field("description", &self.description)
            .field("size", &self.device.size())
            .field("read_only", &self.device.is_read_only())
            .finish()
    }
}

/// What a server serves and how it limits clients.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The first export is also the default export (empty export name).
    pub exports: Vec<Export>,
    /// Connections beyond this are closed as soon as they are accepted.
    pub max_connections: usize,
    /// A client that has not entered transmission by then is disconnected.
    pub handshake_timeout: Duration,
    /// Whether clients may or must upgrade to TLS.
    pub tls: TlsPolicy,
}

impl ServerConfig {
    pub fn new(exports: Vec<Export>) -> Self {
        ServerConfig {
            exports,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            tls: TlsPolicy::Off,
        }
    }

    /// The export a client means by `name`; the empty name is the default
    /// export, i.e. the first one (§ "Option types", `NBD_OPT_EXPORT_NAME`).
    pub fn find_export(&self, name: &str) -> Option<(usize, &Export)> {
        if name.is_empty() {
            return self.exports.first().map(|e| (0, e));
        }
        self.exports
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == name)
    }

    /// "a, b, c": for error messages that tell the client what exists.
    pub(crate) fn export_names(&self) -> String {
        if self.exports.is_empty() {
            return "(none)".to_owned();
        }
        self.exports
            .iter()
            .map(|e| e.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The sizes advertised in `NBD_INFO_BLOCK_SIZE` for a device:
/// (minimum, preferred, maximum). Preferred must be a power of two at least
/// 512 and at most the maximum (§ "Size constraints").
pub fn block_sizes(device: &dyn BlockDevice) -> (u32, u32, u32) {
    let sector = device
        .sector_size()
        .max(1)
        .checked_next_power_of_two()
        .unwrap_or(PREFERRED_BLOCK_SIZE);
    let preferred = sector.clamp(PREFERRED_BLOCK_SIZE, MAX_PAYLOAD);
    (MIN_BLOCK_SIZE, preferred, MAX_PAYLOAD)
}

/// Transmission flags for an export (§ "Transmission flags").
pub fn transmission_flags(read_only: bool, structured: bool) -> u16 {
    use proto::*;
    let mut f = TFLAG_HAS_FLAGS
        | TFLAG_SEND_FLUSH
        | TFLAG_SEND_FUA
        | TFLAG_CAN_MULTI_CONN
        | TFLAG_SEND_CACHE;
    if read_only {
        f |= TFLAG_READ_ONLY;
    } else {
        f |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES;
    }
    if structured {
        // We always answer a read with a single data chunk, so "don't
        // fragment" costs nothing to honour.
        f |= TFLAG_SEND_DF;
    }
    f
}
