//! Fixed newstyle handshake (§ "Fixed newstyle negotiation"): greeting,
//! client flags, then option haggling until the client picks an export
//! (`NBD_OPT_GO` / `NBD_OPT_EXPORT_NAME`) or aborts.
//!
//! Reads are unbuffered on purpose: the handshake is a few hundred bytes,
//! and reading exactly what each step needs means no client bytes are ever
//! stranded in a buffer when the stream is handed to the transmission phase
//! or upgraded to TLS.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::option::{self as opt, InfoRequest, MetaContextRequest, OptionError, OptionHeader};
use super::proto::{
    FLAG_C_FIXED_NEWSTYLE, FLAG_C_NO_ZEROES, FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES, IHAVEOPT,
    NBD_MAGIC,
};
use super::{
    block_sizes, transmission_flags, ServerConfig, BASE_ALLOCATION, BASE_ALLOCATION_ID,
    MAX_OPTIONS, MAX_OPTION_LEN, OPTION_DISCARD_LIMIT,
};

/// Why a handshake ended without reaching transmission. Each of these
/// closes the connection; errors a client can recover from are sent as
/// option error replies instead and never show up here.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("I/O error during the handshake: {0}")]
    Io(#[from] std::io::Error),
    #[error("client sent unknown client flags {0:#x}; the spec requires closing the connection")]
    BadClientFlags(u32),
    #[error("malformed option header: {0}")]
    BadOption(#[source] OptionError),
    #[error("{option} carries {length} bytes of data, more than the {limit}-byte limit")]
    OptionTooLong {
        option: &'static str,
        length: u32,
        limit: u32,
    },
    #[error("NBD_OPT_EXPORT_NAME with an invalid name: {0}")]
    BadExportName(#[source] OptionError),
    #[error("NBD_OPT_EXPORT_NAME asked for export {name:?}, which does not exist (exports: {available})")]
    UnknownExport { name: String, available: String },
    #[error("client sent more than {0} options without choosing an export")]
    TooManyOptions(usize),
    #[error("client did not set NBD_FLAG_C_FIXED_NEWSTYLE, which TLS needs, and this server requires TLS")]
    TlsNeedsFixedNewstyle,
    #[error(
        "client sent NBD_OPT_EXPORT_NAME before NBD_OPT_STARTTLS, and this server requires TLS"
    )]
    TlsRequired,
    #[error("TLS handshake failed: {0}")]
    Tls(#[source] std::io::Error),
    /// Never happens: `on_starttls` only upgrades once, and only with an acceptor.
    #[error("BUG: TLS upgrade requested twice or without a TLS configuration")]
    TlsStateBug,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("client did not finish the handshake within {0:?}")]
    TimedOut(std::time::Duration),
}

/// What the client chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Negotiated {
    /// Index into `ServerConfig::exports`.
    pub export: usize,
    pub structured: bool,
    /// `base:allocation` was selected (by `NBD_OPT_SET_META_CONTEXT`) for this very export.
    pub base_allocation: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Transmission(Negotiated),
    /// The client sent `NBD_OPT_ABORT` (a soft disconnect).
    Aborted,
    /// `NBD_OPT_STARTTLS` was acknowledged: upgrade the stream now.
    StartTls,
}

/// Sends the greeting and reads the client flags. Shutdown and the
/// handshake timeout are the caller's business (`server::serve_connection`
/// drops this future), as a client in the handshake has nothing in flight
/// to finish.
pub(crate) async fn greet<'a, S>(
    stream: &mut S,
    cfg: &'a ServerConfig,
) -> Result<Handshake<'a>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut greeting = [0u8; 18];
    greeting[..8].copy_from_slice(&NBD_MAGIC.to_be_bytes());
    greeting[8..16].copy_from_slice(&IHAVEOPT.to_be_bytes());
    greeting[16..].copy_from_slice(&(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES).to_be_bytes());
    stream.write_all(&greeting).await?;
    stream.flush().await?;

    let client_flags = stream.read_u32().await?;
    if client_flags & !(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES) != 0 {
        return Err(HandshakeError::BadClientFlags(client_flags));
    }
    let fixed = client_flags & FLAG_C_FIXED_NEWSTYLE != 0;
    // TLS needs fixed newstyle (§ "Server-side requirements": otherwise the
    // server MUST operate in NOTLS mode), so a server that insists on TLS
    // has nothing to offer such a client.
    if !fixed && cfg.tls.required() {
        return Err(HandshakeError::TlsNeedsFixedNewstyle);
    }
    // A client without FLAG_C_FIXED_NEWSTYLE would only send
    // NBD_OPT_EXPORT_NAME; the spec lets us answer fixed-style anyway.
    Ok(Handshake {
        cfg,
        fixed,
        no_zeroes: client_flags & FLAG_C_NO_ZEROES != 0,
        encrypted: false,
        options: 0,
        structured: false,
        meta_export: None,
        out: Vec::with_capacity(256),
    })
}

impl Handshake<'_> {
    /// Option haggling until the client picks an export, aborts, or asks
    /// for TLS ([`Outcome::StartTls`]: the `NBD_REP_ACK` is already sent,
    /// the caller runs the TLS handshake, calls [`Handshake::tls_started`]
    /// and haggles on over the TLS stream).
    pub(crate) async fn haggle<S>(&mut self, stream: &mut S) -> Result<Outcome, HandshakeError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        while self.options < MAX_OPTIONS {
            self.options += 1;
            let mut hdr = [0u8; opt::OPTION_HEADER_LEN];
            stream.read_exact(&mut hdr).await?;
            let OptionHeader { option, length } =
                OptionHeader::decode(&hdr).map_err(HandshakeError::BadOption)?;
            let name = opt::option_name(option);

            if length > MAX_OPTION_LEN {
                if option == opt::OPT_EXPORT_NAME || length > OPTION_DISCARD_LIMIT {
                    // EXPORT_NAME cannot be answered with an error; anything
                    // this large is not a real client.
                    return Err(HandshakeError::OptionTooLong {
                        option: name,
                        length,
                        limit: MAX_OPTION_LEN,
                    });
                }
                tokio::io::copy(
                    &mut (&mut *stream).take(u64::from(length)),
                    &mut tokio::io::sink(),
                )
                .await?;
                if self.tls_missing() && option != opt::OPT_STARTTLS && option != opt::OPT_ABORT {
                    self.tls_required(option)?;
                } else {
                    let msg = format!(
                        "{name}: {length} bytes of option data exceed the {MAX_OPTION_LEN}-byte limit"
                    );
                    self.error(option, opt::REP_ERR_TOO_BIG, &msg)?;
                }
                self.send(stream).await?;
                continue;
            }
            let mut data = vec![0u8; length as usize];
            stream.read_exact(&mut data).await?;

            let step = self.on_option(option, &data)?;
            self.send(stream).await?;
            match step {
                Step::Continue => {}
                Step::Done(outcome) => return Ok(outcome),
            }
        }
        Err(HandshakeError::TooManyOptions(MAX_OPTIONS))
    }

    /// The TLS handshake after `NBD_OPT_STARTTLS` succeeded: from now on
    /// everything goes over TLS, and no negotiation state from before
    /// survives (§ "Option types", `NBD_OPT_STARTTLS`).
    pub(crate) fn tls_started(&mut self) {
        self.encrypted = true;
        self.structured = false;
        self.meta_export = None;
    }

    /// FORCEDTLS and TLS not up yet.
    fn tls_missing(&self) -> bool {
        self.cfg.tls.required() && !self.encrypted
    }

    fn tls_required(&mut self, option: u32) -> Result<Step, HandshakeError> {
        let msg = format!(
            "{}: this server requires TLS; send NBD_OPT_STARTTLS first \
             (e.g. nbdinfo 'nbds://HOST/EXPORT?tls-certificates=DIR')",
            opt::option_name(option)
        );
        self.error(option, opt::REP_ERR_TLS_REQD, &msg)
    }
}

enum Step {
    Continue,
    Done(Outcome),
}

/// Option-haggling state; `on_option` is pure (replies go to `out`), which
/// keeps the protocol logic apart from the socket.
pub(crate) struct Handshake<'a> {
    cfg: &'a ServerConfig,
    /// The client set `NBD_FLAG_C_FIXED_NEWSTYLE`.
    fixed: bool,
    no_zeroes: bool,
    /// TLS is up (after `NBD_OPT_STARTTLS`).
    encrypted: bool,
    /// Options received so far, before and after TLS.
    options: usize,
    structured: bool,
    /// The export `base:allocation` was selected for, if any.
    meta_export: Option<usize>,
    out: Vec<u8>,
}

impl Handshake<'_> {
    async fn send<S: AsyncWrite + Unpin>(&mut self, stream: &mut S) -> std::io::Result<()> {
        if !self.out.is_empty() {
            stream.write_all(&self.out).await?;
            stream.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    fn error(&mut self, option: u32, reply: u32, msg: &str) -> Result<Step, HandshakeError> {
        tracing::debug!(option = opt::option_name(option), "option refused: {msg}");
        opt::encode_error_reply(&mut self.out, option, reply, msg);
        Ok(Step::Continue)
    }

    fn ack(&mut self, option: u32) -> Result<Step, HandshakeError> {
        opt::encode_reply(&mut self.out, option, opt::REP_ACK, &[]);
        Ok(Step::Continue)
    }

    fn unknown_export(&mut self, option: u32, name: &str) -> Result<Step, HandshakeError> {
        let msg = format!(
            "export {name:?} not found; this server exports: {}",
            self.cfg.export_names()
        );
        self.error(option, opt::REP_ERR_UNKNOWN, &msg)
    }

    fn on_option(&mut self, option: u32, data: &[u8]) -> Result<Step, HandshakeError> {
        let name = opt::option_name(option);
        if self.tls_missing() && option != opt::OPT_STARTTLS && option != opt::OPT_ABORT {
            // § "FORCEDTLS mode": EXPORT_NAME cannot be refused, so close.
            if option == opt::OPT_EXPORT_NAME {
                return Err(HandshakeError::TlsRequired);
            }
            return self.tls_required(option);
        }
        match option {
            opt::OPT_EXPORT_NAME => self.on_export_name(data),
            opt::OPT_ABORT => {
                // Data is to be ignored (§ "Option types", NBD_OPT_ABORT).
                self.ack(option)?;
                Ok(Step::Done(Outcome::Aborted))
            }
            opt::OPT_LIST => {
                if !data.is_empty() {
                    return self.error(option, opt::REP_ERR_INVALID, "NBD_OPT_LIST takes no data");
                }
                for e in &self.cfg.exports {
                    opt::encode_rep_server(&mut self.out, option, &e.name, &e.description);
                }
                self.ack(option)
            }
            opt::OPT_STARTTLS => self.on_starttls(data),
            opt::OPT_INFO | opt::OPT_GO => self.on_info_or_go(option, data),
            opt::OPT_STRUCTURED_REPLY => {
                if !data.is_empty() {
                    return self.error(
                        option,
                        opt::REP_ERR_INVALID,
                        "NBD_OPT_STRUCTURED_REPLY takes no data",
                    );
                }
                self.structured = true;
                self.ack(option)
            }
            opt::OPT_LIST_META_CONTEXT | opt::OPT_SET_META_CONTEXT => {
                self.on_meta_context(option, data)
            }
            _ => self.error(
                option,
                opt::REP_ERR_UNSUP,
                &format!("option {option} ({name}) is not supported by this server"),
            ),
        }
    }

    /// § "TLS support": ACK and upgrade if TLS is on and not yet up;
    /// `NBD_REP_ERR_INVALID` if it is already up; `NBD_REP_ERR_POLICY` in
    /// NOTLS mode (TLS off, or a client without fixed newstyle).
    fn on_starttls(&mut self, data: &[u8]) -> Result<Step, HandshakeError> {
        let option = opt::OPT_STARTTLS;
        if !data.is_empty() {
            return self.error(
                option,
                opt::REP_ERR_INVALID,
                "NBD_OPT_STARTTLS takes no data",
            );
        }
        if self.encrypted {
            return self.error(option, opt::REP_ERR_INVALID, "TLS is already active");
        }
        if self.cfg.tls.acceptor().is_none() {
            return self.error(
                option,
                opt::REP_ERR_POLICY,
                "TLS is not enabled on this server (it runs with --tls off)",
            );
        }
        if !self.fixed {
            return self.error(
                option,
                opt::REP_ERR_POLICY,
                "TLS needs fixed newstyle negotiation (NBD_FLAG_C_FIXED_NEWSTYLE)",
            );
        }
        self.ack(option)?;
        Ok(Step::Done(Outcome::StartTls))
    }

    fn on_export_name(&mut self, data: &[u8]) -> Result<Step, HandshakeError> {
        let name = opt::parse_string(data, "export name").map_err(HandshakeError::BadExportName)?;
        let Some((index, export)) = self.cfg.find_export(&name) else {
            return Err(HandshakeError::UnknownExport {
                name,
                available: self.cfg.export_names(),
            });
        };
        let dev = &export.device;
        let flags = transmission_flags(dev.is_read_only(), self.structured);
        self.out.extend_from_slice(&dev.size().to_be_bytes());
        self.out.extend_from_slice(&flags.to_be_bytes());
        if !self.no_zeroes {
            self.out.extend_from_slice(&[0u8; 124]);
        }
        Ok(Step::Done(Outcome::Transmission(self.negotiated(index))))
    }

    fn negotiated(&self, export: usize) -> Negotiated {
        Negotiated {
            export,
            structured: self.structured,
            base_allocation: self.meta_export == Some(export),
        }
    }

    fn on_info_or_go(&mut self, option: u32, data: &[u8]) -> Result<Step, HandshakeError> {
        let req = match InfoRequest::decode(data) {
            Ok(r) => r,
            Err(e) => {
                return self.error(
                    option,
                    opt::REP_ERR_INVALID,
                    &format!("{}: {e}", opt::option_name(option)),
                )
            }
        };
        let cfg = self.cfg;
        let Some((index, export)) = cfg.find_export(&req.name) else {
            return self.unknown_export(option, &req.name);
        };
        let dev = &export.device;
        let flags = transmission_flags(dev.is_read_only(), self.structured);
        opt::encode_info_export(&mut self.out, option, dev.size(), flags);
        if req.requests.contains(&opt::INFO_NAME) {
            opt::encode_info_string(&mut self.out, option, opt::INFO_NAME, &export.name);
        }
        if req.requests.contains(&opt::INFO_DESCRIPTION) && !export.description.is_empty() {
            opt::encode_info_string(
                &mut self.out,
                option,
                opt::INFO_DESCRIPTION,
                &export.description,
            );
        }
        // Sent even when not requested: every client we know understands it,
        // and the spec allows unrequested information (§ "NBD_OPT_INFO").
        let (min, preferred, max) = block_sizes(dev.as_ref());
        opt::encode_info_block_size(&mut self.out, option, min, preferred, max);
        self.ack(option)?;
        if option == opt::OPT_GO {
            return Ok(Step::Done(Outcome::Transmission(self.negotiated(index))));
        }
        Ok(Step::Continue)
    }

    /// `base:allocation` is our only context. LIST answers it for an empty
    /// query list, `base:` (the namespace wildcard) or its exact name; SET
    /// selects it only by exact name (§ "The `base:` metadata namespace").
    /// Queries in other namespaces are ignored, as the spec requires.
    fn on_meta_context(&mut self, option: u32, data: &[u8]) -> Result<Step, HandshakeError> {
        let set = option == opt::OPT_SET_META_CONTEXT;
        let what = opt::option_name(option);
        if set {
            // SET replaces the selection even when it fails.
            self.meta_export = None;
            if !self.structured {
                return self.error(
                    option,
                    opt::REP_ERR_INVALID,
                    &format!("{what} needs NBD_OPT_STRUCTURED_REPLY first"),
                );
            }
        }
        let req = match MetaContextRequest::decode(data) {
            Ok(r) => r,
            Err(e) => return self.error(option, opt::REP_ERR_INVALID, &format!("{what}: {e}")),
        };
        let Some((index, _)) = self.cfg.find_export(&req.name) else {
            return self.unknown_export(option, &req.name);
        };
        let matched = if set {
            req.queries.iter().any(|q| q == BASE_ALLOCATION)
        } else {
            req.queries.is_empty()
                || req
                    .queries
                    .iter()
                    .any(|q| q == "base:" || q == BASE_ALLOCATION)
        };
        if matched {
            // LIST replies carry a reserved id of 0 (§ NBD_OPT_LIST_META_CONTEXT).
            let id = if set { BASE_ALLOCATION_ID } else { 0 };
            opt::encode_meta_context(&mut self.out, option, id, BASE_ALLOCATION);
            if set {
                self.meta_export = Some(index);
            }
        }
        self.ack(option)
    }
}
