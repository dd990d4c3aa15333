//! The snapshot manifest (`snapshot::manifest`). Seeded with manifests
//! written by `cryptvol snapshot create` (encrypted and unencrypted).
//!
//! Input: one mode byte, then the manifest. Mode bit 0 set: the harness
//! replaces the last line by the right plain-`sha256` MAC line, so that
//! mutations of the first two lines reach `verify` past the MAC check.
//!
//! Properties: no panic; `verify` accepts only what `decode_unverified`
//! accepts, and the same manifest; a manifest with a right MAC verifies;
//! what decodes re-encodes (with or without a key) to bytes that verify to
//! the same manifest, and not under another key.
#![no_main]

use cryptvol::crypto::SecretBytes;
use cryptvol::snapshot::manifest::Manifest;
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let key = SecretBytes::new(vec![0x5a; 32]);
    let other = SecretBytes::new(vec![0xa5; 32]);
    let mut input = bytes.to_vec();
    if mode & 1 != 0 {
        // Keep the first two lines, then the MAC a writer would add.
        let mut cut = 0;
        for _ in 0..2 {
            match input[cut..].iter().position(|&b| b == b'\n') {
                Some(p) => cut += p + 1,
                None => return,
            }
        }
        input.truncate(cut);
        let mac = hex::encode(Sha256::digest(&input));
        input.extend_from_slice(format!("mac sha256 {mac}\n").as_bytes());
    }

    let decoded = Manifest::decode_unverified(&input);
    for k in [None, Some(&key)] {
        if let Ok(m) = Manifest::verify(&input, k) {
            assert_eq!(
                decoded.as_ref(),
                Ok(&m),
                "verify accepted what decode refuses"
            );
        }
    }
    if mode & 1 != 0 && decoded.is_ok() {
        assert_eq!(
            Manifest::verify(&input, None).as_ref().ok(),
            decoded.as_ref().ok(),
            "a manifest with the right MAC does not verify"
        );
    }
    let Ok(m) = decoded else { return };
    let plain = m.encode(None);
    assert_eq!(Manifest::verify(&plain, None), Ok(m.clone()));
    let keyed = m.encode(Some(&key));
    assert_eq!(Manifest::verify(&keyed, Some(&key)), Ok(m.clone()));
    assert!(
        Manifest::verify(&keyed, Some(&other)).is_err(),
        "wrong key accepted"
    );
    assert!(
        Manifest::verify(&keyed, None).is_err(),
        "keyed MAC taken for plain"
    );
});
