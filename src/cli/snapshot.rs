//! `cryptvol snapshot create|list|describe|delete|gc`.

use clap::Subcommand;

use super::volume::human_size;
use super::Context;
use crate::snapshot::{SnapshotInfo, SnapshotStore};

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a volume (point in time; works while it is being served).
    Create {
        /// Volume name or id.
        volume: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List snapshots (completed, pending, and interrupted ones).
    List {
        /// Only snapshots of this volume (name or id).
        #[arg(long)]
        volume: Option<String>,
    },
    /// Show one snapshot.
    Describe { snapshot: String },
    /// Delete a snapshot and the chunks no other snapshot uses.
    Delete { snapshot: String },
    /// Remove unreferenced chunks and interrupted snapshots.
    Gc,
    /// Copy a snapshot: same key (cheap), a new key (re-encrypt), or into
    /// another region (re-encrypt with that region's KMS).
    Copy(super::keys::SnapshotCopyArgs),
}

pub fn run(ctx: &Context, cmd: SnapshotCommand) -> anyhow::Result<()> {
    let store = SnapshotStore::new(&ctx.data_dir, &ctx.region);
    match cmd {
        SnapshotCommand::Create {
            volume,
            description,
        } => {
            let vols = ctx.volumes();
            let v = vols.find(&volume)?;
            // A served volume is snapshotted by its server; otherwise here.
            let sock = vols.control_socket(&v.volume_id);
            let info =
                match crate::snapshot::control::request_snapshot(&sock, &v.name, &description)? {
                    Some(s) => s,
                    None => {
                        let kms = ctx.key_service()?;
                        let vol =
                            vols.attach(kms.service.as_ref(), &kms.caller, &v.volume_id, false)?;
                        let bar = super::progress::Reporter::new("snapshot");
                        let s = crate::snapshot::create::create(&store, &vol, &description, &bar);
                        bar.finish();
                        vol.detach()?;
                        s?
                    }
                };
            ctx.emit(&info, || {
                format!(
                    "{} of {} completed: {} added ({} referenced), writers paused {} µs",
                    info.snapshot_id,
                    info.volume_name,
                    human_size(info.bytes_added),
                    human_size(info.data_bytes),
                    info.write_pause_us
                )
            })
        }
        SnapshotCommand::List { volume } => {
            let mut list = store.list()?;
            if let Some(v) = volume {
                list.retain(|s| s.volume_name == v || s.volume_id == v);
            }
            ctx.emit(&serde_json::json!({ "Snapshots": list }), || {
                list_text(&list)
            })
        }
        SnapshotCommand::Describe { snapshot } => {
            let s = store.describe(&snapshot)?;
            ctx.emit(&s, || serde_json::to_string_pretty(&s).unwrap_or_default())
        }
        SnapshotCommand::Delete { snapshot } => {
            let r = store.delete(&snapshot)?;
            ctx.emit(&serde_json::json!({ "Deleted": snapshot, "Gc": r }), || {
                format!(
                    "deleted {snapshot}; {} unreferenced chunks removed",
                    r.chunks_removed
                )
            })
        }
        SnapshotCommand::Copy(a) => super::keys::snapshot_copy(ctx, a),
        SnapshotCommand::Gc => {
            let r = store.gc()?;
            ctx.emit(&r, || {
                if r.deferred {
                    "a snapshot is being taken; garbage collection deferred".to_string()
                } else {
                    format!(
                        "{} chunks and {} interrupted snapshots removed",
                        r.chunks_removed, r.interrupted_removed
                    )
                }
            })
        }
    }
}

fn list_text(list: &[SnapshotInfo]) -> String {
    if list.is_empty() {
        return "no snapshots (take one with `cryptvol snapshot create VOLUME`)".into();
    }
    let mut out = format!(
        "{:<23} {:<16} {:<10} {:>10} {:>10} {:<21} {}",
        "SNAPSHOT ID", "VOLUME", "STATE", "SIZE", "ADDED", "STARTED", "DESCRIPTION"
    );
    for s in list {
        out.push_str(&format!(
            "\n{:<23} {:<16} {:<10} {:>10} {:>10} {:<21} {}",
            s.snapshot_id,
            s.volume_name,
            format!("{:?}", s.state).to_lowercase(),
            human_size(s.size),
            human_size(s.bytes_added),
            s.start_time,
            s.description
        ));
    }
    out
}
