//! Grants: what they allow (and to whom), constraints, tokens, listing,
//! retiring and revoking, and their validation errors. Grantees are
//! principals of another account, whom the default key policy does not
//! cover, so only a grant can let them in.
#![allow(clippy::unwrap_used)]

use crate::kms::ops::testutil::*;

const HOST: &str = "arn:aws:iam::999999999999:user/host-a";
const OTHER: &str = "arn:aws:iam::999999999999:user/host-b";

fn grant(f: &Fixture, req: Value) -> (String, String) {
    let out = f.ok("CreateGrant", req);
    (
        out["GrantId"].as_str().unwrap().to_owned(),
        out["GrantToken"].as_str().unwrap().to_owned(),
    )
}

#[test]
fn a_grant_lets_its_grantee_do_its_operations_only() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let host = f.caller(HOST);
    let enc = json!({"KeyId": id, "Plaintext": b64(b"x")});
    assert_eq!(
        f.err_as(&host, "Encrypt", enc.clone()).0,
        "AccessDeniedException"
    );
    let (gid, _) = grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Encrypt", "Decrypt"]}),
    );
    assert_eq!(gid.len(), 64);
    let blob = f.ok_as(&host, "Encrypt", enc.clone())["CiphertextBlob"].clone();
    f.ok_as(&host, "Decrypt", json!({"CiphertextBlob": blob}));
    assert_eq!(
        f.err_as(
            &host,
            "GenerateDataKey",
            json!({"KeyId": id, "KeySpec": "AES_256"})
        )
        .0,
        "AccessDeniedException"
    );
    assert_eq!(
        f.err_as(&f.caller(OTHER), "Encrypt", enc.clone()).0,
        "AccessDeniedException"
    );
    f.ok("RevokeGrant", json!({"KeyId": id, "GrantId": gid}));
    assert_eq!(f.err_as(&host, "Encrypt", enc).0, "AccessDeniedException");
    assert_eq!(
        f.err("RevokeGrant", json!({"KeyId": id, "GrantId": gid})).0,
        "NotFoundException"
    );
}

#[test]
fn encryption_context_constraints() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let host = f.caller(HOST);
    let vol = json!({"aws:ebs:id": "vol-1"});
    grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["GenerateDataKey", "DescribeKey"],
        "Constraints": {"EncryptionContextEquals": vol}}),
    );
    let gdk = |ctx: Value| json!({"KeyId": id, "KeySpec": "AES_256", "EncryptionContext": ctx});
    f.ok_as(&host, "GenerateDataKey", gdk(vol.clone()));
    assert_eq!(
        f.err_as(
            &host,
            "GenerateDataKey",
            gdk(json!({"aws:ebs:id": "vol-2"}))
        )
        .0,
        "AccessDeniedException"
    );
    assert_eq!(
        f.err_as(
            &host,
            "GenerateDataKey",
            gdk(json!({"aws:ebs:id": "vol-1", "x": "y"}))
        )
        .0,
        "AccessDeniedException"
    );
    f.ok_as(&host, "DescribeKey", json!({"KeyId": id}));
    let other = f.caller(OTHER);
    grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": OTHER, "Operations": ["GenerateDataKey"],
        "Constraints": {"EncryptionContextSubset": {"team": "a"}}}),
    );
    f.ok_as(
        &other,
        "GenerateDataKey",
        gdk(json!({"team": "a", "x": "y"})),
    );
    assert_eq!(
        f.err_as(&other, "GenerateDataKey", gdk(json!({"x": "y"})))
            .0,
        "AccessDeniedException"
    );
}

#[test]
fn list_retire_and_name_idempotency() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let req = json!({"KeyId": id, "GranteePrincipal": HOST, "RetiringPrincipal": OTHER,
        "Operations": ["Decrypt"], "Name": "attach-vol-1"});
    let (gid, token) = grant(&f, req.clone());
    let (again, _) = grant(&f, req);
    assert_eq!(gid, again, "same name and parameters: same grant");
    let (gid2, _) = grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": OTHER, "Operations": ["Encrypt"]}),
    );
    let list = f.ok("ListGrants", json!({"KeyId": id}));
    assert_eq!(list["Grants"].as_array().unwrap().len(), 2);
    let g = f.ok("ListGrants", json!({"KeyId": id, "GrantId": gid}))["Grants"][0].clone();
    assert_eq!(g["Name"], "attach-vol-1");
    assert_eq!(g["Operations"], json!(["Decrypt"]));
    assert_eq!(g["IssuingAccount"], f.root.principal_arn.as_str());
    assert!(g["KeyId"].as_str().unwrap().starts_with("arn:aws:kms:"));
    let page = f.ok("ListGrants", json!({"KeyId": id, "Limit": 1}));
    assert_eq!(page["Truncated"], true);
    let by_grantee = f.ok(
        "ListGrants",
        json!({"KeyId": id, "GranteePrincipal": OTHER}),
    );
    assert_eq!(by_grantee["Grants"][0]["GrantId"], gid2.as_str());
    let retirable = f.ok("ListRetirableGrants", json!({"RetiringPrincipal": OTHER}));
    assert_eq!(retirable["Grants"].as_array().unwrap().len(), 1);
    // Only the retiring principal (or grantee with RetireGrant, or the
    // issuing account) may retire; by token or by key + id.
    let host = f.caller(HOST);
    assert_eq!(
        f.err_as(&host, "RetireGrant", json!({"GrantToken": token}))
            .0,
        "AccessDeniedException"
    );
    f.ok_as(
        &f.caller(OTHER),
        "RetireGrant",
        json!({"GrantToken": token}),
    );
    assert_eq!(
        f.err("RetireGrant", json!({"GrantToken": token})).0,
        "NotFoundException"
    );
    f.ok("RetireGrant", json!({"KeyId": id, "GrantId": gid2}));
    assert_eq!(
        f.ok("ListGrants", json!({"KeyId": id}))["Grants"],
        json!([])
    );
    assert_eq!(
        f.err("RetireGrant", json!({"KeyId": id})).0,
        "ValidationException"
    );
}

#[test]
fn grant_tokens_are_checked() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let (_, token) = grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Encrypt"]}),
    );
    let enc = |tokens: Value| json!({"KeyId": id, "Plaintext": b64(b"x"), "GrantTokens": tokens});
    f.ok_as(&f.caller(HOST), "Encrypt", enc(json!([token])));
    let mut forged = token.clone().into_bytes();
    forged[10] = if forged[10] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        f.err("Encrypt", enc(json!([forged]))).0,
        "InvalidGrantTokenException"
    );
    assert_eq!(
        f.err("Encrypt", enc(json!(["nonsense"]))).0,
        "InvalidGrantTokenException"
    );
    let eleven: Vec<&str> = (0..11).map(|_| token.as_str()).collect();
    assert_eq!(
        f.err("Encrypt", enc(json!(eleven))).0,
        "ValidationException"
    );
    // A token of another region's KMS is not one of ours.
    let west = f.region(OTHER_REGION);
    let err = west
        .call(
            &west.root_caller(),
            "RetireGrant",
            json!({"GrantToken": token}),
        )
        .unwrap_err();
    assert_eq!(err.aws_type(), "InvalidGrantTokenException");
}

#[test]
fn grantees_with_create_grant_can_only_pass_on_what_they_have() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    grant(
        &f,
        json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["CreateGrant", "Decrypt"]}),
    );
    let host = f.caller(HOST);
    f.ok_as(
        &host,
        "CreateGrant",
        json!({"KeyId": id, "GranteePrincipal": OTHER, "Operations": ["Decrypt"]}),
    );
    let (t, _) = f.err_as(
        &host,
        "CreateGrant",
        json!({"KeyId": id, "GranteePrincipal": OTHER, "Operations": ["Encrypt"]}),
    );
    assert_eq!(t, "AccessDeniedException");
}

#[test]
fn create_grant_validation_and_states() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let hmac = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    let cases = [
        (
            json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": []}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Fly"]}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Sign"]}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "GranteePrincipal": "bob", "Operations": ["Encrypt"]}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Encrypt"], "Name": "bad name"}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Encrypt"], "Constraints":
            {"EncryptionContextEquals": {"a": "b"}, "EncryptionContextSubset": {"a": "b"}}}),
            "ValidationException",
        ),
        (
            json!({"KeyId": hmac, "GranteePrincipal": HOST, "Operations": ["GenerateMac"], "Constraints":
            {"EncryptionContextSubset": {"a": "b"}}}),
            "ValidationException",
        ),
        (
            json!({"KeyId": id, "Operations": ["Encrypt"]}),
            "ValidationException",
        ),
    ];
    for (req, want) in cases {
        assert_eq!(f.err("CreateGrant", req.clone()).0, want, "{req}");
    }
    assert_eq!(
        f.err("ListGrants", json!({"KeyId": id, "GrantId": "xyz"}))
            .0,
        "InvalidGrantIdException"
    );
    assert_eq!(
        f.err("RevokeGrant", json!({"KeyId": id, "GrantId": "xyz"}))
            .0,
        "InvalidGrantIdException"
    );
    f.ok("DisableKey", json!({"KeyId": id}));
    let (t, _) = f.err(
        "CreateGrant",
        json!({"KeyId": id, "GranteePrincipal": HOST, "Operations": ["Encrypt"]}),
    );
    assert_eq!(t, "DisabledException");
}
