//! The volume header slot parser (`volume::header`). Seeded with the golden
//! header `tests/data/header-v1.bin` and headers written by `cryptvol
//! volume create`.
//!
//! Input: one mode byte, then a slot (shorter inputs are zero-padded, as
//! the padding after the checksum is). Mode bit 0 set: the harness rewrites
//! `body_len`-covered checksum so that mutations get past the SHA-256 and
//! reach the field parser; clear: the bytes are decoded as they are.
//!
//! Properties: no panic; what decodes passes `validate`, re-encodes to the
//! very same slot (the format is canonical), and decodes again to the same
//! header; `choose` picks a valid copy whenever one exists.
#![no_main]

use cryptvol::volume::header::{Header, BODY_LEN_OFFSET, BODY_OFFSET, CHECKSUM_LEN, SLOT_SIZE};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    if bytes.len() > SLOT_SIZE {
        // Longer than a slot: only "no panic".
        let _ = Header::decode(bytes);
        return;
    }
    let mut slot = bytes.to_vec();
    slot.resize(SLOT_SIZE, 0);
    if mode & 1 != 0 && slot.len() >= BODY_OFFSET {
        let body_len = u32::from_le_bytes(
            slot[BODY_LEN_OFFSET..BODY_OFFSET]
                .try_into()
                .expect("4 bytes"),
        ) as usize;
        let end = BODY_OFFSET + body_len;
        if end + CHECKSUM_LEN <= SLOT_SIZE {
            let sum = Sha256::digest(&slot[..end]);
            slot[end..end + CHECKSUM_LEN].copy_from_slice(&sum);
        }
    }
    // Zero padding changes nothing for a header that is whole without it.
    let short = Header::decode(&slot[..bytes.len()]);
    let full = Header::decode(&slot);
    if let Ok(h) = &short {
        assert_eq!(full.as_ref(), Ok(h), "padding changed the result");
    }
    let chosen = Header::choose(&slot, &[0u8; 64]);
    match full {
        Ok(h) => {
            h.validate().expect("a decoded header is valid");
            let again = h.encode().expect("a decoded header encodes");
            assert!(again == slot, "the header slot is not canonical: {h:?}");
            assert_eq!(Header::decode(&again).as_ref(), Ok(&h));
            assert_eq!(chosen, Ok(h));
        }
        Err(e) => assert_eq!(chosen, Err(e)),
    }
});
