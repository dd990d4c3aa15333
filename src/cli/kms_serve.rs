//! `cryptvol kms serve`: the region's KMS as an AWS KMS endpoint.
//!
//! The `kms` command group is built from the operation table in
//! [`super::kms`]; this file adds its one non-table subcommand by wrapping
//! that group ([`KmsGroup`]) rather than editing it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{ArgMatches, Args, FromArgMatches};

use super::kms::KmsCommand;
use super::{Context, Output};
use crate::kms::api::protocol::Api;
use crate::kms::api::server::{self, Limits};
use crate::kms::iam::Iam;

/// The port `cryptvol kms serve` listens on by default (unassigned by IANA;
/// LocalStack's 4566 is nearby, and the README uses this one).
pub const DEFAULT_PORT: u16 = 4599;

#[derive(Debug, Args)]
pub struct KmsServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR:PORT", default_value_t = SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)))]
    pub listen: SocketAddr,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Most simultaneous client connections.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    pub max_connections: usize,
}

/// `cryptvol kms …`: a table operation, or `serve`.
#[derive(Debug)]
pub enum KmsGroup {
    Serve(KmsServeArgs),
    Op(KmsCommand),
}

impl FromArgMatches for KmsGroup {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        match matches.subcommand() {
            Some(("serve", sub)) => Ok(KmsGroup::Serve(KmsServeArgs::from_arg_matches(sub)?)),
            _ => Ok(KmsGroup::Op(KmsCommand::from_arg_matches(matches)?)),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = KmsGroup::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Subcommand for KmsGroup {
    fn augment_subcommands(cmd: clap::Command) -> clap::Command {
        let serve = KmsServeArgs::augment_args(clap::Command::new("serve").about(
            "Serve this region's KMS over HTTP(S) with the AWS KMS protocol and SigV4 (for the \
             aws CLI, boto3, and `cryptvol --kms-endpoint`)",
        ));
        <KmsCommand as clap::Subcommand>::augment_subcommands(cmd).subcommand(serve)
    }

    fn augment_subcommands_for_update(cmd: clap::Command) -> clap::Command {
        KmsGroup::augment_subcommands(cmd)
    }

    fn has_subcommand(name: &str) -> bool {
        name == "serve" || <KmsCommand as clap::Subcommand>::has_subcommand(name)
    }
}

pub fn run_group(ctx: &Context, cmd: KmsGroup) -> anyhow::Result<()> {
    match cmd {
        KmsGroup::Serve(args) => run(ctx, args),
        KmsGroup::Op(cmd) => super::kms::run(ctx, cmd),
    }
}

pub fn run(ctx: &Context, args: KmsServeArgs) -> anyhow::Result<()> {
    super::harden_server_process();
    let kms = ctx.kms()?;
    let account = kms.account_id().to_owned();
    let iam = Iam::open(&ctx.data_dir)?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(server::tls_acceptor(c, k)?),
        _ => None,
    };
    let api = Arc::new(Api::new(Arc::new(kms), Arc::new(iam)));
    let limits = Limits {
        max_connections: args.max_connections,
        ..Limits::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let stopped = super::serve::stop_signal();
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {}: {e} (use --listen ADDR:PORT for another)",
                    args.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let endpoint = format!("{scheme}://{addr}");
        // Scripts and tests wait for this line. A closed stdout does not
        // stop the server.
        let line = match ctx.output {
            Output::Json => serde_json::json!({"Endpoint": endpoint, "Region": ctx.region, "AccountId": account}).to_string(),
            Output::Text => format!(
                "KMS of account {account}, region {}, serving at {endpoint}",
                ctx.region
            ),
        };
        let _ = super::out(&line);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(server::serve(listener, tls, api, limits, stop_rx));
        stopped.await;
        tracing::info!("shutting down");
        let _ = stop_tx.send(true);
        let _ = task.await;
        anyhow::Ok(())
    })?;
    // Connections still open are dropped with the runtime.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    Ok(())
}
