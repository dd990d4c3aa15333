//! SigV4 authentication of the KMS API (`kms::api::sigv4`).
//!
//! Input: either an `Authorization` header value (first byte even), or
//! (first byte odd) a request: first line the path, second the query, then
//! `name: value` header lines, an empty line, and the body.
//!
//! Properties: no panic; a parsed `Authorization` prints back to a header
//! that parses the same; `verify` accepts every request that AWS's own Rust
//! signer (`aws-sigv4`, an independent implementation) signed with the
//! right key, and refuses it after the body is changed.
#![no_main]

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use cryptvol::crypto::SecretBytes;
use cryptvol::kms::api::sigv4::{self, Authorization, Expect};
use cryptvol::kms::iam::Credential;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const AKID: &str = "AKIAFUZZFUZZFUZZFUZZ";
const SECRET: &str = "fuzz/secret/key/for/the/sigv4/target000";
const REGION: &str = "us-east-1";

fn credential() -> Credential {
    Credential {
        access_key_id: AKID.to_owned(),
        principal_arn: "arn:aws:iam::111122223333:root".to_owned(),
        user_id: "111122223333".to_owned(),
        active: true,
        secret: SecretBytes::new(SECRET.as_bytes().to_vec()),
    }
}

fn lookup(k: &str) -> Result<Option<Credential>, std::convert::Infallible> {
    Ok((k == AKID).then(credential))
}

fn parse_round_trip(value: &str) {
    let Ok(a) = Authorization::parse(value) else {
        return;
    };
    let again = format!(
        "AWS4-HMAC-SHA256 Credential={}/{}/{}/{}/aws4_request, SignedHeaders={}, Signature={}",
        a.access_key_id,
        a.date,
        a.region,
        a.service,
        a.signed_headers.join(";"),
        hex::encode(&a.signature)
    );
    assert_eq!(Authorization::parse(&again).ok(), Some(a), "{again:?}");
    // Against a request with that header alone: refused, never a panic.
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert("authorization", v);
        headers.insert("host", HeaderValue::from_static("127.0.0.1"));
        headers.insert("x-amz-date", HeaderValue::from_static("20250101T000000Z"));
        let req = sigv4::Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        let expect = Expect {
            service: "kms",
            region: REGION,
            now: 1_735_689_600,
        };
        assert!(
            sigv4::verify(&req, &expect, lookup).is_err(),
            "forged header accepted"
        );
    }
}

/// Headers AWS signers leave unsigned or that verification treats itself.
const SKIP: &[&str] = &[
    "authorization",
    "x-amz-date",
    "x-amz-security-token",
    "host",
    "user-agent",
    "x-amzn-trace-id",
    "expect",
    "content-length",
    "transfer-encoding",
];

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn signed_request(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.split('\n');
    let path = lines.next().unwrap_or("/");
    let query = lines.next().unwrap_or("");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return;
        };
        let name = name.trim().to_ascii_lowercase();
        // Printable ASCII only: what HTTP clients send (botocore and
        // aws-sigv4 disagree on tabs, and HTTP/1.1 folds nothing else).
        if SKIP.contains(&name.as_str()) || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return;
        }
        if HeaderName::from_bytes(name.as_bytes()).is_err() {
            return;
        }
        pairs.push((name, value.to_owned()));
    }
    // Repeated slashes: SDKs disagree (aws-sigv4 and the JS SDK collapse
    // them, botocore keeps them), and the KMS is served at "/" only.
    // A literal `+` in the query: aws-sigv4 reads it as a form-encoded
    // space, the verifier (like botocore, which never sends one) as a plus.
    // KMS requests carry no query, so the verifier's reading stands.
    // Percent escapes that decode to bytes which are not UTF-8: aws-sigv4
    // decodes the query to strings (lossily), the verifier keeps the bytes.
    if !path.starts_with('/')
        || path.contains("//")
        || query.contains('+')
        || std::str::from_utf8(&percent_decode(query)).is_err()
    {
        return;
    }
    let url = if query.is_empty() {
        format!("https://127.0.0.1:4566{path}")
    } else {
        format!("https://127.0.0.1:4566{path}?{query}")
    };
    // Only what arrives as it was sent: the URI must parse back to the
    // same path and query.
    let Ok(uri) = url.parse::<http::Uri>() else {
        return;
    };
    if uri.path() != path || uri.query().unwrap_or("") != query {
        return;
    }

    let identity = aws_credential_types::Credentials::new(AKID, SECRET, None, None, "fuzz").into();
    let now = SystemTime::now();
    let Ok(params) = v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("kms")
        .time(now)
        .settings(SigningSettings::default())
        .build()
    else {
        return;
    };
    let params = params.into();
    let Ok(signable) = SignableRequest::new(
        "POST",
        &url,
        pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(body.as_bytes()),
    ) else {
        return;
    };
    let Ok(signed) = sign(signable, &params) else {
        return;
    };
    let (instructions, _) = signed.into_parts();

    let mut headers = HeaderMap::new();
    headers.insert("host", HeaderValue::from_static("127.0.0.1:4566"));
    for (k, v) in &pairs {
        let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) else {
            return;
        };
        headers.append(k, v);
    }
    for (k, v) in instructions.headers() {
        headers.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("signer header name"),
            HeaderValue::from_str(v).expect("signer header value"),
        );
    }
    let expect = Expect {
        service: "kms",
        region: REGION,
        now: now.duration_since(UNIX_EPOCH).expect("clock").as_secs(),
    };
    let req = sigv4::Request {
        method: "POST",
        path,
        query,
        headers: &headers,
        body: body.as_bytes(),
    };
    if let Err(e) = sigv4::verify(&req, &expect, lookup) {
        panic!(
            "a request aws-sigv4 signed was refused: {e}\npath {path:?} query {query:?}\nheaders {headers:?}"
        );
    }
    let tampered = [body.as_bytes(), b"x"].concat();
    let req = sigv4::Request {
        body: &tampered,
        ..req
    };
    assert!(
        sigv4::verify(&req, &expect, lookup).is_err(),
        "tampered body accepted"
    );
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        if let Ok(s) = std::str::from_utf8(rest) {
            parse_round_trip(s);
        }
    } else {
        signed_request(rest);
    }
});
