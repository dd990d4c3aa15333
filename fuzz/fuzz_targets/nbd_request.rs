//! NBD transmission: request headers decoded and validated sans I/O, then
//! the same bytes sent as the request stream of a real connection (after a
//! canned handshake) to an in-memory export.
//!
//! Input: one mode byte, then the request stream. Mode bits: 0 structured
//! replies, 1 `base:allocation` selected, 2 the read-only export.
//!
//! Properties: no panic or hang; `RequestHeader::decode` accepts exactly the
//! headers with the request magic and re-encodes them byte for byte; every
//! request `validate` accepts lies inside the export, carries at most
//! `MAX_PAYLOAD` bytes of data, writes nothing on a read-only export, and
//! uses block status only when negotiated.
#![no_main]

use cryptvol::nbd::option::{
    InfoRequest, MetaContextRequest, OptionHeader, OPT_GO, OPT_SET_META_CONTEXT,
    OPT_STRUCTURED_REPLY,
};
use cryptvol::nbd::proto::{RequestHeader, REQUEST_HEADER_LEN, REQUEST_MAGIC};
use cryptvol::nbd::request::{validate, Request, Session};
use cryptvol::nbd::{BASE_ALLOCATION, MAX_PAYLOAD};
use libfuzzer_sys::fuzz_target;

#[path = "../common/nbd.rs"]
mod nbd;

fn option(out: &mut Vec<u8>, option: u32, data: &[u8]) {
    let h = OptionHeader {
        option,
        length: data.len() as u32,
    };
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(data);
}

/// The client side of a handshake that ends in transmission.
fn handshake(structured: bool, base_allocation: bool, export: &str) -> Vec<u8> {
    let mut out = 3u32.to_be_bytes().to_vec(); // FIXED_NEWSTYLE | NO_ZEROES
    if structured {
        option(&mut out, OPT_STRUCTURED_REPLY, &[]);
        if base_allocation {
            let mut d = Vec::new();
            MetaContextRequest {
                name: export.to_owned(),
                queries: vec![BASE_ALLOCATION.to_owned()],
            }
            .encode(&mut d);
            option(&mut out, OPT_SET_META_CONTEXT, &d);
        }
    }
    let mut d = Vec::new();
    InfoRequest {
        name: export.to_owned(),
        requests: vec![3], // NBD_INFO_BLOCK_SIZE, as qemu asks
    }
    .encode(&mut d);
    option(&mut out, OPT_GO, &d);
    out
}

fn check_header(b: &[u8; REQUEST_HEADER_LEN], s: &Session) {
    let Ok(h) = RequestHeader::decode(b) else {
        assert_ne!(b[..4], REQUEST_MAGIC.to_be_bytes(), "right magic refused");
        return;
    };
    assert_eq!(&h.encode(), b, "request header does not re-encode: {h:?}");
    let Ok(req) = validate(&h, s) else { return };
    let inside = |offset: u64, len: u32| {
        let end = offset.checked_add(u64::from(len));
        assert!(
            end.is_some_and(|e| e <= s.size),
            "{req:?} accepted past the end of a {}-byte export",
            s.size
        );
    };
    match req {
        Request::Read { offset, len } | Request::Write { offset, len, .. } => {
            assert!(len <= MAX_PAYLOAD, "{req:?} exceeds MAX_PAYLOAD");
            inside(offset, len);
        }
        Request::Trim { offset, len, .. }
        | Request::WriteZeroes { offset, len, .. }
        | Request::Cache { offset, len } => inside(offset, len),
        Request::BlockStatus { offset, len, .. } => {
            assert!(
                s.structured && s.base_allocation,
                "block status not negotiated"
            );
            inside(offset, len);
        }
        Request::Flush | Request::Disc => {}
    }
    let writes = matches!(
        req,
        Request::Write { .. } | Request::Trim { .. } | Request::WriteZeroes { .. }
    );
    assert!(
        !(writes && s.read_only),
        "{req:?} accepted on a read-only export"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, stream)) = data.split_first() else {
        return;
    };
    let structured = mode & 1 != 0;
    let base_allocation = structured && mode & 2 != 0;
    let read_only = mode & 4 != 0;
    let (export, size) = if read_only {
        ("ro", nbd::RO_SIZE)
    } else {
        ("fuzz", nbd::EXPORT_SIZE)
    };
    let session = Session {
        size: size as u64,
        read_only,
        structured,
        base_allocation,
    };
    for chunk in stream.chunks_exact(REQUEST_HEADER_LEN) {
        let b: &[u8; REQUEST_HEADER_LEN] = chunk.try_into().expect("exact chunk");
        check_header(b, &session);
    }

    let mut client = handshake(structured, base_allocation, export);
    client.extend_from_slice(stream);
    let out = nbd::run_connection(&client);
    assert!(out.starts_with(b"NBDMAGICIHAVEOPT"), "no greeting");
});
