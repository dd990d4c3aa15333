//! The volume header: format, encoding, and choosing between its two copies.
//!
//! A volume file starts with a header area of [`DATA_OFFSET`] bytes holding
//! two header slots of [`SLOT_SIZE`] bytes each (slot A at 0, slot B at
//! [`SLOT_SIZE`]); the encrypted data area follows. Every update writes the
//! slot holding the *older* copy with the next sequence number and fsyncs,
//! so a crash in the middle of an update leaves the newer intact copy.
//!
//! One slot (all integers little-endian):
//!
//! ```text
//!  0        8    10    12          16           24       32            40     44 45   48        56                     77
//!  +--------+-----+-----+-----------+------------+--------+-------------+------+--+----+---------+----------------------+
//!  | magic  | ver |flags| body_len  | sequence   | size   | data_offset |sector|ci|rsvd| created | volume id (21 ASCII) |
//!  +--------+-----+-----+-----------+------------+--------+-------------+------+--+----+---------+----------------------+
//!  77: variable part, each field a u32 length then bytes:
//!      name, kms_key_arn, region, wrapped_data_key, origin_snapshot,
//!      encryption context (u32 pair count, then per pair u32 len + key, u32 len + value; keys sorted)
//!  77 + var_len: SHA-256 over bytes 0 .. 77 + var_len            (32 bytes)
//!  rsvd: zero; rest of the slot: zero
//! ```
//!
//! `body_len` counts bytes 16 .. 77 + var_len, so a reader knows where the
//! checksum is before parsing the variable part.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// PNG-style magic: a high byte (catches 7-bit transfers), the name, CR LF
/// (catches newline conversion), ^Z (stops `type` on DOS).
pub const MAGIC: [u8; 8] = *b"\x89CVOL\r\n\x1a";
/// Format version written by this release.
pub const FORMAT_VERSION: u16 = 1;
/// Oldest format version this release reads.
pub const MIN_FORMAT_VERSION: u16 = 1;

pub const MAGIC_OFFSET: usize = 0;
pub const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
pub const FLAGS_OFFSET: usize = VERSION_OFFSET + 2;
pub const BODY_LEN_OFFSET: usize = FLAGS_OFFSET + 2;
/// The body (covered by `body_len`) starts here.
pub const BODY_OFFSET: usize = BODY_LEN_OFFSET + 4;
pub const SEQUENCE_OFFSET: usize = BODY_OFFSET;
pub const SIZE_OFFSET: usize = SEQUENCE_OFFSET + 8;
pub const DATA_OFFSET_OFFSET: usize = SIZE_OFFSET + 8;
pub const SECTOR_SIZE_OFFSET: usize = DATA_OFFSET_OFFSET + 8;
pub const CIPHER_OFFSET: usize = SECTOR_SIZE_OFFSET + 4;
pub const CREATED_OFFSET: usize = CIPHER_OFFSET + 1 + 3;
pub const VOLUME_ID_OFFSET: usize = CREATED_OFFSET + 8;
/// `vol-` followed by 17 lowercase hex digits, as EBS volume ids.
pub const VOLUME_ID_LEN: usize = 21;
pub const VARIABLE_OFFSET: usize = VOLUME_ID_OFFSET + VOLUME_ID_LEN;
pub const CHECKSUM_LEN: usize = 32;

/// Size of one header slot. Bounds the variable part (a KMS blob is at most
/// 6144 bytes; names, ARNs and context are far smaller).
pub const SLOT_SIZE: usize = 32 * 1024;
/// Where the data area starts: 1 MiB, aligned for 4096-byte sectors and for
/// dm-crypt's `--offset` in 512-byte units (2048).
pub const DATA_OFFSET: u64 = 1024 * 1024;

/// `flags` bit 0: the data area is encrypted.
pub const FLAG_ENCRYPTED: u16 = 1 << 0;
/// Flags this release understands; others make the header "too new".
const KNOWN_FLAGS: u16 = FLAG_ENCRYPTED;

/// The sector cipher of the data area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// Unencrypted volume (EBS allows them; encryption by default can forbid them).
    None,
    /// AES-256-XTS, tweak = sector number LE (dm-crypt `aes-xts-plain64`).
    AesXtsPlain64,
}

impl Cipher {
    fn code(self) -> u8 {
        match self {
            Cipher::None => 0,
            Cipher::AesXtsPlain64 => 1,
        }
    }
    fn from_code(c: u8) -> Option<Self> {
        match c {
            0 => Some(Cipher::None),
            1 => Some(Cipher::AesXtsPlain64),
            _ => None,
        }
    }
    /// The name cryptsetup uses.
    pub fn name(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::AesXtsPlain64 => "aes-xts-plain64",
        }
    }
}

/// Everything a volume header records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub sequence: u64,
    pub volume_id: String,
    pub name: String,
    pub size: u64,
    pub sector_size: u32,
    pub data_offset: u64,
    pub cipher: Cipher,
    pub kms_key_arn: String,
    pub region: String,
    /// The KMS ciphertext blob of the data key (empty when unencrypted).
    pub wrapped_data_key: Vec<u8>,
    pub encryption_context: BTreeMap<String, String>,
    /// Snapshot this volume was restored from, or empty.
    pub origin_snapshot: String,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
}

/// Why a header slot could not be read. Corrupt, too old and too new are
/// distinct so the user learns whether to restore or to upgrade.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not a cryptvol volume (bad magic)")]
    BadMagic,
    #[error("header format version {0} is older than this release reads ({MIN_FORMAT_VERSION}); use an older cryptvol to migrate it")]
    TooOld(u16),
    #[error("header format version {0} (or flags {1:#x}) is newer than this release understands; upgrade cryptvol")]
    TooNew(u16, u16),
    #[error("header is corrupt: {0}")]
    Corrupt(String),
    #[error("header checksum mismatch: the header was altered or torn")]
    Checksum,
    #[error("header does not fit its {SLOT_SIZE}-byte slot ({0} bytes)")]
    TooLarge(usize),
}

fn put_var(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

impl Header {
    /// Encodes one slot, exactly [`SLOT_SIZE`] bytes.
    pub fn encode(&self) -> Result<Vec<u8>, HeaderError> {
        if self.volume_id.len() != VOLUME_ID_LEN {
            return Err(HeaderError::Corrupt(format!(
                "volume id {:?} is not {VOLUME_ID_LEN} bytes",
                self.volume_id
            )));
        }
        let mut out = Vec::with_capacity(SLOT_SIZE);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let flags = if self.cipher == Cipher::None {
            0
        } else {
            FLAG_ENCRYPTED
        };
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // body_len, patched below
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.data_offset.to_le_bytes());
        out.extend_from_slice(&self.sector_size.to_le_bytes());
        out.push(self.cipher.code());
        out.extend_from_slice(&[0u8; 3]);
        out.extend_from_slice(&self.created.to_le_bytes());
        out.extend_from_slice(self.volume_id.as_bytes());
        debug_assert_eq!(out.len(), VARIABLE_OFFSET);
        put_var(&mut out, self.name.as_bytes());
        put_var(&mut out, self.kms_key_arn.as_bytes());
        put_var(&mut out, self.region.as_bytes());
        put_var(&mut out, &self.wrapped_data_key);
        put_var(&mut out, self.origin_snapshot.as_bytes());
        out.extend_from_slice(&(self.encryption_context.len() as u32).to_le_bytes());
        for (k, v) in &self.encryption_context {
            put_var(&mut out, k.as_bytes());
            put_var(&mut out, v.as_bytes());
        }
        let total = out.len() + CHECKSUM_LEN;
        if total > SLOT_SIZE {
            return Err(HeaderError::TooLarge(total));
        }
        let body_len = (out.len() - BODY_OFFSET) as u32;
        out[BODY_LEN_OFFSET..BODY_OFFSET].copy_from_slice(&body_len.to_le_bytes());
        let sum = Sha256::digest(&out);
        out.extend_from_slice(&sum);
        out.resize(SLOT_SIZE, 0);
        Ok(out)
    }

    /// Decodes one slot. The padding after the checksum must be zero.
    pub fn decode(slot: &[u8]) -> Result<Header, HeaderError> {
        if slot.len() < VARIABLE_OFFSET + CHECKSUM_LEN || slot[..MAGIC.len()] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        let version = u16::from_le_bytes([slot[VERSION_OFFSET], slot[VERSION_OFFSET + 1]]);
        let flags = u16::from_le_bytes([slot[FLAGS_OFFSET], slot[FLAGS_OFFSET + 1]]);
        if version < MIN_FORMAT_VERSION {
            return Err(HeaderError::TooOld(version));
        }
        if version > FORMAT_VERSION || flags & !KNOWN_FLAGS != 0 {
            return Err(HeaderError::TooNew(version, flags));
        }
        let body_len = le_u32(slot, BODY_LEN_OFFSET) as usize;
        let end = BODY_OFFSET
            .checked_add(body_len)
            .filter(|&e| e >= VARIABLE_OFFSET && e + CHECKSUM_LEN <= slot.len().min(SLOT_SIZE))
            .ok_or_else(|| {
                HeaderError::Corrupt(format!("body length {body_len} does not fit the slot"))
            })?;
        if Sha256::digest(&slot[..end])[..] != slot[end..end + CHECKSUM_LEN] {
            return Err(HeaderError::Checksum);
        }
        if !slot[end + CHECKSUM_LEN..].iter().all(|&b| b == 0) {
            return Err(HeaderError::Corrupt(
                "non-zero bytes after the checksum".into(),
            ));
        }
        let cipher =
            Cipher::from_code(slot[CIPHER_OFFSET]).ok_or(HeaderError::TooNew(version, flags))?;
        if (cipher != Cipher::None) != (flags & FLAG_ENCRYPTED != 0) {
            return Err(HeaderError::Corrupt(
                "encrypted flag disagrees with the cipher".into(),
            ));
        }
        // Reserved bytes are written as zero; a release that gives them a
        // meaning will say so with a new version or flag. Accepting other
        // values would let two different slots decode to one header.
        let reserved = &slot[CIPHER_OFFSET + 1..CREATED_OFFSET];
        if reserved.iter().any(|&b| b != 0) {
            return Err(HeaderError::Corrupt(format!(
                "reserved bytes after the cipher are {reserved:02x?}, not zero"
            )));
        }
        let volume_id = utf8(&slot[VOLUME_ID_OFFSET..VARIABLE_OFFSET], "volume id")?;
        let mut r = VarReader {
            buf: &slot[VARIABLE_OFFSET..end],
            pos: 0,
        };
        let name = utf8(r.next("name")?, "name")?;
        let kms_key_arn = utf8(r.next("kms key arn")?, "kms key arn")?;
        let region = utf8(r.next("region")?, "region")?;
        let wrapped_data_key = r.next("wrapped data key")?.to_vec();
        let origin_snapshot = utf8(r.next("origin snapshot")?, "origin snapshot")?;
        let pairs = r.u32("encryption context")?;
        let mut encryption_context = BTreeMap::new();
        for _ in 0..pairs {
            let k = utf8(r.next("context key")?, "context key")?;
            let v = utf8(r.next("context value")?, "context value")?;
            // Keys are written sorted and unique (a BTreeMap's order); a
            // repeated key would otherwise silently drop a pair.
            if encryption_context
                .last_key_value()
                .is_some_and(|(last, _): (&String, _)| *last >= k)
            {
                return Err(HeaderError::Corrupt(format!(
                    "encryption context key {k:?} is out of order or repeated"
                )));
            }
            encryption_context.insert(k, v);
        }
        if r.pos != r.buf.len() {
            return Err(HeaderError::Corrupt(format!(
                "{} trailing bytes in the header",
                r.buf.len() - r.pos
            )));
        }
        let h = Header {
            sequence: le_u64(slot, SEQUENCE_OFFSET),
            volume_id,
            name,
            size: le_u64(slot, SIZE_OFFSET),
            sector_size: le_u32(slot, SECTOR_SIZE_OFFSET),
            data_offset: le_u64(slot, DATA_OFFSET_OFFSET),
            cipher,
            kms_key_arn,
            region,
            wrapped_data_key,
            encryption_context,
            origin_snapshot,
            created: le_u64(slot, CREATED_OFFSET),
        };
        h.validate()?;
        Ok(h)
    }

    /// Invariants every stored header satisfies; checked after decoding so a
    /// header with a valid checksum but impossible geometry is still refused.
    pub fn validate(&self) -> Result<(), HeaderError> {
        let bad = |m: String| Err(HeaderError::Corrupt(m));
        if !crate::crypto::xts::SECTOR_SIZES.contains(&self.sector_size) {
            return bad(format!(
                "sector size {} is not 512 or 4096",
                self.sector_size
            ));
        }
        if self.size == 0 || !self.size.is_multiple_of(self.sector_size as u64) {
            return bad(format!(
                "size {} is not a positive multiple of the sector size",
                self.size
            ));
        }
        if self.data_offset < (2 * SLOT_SIZE) as u64
            || !self.data_offset.is_multiple_of(self.sector_size as u64)
        {
            return bad(format!(
                "data offset {} is inside the header area or misaligned",
                self.data_offset
            ));
        }
        if self.data_offset.checked_add(self.size).is_none() {
            return bad("data offset + size overflows".into());
        }
        if !is_volume_id(&self.volume_id) {
            return bad(format!("volume id {:?} is malformed", self.volume_id));
        }
        if (self.cipher == Cipher::None) != self.wrapped_data_key.is_empty() {
            return bad(
                "wrapped data key present on an unencrypted volume, or missing on an encrypted one"
                    .into(),
            );
        }
        Ok(())
    }

    /// Picks the current header from the two slots: the valid copy with the
    /// higher sequence number. Errors only when neither copy is valid, with
    /// the first slot's error (the more informative one, usually).
    pub fn choose(a: &[u8], b: &[u8]) -> Result<Header, HeaderError> {
        match (Header::decode(a), Header::decode(b)) {
            (Ok(x), Ok(y)) => Ok(if y.sequence > x.sequence { y } else { x }),
            (Ok(x), Err(_)) | (Err(_), Ok(x)) => Ok(x),
            (Err(e), Err(_)) => Err(e),
        }
    }
}

/// `vol-` followed by 17 lowercase hex digits.
pub fn is_volume_id(s: &str) -> bool {
    s.len() == VOLUME_ID_LEN
        && s.starts_with("vol-")
        && s[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(
        b[at..at + 4]
            .try_into()
            .expect("BUG: caller checked length"),
    )
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(
        b[at..at + 8]
            .try_into()
            .expect("BUG: caller checked length"),
    )
}

fn utf8(b: &[u8], what: &str) -> Result<String, HeaderError> {
    String::from_utf8(b.to_vec()).map_err(|_| HeaderError::Corrupt(format!("{what} is not UTF-8")))
}

struct VarReader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> VarReader<'a> {
    fn u32(&mut self, what: &str) -> Result<u32, HeaderError> {
        let b = self.buf.get(self.pos..self.pos + 4).ok_or_else(|| {
            HeaderError::Corrupt(format!("truncated before the length of {what}"))
        })?;
        self.pos += 4;
        Ok(u32::from_le_bytes(b.try_into().expect("BUG: 4-byte slice")))
    }

    fn next(&mut self, what: &str) -> Result<&'a [u8], HeaderError> {
        let len = self.u32(what)? as usize;
        let b = self
            .pos
            .checked_add(len)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or_else(|| {
                HeaderError::Corrupt(format!("{what} ({len} bytes) runs past the header"))
            })?;
        self.pos += len;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> Header {
        Header {
            sequence: 7,
            volume_id: "vol-0123456789abcdef0".into(),
            name: "demo".into(),
            size: 1 << 30,
            sector_size: 4096,
            data_offset: DATA_OFFSET,
            cipher: Cipher::AesXtsPlain64,
            kms_key_arn:
                "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab".into(),
            region: "us-east-1".into(),
            wrapped_data_key: vec![1, 2, 3, 4, 5],
            encryption_context: [(
                "aws:ebs:id".to_string(),
                "vol-0123456789abcdef0".to_string(),
            )]
            .into(),
            origin_snapshot: String::new(),
            created: 1_700_000_000,
        }
    }

    #[test]
    fn round_trip() {
        let h = sample();
        let slot = h.encode().unwrap();
        assert_eq!(slot.len(), SLOT_SIZE);
        assert_eq!(Header::decode(&slot).unwrap(), h);
    }

    /// The byte layout is a format promise: this golden file must decode
    /// forever, and the encoder must keep producing it.
    #[test]
    fn golden_v1_header() {
        let golden = include_bytes!("../../tests/data/header-v1.bin");
        let h = Header::decode(golden).expect("golden header decodes");
        assert_eq!(h, sample());
        assert_eq!(&sample().encode().unwrap()[..], &golden[..]);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let slot = sample().encode().unwrap();
        let end = 1024; // well past the checksum, into the padding
        for i in 0..end {
            let mut s = slot.clone();
            s[i] ^= 0x40;
            assert!(Header::decode(&s).is_err(), "flip at {i} not detected");
        }
    }

    #[test]
    fn distinct_errors_for_magic_old_new_and_checksum() {
        let slot = sample().encode().unwrap();
        let mut s = slot.clone();
        s[0] = b'X';
        assert_eq!(Header::decode(&s), Err(HeaderError::BadMagic));
        let mut s = slot.clone();
        s[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&2u16.to_le_bytes());
        assert!(matches!(Header::decode(&s), Err(HeaderError::TooNew(2, _))));
        let mut s = slot.clone();
        s[VERSION_OFFSET..VERSION_OFFSET + 2].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(Header::decode(&s), Err(HeaderError::TooOld(0)));
        let mut s = slot;
        s[SIZE_OFFSET] ^= 1;
        assert_eq!(Header::decode(&s), Err(HeaderError::Checksum));
    }

    /// Re-seals a slot whose fields a test edited: new checksum, same length.
    fn reseal(slot: &mut [u8]) {
        let body_len = le_u32(slot, BODY_LEN_OFFSET) as usize;
        let end = BODY_OFFSET + body_len;
        let sum = Sha256::digest(&slot[..end]);
        slot[end..end + CHECKSUM_LEN].copy_from_slice(&sum);
    }

    /// Found by the `volume_header` fuzz target: a non-zero reserved byte
    /// after the cipher code was ignored, so two different slots decoded to
    /// the same header (the input is kept in fuzz/corpus/volume_header).
    #[test]
    fn reserved_bytes_must_be_zero() {
        for i in CIPHER_OFFSET + 1..CREATED_OFFSET {
            let mut slot = sample().encode().unwrap();
            slot[i] = 0xfc;
            reseal(&mut slot);
            match Header::decode(&slot) {
                Err(HeaderError::Corrupt(m)) => assert!(m.contains("reserved"), "{m}"),
                other => panic!("reserved byte {i} accepted: {other:?}"),
            }
        }
        let mut slot = sample().encode().unwrap();
        reseal(&mut slot);
        assert_eq!(Header::decode(&slot).unwrap(), sample());
    }

    /// The context pairs must come sorted and unique, as the encoder
    /// writes them: a repeated key would drop a pair without a word.
    #[test]
    fn context_keys_must_be_sorted_and_unique() {
        let mut h = sample();
        h.encryption_context = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let good = h.encode().unwrap();
        let at = |slot: &[u8], key: &[u8]| {
            slot.windows(key.len() + 4)
                .position(|w| w[..4] == [1, 0, 0, 0] && &w[4..] == key)
                .unwrap()
        };
        for (from, to) in [(b"b", b"a"), (b"a", b"c")] {
            let mut slot = good.clone();
            let i = at(&slot, from);
            slot[i + 4] = to[0];
            reseal(&mut slot);
            match Header::decode(&slot) {
                Err(HeaderError::Corrupt(m)) => assert!(m.contains("out of order"), "{m}"),
                other => panic!("context {from:?}->{to:?} accepted: {other:?}"),
            }
        }
        assert_eq!(Header::decode(&good).unwrap(), h);
    }

    #[test]
    fn choose_prefers_newer_valid_copy() {
        let old = sample();
        let mut new = sample();
        new.sequence += 1;
        new.kms_key_arn = "arn:aws:kms:us-east-1:111122223333:key/other".into();
        let (a, b) = (old.encode().unwrap(), new.encode().unwrap());
        assert_eq!(Header::choose(&a, &b).unwrap(), new);
        assert_eq!(Header::choose(&b, &a).unwrap(), new);
        let mut torn = b.clone();
        torn[100] ^= 1;
        assert_eq!(Header::choose(&a, &torn).unwrap(), old);
        assert!(Header::choose(&torn, &vec![0; SLOT_SIZE]).is_err());
    }

    #[test]
    fn context_keys_and_values_cannot_collide() {
        let mut a = sample();
        a.encryption_context = [("a".to_string(), "bc".to_string())].into();
        let mut b = sample();
        b.encryption_context = [("ab".to_string(), "c".to_string())].into();
        assert_ne!(a.encode().unwrap(), b.encode().unwrap());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut slot = sample().encode().unwrap();
            let n = bytes.len().min(slot.len());
            slot[..n].copy_from_slice(&bytes[..n]);
            let _ = Header::decode(&slot);
            let _ = Header::decode(&bytes);
        }
    }
}
