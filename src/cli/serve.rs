//! `cryptvol serve NAME...`: attach volumes and serve them over NBD.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::volume::NewVolumeArgs;
use super::Context;
use crate::blockdev::BlockDevice;
use crate::kms::remote::attach::AttachGrant;
use crate::kms::service::{Caller, KeyService};
use crate::nbd::{Export, ServerConfig, TlsPolicy};
use crate::volume::{Volume, VolumeStore};

/// The IANA-assigned NBD port.
const NBD_PORT: u16 = 10809;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Volumes to serve (names or vol- ids); each becomes an export of that name.
    #[arg(required = true, value_name = "VOLUME")]
    pub volumes: Vec<String>,
    /// Create the volumes that do not exist yet (needs --size).
    #[arg(long)]
    pub create: bool,
    #[command(flatten)]
    pub new: NewVolumeArgs,
    /// TCP address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::from(([127, 0, 0, 1], NBD_PORT)))]
    pub listen: SocketAddr,
    /// Listen on this Unix socket instead of TCP (made 0600: only this
    /// user can connect; put it in a directory only you can enter).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Export read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Most simultaneous client connections; more are closed at once.
    #[arg(long, value_name = "N", default_value_t = crate::nbd::DEFAULT_MAX_CONNECTIONS,
          value_parser = parse_max_connections)]
    pub max_connections: usize,
    /// Time a client gets to finish the NBD handshake, TLS included
    /// (e.g. 10s, 1m); then it is disconnected.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub handshake_timeout: Duration,
    /// TLS for NBD clients: off; on (clients may upgrade with
    /// NBD_OPT_STARTTLS, plaintext clients still work); require (every
    /// client must use TLS).
    #[arg(long, value_enum, default_value_t = TlsMode::Off)]
    pub tls: TlsMode,
    /// Directory holding server-cert.pem, server-key.pem and (for
    /// --tls-verify-peer) ca-cert.pem, laid out as for qemu-nbd and nbdkit.
    #[arg(long, value_name = "DIR")]
    pub tls_certificates: Option<PathBuf>,
    /// Require client certificates signed by DIR/ca-cert.pem.
    #[arg(long)]
    pub tls_verify_peer: bool,
}

/// `--tls`: the NBD spec's three server modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// No TLS (NOTLS): STARTTLS is refused.
    Off,
    /// TLS if the client asks for it (SELECTIVETLS).
    On,
    /// TLS for every client (FORCEDTLS).
    Require,
}

fn parse_max_connections(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("must be a whole number of at least 1".into()),
    }
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 10s or 1m)"))?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// The TLS policy the flags ask for; certificates are loaded here, before
/// any volume is attached, so that a bad directory fails fast.
fn tls_policy(args: &ServeArgs) -> anyhow::Result<TlsPolicy> {
    let dir = match (args.tls, &args.tls_certificates) {
        (TlsMode::Off, None) if args.tls_verify_peer => {
            anyhow::bail!("--tls-verify-peer needs TLS; add --tls on or --tls require")
        }
        (TlsMode::Off, None) => return Ok(TlsPolicy::Off),
        (TlsMode::Off, Some(_)) => {
            anyhow::bail!(
                "--tls-certificates is given but TLS is off; add --tls on or --tls require"
            )
        }
        (mode, None) => anyhow::bail!(
            "--tls {} needs --tls-certificates DIR, a directory holding server-cert.pem and \
             server-key.pem (and ca-cert.pem for --tls-verify-peer)",
            if mode == TlsMode::On { "on" } else { "require" }
        ),
        (_, Some(dir)) => dir,
    };
    if !dir.is_dir() {
        anyhow::bail!(
            "--tls-certificates {}: not a directory; it must hold server-cert.pem and server-key.pem",
            dir.display()
        );
    }
    let acceptor = crate::nbd::tls::acceptor_from_dir(dir, args.tls_verify_peer)?;
    Ok(match args.tls {
        TlsMode::Require => TlsPolicy::Require(acceptor),
        _ => TlsPolicy::Allow(acceptor),
    })
}

/// One attached volume ready to serve.
struct Attached {
    volume: Arc<Volume>,
    key_label: String,
    /// The attach grant, when the KMS is remote (see below).
    grant: Option<AttachGrant>,
}

pub fn run(ctx: &Context, args: ServeArgs) -> anyhow::Result<()> {
    super::harden_server_process();
    let tls = tls_policy(&args)?;
    let handle = ctx.key_service()?;
    let (kms, caller) = (handle.service.as_ref(), &handle.caller);
    let store = ctx.volumes();
    let mut attached = Vec::new();
    for name in &args.volumes {
        if attached.iter().any(|a: &Attached| {
            &a.volume.header().name == name || &a.volume.header().volume_id == name
        }) {
            anyhow::bail!("volume {name:?} is named twice");
        }
        // Through a remote KMS, attach like EBS: with a Decrypt grant of
        // our own, retired at detach (kms::remote::attach).
        let via_grant = ctx.kms_endpoint.is_some();
        match attach(ctx, kms, caller, &store, name, &args, via_grant) {
            Ok(a) => attached.push(a),
            Err(e) => {
                retire_grants(kms, caller, &attached);
                return Err(e);
            }
        }
    }
    let exports = attached
        .iter()
        .map(|a| {
            let h = a.volume.header();
            let mut e = Export::new(h.name.clone(), a.volume.clone() as Arc<dyn BlockDevice>);
            e.description = format!("cryptvol {} ({})", h.volume_id, h.cipher.name());
            e
        })
        .collect();
    let mut cfg = ServerConfig::new(exports);
    cfg.max_connections = args.max_connections;
    cfg.handshake_timeout = args.handshake_timeout;
    let scheme = if matches!(tls, TlsPolicy::Off) {
        "nbd"
    } else {
        "nbds"
    };
    cfg.tls = tls;
    let cfg = Arc::new(cfg);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let socket = args.socket.clone();
    rt.block_on(async {
        let stopped = stop_signal();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_rx2 = stop_rx.clone();
        let server = if let Some(path) = &args.socket {
            // Whoever can connect reads and writes the plaintext: owner only.
            let l = crate::fsutil::bind_private_socket(path)
                .and_then(|l| {
                    l.set_nonblocking(true)?;
                    tokio::net::UnixListener::from_std(l)
                })
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", path.display()))?;
            announce(
                ctx,
                &attached,
                &format!("{scheme}+unix:///{{}}?socket={}", path.display()),
            );
            tokio::spawn(crate::nbd::serve_unix(l, cfg.clone(), stop_rx))
        } else {
            let l = tokio::net::TcpListener::bind(args.listen)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot listen on {}: {e} (use --listen ADDR:PORT for another)",
                        args.listen
                    )
                })?;
            let addr = l.local_addr()?;
            announce(ctx, &attached, &format!("{scheme}://{addr}/{{}}"));
            tokio::spawn(crate::nbd::serve_tcp(l, cfg.clone(), stop_rx))
        };
        // One control socket per volume, for live snapshots.
        let snaps = crate::snapshot::SnapshotStore::new(&ctx.data_dir, &ctx.region);
        let mut sockets = Vec::new();
        for a in &attached {
            let path = store.control_socket(&a.volume.header().volume_id);
            let l = crate::snapshot::control::bind(&path).map_err(|e| {
                anyhow::anyhow!("cannot open control socket {}: {e}", path.display())
            })?;
            tokio::spawn(crate::snapshot::control::serve(
                l,
                a.volume.clone(),
                snaps.clone(),
                stop_rx2.clone(),
            ));
            sockets.push(path);
        }
        stopped.await;
        for p in &sockets {
            let _ = std::fs::remove_file(p);
        }
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        server
            .await
            .map_err(|e| anyhow::anyhow!("server task failed: {e}"))??;
        anyhow::Ok(())
    })?;
    let detached = attached.iter().try_for_each(|a| a.volume.detach());
    retire_grants(kms, caller, &attached);
    detached?;
    if let Some(p) = &socket {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

fn attach(
    ctx: &Context,
    kms: &dyn KeyService,
    caller: &Caller,
    store: &VolumeStore,
    name: &str,
    args: &ServeArgs,
    via_grant: bool,
) -> anyhow::Result<Attached> {
    let mut requested_key = None;
    match store.find(name) {
        Ok(_) => {}
        Err(crate::volume::Error::NotFound(..)) if args.create => {
            let opts = args.new.options_in(ctx)?;
            requested_key = Some(
                opts.kms_key_id
                    .clone()
                    .unwrap_or_else(|| crate::volume::DEFAULT_KEY_ALIAS.into()),
            );
            store.create(kms, caller, name, &opts)?;
        }
        Err(crate::volume::Error::NotFound(n, r)) => {
            anyhow::bail!(
                "no volume named {n:?} in region {r}; add --create --size SIZE to create it"
            )
        }
        Err(e) => return Err(e.into()),
    }
    let grant = match store.find(name)? {
        crate::volume::VolumeInfo {
            encrypted: true,
            kms_key_arn: Some(key),
            volume_id,
            ..
        } if via_grant => Some(AttachGrant::create(kms, caller, &key, &volume_id)?),
        _ => None,
    };
    let granted = grant.as_ref().map(|g| g.key_service(kms));
    let attach_kms: &dyn KeyService = match &granted {
        Some(g) => g,
        None => kms,
    };
    let volume = match store.attach(attach_kms, caller, name, args.read_only) {
        Ok(v) => Arc::new(v),
        Err(e) => {
            if let Some(g) = &grant {
                retire(kms, caller, g);
            }
            return Err(e.into());
        }
    };
    let h = volume.header();
    let key_label = if h.kms_key_arn.is_empty() {
        String::new()
    } else {
        requested_key.unwrap_or_else(|| {
            alias_of(kms, caller, &h.kms_key_arn).unwrap_or_else(|| h.kms_key_arn.clone())
        })
    };
    Ok(Attached {
        volume,
        key_label,
        grant,
    })
}

/// Retires the attach grants of `attached` (failures are logged: a grant
/// left behind allows only Decrypt of that one volume's data key, by this
/// host, and can be retired later with `aws kms retire-grant`).
fn retire_grants(kms: &dyn KeyService, caller: &Caller, attached: &[Attached]) {
    for g in attached.iter().filter_map(|a| a.grant.as_ref()) {
        retire(kms, caller, g);
    }
}

fn retire(kms: &dyn KeyService, caller: &Caller, g: &AttachGrant) {
    if let Err(e) = g.retire(kms, caller) {
        tracing::warn!(volume_id = %g.volume_id, grant_id = %g.grant_id, error = %e,
            "cannot retire the attach grant; retire it with `aws kms retire-grant --key-id {} --grant-id {}`",
            g.key_arn, g.grant_id);
    }
}

/// An alias that points at `key_arn`, to show instead of the bare ARN.
fn alias_of(kms: &dyn KeyService, caller: &Caller, key_arn: &str) -> Option<String> {
    let aliases = kms.list_aliases(caller).ok()?;
    aliases
        .into_iter()
        .find(|a| {
            a.target_key_id
                .as_deref()
                .is_some_and(|t| key_arn.ends_with(t))
        })
        .map(|a| a.alias_name)
}

/// Prints one line per export once the server is listening; scripts and
/// tests wait for these lines.
fn announce(ctx: &Context, attached: &[Attached], uri_template: &str) {
    for a in attached {
        let h = a.volume.header();
        let uri = uri_template.replace("{}", &h.name);
        let enc = if a.key_label.is_empty() {
            "unencrypted".to_string()
        } else {
            format!("encrypted with {}", a.key_label)
        };
        let line = match ctx.output {
            super::Output::Json => serde_json::json!({
                "export": h.name, "volume_id": h.volume_id, "uri": uri,
                "encrypted": !a.key_label.is_empty(), "kms_key": h.kms_key_arn,
                "read_only": a.volume.is_read_only(),
            })
            .to_string(),
            super::Output::Text => format!("serving {} ({}) at {uri}; {enc}", h.name, h.volume_id),
        };
        // A closed stdout does not stop the server.
        let _ = super::out(&line);
    }
}

/// Registers the SIGTERM and SIGINT handlers now, before the server
/// announces itself (so a signal right after the announcement stops it
/// cleanly instead of killing it), and resolves on the first of them.
pub(crate) fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        match (term, int) {
            (Ok(mut t), Ok(mut i)) => {
                tokio::select! {
                    _ = t.recv() => {}
                    _ = i.recv() => {}
                }
            }
            (Ok(mut t), Err(_)) => {
                t.recv().await;
            }
            (Err(_), Ok(mut i)) => {
                i.recv().await;
            }
            (Err(_), Err(_)) => std::future::pending().await,
        }
    }
}
