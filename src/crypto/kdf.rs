//! Keys derived from a volume's data key (HKDF-SHA256), one per purpose, so
//! no key is ever used for two jobs.

use sha2::Sha256;

use super::SecretBytes;

/// HKDF info for the key that authenticates snapshot manifests.
pub const SNAPSHOT_MAC_INFO: &[u8] = b"cryptvol snapshot manifest mac v1";

/// Derives 32 bytes for `info` from `ikm`.
pub fn derive(ikm: &[u8], info: &[u8]) -> SecretBytes {
    let hk = hkdf::Hkdf::<Sha256>::new(None, ikm);
    let mut k = vec![0u8; 32];
    hk.expand(info, &mut k)
        .expect("BUG: 32 bytes is a valid HKDF-SHA256 length");
    SecretBytes::new(k)
}

/// The key authenticating manifests of snapshots under one data key.
pub fn snapshot_mac_key(data_key: &[u8]) -> SecretBytes {
    derive(data_key, SNAPSHOT_MAC_INFO)
}

#[cfg(test)]
mod tests {
    #[test]
    fn purposes_give_different_keys() {
        let a = super::derive(&[1; 64], b"a");
        let b = super::derive(&[1; 64], b"b");
        assert_ne!(a.expose(), b.expose());
        assert_eq!(super::snapshot_mac_key(&[1; 64]).len(), 32);
    }
}
