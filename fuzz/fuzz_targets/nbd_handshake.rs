//! The NBD handshake (fixed newstyle option haggling) and whatever follows
//! it, driven through the real server (`serve_connection`) over an
//! in-memory stream: the input is everything a client sends. Seeds are
//! sessions captured from nbdinfo, qemu-img, qemu-io and nbdcopy.
//!
//! Properties: no panic, no hang; the server always greets first
//! (`NBDMAGIC` `IHAVEOPT`); the option data parsers (`NBD_OPT_INFO`/`GO`
//! and `*_META_CONTEXT` payloads) re-encode what they accept byte for byte.
#![no_main]

use cryptvol::nbd::option::{InfoRequest, MetaContextRequest};
use libfuzzer_sys::fuzz_target;

#[path = "../common/nbd.rs"]
mod nbd;

fuzz_target!(|data: &[u8]| {
    // The same bytes as one option's data, sans I/O.
    if let Ok(info) = InfoRequest::decode(data) {
        let mut again = Vec::new();
        info.encode(&mut again);
        assert_eq!(again, data, "InfoRequest is not canonical: {info:?}");
    }
    if let Ok(meta) = MetaContextRequest::decode(data) {
        let mut again = Vec::new();
        meta.encode(&mut again);
        assert_eq!(again, data, "MetaContextRequest is not canonical: {meta:?}");
    }

    let out = nbd::run_connection(data);
    assert!(
        out.len() >= 18 && &out[..16] == b"NBDMAGICIHAVEOPT",
        "the server did not greet: {:?}",
        &out[..out.len().min(18)]
    );
});
