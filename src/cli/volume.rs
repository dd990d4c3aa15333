//! `cryptvol volume create|list|describe|delete`.

use clap::{Args, Subcommand};

use super::size::parse_size;
use super::Context;
use crate::volume::{CreateOptions, VolumeInfo, DEFAULT_SECTOR_SIZE};

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create an encrypted (by default) volume.
    Create(CreateArgs),
    /// List the region's volumes.
    List,
    /// Show one volume's metadata.
    Describe {
        /// Volume name or id (vol-…).
        volume: String,
    },
    /// Copy a detached volume under a new data key (re-encrypting it).
    Copy(super::keys::VolumeCopyArgs),
    /// Re-wrap a volume's data key under another KMS key (ReEncrypt); the
    /// data is untouched.
    Rewrap(super::keys::RewrapArgs),
    /// Delete a volume and its data.
    Delete {
        /// Volume name or id (vol-…).
        volume: String,
    },
}

/// Options shared by `volume create` and `serve --create`.
#[derive(Debug, Clone, Args)]
pub struct NewVolumeArgs {
    /// Size, e.g. 1G, 512M, 10GiB (binary units).
    #[arg(long, value_parser = parse_size)]
    pub size: Option<u64>,
    /// KMS key (id, ARN, alias/NAME or alias ARN) that wraps the data key
    /// [default: alias/aws/ebs].
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,
    /// Store plaintext (EBS allows unencrypted volumes).
    #[arg(long, conflicts_with = "kms_key_id")]
    pub unencrypted: bool,
    /// Encryption sector size: 4096 (default, as LUKS2) or 512.
    #[arg(long, default_value_t = DEFAULT_SECTOR_SIZE, value_parser = parse_sector_size)]
    pub sector_size: u32,
}

fn parse_sector_size(s: &str) -> Result<u32, String> {
    match s {
        "512" => Ok(512),
        "4096" => Ok(4096),
        _ => Err(format!("sector size must be 512 or 4096, not {s:?}")),
    }
}

impl NewVolumeArgs {
    /// [`NewVolumeArgs::options`] with the region's encryption-by-default
    /// setting applied.
    pub fn options_in(&self, ctx: &Context) -> anyhow::Result<CreateOptions> {
        let mut o = self.options()?;
        let d = crate::volume::defaults::EncryptionDefaults::load(&ctx.data_dir, &ctx.region)?;
        let (enc, key) = d.apply(&ctx.region, o.encrypted, o.kms_key_id.take())?;
        o.encrypted = enc;
        o.kms_key_id = key;
        Ok(o)
    }

    pub fn options(&self) -> anyhow::Result<CreateOptions> {
        let size = self.size.ok_or_else(|| {
            anyhow::anyhow!("--size is required to create a volume (e.g. --size 1G)")
        })?;
        Ok(CreateOptions {
            size,
            sector_size: self.sector_size,
            kms_key_id: self.kms_key_id.clone(),
            encrypted: !self.unencrypted,
        })
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name (also the NBD export name).
    pub name: String,
    #[command(flatten)]
    pub new: NewVolumeArgs,
    /// Restore from this snapshot (snap-…); --size may make it larger and
    /// --kms-key-id re-encrypts it under another key.
    #[arg(long, value_name = "SNAP")]
    pub from_snapshot: Option<String>,
}

pub fn run(ctx: &Context, cmd: VolumeCommand) -> anyhow::Result<()> {
    let store = ctx.volumes();
    match cmd {
        VolumeCommand::Create(a) if a.from_snapshot.is_some() => {
            let snap = a.from_snapshot.as_deref().unwrap_or_default();
            let kms = ctx.key_service()?;
            let snaps = crate::snapshot::SnapshotStore::new(&ctx.data_dir, &ctx.region);
            let opts = crate::snapshot::restore::RestoreOptions {
                size: a.new.size,
                kms_key_id: a.new.kms_key_id.clone(),
            };
            let bar = super::progress::Reporter::new("restore");
            let src = crate::snapshot::copy::Side {
                store: &snaps,
                kms: kms.service.as_ref(),
                caller: &kms.caller,
            };
            let info = crate::snapshot::restore::restore(src, &store, snap, &a.name, &opts, &bar);
            bar.finish();
            let info = info?;
            ctx.emit(&info, || describe_text(&info))
        }
        VolumeCommand::Create(a) => {
            let opts = a.new.options_in(ctx)?;
            let kms = ctx.key_service()?;
            let info = store.create(kms.service.as_ref(), &kms.caller, &a.name, &opts)?;
            ctx.emit(&info, || describe_text(&info))
        }
        VolumeCommand::Copy(a) => super::keys::volume_copy(ctx, a),
        VolumeCommand::Rewrap(a) => super::keys::volume_rewrap(ctx, a),
        VolumeCommand::List => {
            let list = store.list()?;
            ctx.emit(&serde_json::json!({ "Volumes": list }), || list_text(&list))
        }
        VolumeCommand::Describe { volume } => {
            let info = store.find(&volume)?;
            ctx.emit(&info, || describe_text(&info))
        }
        VolumeCommand::Delete { volume } => {
            let info = store.delete(&volume)?;
            ctx.emit(&serde_json::json!({ "Deleted": info.volume_id }), || {
                format!("deleted {} ({})", info.name, info.volume_id)
            })
        }
    }
}

/// Human size: 1 GiB, 512 MiB, 4096 B.
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut i = 0;
    let mut v = n as f64;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if v.fract() == 0.0 {
        format!("{v} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

fn list_text(list: &[VolumeInfo]) -> String {
    if list.is_empty() {
        return "no volumes (create one with `cryptvol volume create NAME --size 1G`)".into();
    }
    let mut out = format!(
        "{:<24} {:<22} {:>10} {:<10} {}",
        "NAME", "VOLUME ID", "SIZE", "ENCRYPTED", "KMS KEY"
    );
    for v in list {
        out.push_str(&format!(
            "\n{:<24} {:<22} {:>10} {:<10} {}",
            v.name,
            v.volume_id,
            human_size(v.size),
            if v.encrypted { "yes" } else { "no" },
            v.kms_key_arn.as_deref().unwrap_or("-")
        ));
    }
    out
}

fn describe_text(v: &VolumeInfo) -> String {
    let ctx: Vec<String> = v
        .encryption_context
        .iter()
        .map(|(k, x)| format!("{k}={x}"))
        .collect();
    let mut rows = vec![
        ("volume id", v.volume_id.clone()),
        ("name", v.name.clone()),
        ("path", v.path.display().to_string()),
        ("size", format!("{} ({} bytes)", human_size(v.size), v.size)),
        ("sector size", v.sector_size.to_string()),
        (
            "encrypted",
            if v.encrypted {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        ("cipher", v.cipher.to_string()),
        ("data offset", v.data_offset.to_string()),
        ("region", v.region.clone()),
        ("created", v.created.clone()),
    ];
    if let Some(k) = &v.kms_key_arn {
        rows.push(("kms key", k.clone()));
        rows.push(("encryption context", ctx.join(",")));
    }
    if let Some(s) = &v.origin_snapshot {
        rows.push(("origin snapshot", s.clone()));
    }
    rows.iter()
        .map(|(k, x)| format!("{k:<19} {x}"))
        .collect::<Vec<_>>()
        .join("\n")
}
