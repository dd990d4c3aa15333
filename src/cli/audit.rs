//! `cryptvol audit verify|list|digest`: the region's KMS audit log.
//!
//! `verify` needs only the log and its public key (so a copy of both can be
//! checked anywhere, with `--log` and `--public-key`); when this data dir's
//! root key is at hand it also checks that the public key beside the log is
//! really this KMS's, so a log rewritten and re-signed under another key is
//! caught too.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use ed25519_dalek::VerifyingKey;
use serde_json::json;

use super::{kms, Context, Output};
use crate::kms::audit::{
    self, AuditError, AuditFilter, AuditLog, AuditRecord, AuditSigningKey, VerifyReport,
    PUBLIC_KEY_FILE_NAME,
};
use crate::kms::rootkey::{RootKey, ROOT_KEY_ENV, ROOT_KEY_FILE_NAME};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the audit log's hash chain and signed digests; name the first bad record.
    Verify(VerifyArgs),
    /// List audit records, optionally filtered.
    List(ListArgs),
    /// Sign the chain now (append a digest record).
    Digest,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Verify this log file instead of the region's.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    /// Public key (PEM or hex) to verify with [default: the one beside the log].
    #[arg(long, value_name = "FILE")]
    pub public_key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only records about this key (key id, key ARN, alias name or alias ARN).
    #[arg(long, value_name = "KEY")]
    pub key_id: Option<String>,
    /// Only this operation, e.g. Decrypt.
    #[arg(long, value_name = "OPERATION")]
    pub operation: Option<String>,
    /// Only calls by this principal ARN.
    #[arg(long, value_name = "ARN")]
    pub caller: Option<String>,
    /// Records at or after T: RFC 3339 (2030-01-01T00:00:00Z), epoch seconds, or an age (2h, 30m).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub since: Option<SystemTime>,
    /// Records at or before T (same forms as --since).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub until: Option<SystemTime>,
}

pub fn run(ctx: &Context, cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify(a) => verify(ctx, a),
        AuditCommand::List(a) => list(ctx, a),
        AuditCommand::Digest => {
            let root = root_key(ctx)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "no root key in {} (and {ROOT_KEY_ENV} is not set): only the KMS that owns \
                     the audit log can sign it",
                    ctx.data_dir.display()
                )
            })?;
            let key = AuditSigningKey::from_root_key(&root, &ctx.region);
            let log = AuditLog::open(&ctx.data_dir, &ctx.region, key)?;
            let seq = log.write_digest()?;
            ctx.emit(&json!({ "DigestSequence": seq }), || {
                format!("audit log signed: digest record {seq}")
            })
        }
    }
}

fn verify(ctx: &Context, a: VerifyArgs) -> anyhow::Result<()> {
    let own_log = a.log.is_none();
    let path = a
        .log
        .unwrap_or_else(|| audit::log_path(&ctx.data_dir, &ctx.region));
    let key_path = a.public_key.unwrap_or_else(|| beside(&path));
    if !path.exists() && !key_path.exists() {
        return print_report(ctx, &path, &VerifyReport::default());
    }
    let public_key = audit::load_public_key(&key_path)?;
    if own_log {
        check_key_is_ours(ctx, &key_path, &public_key)?;
    }
    match audit::verify(&path, &public_key) {
        Ok(report) => print_report(ctx, &path, &report),
        Err(e @ AuditError::BadRecord { .. }) => {
            if ctx.output == Output::Json {
                let (line, sequence) = e.bad_record().unwrap_or_default();
                let v = json!({"Valid": false, "Line": line, "Sequence": sequence,
                               "Problem": e.to_string()});
                super::out(&serde_json::to_string_pretty(&v)?)?;
            }
            Err(e.into())
        }
        Err(e) => Err(e.into()),
    }
}

fn print_report(ctx: &Context, path: &Path, r: &VerifyReport) -> anyhow::Result<()> {
    let value = json!({"Valid": true, "Log": path, "Report": r});
    ctx.emit(&value, || {
        let mut out = format!(
            "audit log ok: {} records, {} signed digests",
            r.records, r.digests
        );
        if r.unsigned_records > 0 {
            out.push_str(&format!(
                "\n{} records after the last digest are chained but not yet signed \
                 (sign them now with `cryptvol audit digest`)",
                r.unsigned_records
            ));
        }
        if let Some(b) = r.torn_tail_bytes {
            out.push_str(&format!(
                "\nwarning: the last line is incomplete ({b} bytes left by a crash during an \
                 append); the KMS removes it the next time it writes to the log"
            ));
        }
        out
    })
}

/// `audit-public-key.pem` in the log's directory.
fn beside(log: &Path) -> PathBuf {
    log.parent()
        .unwrap_or_else(|| Path::new("."))
        .join(PUBLIC_KEY_FILE_NAME)
}

/// With the root key at hand, the published public key must be the one
/// this KMS derives; else someone replaced log and key together.
fn check_key_is_ours(ctx: &Context, key_path: &Path, key: &VerifyingKey) -> anyhow::Result<()> {
    let Some(root) = root_key(ctx)? else {
        return Ok(());
    };
    let ours = AuditSigningKey::from_root_key(&root, &ctx.region).verifying_key();
    if &ours != key {
        anyhow::bail!(
            "audit public key {} is not this KMS's audit signing key for region {}: the log \
             and its key were replaced, or the root key changed; the log cannot be trusted",
            key_path.display(),
            ctx.region
        );
    }
    Ok(())
}

/// The data dir's root key, if there is one (never creates it).
fn root_key(ctx: &Context) -> anyhow::Result<Option<RootKey>> {
    let path = match std::env::var_os(ROOT_KEY_ENV).filter(|v| !v.is_empty()) {
        Some(p) => PathBuf::from(p),
        None => ctx.data_dir.join(ROOT_KEY_FILE_NAME),
    };
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(RootKey::load(&path)?))
}

fn list(ctx: &Context, a: ListArgs) -> anyhow::Result<()> {
    let key = match a.key_id {
        Some(k) if k.starts_with("alias/") || k.contains(":alias/") => {
            let r = kms::call(ctx, "DescribeKey", json!({ "KeyId": k }))?;
            let arn = r["KeyMetadata"]["Arn"].as_str().map(str::to_owned);
            Some(arn.ok_or_else(|| anyhow::anyhow!("DescribeKey returned no key ARN for {k}"))?)
        }
        other => other,
    };
    let filter = AuditFilter {
        key,
        operation: a.operation,
        caller: a.caller,
        since: a.since,
        until: a.until,
    };
    let path = audit::log_path(&ctx.data_dir, &ctx.region);
    let records = audit::list(&path, &filter)?;
    ctx.emit(&json!({ "Records": records }), || table(&records))
}

fn table(records: &[AuditRecord]) -> String {
    if records.is_empty() {
        return "no audit records match".to_owned();
    }
    let rows: Vec<[String; 6]> = records
        .iter()
        .map(|r| {
            [
                r.sequence.to_string(),
                r.event_time.clone(),
                r.event_name.clone(),
                r.outcome.clone(),
                r.caller.clone(),
                r.key_arn
                    .as_deref()
                    .map(|k| k.rsplit('/').next().unwrap_or(k).to_owned())
                    .unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    let head = ["SEQ", "TIME", "EVENT", "OUTCOME", "CALLER", "KEY"].map(str::to_owned);
    let mut widths = [0usize; 6];
    for row in rows.iter().chain([&head]) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    std::iter::once(&head)
        .chain(&rows)
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            cells.join("  ").trim_end().to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// RFC 3339, epoch seconds, or an age such as `2h` (that long ago).
fn parse_time(s: &str) -> Result<SystemTime, String> {
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    if let Ok(age) = humantime::parse_duration(s) {
        return SystemTime::now()
            .checked_sub(age)
            .ok_or_else(|| format!("'{s}' ago is before the epoch"));
    }
    Err(format!(
        "'{s}' is not a time: give RFC 3339 (2030-01-01T00:00:00Z), epoch seconds, or an age \
         such as 2h or 30m"
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_three_forms() {
        assert_eq!(parse_time("0").unwrap(), UNIX_EPOCH);
        assert_eq!(
            parse_time("1970-01-01T00:01:00Z").unwrap(),
            UNIX_EPOCH + Duration::from_secs(60)
        );
        let t = parse_time("2h").unwrap();
        let age = SystemTime::now().duration_since(t).unwrap();
        assert!(age >= Duration::from_secs(7190) && age <= Duration::from_secs(7300));
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
    }
}
