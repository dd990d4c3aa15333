//! Key-change commands: `volume copy`, `volume rewrap`, `snapshot copy`,
//! and `encryption-by-default`.

use clap::{Args, Subcommand};

use super::volume::human_size;
use super::Context;
use crate::snapshot::copy::{CopyOptions, Side};
use crate::snapshot::SnapshotStore;
use crate::volume::defaults::EncryptionDefaults;
use crate::volume::KeySource;

#[derive(Debug, Args)]
pub struct SnapshotCopyArgs {
    /// The snapshot to copy (snap-…), in the source region.
    pub snapshot: String,
    /// Region of the source snapshot [default: --region].
    #[arg(long)]
    pub source_region: Option<String>,
    /// Destination key (in the destination region, --region); the copy is
    /// re-encrypted under a new data key.
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,
    /// Encrypt a copy of an unencrypted snapshot.
    #[arg(long)]
    pub encrypted: bool,
    /// Ask for an unencrypted copy (refused for encrypted snapshots, as EBS does).
    #[arg(long, conflicts_with_all = ["encrypted", "kms_key_id"])]
    pub unencrypted: bool,
    #[arg(long)]
    pub description: Option<String>,
}

pub fn snapshot_copy(ctx: &Context, a: SnapshotCopyArgs) -> anyhow::Result<()> {
    let src_region = a
        .source_region
        .clone()
        .unwrap_or_else(|| ctx.region.clone());
    crate::kms::arn::validate_region(&src_region)?;
    let src_store = SnapshotStore::new(&ctx.data_dir, &src_region);
    let dst_store = SnapshotStore::new(&ctx.data_dir, &ctx.region);
    let src_kms = ctx.key_service_in(&src_region)?;
    let dst_kms = ctx.key_service()?;
    if a.unencrypted {
        let (m, _) = src_store.load(&a.snapshot)?;
        if m.encrypted {
            anyhow::bail!(
                "snapshot {} is encrypted: a copy cannot be unencrypted (EBS refuses this too); omit --unencrypted",
                a.snapshot
            );
        }
    }
    let defaults = EncryptionDefaults::load(&ctx.data_dir, &ctx.region)?;
    if a.unencrypted && defaults.enabled {
        anyhow::bail!(
            "encryption by default is enabled in {}: copies are encrypted",
            ctx.region
        );
    }
    let opts = CopyOptions {
        kms_key_id: a.kms_key_id,
        encrypted: a.encrypted,
        description: a.description,
        defaults,
    };
    let src = Side {
        store: &src_store,
        kms: src_kms.service.as_ref(),
        caller: &src_kms.caller,
    };
    let dst = Side {
        store: &dst_store,
        kms: dst_kms.service.as_ref(),
        caller: &dst_kms.caller,
    };
    let t0 = std::time::Instant::now();
    let bar = super::progress::Reporter::new("copy");
    let info = crate::snapshot::copy::copy(src, dst, &a.snapshot, &opts, &bar);
    bar.finish();
    let info = info?;
    let secs = t0.elapsed().as_secs_f64();
    ctx.emit(&info, || {
        format!(
            "{} copied to {} in {} ({}), {} added, {:.1} s",
            a.snapshot,
            info.snapshot_id,
            info.region,
            info.kms_key_arn.as_deref().unwrap_or("unencrypted"),
            human_size(info.bytes_added),
            secs
        )
    })
}

#[derive(Debug, Args)]
pub struct VolumeCopyArgs {
    /// Source volume (detached).
    pub volume: String,
    /// Name of the new volume.
    pub new_name: String,
    /// Key for the new data key [default: encryption-by-default key, else alias/aws/ebs].
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,
}

pub fn volume_copy(ctx: &Context, a: VolumeCopyArgs) -> anyhow::Result<()> {
    let store = ctx.volumes();
    let kms = ctx.key_service()?;
    let src = store.find(&a.volume)?;
    let defaults = EncryptionDefaults::load(&ctx.data_dir, &ctx.region)?;
    let encrypt = src.encrypted || a.kms_key_id.is_some() || defaults.enabled;
    let key = if encrypt {
        KeySource::New(Some(a.kms_key_id.clone().unwrap_or_else(|| defaults.key())))
    } else {
        KeySource::Unencrypted
    };
    let t0 = std::time::Instant::now();
    let bar = super::progress::Reporter::new("copy");
    let copied = store.copy(
        kms.service.as_ref(),
        &kms.caller,
        &a.volume,
        &a.new_name,
        key,
        &bar,
    );
    bar.finish();
    let (info, bytes) = copied?;
    let secs = t0.elapsed().as_secs_f64();
    ctx.emit(&info, || {
        format!(
            "copied {} to {} ({}) under {}: {} re-encrypted in {:.1} s",
            a.volume,
            info.name,
            info.volume_id,
            info.kms_key_arn.as_deref().unwrap_or("no key"),
            human_size(bytes),
            secs
        )
    })
}

#[derive(Debug, Args)]
pub struct RewrapArgs {
    pub volume: String,
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: String,
}

pub fn volume_rewrap(ctx: &Context, a: RewrapArgs) -> anyhow::Result<()> {
    let kms = ctx.key_service()?;
    let info = ctx
        .volumes()
        .rewrap(kms.service.as_ref(), &kms.caller, &a.volume, &a.kms_key_id)?;
    ctx.emit(&info, || {
        format!(
            "{} now wrapped by {}",
            info.name,
            info.kms_key_arn.as_deref().unwrap_or_default()
        )
    })
}

#[derive(Debug, Subcommand)]
pub enum DefaultsCommand {
    /// New volumes and snapshot copies in this region are encrypted.
    Enable {
        /// Default key [default: alias/aws/ebs].
        #[arg(long, value_name = "KEY")]
        kms_key_id: Option<String>,
    },
    Disable,
    Status,
}

pub fn defaults(ctx: &Context, cmd: DefaultsCommand) -> anyhow::Result<()> {
    let mut d = EncryptionDefaults::load(&ctx.data_dir, &ctx.region)?;
    match cmd {
        DefaultsCommand::Enable { kms_key_id } => {
            if let Some(k) = &kms_key_id {
                // The key must exist in this region and be usable.
                let kms = ctx.key_service()?;
                kms.service.describe_key(&kms.caller, k)?;
            }
            d = EncryptionDefaults {
                enabled: true,
                kms_key_id,
            };
            d.save(&ctx.data_dir, &ctx.region)?;
        }
        DefaultsCommand::Disable => {
            d.enabled = false;
            d.save(&ctx.data_dir, &ctx.region)?;
        }
        DefaultsCommand::Status => {}
    }
    ctx.emit(&serde_json::json!({ "EbsEncryptionByDefault": d.enabled, "KmsKeyId": d.key(), "Region": ctx.region }), || {
        format!(
            "encryption by default in {}: {} (key {})",
            ctx.region,
            if d.enabled { "enabled" } else { "disabled" },
            d.key()
        )
    })
}
