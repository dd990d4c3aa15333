//! SigV4 verification against the AWS SigV4 test suite (`get-vanilla`,
//! `post-vanilla`), botocore-produced signatures, and the `aws-sigv4`
//! crate (an independent signer).

#![allow(clippy::unwrap_used)]

use super::*;
use crate::crypto::SecretBytes;
use http::HeaderValue;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the time of the AWS test suite.
const T0: u64 = 1_440_938_160;

fn cred(active: bool) -> Credential {
    Credential {
        access_key_id: AKID.into(),
        principal_arn: "arn:aws:iam::111122223333:user/test".into(),
        user_id: "AIDAEXAMPLE".into(),
        active,
        secret: SecretBytes::from_slice(SECRET.as_bytes()),
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    h
}

fn auth(service: &str, signed: &str, sig: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/{service}/aws4_request, \
         SignedHeaders={signed}, Signature={sig}"
    )
}

fn check(
    method: &str,
    path: &str,
    query: &str,
    h: &HeaderMap,
    body: &[u8],
    service: &str,
    now: u64,
) -> Result<Credential, AuthError> {
    let req = Request {
        method,
        path,
        query,
        headers: h,
        body,
    };
    let expect = Expect {
        service,
        region: "us-east-1",
        now,
    };
    verify(&req, &expect, |k| {
        Ok::<_, String>((k == AKID).then(|| cred(true)))
    })
}

#[test]
fn aws_test_suite_get_and_post_vanilla_verify() {
    for (method, sig) in [
        (
            "GET",
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        ),
        (
            "POST",
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        ),
    ] {
        let h = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("authorization", &auth("service", "host;x-amz-date", sig)),
        ]);
        let c = check(method, "/", "", &h, b"", "service", T0).unwrap();
        assert_eq!(c.principal_arn, "arn:aws:iam::111122223333:user/test");
    }
}

#[test]
fn botocore_signatures_with_body_query_and_dot_segments_verify() {
    // Produced by botocore's SigV4Auth at T0 (see the module doc).
    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("x-amz-target", "TrentService.DescribeKey"),
        ("content-type", "application/x-amz-json-1.1"),
        (
            "authorization",
            &auth(
                "service",
                "content-type;host;x-amz-date;x-amz-target",
                "689a5e94dd363aab6d12d8f9049ebd6e76c5d49b3a038a0296ef1bad42fff0da",
            ),
        ),
    ]);
    let body = br#"{"KeyId":"alias/x"}"#;
    check("POST", "/", "", &h, body, "service", T0).unwrap();
    // One changed body byte breaks it.
    let e = check(
        "POST",
        "/",
        "",
        &h,
        br#"{"KeyId":"alias/y"}"#,
        "service",
        T0,
    )
    .unwrap_err();
    assert_eq!(e.aws_type(), "InvalidSignatureException");

    let h = headers(&[
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
        ("my-header1", "  a   b   c  "),
        (
            "authorization",
            &auth(
                "service",
                "host;my-header1;x-amz-date",
                "e5bcdab2bb3f794ba2eb6b446ac45510f5c9732c0b2222c7c95bbb3b4893a8da",
            ),
        ),
    ]);
    let q = "Param2=value2&Param1=value%201&b=";
    check("GET", "/a/./b/../c%20d/", q, &h, b"", "service", T0).unwrap();
}

#[test]
fn the_aws_sigv4_crate_and_this_verifier_agree() {
    use aws_credential_types::Credentials;
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    use aws_sigv4::sign::v4;
    let now = std::time::SystemTime::now();
    let now_secs = now.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let identity = Credentials::new(AKID, SECRET, None, None, "test").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("kms")
        .time(now)
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let body = br#"{"KeyId":"alias/aws/ebs","Plaintext":"aGk="}"#;
    let base = [
        ("host", "127.0.0.1:4599"),
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", "TrentService.Encrypt"),
    ];
    let signable = SignableRequest::new(
        "POST",
        "http://127.0.0.1:4599/",
        base.iter().copied(),
        SignableBody::Bytes(body),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    let mut h = headers(&base);
    for (k, v) in instructions.headers() {
        h.insert(
            http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    check("POST", "/", "", &h, body, "kms", now_secs).unwrap();
    // Wrong service / region / clock / secret are each refused by name.
    let e = check("POST", "/", "", &h, body, "sts", now_secs).unwrap_err();
    assert!(e.to_string().contains("correct service"), "{e}");
    let e = check("POST", "/", "", &h, body, "kms", now_secs + 16 * 60).unwrap_err();
    assert_eq!(e.aws_type(), "RequestExpired");
    check("POST", "/", "", &h, body, "kms", now_secs + 14 * 60).unwrap();
    let req = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &h,
        body,
    };
    let expect = Expect {
        service: "kms",
        region: "eu-west-1",
        now: now_secs,
    };
    let e = verify(&req, &expect, |_| Ok::<_, String>(Some(cred(true)))).unwrap_err();
    assert!(e.to_string().contains("eu-west-1"), "{e}");
    let expect = Expect {
        region: "us-east-1",
        ..expect
    };
    let e = verify(&req, &expect, |_| {
        let mut c = cred(true);
        c.secret = SecretBytes::from_slice(b"not the secret");
        Ok::<_, String>(Some(c))
    })
    .unwrap_err();
    assert_eq!(e.aws_type(), "InvalidSignatureException");
    let e = verify(&req, &expect, |_| Ok::<_, String>(Some(cred(false)))).unwrap_err();
    assert_eq!(e.aws_type(), "UnrecognizedClientException");
    let e = verify(&req, &expect, |_| Ok::<_, String>(None)).unwrap_err();
    assert_eq!(e.aws_type(), "UnrecognizedClientException");
    assert!(e.to_string().contains(AKID), "{e}");
}

#[test]
fn malformed_or_missing_authorization_is_named() {
    let base = [
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
    ];
    let h = headers(&base);
    let e = check("POST", "/", "", &h, b"", "service", T0).unwrap_err();
    assert_eq!(e.aws_type(), "MissingAuthenticationTokenException");
    let sig = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b";
    for bad in [
        "Basic dXNlcjpwYXNz".to_owned(),
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service".to_owned(),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/20150830/us-east-1/service/aws4_request, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/2015083/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={sig}"),
        auth("service", "host;x-amz-date", "zz"),
        auth("service", "x-amz-date", sig),
        auth("service", "Host;x-amz-date", sig),
        format!("{}, Signature={sig}", auth("service", "host;x-amz-date", sig)),
    ] {
        let mut h = headers(&base);
        h.insert("authorization", HeaderValue::from_str(&bad).unwrap());
        let e = check("POST", "/", "", &h, b"", "service", T0).unwrap_err();
        assert_eq!(e.aws_type(), "IncompleteSignatureException", "{bad}: {e}");
    }
    // A missing or malformed date.
    let mut h = headers(&[("host", "example.amazonaws.com")]);
    h.insert(
        "authorization",
        HeaderValue::from_str(&auth("service", "host;x-amz-date", sig)).unwrap(),
    );
    let e = check("POST", "/", "", &h, b"", "service", T0).unwrap_err();
    assert_eq!(e.aws_type(), "IncompleteSignatureException");
    h.insert(
        "x-amz-date",
        HeaderValue::from_static("2015-08-30T12:36:00Z"),
    );
    let e = check("POST", "/", "", &h, b"", "service", T0).unwrap_err();
    assert_eq!(e.aws_type(), "IncompleteSignatureException");
}

#[test]
fn amz_dates_round_trip() {
    assert_eq!(parse_amz_date("20150830T123600Z"), Some(T0));
    assert_eq!(format_amz_date(T0), "20150830T123600Z");
    assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
    assert_eq!(
        parse_amz_date("20240229T235959Z")
            .map(format_amz_date)
            .as_deref(),
        Some("20240229T235959Z")
    );
    for bad in [
        "2015083T123600Z",
        "20151330T123600Z",
        "20150830T123600",
        "2015083aT123600Z",
        "+0150830T123600Z",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
}

#[test]
fn canonical_uri_and_query_follow_the_spec() {
    assert_eq!(canonical_uri("/"), "/");
    assert_eq!(canonical_uri(""), "/");
    assert_eq!(canonical_uri("/a/./b/../c%20d/"), "/a/c%2520d/");
    assert_eq!(canonical_uri("/a/.."), "/");
    assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
    assert_eq!(canonical_query("x=a%20b&y"), "x=a%20b&y=");
}

mod props {
    use super::super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,300}") {
            let _ = Authorization::parse(&s);
            let _ = parse_amz_date(&s);
            let _ = canonical_uri(&s);
            let _ = canonical_query(&s);
        }

        #[test]
        fn dates_round_trip(t in 0u64..253_402_300_799) {
            prop_assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t));
        }
    }
}
