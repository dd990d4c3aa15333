//! The protocol handler with a fake backend: routing, authentication
//! errors, body parsing and error shapes, with requests signed by the
//! `aws-sigv4` crate.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use http::HeaderValue;
use serde_json::json;

use super::*;
use crate::crypto::SecretBytes;
use crate::kms::error::KmsError;
use crate::kms::iam::{Credential, IamError};

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const USER: &str = "arn:aws:iam::111122223333:user/host-a";

/// One recorded call: (principal, operation, request, via service).
type Call = (String, String, Value, Option<String>);

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<Call>>,
}

impl Backend for Fake {
    fn region(&self) -> &str {
        "us-east-1"
    }
    fn call(
        &self,
        caller: &Caller,
        op: &str,
        req: Value,
        via: Option<String>,
    ) -> Result<Value, KmsError> {
        self.calls.lock().unwrap().push((
            caller.principal_arn.clone(),
            op.to_owned(),
            req.clone(),
            via,
        ));
        match op {
            "DescribeKey" => Ok(json!({"KeyMetadata": {"KeyId": req["KeyId"]}})),
            "Disabled" => Err(KmsError::key_disabled("k")),
            "Broken" => Err(KmsError::Internal("disk /var/secret exploded".into())),
            _ => Err(KmsError::UnknownOperation(format!("no {op}"))),
        }
    }
}

struct Creds;

impl CredentialStore for Creds {
    fn credential(&self, k: &str) -> Result<Option<Credential>, IamError> {
        Ok((k == AKID).then(|| Credential {
            access_key_id: AKID.into(),
            principal_arn: USER.into(),
            user_id: "AIDAEXAMPLE".into(),
            active: true,
            secret: SecretBytes::from_slice(SECRET.as_bytes()),
        }))
    }
}

fn api() -> (Arc<Fake>, Api) {
    let fake = Arc::new(Fake::default());
    (fake.clone(), Api::new(fake, Arc::new(Creds)))
}

/// Headers of a request signed by aws-sigv4 for `service` with `secret`.
fn signed(service: &str, secret: &str, extra: &[(&str, &str)], body: &[u8]) -> HeaderMap {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let identity = Credentials::new(AKID, secret, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name(service)
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let mut base = vec![("host", "127.0.0.1:4599")];
    base.extend_from_slice(extra);
    let req = SignableRequest::new(
        "POST",
        "http://127.0.0.1:4599/",
        base.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (ins, _) = sign(req, &params).unwrap().into_parts();
    let mut h = HeaderMap::new();
    for (k, v) in base.iter().copied().chain(ins.headers()) {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn kms_headers(op: &str, secret: &str, body: &[u8]) -> HeaderMap {
    let target = format!("TrentService.{op}");
    signed(
        "kms",
        secret,
        &[
            ("content-type", JSON_CONTENT_TYPE),
            ("x-amz-target", &target),
        ],
        body,
    )
}

fn post<'a>(h: &'a HeaderMap, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        method: "POST",
        path: "/",
        query: "",
        headers: h,
        body,
    }
}

fn error_of(out: &Outgoing) -> (u16, String, String) {
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    (
        out.status.as_u16(),
        v["__type"].as_str().unwrap().to_owned(),
        v["message"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_signed_request_reaches_the_backend_as_its_principal() {
    let (fake, api) = api();
    let body = br#"{"KeyId":"alias/x"}"#;
    let h = kms_headers("DescribeKey", SECRET, body);
    let out = api.handle(&post(&h, body), "r");
    assert_eq!(
        out.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&out.body)
    );
    let v: Value = serde_json::from_slice(&out.body).unwrap();
    assert_eq!(v["KeyMetadata"]["KeyId"], "alias/x");
    let calls = fake.calls.lock().unwrap();
    assert_eq!(calls[0].0, USER);
    assert_eq!(calls[0].1, "DescribeKey");
    // An empty body is an empty request.
    drop(calls);
    let h = kms_headers("DescribeKey", SECRET, b"");
    assert_eq!(api.handle(&post(&h, b""), "r").status, StatusCode::OK);
}

#[test]
fn errors_have_the_aws_shape_and_internal_ones_hide_details() {
    let (_, api) = api();
    let h = kms_headers("Disabled", SECRET, b"{}");
    let (status, t, m) = error_of(&api.handle(&post(&h, b"{}"), "r"));
    assert_eq!((status, t.as_str()), (400, "DisabledException"));
    assert!(m.contains("enable-key"), "{m}");
    let h = kms_headers("Broken", SECRET, b"{}");
    let (status, t, m) = error_of(&api.handle(&post(&h, b"{}"), "req-7"));
    assert_eq!((status, t.as_str()), (500, "KMSInternalException"));
    assert!(!m.contains("/var/secret") && m.contains("req-7"), "{m}");
}

#[test]
fn bad_signatures_keys_and_bodies_are_refused_by_name() {
    let (fake, api) = api();
    let body = b"{}";
    let h = kms_headers(
        "DescribeKey",
        "wrong secret wrong secret wrong secret!!",
        body,
    );
    let (s, t, _) = error_of(&api.handle(&post(&h, body), "r"));
    assert_eq!((s, t.as_str()), (400, "InvalidSignatureException"));
    // Unsigned.
    let mut h = HeaderMap::new();
    h.insert(
        "x-amz-target",
        HeaderValue::from_static("TrentService.ListKeys"),
    );
    h.insert("content-type", HeaderValue::from_static(JSON_CONTENT_TYPE));
    let (s, t, _) = error_of(&api.handle(&post(&h, body), "r"));
    assert_eq!(
        (s, t.as_str()),
        (403, "MissingAuthenticationTokenException")
    );
    // Not JSON, not an object.
    for bad in [&b"{nope"[..], b"[1]"] {
        let h = kms_headers("DescribeKey", SECRET, bad);
        let (s, t, _) = error_of(&api.handle(&post(&h, bad), "r"));
        assert_eq!((s, t.as_str()), (400, "SerializationException"));
    }
    // Wrong target prefix, GET, other path.
    let h = signed(
        "kms",
        SECRET,
        &[
            ("content-type", JSON_CONTENT_TYPE),
            ("x-amz-target", "Other.X"),
        ],
        body,
    );
    let (s, t, _) = error_of(&api.handle(&post(&h, body), "r"));
    assert_eq!((s, t.as_str()), (400, "UnknownOperationException"));
    let mut get = post(&h, body);
    get.method = "GET";
    assert_eq!(api.handle(&get, "r").status, StatusCode::METHOD_NOT_ALLOWED);
    let mut other = post(&h, body);
    other.path = "/admin";
    assert_eq!(api.handle(&other, "r").status, StatusCode::NOT_FOUND);
    assert!(
        fake.calls.lock().unwrap().is_empty(),
        "nothing unauthenticated reached the backend"
    );
}

#[test]
fn via_service_is_taken_only_from_a_signed_header_with_the_ebs_value() {
    let (fake, api) = api();
    let body = b"{}";
    let ebs = "ec2.us-east-1.amazonaws.com";
    let base = [
        ("content-type", JSON_CONTENT_TYPE),
        ("x-amz-target", "TrentService.DescribeKey"),
    ];
    let mut with = base.to_vec();
    with.push((VIA_SERVICE_HEADER, ebs));
    let h = signed("kms", SECRET, &with, body);
    assert_eq!(api.handle(&post(&h, body), "r").status, StatusCode::OK);
    // Added after signing: ignored.
    let mut h = signed("kms", SECRET, &base, body);
    h.insert(
        VIA_SERVICE_HEADER,
        HeaderValue::from_static("ec2.us-east-1.amazonaws.com"),
    );
    assert_eq!(api.handle(&post(&h, body), "r").status, StatusCode::OK);
    let mut bad = base.to_vec();
    bad.push((VIA_SERVICE_HEADER, "s3.us-east-1.amazonaws.com"));
    let h = signed("kms", SECRET, &bad, body);
    let (s, t, _) = error_of(&api.handle(&post(&h, body), "r"));
    assert_eq!((s, t.as_str()), (400, "ValidationException"));
    let calls = fake.calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].3.as_deref(), Some(ebs));
    assert_eq!(calls[1].3, None);
}

#[test]
fn sts_get_caller_identity_names_the_principal() {
    let (_, api) = api();
    let body = b"Action=GetCallerIdentity&Version=2011-06-15";
    let form = "application/x-www-form-urlencoded; charset=utf-8";
    let h = signed("sts", SECRET, &[("content-type", form)], body);
    let out = api.handle(&post(&h, body), "r");
    let text = String::from_utf8(out.body.clone()).unwrap();
    assert_eq!(out.status, StatusCode::OK, "{text}");
    assert!(text.contains(&format!("<Arn>{USER}</Arn>")), "{text}");
    assert!(text.contains("<Account>111122223333</Account>"), "{text}");
    // Signed for kms instead of sts.
    let h = signed("kms", SECRET, &[("content-type", form)], body);
    let out = api.handle(&post(&h, body), "r");
    let text = String::from_utf8(out.body).unwrap();
    assert!(text.contains("SignatureDoesNotMatch"), "{text}");
}
