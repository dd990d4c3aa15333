//! The KMS ciphertext blob (`kms::blob`). Seeded with blobs from `cryptvol
//! kms encrypt` / `generate-data-key` and from volume headers.
//!
//! Properties: no panic; what decodes re-encodes byte for byte and never
//! opens under a key it was not sealed with; and, with the input as
//! plaintext, seal → encode → decode → open gives the plaintext back, and
//! opening under another encryption context fails.
#![no_main]

use cryptvol::crypto::SecretBytes;
use cryptvol::kms::blob::{Blob, MAX_PLAINTEXT_LEN};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let material = SecretBytes::new(vec![0x42; 32]);
    if let Ok(blob) = Blob::decode(data) {
        assert_eq!(blob.to_bytes(), data, "blob is not canonical: {blob:?}");
        assert_eq!(blob.encoded_len(), data.len());
        assert!(blob.open(&material, b"").is_err(), "a forged blob opened");
    }

    if data.is_empty() || data.len() > MAX_PLAINTEXT_LEN {
        assert!(Blob::seal([7; 16], 1, &material, data, b"ctx").is_err());
        return;
    }
    let version = u32::from(data[0]) + 1;
    let sealed = Blob::seal([7; 16], version, &material, data, b"ctx").expect("seal");
    let decoded = Blob::decode(&sealed.to_bytes()).expect("a sealed blob decodes");
    assert_eq!(decoded, sealed);
    assert_eq!(decoded.material_version(), version);
    let opened = decoded.open(&material, b"ctx").expect("opens");
    assert_eq!(opened.expose(), data);
    assert!(
        decoded.open(&material, b"ctx2").is_err(),
        "context not bound"
    );
});
