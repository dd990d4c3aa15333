//! The `cryptvol` command line: clap definitions, one file per command
//! group, and output in text (default) or JSON (`--output json`).

mod audit;
mod iam;
mod keys;
mod kms;
mod kms_serve;
mod progress;
mod serve;
mod size;
mod snapshot;
mod volume;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::kms::local::LocalKms;
use crate::kms::service::Caller;

/// Encrypted block volumes served over NBD, with an AWS-KMS-like key service.
#[derive(Debug, Parser)]
#[command(name = "cryptvol", version, about, propagate_version = true)]
pub struct Cli {
    /// Where keys, volumes and snapshots live [default: $XDG_DATA_HOME/cryptvol].
    #[arg(long, global = true, env = "CRYPTVOL_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The region (an independent KMS and volume domain).
    #[arg(
        long,
        global = true,
        env = "CRYPTVOL_REGION",
        default_value = "us-east-1"
    )]
    pub region: String,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Use the KMS at this URL (`cryptvol kms serve`, or any AWS KMS
    /// endpoint) for volumes, snapshots and `kms` commands instead of the
    /// embedded one.
    #[arg(long, global = true, env = "CRYPTVOL_KMS_ENDPOINT", value_name = "URL")]
    pub kms_endpoint: Option<String>,
    /// AWS credentials profile for --kms-endpoint (~/.aws/credentials,
    /// ~/.aws/config) [default: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else
    /// AWS_PROFILE, else "default"].
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// More logging (repeat for more); or set RUST_LOG.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve volumes over NBD (export name = volume name).
    Serve(serve::ServeArgs),
    /// Create, list, describe and delete volumes.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Encrypt new volumes and snapshot copies by default (per region).
    #[command(subcommand, name = "encryption-by-default")]
    EncryptionByDefault(keys::DefaultsCommand),
    /// Point-in-time, incremental snapshots.
    #[command(subcommand)]
    Snapshot(snapshot::SnapshotCommand),
    /// AWS KMS commands, as `aws kms <command>` (same names and options),
    /// and `kms serve` (the KMS as an AWS KMS endpoint).
    #[command(subcommand)]
    Kms(kms_serve::KmsGroup),
    /// IAM users and access keys (the principals `kms serve` authenticates).
    #[command(subcommand)]
    Iam(iam::IamCommand),
    /// The KMS audit log: verify its chain and signatures, list records.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// A key service and the identity to call it as.
pub struct KmsHandle {
    pub service: Box<dyn crate::kms::service::KeyService>,
    pub caller: Caller,
}

impl std::fmt::Debug for KmsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsHandle")
            .field("region", &self.service.region())
            .field("caller", &self.caller)
            .finish()
    }
}

/// What every command needs: where the data lives, the region, the output
/// format, and who is acting.
#[derive(Debug)]
pub struct Context {
    pub data_dir: PathBuf,
    pub region: String,
    pub output: Output,
    /// `--kms-endpoint`: a remote KMS for volumes and snapshots.
    pub kms_endpoint: Option<String>,
    /// `--profile`: the credentials for it.
    pub profile: Option<String>,
}

impl Context {
    /// The embedded KMS of this context's region.
    pub fn kms(&self) -> anyhow::Result<LocalKms> {
        Ok(LocalKms::open(&self.data_dir, &self.region)?)
    }

    /// The key service volume and snapshot commands use, and who they act
    /// as. Today the embedded KMS acting as the account root (as the AWS CLI
    /// does with root credentials); a remote KMS endpoint slots in here.
    pub fn key_service(&self) -> anyhow::Result<KmsHandle> {
        if let Some(endpoint) = &self.kms_endpoint {
            // The endpoint decides who is calling from the signature; ask it,
            // which also checks the credentials before any real work.
            let creds = crate::kms::remote::AwsCredentials::load(self.profile.as_deref())?;
            let remote = crate::kms::remote::RemoteKms::new(endpoint, &self.region, creds)?;
            let caller = Caller {
                principal_arn: remote.caller_identity()?,
            };
            return Ok(KmsHandle {
                service: Box::new(remote),
                caller,
            });
        }
        let kms = self.kms()?;
        let caller = kms.root_caller();
        Ok(KmsHandle {
            service: Box::new(kms),
            caller,
        })
    }

    /// The key service of another region (for cross-region copies).
    pub fn key_service_in(&self, region: &str) -> anyhow::Result<KmsHandle> {
        let kms = LocalKms::open(&self.data_dir, region)?;
        let caller = kms.root_caller();
        Ok(KmsHandle {
            service: Box::new(kms),
            caller,
        })
    }

    /// The local CLI acts as the account root, as the AWS CLI does with root
    /// credentials.
    pub fn caller(&self, kms: &LocalKms) -> Caller {
        kms.root_caller()
    }

    pub fn volumes(&self) -> crate::volume::VolumeStore {
        crate::volume::VolumeStore::new(&self.data_dir, &self.region)
    }

    /// Prints `value` as pretty JSON, or `text` in text mode.
    pub fn emit<T: serde::Serialize>(
        &self,
        value: &T,
        text: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        match self.output {
            Output::Json => out(&serde_json::to_string_pretty(value)?)?,
            Output::Text => {
                let t = text();
                if !t.is_empty() {
                    out(&t)?;
                }
            }
        }
        Ok(())
    }
}

/// Writes one line of a command's result to stdout. Unlike `println!`, a
/// closed stdout (`cryptvol … | head -1`) is an error to return, not a
/// panic; `main` ends quietly on it, as `cat` does.
pub fn out(line: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    writeln!(o, "{line}")?;
    o.flush()
}

/// Whether `e` comes from writing to a closed pipe (see [`out`]).
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The default data directory: `$XDG_DATA_HOME/cryptvol`, else
/// `~/.local/share/cryptvol`.
fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("cryptvol"));
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/cryptvol")),
        None => Err(anyhow::anyhow!(
            "cannot find a data directory: set --data-dir, CRYPTVOL_DATA_DIR or HOME"
        )),
    }
}

/// Formats an error and its causes on one line, skipping a cause whose text
/// its parent's message already includes (many messages embed their source).
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}

/// For the long-running servers (`serve`, `kms serve`), which hold keys for
/// hours: no core dumps, and no reading their memory through `/proc` or
/// ptrace by other processes of the same user. Key pages are left out of
/// dumps in every command anyway ([`crate::secmem`]); this covers the
/// rest of the heap (request buffers that held plaintext, for instance).
pub(crate) fn harden_server_process() {
    if let Err(e) = crate::secmem::disable_core_dumps() {
        tracing::warn!("cannot mark this process non-dumpable (prctl PR_SET_DUMPABLE: {e})");
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    init_logging(cli.verbose);
    let data_dir = match cli.data_dir {
        Some(d) => d,
        None => default_data_dir()?,
    };
    crate::kms::arn::validate_region(&cli.region)?;
    let ctx = Context {
        data_dir,
        region: cli.region,
        output: cli.output,
        kms_endpoint: cli.kms_endpoint,
        profile: cli.profile,
    };
    match cli.command {
        Command::Serve(args) => serve::run(&ctx, args),
        Command::Volume(cmd) => volume::run(&ctx, cmd),
        Command::Snapshot(cmd) => snapshot::run(&ctx, cmd),
        Command::EncryptionByDefault(cmd) => keys::defaults(&ctx, cmd),
        Command::Kms(cmd) => kms_serve::run_group(&ctx, cmd),
        Command::Iam(cmd) => iam::run(&ctx, cmd),
        Command::Audit(cmd) => audit::run(&ctx, cmd),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        // rustls warns about every libnbd/GnuTLS client that connects by
        // IP address (it sends the address as SNI, which RFC 6066 forbids):
        // harmless, and too noisy for the default log.
        0 => "warn,rustls=error,cryptvol=info",
        1 => "info,cryptvol=debug",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
