//! The snapshot manifest: what a snapshot holds, authenticated.
//!
//! A manifest file is three lines of text:
//!
//! ```text
//! cryptvol-snapshot-manifest 2\n          magic and format version
//! {"snapshot_id":"snap-…",…}\n            the Manifest as one line of JSON
//! mac hmac-sha256 <64 hex>\n               MAC over the first two lines
//! ```
//!
//! For an encrypted volume the MAC key is derived from the volume's data key
//! (HKDF-SHA256, see [`crate::crypto::kdf`]), so only someone who can unwrap the data
//! key through the KMS can make a manifest that verifies: a swapped or edited
//! manifest is refused at restore. Chunks are named by the BLAKE3 of their
//! bytes and checked against it when read, so a swapped or altered chunk is
//! refused too. (Format 1 named chunks by SHA-256; format 2 manifests may
//! still list such chunks, kept from a format-1 parent, and they verify by
//! that digest, see [`super::chunks::names`].) An unencrypted volume has no key; its manifest carries a
//! plain `sha256` (integrity against accidents, not against an attacker).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::crypto::SecretBytes;

pub const MAGIC_LINE: &str = "cryptvol-snapshot-manifest";
/// 2: chunks are named by BLAKE3 (1: SHA-256). Both are read.
pub const FORMAT_VERSION: u32 = 2;

/// Snapshot lifecycle, as EBS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Pending,
    Completed,
    Error,
}

/// Everything a snapshot records. Chunks absent from `chunks` are all zeros.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub snapshot_id: String,
    pub volume_id: String,
    pub volume_name: String,
    pub description: String,
    pub state: State,
    pub size: u64,
    pub sector_size: u32,
    /// `aes-xts-plain64` or `none`.
    pub cipher: String,
    pub encrypted: bool,
    pub kms_key_arn: Option<String>,
    pub region: String,
    /// Base64 of the KMS blob wrapping the data key (the volume's).
    pub wrapped_data_key: Option<String>,
    pub encryption_context: BTreeMap<String, String>,
    pub parent_snapshot: Option<String>,
    /// RFC 3339.
    pub start_time: String,
    pub completion_time: String,
    pub chunk_size: u64,
    /// (chunk index, BLAKE3 hex of the stored chunk), ascending.
    pub chunks: Vec<(u64, String)>,
    /// Bytes this snapshot added to the store (new chunks).
    pub bytes_added: u64,
    /// Bytes of stored chunks this snapshot references.
    pub data_bytes: u64,
    /// How long writers were paused to fix the point in time, microseconds.
    pub write_pause_us: u64,
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("not a cryptvol snapshot manifest")]
    BadMagic,
    #[error("manifest format {0} is newer than this release understands; upgrade cryptvol")]
    TooNew(u32),
    #[error("manifest is malformed: {0}")]
    Malformed(String),
    #[error("manifest failed authentication: it was altered, or was not made with this volume's data key")]
    BadMac,
}

pub use crate::crypto::kdf::snapshot_mac_key as mac_key;

fn tag(key: Option<&SecretBytes>, signed: &[u8]) -> (&'static str, String) {
    match key {
        Some(k) => {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(k.expose())
                .expect("BUG: HMAC takes any key length");
            m.update(signed);
            ("hmac-sha256", hex::encode(m.finalize().into_bytes()))
        }
        None => ("sha256", hex::encode(Sha256::digest(signed))),
    }
}

impl Manifest {
    /// Encodes and authenticates. `key` is `None` only for unencrypted volumes.
    pub fn encode(&self, key: Option<&SecretBytes>) -> Vec<u8> {
        let mut out = format!("{MAGIC_LINE} {FORMAT_VERSION}\n").into_bytes();
        out.extend(serde_json::to_vec(self).expect("BUG: Manifest serializes"));
        out.push(b'\n');
        let (alg, t) = tag(key, &out);
        out.extend(format!("mac {alg} {t}\n").into_bytes());
        out
    }

    /// Parses without authenticating: enough to list and describe, and to
    /// find which key to ask the KMS for. Call [`Manifest::verify`] before
    /// trusting the contents.
    pub fn decode_unverified(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let text =
            std::str::from_utf8(bytes).map_err(|_| ManifestError::Malformed("not UTF-8".into()))?;
        let mut lines = text.split_terminator('\n');
        let magic = lines.next().ok_or(ManifestError::BadMagic)?;
        let version = magic
            .strip_prefix(MAGIC_LINE)
            .and_then(|v| v.strip_prefix(' '))
            .ok_or(ManifestError::BadMagic)?
            .parse::<u32>()
            .map_err(|_| ManifestError::BadMagic)?;
        if version > FORMAT_VERSION {
            return Err(ManifestError::TooNew(version));
        }
        let body = lines
            .next()
            .ok_or_else(|| ManifestError::Malformed("missing body".into()))?;
        let m: Manifest =
            serde_json::from_str(body).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        let mac = lines
            .next()
            .ok_or_else(|| ManifestError::Malformed("missing mac line".into()))?;
        if !mac.starts_with("mac ") || lines.next().is_some() {
            return Err(ManifestError::Malformed("bad trailer".into()));
        }
        m.validate()?;
        Ok(m)
    }

    /// Checks the MAC line against `key` (or the plain hash when `None`).
    pub fn verify(bytes: &[u8], key: Option<&SecretBytes>) -> Result<Manifest, ManifestError> {
        let m = Self::decode_unverified(bytes)?;
        let split = bytes[..bytes.len().saturating_sub(1)]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|p| p + 1)
            .ok_or_else(|| ManifestError::Malformed("missing mac line".into()))?;
        let (signed, mac_line) = bytes.split_at(split);
        let (alg, want) = tag(key, signed);
        let line = std::str::from_utf8(mac_line)
            .map_err(|_| ManifestError::BadMac)?
            .trim_end();
        let got = line
            .strip_prefix("mac ")
            .and_then(|r| r.strip_prefix(alg))
            .and_then(|r| r.strip_prefix(' '));
        // Constant-time comparison is not needed for a MAC an attacker can
        // only check offline, but costs nothing.
        match got {
            Some(g)
                if g.len() == want.len()
                    && g.bytes()
                        .zip(want.bytes())
                        .fold(0u8, |a, (x, y)| a | (x ^ y))
                        == 0 =>
            {
                Ok(m)
            }
            _ => Err(ManifestError::BadMac),
        }
    }

    fn validate(&self) -> Result<(), ManifestError> {
        let bad = |m: &str| Err(ManifestError::Malformed(m.into()));
        if !super::is_snapshot_id(&self.snapshot_id) {
            return bad("bad snapshot id");
        }
        if self.chunk_size == 0 || self.size == 0 || self.sector_size == 0 {
            return bad("zero size");
        }
        let n = self.size.div_ceil(self.chunk_size);
        let mut prev = None;
        for (i, h) in &self.chunks {
            if *i >= n || prev.is_some_and(|p| p >= *i) {
                return bad("chunk indices out of range or order");
            }
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("chunk hash is not 64 hex digits");
            }
            prev = Some(*i);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            snapshot_id: "snap-0123456789abcdef0".into(),
            volume_id: "vol-0123456789abcdef0".into(),
            volume_name: "v".into(),
            description: "d".into(),
            state: State::Completed,
            size: 4 << 20,
            sector_size: 4096,
            cipher: "aes-xts-plain64".into(),
            encrypted: true,
            kms_key_arn: Some("arn:aws:kms:us-east-1:111122223333:key/x".into()),
            region: "us-east-1".into(),
            wrapped_data_key: Some("AAAA".into()),
            encryption_context: [(
                "aws:ebs:id".to_string(),
                "vol-0123456789abcdef0".to_string(),
            )]
            .into(),
            parent_snapshot: None,
            start_time: "2026-01-01T00:00:00Z".into(),
            completion_time: "2026-01-01T00:00:01Z".into(),
            chunk_size: 512 * 1024,
            chunks: vec![(0, "ab".repeat(32)), (5, "cd".repeat(32))],
            bytes_added: 1 << 20,
            data_bytes: 1 << 20,
            write_pause_us: 12,
        }
    }

    #[test]
    fn round_trip_and_any_change_fails_authentication() {
        let key = mac_key(&[7u8; 64]);
        let bytes = sample().encode(Some(&key));
        assert_eq!(Manifest::verify(&bytes, Some(&key)).unwrap(), sample());
        // Wrong key.
        assert_eq!(
            Manifest::verify(&bytes, Some(&mac_key(&[8u8; 64]))),
            Err(ManifestError::BadMac)
        );
        // Every single-byte change in the body is caught by MAC or parser.
        let body_start = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        let body_end = body_start
            + bytes[body_start..]
                .iter()
                .position(|&b| b == b'\n')
                .unwrap();
        for i in (body_start..body_end).step_by(7) {
            let mut b = bytes.clone();
            b[i] = if b[i] == b'1' { b'2' } else { b'1' };
            assert!(
                Manifest::verify(&b, Some(&key)).is_err(),
                "change at {i} not detected"
            );
        }
    }

    #[test]
    fn format_1_manifests_are_still_read() {
        // A format-1 manifest is the same text with version 1 (its chunk
        // names are SHA-256, which the chunk store still accepts).
        let key = mac_key(&[7u8; 64]);
        let v2 = String::from_utf8(sample().encode(Some(&key))).unwrap();
        let first = v2.find('\n').unwrap();
        assert_eq!(&v2[..first], "cryptvol-snapshot-manifest 2");
        let body_end = first + 1 + v2[first + 1..].find('\n').unwrap() + 1;
        let mut v1 = format!("cryptvol-snapshot-manifest 1{}", &v2[first..body_end]);
        let (alg, t) = tag(Some(&key), v1.as_bytes());
        v1.push_str(&format!("mac {alg} {t}\n"));
        assert_eq!(
            Manifest::verify(v1.as_bytes(), Some(&key)).unwrap(),
            sample()
        );
    }

    #[test]
    fn unencrypted_manifests_carry_a_plain_hash() {
        let bytes = sample().encode(None);
        assert!(Manifest::verify(&bytes, None).is_ok());
        assert!(String::from_utf8_lossy(&bytes).contains("mac sha256 "));
        assert_eq!(
            Manifest::verify(&bytes, Some(&mac_key(&[1; 64]))),
            Err(ManifestError::BadMac)
        );
    }

    #[test]
    fn rejects_bad_magic_newer_format_and_bad_chunks() {
        assert_eq!(
            Manifest::decode_unverified(b"hello\n"),
            Err(ManifestError::BadMagic)
        );
        let b = sample().encode(None);
        let newer = String::from_utf8(b).unwrap().replacen(" 2\n", " 9\n", 1);
        assert_eq!(
            Manifest::decode_unverified(newer.as_bytes()),
            Err(ManifestError::TooNew(9))
        );
        let mut m = sample();
        m.chunks = vec![(5, "ab".repeat(32)), (0, "cd".repeat(32))];
        assert!(matches!(
            Manifest::decode_unverified(&m.encode(None)),
            Err(ManifestError::Malformed(_))
        ));
        m.chunks = vec![(8, "ab".repeat(32))];
        assert!(matches!(
            Manifest::decode_unverified(&m.encode(None)),
            Err(ManifestError::Malformed(_))
        ));
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let _ = Manifest::decode_unverified(&bytes);
            let _ = Manifest::verify(&bytes, None);
        }
    }
}
