//! The KMS HTTP API from a signed request on: routing by `X-Amz-Target`,
//! SigV4 verification, the JSON body, and each operation's request decoding
//! and handling (`api::protocol::Api::handle` → `LocalKms::call`), against
//! a real KMS whose data dir is restored from a fixture before every input.
//!
//! Input: the operation name, a newline, the JSON body. In the body,
//! `$SYM`, `$HMAC`, `$ECC`, `$RSA` (key ids), `$ARN`, `$ACCOUNT`, `$BLOB` (a
//! ciphertext blob of `$SYM` under context {"k":"v"}), `$TOKEN` and
//! `$GRANT` (a grant on `$SYM`) stand for the fixture's values. Seeds are
//! the requests boto3 and the aws CLI send (tests/data/boto3_every_operation.py).
//!
//! Properties: no panic; every answer is JSON, success is a JSON object, an
//! error is a 4xx with an AWS `__type` (a 5xx would mean a request made the
//! server fail).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use cryptvol::kms::api::protocol::Incoming;
use cryptvol::kms::api::sigv4::format_amz_date;
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

#[path = "../common/kms.rs"]
mod kms;

struct State {
    fixture: PathBuf,
    work: PathBuf,
    placeholders: kms::Placeholders,
}

fn state() -> &'static State {
    static STATE: OnceLock<State> = OnceLock::new();
    STATE.get_or_init(|| {
        let fixture = kms::scratch("api-fixture");
        let _ = std::fs::remove_dir_all(&fixture);
        let placeholders = kms::build_fixture(&fixture);
        State {
            fixture,
            work: kms::scratch("api-work"),
            placeholders,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let st = state();
    let (op, body) = match data.iter().position(|&b| b == b'\n') {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let Ok(target) = HeaderValue::from_bytes(&[b"TrentService.", op].concat()) else {
        return;
    };
    let mut body = body.to_vec();
    if let Ok(text) = std::str::from_utf8(&body) {
        let mut text = text.to_owned();
        for (name, value) in &st.placeholders {
            text = text.replace(name, value);
        }
        // Large RSA key generation takes seconds and parses nothing new.
        if ["RSA_2048", "RSA_3072", "RSA_4096"]
            .iter()
            .any(|s| text.contains(s))
        {
            return;
        }
        body = text.into_bytes();
    }

    kms::restore(&st.fixture, &st.work);
    let api = kms::api(&st.work);

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let amz_date = format_amz_date(now);
    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:4566"));
    headers.insert(
        "x-amz-date",
        HeaderValue::from_str(&amz_date).expect("date"),
    );
    headers.insert("x-amz-target", target);
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    let auth = kms::authorization("POST", "/", "", &headers, &body, &amz_date, "kms");
    headers.insert(
        "authorization",
        HeaderValue::from_str(&auth).expect("ascii"),
    );

    let req = Incoming {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: &body,
    };
    let out = api.handle(&req, "fuzz-request");
    let v: serde_json::Value = serde_json::from_slice(&out.body).expect("every KMS answer is JSON");
    if out.status.is_success() {
        assert!(v.is_object(), "success that is not an object: {v}");
    } else {
        assert!(
            out.status.is_client_error(),
            "{} {} for {:?}: {v}",
            out.status,
            out.outcome,
            String::from_utf8_lossy(op)
        );
        assert!(v["__type"].is_string(), "error without __type: {v}");
    }
});
