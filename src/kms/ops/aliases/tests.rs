//! CreateAlias, UpdateAlias, DeleteAlias, ListAliases.
#![allow(clippy::unwrap_used)]

use crate::kms::ops::testutil::*;

#[test]
fn alias_lifecycle_and_resolution() {
    let f = Fixture::new();
    let (a, b) = (f.symmetric_key(), f.symmetric_key());
    assert_eq!(
        f.ok(
            "CreateAlias",
            json!({"AliasName": "alias/app", "TargetKeyId": a})
        ),
        json!({})
    );
    assert_eq!(f.describe("alias/app")["KeyId"], a.as_str());
    let alias_arn = format!("arn:aws:kms:{REGION}:{}:alias/app", f.kms.account_id());
    assert_eq!(f.describe(&alias_arn)["KeyId"], a.as_str());
    f.ok(
        "UpdateAlias",
        json!({"AliasName": "alias/app", "TargetKeyId": b}),
    );
    assert_eq!(f.describe("alias/app")["KeyId"], b.as_str());
    let list = f.ok("ListAliases", json!({}));
    let names: Vec<&str> = list["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AliasName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alias/app", "alias/aws/ebs"]);
    let app = &list["Aliases"][0];
    assert_eq!(
        (app["AliasArn"].as_str(), app["TargetKeyId"].as_str()),
        (Some(alias_arn.as_str()), Some(b.as_str()))
    );
    assert!(app["CreationDate"].is_u64());
    assert!(
        list["Aliases"][1].get("TargetKeyId").is_none(),
        "predefined alias without a key yet"
    );
    let of_b = f.ok("ListAliases", json!({"KeyId": b}));
    assert_eq!(of_b["Aliases"].as_array().unwrap().len(), 1);
    assert_eq!(
        f.ok("ListAliases", json!({"KeyId": a}))["Aliases"],
        json!([])
    );
    let page = f.ok("ListAliases", json!({"Limit": 1}));
    assert_eq!(page["Truncated"], true);
    let rest = f.ok(
        "ListAliases",
        json!({"Limit": 1, "Marker": page["NextMarker"]}),
    );
    assert_eq!(rest["Aliases"][0]["AliasName"], "alias/aws/ebs");
    f.ok("DeleteAlias", json!({"AliasName": "alias/app"}));
    assert_eq!(
        f.err("DescribeKey", json!({"KeyId": "alias/app"})).0,
        "NotFoundException"
    );
    assert_eq!(
        f.err("DeleteAlias", json!({"AliasName": "alias/app"})).0,
        "NotFoundException"
    );
}

#[test]
fn alias_errors() {
    let f = Fixture::new();
    let id = f.symmetric_key();
    let hmac = f.key(json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}));
    f.ok(
        "CreateAlias",
        json!({"AliasName": "alias/x", "TargetKeyId": id}),
    );
    let cases = [
        (
            "CreateAlias",
            json!({"AliasName": "alias/x", "TargetKeyId": id}),
            "AlreadyExistsException",
        ),
        (
            "CreateAlias",
            json!({"AliasName": "alias/aws/x", "TargetKeyId": id}),
            "NotAuthorizedException",
        ),
        (
            "CreateAlias",
            json!({"AliasName": "x", "TargetKeyId": id}),
            "ValidationException",
        ),
        (
            "CreateAlias",
            json!({"AliasName": "alias/y", "TargetKeyId": "alias/x"}),
            "ValidationException",
        ),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/aws/ebs", "TargetKeyId": id}),
            "NotAuthorizedException",
        ),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/none", "TargetKeyId": id}),
            "NotFoundException",
        ),
        (
            "UpdateAlias",
            json!({"AliasName": "alias/x", "TargetKeyId": hmac}),
            "ValidationException",
        ),
        (
            "DeleteAlias",
            json!({"AliasName": "alias/aws/ebs"}),
            "NotAuthorizedException",
        ),
        ("ListAliases", json!({"Limit": 101}), "ValidationException"),
    ];
    for (op, req, want) in cases {
        assert_eq!(f.err(op, req.clone()).0, want, "{op} {req}");
    }
    let other = f.symmetric_key();
    f.ok(
        "ScheduleKeyDeletion",
        json!({"KeyId": other, "PendingWindowInDays": 7}),
    );
    let (t, _) = f.err(
        "UpdateAlias",
        json!({"AliasName": "alias/x", "TargetKeyId": other}),
    );
    assert_eq!(t, "KMSInvalidStateException");
    let (t, _) = f.err(
        "CreateAlias",
        json!({"AliasName": "alias/late", "TargetKeyId": other}),
    );
    assert_eq!(t, "KMSInvalidStateException");
}
