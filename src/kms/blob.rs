//! The KMS ciphertext blob: what Encrypt and GenerateDataKey return and what
//! Decrypt takes. Sans-I/O: bytes in, [`Blob`] out, and back.
//!
//! Why self-describing: Decrypt needs no key id from the caller (as in AWS),
//! and rotation adds key material versions, so a blob must name both the
//! key and the material version that sealed it; old blobs keep decrypting
//! after rotation because their version is still in the key store.
//!
//! ```text
//!  0        1            4                       20                 24
//!  +--------+------------+-----------------------+------------------+
//!  |version | magic      | key id                | material version |   header (24 bytes)
//!  | 0x01   | "CVK"      | 16 bytes, UUID raw    | u32 LE, from 1   |   = start of the AAD
//!  +--------+------------+-----------------------+------------------+
//!  24                    36                 40
//!  +---------------------+------------------+---------------------------+
//!  | nonce               | ciphertext len   | ciphertext ‖ GCM tag      |
//!  | 12 bytes, random    | u32 LE (n + 16)  | n + 16 bytes              |
//!  +---------------------+------------------+---------------------------+
//! ```
//!
//! - All integers little-endian. The whole blob is at most
//!   [`MAX_BLOB_LEN`] bytes (AWS's `CiphertextBlob` limit).
//! - The magic tells a cryptvol blob from an AWS one (those also start with
//!   `0x01`) or from garbage, so the error can say which it is.
//! - AES-256-GCM under the key material named by (key id, material
//!   version); AAD = the 24 header bytes ‖ the canonical encryption context
//!   ([`super::context::canonical_encoding`]). Changing the version, key id,
//!   material version, nonce, ciphertext or context makes opening fail.
//! - Multi-region keys (`mrk-` + 32 hex digits) will fit the same 16 bytes.

use uuid::Uuid;

use crate::crypto::aead::{self, OpenError, NONCE_LEN, TAG_LEN};
use crate::crypto::SecretBytes;

/// Format version 1, the only one so far.
pub const VERSION_1: u8 = 1;
pub const VERSION_OFFSET: usize = 0;
/// Distinguishes cryptvol blobs from AWS KMS blobs and from garbage.
pub const MAGIC: [u8; 3] = *b"CVK";
pub const MAGIC_OFFSET: usize = VERSION_OFFSET + 1;
pub const KEY_ID_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
/// A KMS key id is a UUID: 16 raw bytes.
pub const KEY_ID_LEN: usize = 16;
pub const MATERIAL_VERSION_OFFSET: usize = KEY_ID_OFFSET + KEY_ID_LEN;
/// The header (version, magic, key id, material version) is the AAD prefix.
pub const HEADER_LEN: usize = MATERIAL_VERSION_OFFSET + 4;
pub const NONCE_OFFSET: usize = HEADER_LEN;
pub const CIPHERTEXT_LEN_OFFSET: usize = NONCE_OFFSET + NONCE_LEN;
pub const CIPHERTEXT_OFFSET: usize = CIPHERTEXT_LEN_OFFSET + 4;
/// AWS KMS limit on `CiphertextBlob` (Decrypt, ReEncrypt).
pub const MAX_BLOB_LEN: usize = 6144;
/// KMS never seals empty plaintext (Encrypt takes 1..=4096 bytes,
/// GenerateDataKey 1..=1024), so a ciphertext holds at least one byte + tag.
pub const MIN_CIPHERTEXT_LEN: usize = 1 + TAG_LEN;
pub const MAX_CIPHERTEXT_LEN: usize = MAX_BLOB_LEN - CIPHERTEXT_OFFSET;
/// Longest plaintext a blob can carry.
pub const MAX_PLAINTEXT_LEN: usize = MAX_CIPHERTEXT_LEN - TAG_LEN;
// Encrypt takes up to 4096 bytes of plaintext (AWS); its blob must fit.
const _: () = assert!(MAX_PLAINTEXT_LEN >= 4096);

/// Why bytes are not a valid blob. Each says what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the ciphertext blob is empty")]
    Empty,
    #[error("the ciphertext blob is {len} bytes, over the {MAX_BLOB_LEN}-byte limit")]
    TooLong { len: usize },
    #[error("the ciphertext blob is not a cryptvol KMS blob (no \"CVK\" magic); was it made by another KMS?")]
    BadMagic,
    #[error("the ciphertext blob has format version {0}, which this cryptvol does not know (it reads version {VERSION_1}); upgrade cryptvol")]
    UnknownVersion(u8),
    #[error("the ciphertext blob is truncated: its {field} ends at byte {need}, but the blob has {len} bytes")]
    Truncated {
        field: &'static str,
        need: usize,
        len: usize,
    },
    #[error("the ciphertext blob has {extra} unexpected bytes after its ciphertext")]
    TrailingBytes { extra: usize },
    #[error("the ciphertext blob's ciphertext is {len} bytes; it must be {MIN_CIPHERTEXT_LEN}..={MAX_CIPHERTEXT_LEN}")]
    BadCiphertextLen { len: usize },
    #[error(
        "plaintext of {len} bytes does not fit a ciphertext blob (1..={MAX_PLAINTEXT_LEN} bytes)"
    )]
    BadPlaintextLen { len: usize },
}

/// A parsed ciphertext blob. Its fields are private so that every `Blob`
/// satisfies the length limits and encodes without checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    key_id: [u8; KEY_ID_LEN],
    material_version: u32,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Blob {
    /// Builds a blob from its parts, checking the ciphertext length.
    pub fn from_parts(
        key_id: [u8; KEY_ID_LEN],
        material_version: u32,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    ) -> Result<Blob, BlobError> {
        if !(MIN_CIPHERTEXT_LEN..=MAX_CIPHERTEXT_LEN).contains(&ciphertext.len()) {
            return Err(BlobError::BadCiphertextLen {
                len: ciphertext.len(),
            });
        }
        Ok(Blob {
            key_id,
            material_version,
            nonce,
            ciphertext,
        })
    }

    /// Encrypts `plaintext` under `material` (version `material_version` of
    /// key `key_id`), binding the header and `canonical_context` as AAD.
    pub fn seal(
        key_id: [u8; KEY_ID_LEN],
        material_version: u32,
        material: &SecretBytes,
        plaintext: &[u8],
        canonical_context: &[u8],
    ) -> Result<Blob, BlobError> {
        if plaintext.is_empty() || plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(BlobError::BadPlaintextLen {
                len: plaintext.len(),
            });
        }
        let aad = aad(&header(&key_id, material_version), canonical_context);
        let sealed = aead::seal(material, plaintext, &aad);
        Blob::from_parts(key_id, material_version, sealed.nonce, sealed.ciphertext)
    }

    /// Decrypts and authenticates with `material` and `canonical_context`.
    pub fn open(
        &self,
        material: &SecretBytes,
        canonical_context: &[u8],
    ) -> Result<SecretBytes, OpenError> {
        let aad = aad(&self.header(), canonical_context);
        aead::open(material, &self.nonce, &self.ciphertext, &aad)
    }

    /// The 16 raw key id bytes (see [`super::arn::key_id_from_bytes`]).
    pub fn key_id_bytes(&self) -> [u8; KEY_ID_LEN] {
        self.key_id
    }

    /// The key id bytes read as a UUID.
    pub fn key_uuid(&self) -> Uuid {
        Uuid::from_bytes(self.key_id)
    }

    pub fn material_version(&self) -> u32 {
        self.material_version
    }

    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// Ciphertext followed by the 16-byte GCM tag.
    pub fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    /// The 24 header bytes, which start the AAD.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        header(&self.key_id, self.material_version)
    }

    /// Length of the encoded blob.
    pub fn encoded_len(&self) -> usize {
        CIPHERTEXT_OFFSET + self.ciphertext.len()
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let ct_len = u32::try_from(self.ciphertext.len())
            .expect("BUG: Blob ciphertext is bounded by MAX_BLOB_LEN");
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.header());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&ct_len.to_le_bytes());
        out.extend_from_slice(&self.ciphertext);
    }

    /// The wire form as a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode(&mut out);
        out
    }

    /// Parses a blob, rejecting truncation, trailing bytes, unknown
    /// versions, foreign blobs and anything over [`MAX_BLOB_LEN`]. Checks
    /// structure only; [`Blob::open`] checks authenticity.
    pub fn decode(bytes: &[u8]) -> Result<Blob, BlobError> {
        let len = bytes.len();
        if len == 0 {
            return Err(BlobError::Empty);
        }
        if len > MAX_BLOB_LEN {
            return Err(BlobError::TooLong { len });
        }
        let field = |name: &'static str, start: usize, end: usize| {
            bytes.get(start..end).ok_or(BlobError::Truncated {
                field: name,
                need: end,
                len,
            })
        };
        // Magic before version: garbage and foreign blobs should be called
        // that, not "unknown version".
        if field("magic", MAGIC_OFFSET, KEY_ID_OFFSET)? != MAGIC {
            return Err(BlobError::BadMagic);
        }
        let version = bytes[VERSION_OFFSET];
        if version != VERSION_1 {
            return Err(BlobError::UnknownVersion(version));
        }
        let key_id = to_array(field("key id", KEY_ID_OFFSET, MATERIAL_VERSION_OFFSET)?);
        let material_version = u32::from_le_bytes(to_array(field(
            "material version",
            MATERIAL_VERSION_OFFSET,
            HEADER_LEN,
        )?));
        let nonce = to_array(field("nonce", NONCE_OFFSET, CIPHERTEXT_LEN_OFFSET)?);
        let ct_len = u32::from_le_bytes(to_array(field(
            "ciphertext length",
            CIPHERTEXT_LEN_OFFSET,
            CIPHERTEXT_OFFSET,
        )?));
        // u32 -> usize is lossless on every platform cryptvol builds for (64-bit Linux).
        let ct_len = ct_len as usize;
        if !(MIN_CIPHERTEXT_LEN..=MAX_CIPHERTEXT_LEN).contains(&ct_len) {
            return Err(BlobError::BadCiphertextLen { len: ct_len });
        }
        let end = CIPHERTEXT_OFFSET + ct_len;
        let ciphertext = field("ciphertext", CIPHERTEXT_OFFSET, end)?.to_vec();
        if len > end {
            return Err(BlobError::TrailingBytes { extra: len - end });
        }
        Ok(Blob {
            key_id,
            material_version,
            nonce,
            ciphertext,
        })
    }
}

fn header(key_id: &[u8; KEY_ID_LEN], material_version: u32) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[VERSION_OFFSET] = VERSION_1;
    h[MAGIC_OFFSET..KEY_ID_OFFSET].copy_from_slice(&MAGIC);
    h[KEY_ID_OFFSET..MATERIAL_VERSION_OFFSET].copy_from_slice(key_id);
    h[MATERIAL_VERSION_OFFSET..HEADER_LEN].copy_from_slice(&material_version.to_le_bytes());
    h
}

fn aad(header: &[u8; HEADER_LEN], canonical_context: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + canonical_context.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(canonical_context);
    aad
}

fn to_array<const N: usize>(s: &[u8]) -> [u8; N] {
    s.try_into().expect("BUG: caller sliced exactly N bytes")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::kms::context::{canonical_encoding, EncryptionContext};
    use proptest::prelude::*;

    const KEY_ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    fn material() -> SecretBytes {
        SecretBytes::new((0u8..32).collect())
    }

    fn ebs_ctx() -> Vec<u8> {
        let mut c = EncryptionContext::new();
        c.insert("aws:ebs:id".into(), "vol-0123456789abcdef0".into());
        canonical_encoding(&c).unwrap()
    }

    #[test]
    fn offsets_match_the_byte_map() {
        assert_eq!(
            (
                MAGIC_OFFSET,
                KEY_ID_OFFSET,
                MATERIAL_VERSION_OFFSET,
                HEADER_LEN
            ),
            (1, 4, 20, 24)
        );
        assert_eq!(
            (NONCE_OFFSET, CIPHERTEXT_LEN_OFFSET, CIPHERTEXT_OFFSET),
            (24, 36, 40)
        );
    }

    #[test]
    fn golden_encoding() {
        let blob = Blob::from_parts(
            *Uuid::parse_str(KEY_ID).unwrap().as_bytes(),
            2,
            [0xAA; NONCE_LEN],
            vec![0xCC; MIN_CIPHERTEXT_LEN],
        )
        .unwrap();
        let want = hex::decode(concat!(
            "01",
            "43564b",                             // version 1, "CVK"
            "1234abcd12ab34cd56ef1234567890ab",   // key id
            "02000000",                           // material version 2
            "aaaaaaaaaaaaaaaaaaaaaaaa",           // nonce
            "11000000",                           // ciphertext length 17
            "cccccccccccccccccccccccccccccccccc", // ciphertext + tag
        ))
        .unwrap();
        assert_eq!(blob.to_bytes(), want);
        assert_eq!(Blob::decode(&want).unwrap(), blob);
    }

    /// A blob written by this version must decrypt forever. Generated once
    /// with `Blob::seal` (material 00..1f, key id above, material version 1,
    /// context {"aws:ebs:id": "vol-0123456789abcdef0"}, plaintext
    /// "cryptvol golden").
    #[test]
    fn golden_blob_still_decrypts() {
        let bytes = hex::decode(GOLDEN_BLOB_HEX).unwrap();
        let blob = Blob::decode(&bytes).unwrap();
        assert_eq!(blob.key_uuid().to_string(), KEY_ID);
        assert_eq!(blob.material_version(), 1);
        assert_eq!(
            blob.open(&material(), &ebs_ctx()).unwrap().expose(),
            b"cryptvol golden"
        );
    }

    const GOLDEN_BLOB_HEX: &str = concat!(
        "0143564b",                         // version 1, "CVK"
        "1234abcd12ab34cd56ef1234567890ab", // key id
        "01000000",                         // material version 1
        "bff1e4cb8cb1e6172e780ede",         // nonce
        "1f000000",                         // ciphertext length 31 (15 + tag)
        "6c05e6e408c2b87439350c7f8ba0f3f6e4e680eea1b064a066749b6bd3788e",
    );

    #[test]
    fn seal_open_round_trip_binds_header_and_context() {
        let id = *Uuid::parse_str(KEY_ID).unwrap().as_bytes();
        let blob = Blob::seal(id, 1, &material(), b"secret data key", &ebs_ctx()).unwrap();
        assert_eq!(
            blob.open(&material(), &ebs_ctx()).unwrap().expose(),
            b"secret data key"
        );
        assert!(blob
            .open(
                &material(),
                &canonical_encoding(&EncryptionContext::new()).unwrap()
            )
            .is_err());
        let other_version =
            Blob::from_parts(blob.key_id, 2, blob.nonce, blob.ciphertext.clone()).unwrap();
        assert!(other_version.open(&material(), &ebs_ctx()).is_err());
        let other_key = Blob::from_parts([9; 16], 1, blob.nonce, blob.ciphertext.clone()).unwrap();
        assert!(other_key.open(&material(), &ebs_ctx()).is_err());
    }

    #[test]
    fn flipping_any_byte_breaks_decode_or_open() {
        let id = *Uuid::parse_str(KEY_ID).unwrap().as_bytes();
        let bytes = Blob::seal(id, 1, &material(), &[7u8; 64], &ebs_ctx())
            .unwrap()
            .to_bytes();
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut b = bytes.clone();
                b[i] ^= bit;
                if let Ok(blob) = Blob::decode(&b) {
                    assert!(
                        blob.open(&material(), &ebs_ctx()).is_err(),
                        "byte {i} bit {bit:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn decode_rejects_malformed_blobs_with_specific_errors() {
        let id = *Uuid::parse_str(KEY_ID).unwrap().as_bytes();
        let good = Blob::seal(id, 1, &material(), b"x", &[])
            .unwrap()
            .to_bytes();
        assert_eq!(Blob::decode(&[]), Err(BlobError::Empty));
        assert_eq!(
            Blob::decode(&vec![0; MAX_BLOB_LEN + 1]),
            Err(BlobError::TooLong {
                len: MAX_BLOB_LEN + 1
            })
        );
        assert_eq!(
            Blob::decode(&[1, 2, 2, 0, 0x78]),
            Err(BlobError::BadMagic),
            "an AWS blob prefix"
        );
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(Blob::decode(&v2), Err(BlobError::UnknownVersion(2)));
        assert!(matches!(
            Blob::decode(&good[..10]),
            Err(BlobError::Truncated {
                field: "key id",
                ..
            })
        ));
        assert!(matches!(
            Blob::decode(&good[..good.len() - 1]),
            Err(BlobError::Truncated {
                field: "ciphertext",
                ..
            })
        ));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(
            Blob::decode(&trailing),
            Err(BlobError::TrailingBytes { extra: 1 })
        );
        let mut short = good[..CIPHERTEXT_OFFSET].to_vec();
        short[CIPHERTEXT_LEN_OFFSET..].copy_from_slice(&16u32.to_le_bytes());
        short.extend_from_slice(&[0; 16]);
        assert_eq!(
            Blob::decode(&short),
            Err(BlobError::BadCiphertextLen { len: 16 })
        );
        assert_eq!(
            Blob::seal(id, 1, &material(), b"", &[]),
            Err(BlobError::BadPlaintextLen { len: 0 })
        );
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            key_id in any::<[u8; 16]>(),
            version in any::<u32>(),
            nonce in any::<[u8; 12]>(),
            ct in proptest::collection::vec(any::<u8>(), MIN_CIPHERTEXT_LEN..=MAX_CIPHERTEXT_LEN),
        ) {
            let blob = Blob::from_parts(key_id, version, nonce, ct).unwrap();
            let bytes = blob.to_bytes();
            prop_assert_eq!(bytes.len(), blob.encoded_len());
            prop_assert!(bytes.len() <= MAX_BLOB_LEN);
            prop_assert_eq!(Blob::decode(&bytes).unwrap(), blob);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Blob::decode(&bytes);
        }
    }
}
