#![allow(clippy::unwrap_used)]

use super::*;

const ACCT: &str = "111122223333";
const ROOT: &str = "arn:aws:iam::111122223333:root";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const HOST: &str = "arn:aws:iam::111122223333:user/host-a";
const ADMIN: &str = "arn:aws:iam::111122223333:user/admin";
const OTHER: &str = "arn:aws:iam::111122223333:user/other";
const MALLORY: &str = "arn:aws:iam::444455556666:user/mallory";

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn grant(ops: &[GrantOperation], constraints: Option<GrantConstraints>) -> Grant {
    Grant {
        key_id: KEY.into(),
        grant_id: new_grant_id(),
        name: None,
        creation_date: 1_700_000_000,
        grantee_principal: HOST.into(),
        retiring_principal: Some(ADMIN.into()),
        issuing_account: ROOT.into(),
        operations: ops.to_vec(),
        constraints,
    }
}

fn equals(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
    Some(GrantConstraints {
        encryption_context_equals: Some(ctx(pairs)),
        ..Default::default()
    })
}

fn subset(pairs: &[(&str, &str)]) -> Option<GrantConstraints> {
    Some(GrantConstraints {
        encryption_context_subset: Some(ctx(pairs)),
        ..Default::default()
    })
}

#[test]
fn operation_names_are_aws_spellings_on_the_wire() {
    for op in GrantOperation::ALL {
        assert_eq!(GrantOperation::parse(op.as_str()), Some(*op));
        assert_eq!(serde_json::to_string(op).unwrap(), format!("\"{op}\""));
    }
    assert_eq!(GrantOperation::parse("decrypt"), None);
    assert_eq!(
        parse_operations(&["Decrypt", "RetireGrant", "Decrypt"]).unwrap(),
        [GrantOperation::Decrypt, GrantOperation::RetireGrant]
    );
    let e = parse_operations(&["Decrypt", "ReEncrypt"]).unwrap_err();
    assert_eq!(e.aws_type(), "ValidationException");
    assert!(e.to_string().contains("'ReEncrypt'"));
}

#[test]
fn grant_serializes_with_aws_field_names() {
    let mut g = grant(
        &[GrantOperation::Decrypt],
        equals(&[("aws:ebs:id", "vol-1")]),
    );
    g.grant_id = "0c237476b39f8bc44e45212e08498fbe3151305030726c0590dd8d3e9f3d6a60".into();
    g.name = Some("attach-vol-1".into());
    let v = serde_json::to_value(&g).unwrap();
    for field in [
        "KeyId",
        "GrantId",
        "Name",
        "CreationDate",
        "GranteePrincipal",
        "RetiringPrincipal",
        "IssuingAccount",
        "Operations",
        "Constraints",
    ] {
        assert!(v.get(field).is_some(), "{field} missing in {v}");
    }
    assert_eq!(
        v["Constraints"]["EncryptionContextEquals"]["aws:ebs:id"],
        "vol-1"
    );
    assert!(v["Constraints"].get("EncryptionContextSubset").is_none());
    assert_eq!(v["Operations"][0], "Decrypt");
    let back: Grant = serde_json::from_value(v).unwrap();
    assert_eq!(back, g);
    // Optional fields may be absent.
    let minimal: Grant = serde_json::from_str(
        r#"{"KeyId":"k","GrantId":"g","CreationDate":1,"GranteePrincipal":"p",
            "IssuingAccount":"a","Operations":["Encrypt"]}"#,
    )
    .unwrap();
    assert_eq!(minimal.name, None);
    assert_eq!(minimal.constraints, None);
}

#[test]
fn ebs_attach_grant_allows_decrypt_of_that_volume_only() {
    // What `serve` creates on attach (issue 4): Decrypt, EncryptionContextEquals.
    let g = grant(
        &[GrantOperation::Decrypt],
        equals(&[("aws:ebs:id", "vol-0123456789abcdef0")]),
    );
    let vol = ctx(&[("aws:ebs:id", "vol-0123456789abcdef0")]);
    assert!(grant_allows(&g, HOST, "Decrypt", &vol));
    assert!(grant_allows(&g, HOST, "kms:Decrypt", &vol));
    assert!(grant_allows(&g, HOST, "kms:decrypt", &vol));
    assert!(!grant_allows(
        &g,
        HOST,
        "Decrypt",
        &ctx(&[("aws:ebs:id", "vol-0000000000000000f")])
    ));
    assert!(!grant_allows(
        &g,
        HOST,
        "Decrypt",
        &EncryptionContext::new()
    ));
    let more = ctx(&[("aws:ebs:id", "vol-0123456789abcdef0"), ("x", "y")]);
    assert!(
        !grant_allows(&g, HOST, "Decrypt", &more),
        "Equals means exactly"
    );
    assert!(!grant_allows(&g, HOST, "Encrypt", &vol));
    assert!(!grant_allows(&g, OTHER, "Decrypt", &vol));
    assert!(!grant_allows(&g, MALLORY, "Decrypt", &vol));
    assert!(!grant_allows(&g, HOST, "NoSuchOperation", &vol));
}

#[test]
fn constraint_keys_ignore_case_values_do_not() {
    let g = grant(&[GrantOperation::Decrypt], equals(&[("Department", "IT")]));
    assert!(grant_allows(
        &g,
        HOST,
        "Decrypt",
        &ctx(&[("department", "IT")])
    ));
    assert!(!grant_allows(
        &g,
        HOST,
        "Decrypt",
        &ctx(&[("Department", "it")])
    ));
    // Case-variant keys in the request are ambiguous: no match.
    let twice = ctx(&[("Department", "IT"), ("department", "IT")]);
    assert!(!grant_allows(&g, HOST, "Decrypt", &twice));
    let s = grant(&[GrantOperation::Decrypt], subset(&[("Department", "IT")]));
    assert!(grant_allows(
        &s,
        HOST,
        "Decrypt",
        &ctx(&[("DEPARTMENT", "IT")])
    ));
    assert!(!grant_allows(
        &s,
        HOST,
        "Decrypt",
        &ctx(&[("Department", "It")])
    ));
}

#[test]
fn subset_constraint_needs_its_pairs_and_allows_more() {
    // The guide's example: --constraints EncryptionContextSubset={Department=IT}.
    let g = grant(
        &[GrantOperation::Encrypt, GrantOperation::GenerateDataKey],
        subset(&[("Department", "IT")]),
    );
    assert!(grant_allows(
        &g,
        HOST,
        "Encrypt",
        &ctx(&[("Department", "IT")])
    ));
    assert!(grant_allows(
        &g,
        HOST,
        "GenerateDataKey",
        &ctx(&[("Department", "IT"), ("Project", "x")])
    ));
    assert!(!grant_allows(
        &g,
        HOST,
        "Encrypt",
        &ctx(&[("Project", "x")])
    ));
    assert!(!grant_allows(
        &g,
        HOST,
        "Encrypt",
        &EncryptionContext::new()
    ));
}

#[test]
fn constraints_do_not_apply_to_operations_without_context() {
    let g = grant(
        &[
            GrantOperation::Decrypt,
            GrantOperation::DescribeKey,
            GrantOperation::RetireGrant,
        ],
        equals(&[("aws:ebs:id", "vol-1")]),
    );
    assert!(grant_allows(
        &g,
        HOST,
        "DescribeKey",
        &EncryptionContext::new()
    ));
    assert!(grant_allows(
        &g,
        HOST,
        "RetireGrant",
        &EncryptionContext::new()
    ));
    assert!(!grant_allows(
        &g,
        HOST,
        "Decrypt",
        &EncryptionContext::new()
    ));
}

#[test]
fn empty_constraint_maps_mean_no_constraint() {
    let g = grant(&[GrantOperation::Decrypt], equals(&[]));
    assert!(grant_allows(&g, HOST, "Decrypt", &ctx(&[("any", "thing")])));
    assert_eq!(normalize_constraints(equals(&[]).unwrap()), None);
    assert_eq!(
        normalize_constraints(subset(&[("a", "b")]).unwrap()),
        subset(&[("a", "b")])
    );
}

#[test]
fn re_encrypt_maps_to_from_and_to() {
    let from = grant(&[GrantOperation::ReEncryptFrom], None);
    let both = grant(
        &[GrantOperation::ReEncryptFrom, GrantOperation::ReEncryptTo],
        None,
    );
    let none = EncryptionContext::new();
    assert!(grant_allows(&from, HOST, "ReEncryptFrom", &none));
    assert!(!grant_allows(&from, HOST, "ReEncryptTo", &none));
    assert!(!grant_allows(&from, HOST, "kms:ReEncrypt", &none));
    assert!(grant_allows(&both, HOST, "kms:ReEncrypt", &none));
}

#[test]
fn account_root_grantee_stands_for_the_account() {
    let mut g = grant(&[GrantOperation::Encrypt], None);
    g.grantee_principal = ROOT.into();
    let none = EncryptionContext::new();
    assert!(grant_allows(&g, HOST, "Encrypt", &none));
    assert!(grant_allows(&g, ROOT, "Encrypt", &none));
    assert!(!grant_allows(&g, MALLORY, "Encrypt", &none));
}

#[test]
fn create_grant_only_through_grant_allows_create_grant() {
    let parent = grant(
        &[
            GrantOperation::Decrypt,
            GrantOperation::Encrypt,
            GrantOperation::CreateGrant,
        ],
        None,
    );
    assert!(!grant_allows(
        &parent,
        HOST,
        "CreateGrant",
        &EncryptionContext::new()
    ));
    assert!(grant_allows_create_grant(
        &parent,
        HOST,
        &[GrantOperation::Decrypt],
        None
    ));
    assert!(grant_allows_create_grant(
        &parent,
        HOST,
        &[GrantOperation::Decrypt, GrantOperation::CreateGrant],
        equals(&[("a", "b")]).as_ref()
    ));
    assert!(!grant_allows_create_grant(
        &parent,
        HOST,
        &[GrantOperation::GenerateDataKey],
        None
    ));
    assert!(!grant_allows_create_grant(
        &parent,
        OTHER,
        &[GrantOperation::Decrypt],
        None
    ));
    let no_create = grant(&[GrantOperation::Decrypt], None);
    assert!(!grant_allows_create_grant(
        &no_create,
        HOST,
        &[GrantOperation::Decrypt],
        None
    ));
}

#[test]
fn child_grant_constraints_must_be_at_least_as_strict() {
    let ops = [GrantOperation::Decrypt, GrantOperation::CreateGrant];
    let sub = grant(&ops, subset(&[("Department", "IT")]));
    let allows = |parent: &Grant, c: Option<GrantConstraints>| {
        grant_allows_create_grant(parent, HOST, &[GrantOperation::Decrypt], c.as_ref())
    };
    assert!(allows(&sub, subset(&[("Department", "IT")])));
    assert!(allows(
        &sub,
        subset(&[("department", "IT"), ("Project", "x")])
    ));
    assert!(allows(
        &sub,
        equals(&[("Department", "IT"), ("Project", "x")])
    ));
    assert!(!allows(&sub, None));
    assert!(!allows(&sub, subset(&[("Project", "x")])));
    assert!(!allows(&sub, equals(&[("Department", "HR")])));

    let eq = grant(&ops, equals(&[("aws:ebs:id", "vol-1")]));
    assert!(allows(&eq, equals(&[("aws:ebs:id", "vol-1")])));
    assert!(allows(&eq, equals(&[("AWS:EBS:ID", "vol-1")])));
    assert!(!allows(&eq, equals(&[("aws:ebs:id", "vol-1"), ("x", "y")])));
    assert!(!allows(&eq, subset(&[("aws:ebs:id", "vol-1")])));
    assert!(!allows(&eq, None));
}

#[test]
fn who_may_retire_a_grant() {
    let g = grant(&[GrantOperation::Decrypt], None);
    assert!(can_retire(&g, ADMIN, ACCT), "retiring principal");
    assert!(!can_retire(&g, HOST, ACCT), "grantee without RetireGrant");
    assert!(can_retire(&g, ROOT, ACCT), "the account");
    assert!(!can_retire(&g, OTHER, ACCT));
    assert!(!can_retire(&g, MALLORY, ACCT));
    let with_retire = grant(
        &[GrantOperation::Decrypt, GrantOperation::RetireGrant],
        None,
    );
    assert!(
        can_retire(&with_retire, HOST, ACCT),
        "grantee with RetireGrant"
    );
    let mut no_retiring = grant(&[GrantOperation::Decrypt], None);
    no_retiring.retiring_principal = None;
    assert!(!can_retire(&no_retiring, ADMIN, ACCT));
    no_retiring.retiring_principal = Some(ROOT.into());
    assert!(
        can_retire(&no_retiring, OTHER, ACCT),
        "root retiring principal = the account's principals"
    );
}

#[test]
fn revoking_is_up_to_the_key_policy() {
    use crate::kms::policy_eval::{default_policy, Policy};
    let none = EncryptionContext::new();
    let c = RequestContext::new(OTHER, ACCT, "kms:Decrypt", KEY, ACCT, &none);
    let default = Policy::parse(&default_policy(ACCT)).unwrap();
    assert!(can_revoke(&default, &c));
    let admin_only = Policy::parse(&format!(
        r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{ADMIN}"}},
            "Action": "kms:RevokeGrant", "Resource": "*"}}}}"#
    ))
    .unwrap();
    assert!(!can_revoke(&admin_only, &c));
    let admin = RequestContext {
        principal_arn: ADMIN,
        ..c
    };
    assert!(can_revoke(&admin_only, &admin));
}

mod validation;
