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
fn valid_operations_depend_on_key_spec_and_usage() {
    use GrantOperation as O;
    let sym = valid_operations(KeySpec::SymmetricDefault, KeyUsage::EncryptDecrypt);
    assert!(sym.contains(&O::GenerateDataKey) && sym.contains(&O::DescribeKey));
    assert!(
        !sym.contains(&O::Sign)
            && !sym.contains(&O::GetPublicKey)
            && !sym.contains(&O::GenerateMac)
    );
    let hmac = valid_operations(KeySpec::Hmac256, KeyUsage::GenerateVerifyMac);
    assert!(
        hmac.contains(&O::GenerateMac)
            && hmac.contains(&O::VerifyMac)
            && !hmac.contains(&O::Encrypt)
    );
    let rsa_enc = valid_operations(KeySpec::Rsa2048, KeyUsage::EncryptDecrypt);
    assert!(rsa_enc.contains(&O::Decrypt) && rsa_enc.contains(&O::GetPublicKey));
    assert!(!rsa_enc.contains(&O::Sign) && !rsa_enc.contains(&O::GenerateDataKey));
    let ecc_sign = valid_operations(KeySpec::EccNistP256, KeyUsage::SignVerify);
    assert!(
        ecc_sign.contains(&O::Sign)
            && ecc_sign.contains(&O::Verify)
            && !ecc_sign.contains(&O::Decrypt)
    );

    let ok = validate_grant(
        KeySpec::SymmetricDefault,
        KeyUsage::EncryptDecrypt,
        &[O::Decrypt],
        None,
    );
    assert!(ok.is_ok());
    let e = validate_grant(
        KeySpec::SymmetricDefault,
        KeyUsage::EncryptDecrypt,
        &[O::Sign],
        None,
    )
    .unwrap_err();
    assert_eq!(e.aws_type(), "ValidationException");
    assert!(
        e.to_string().contains("Sign") && e.to_string().contains("SYMMETRIC_DEFAULT"),
        "{e}"
    );
    assert!(validate_grant(KeySpec::Rsa4096, KeyUsage::SignVerify, &[O::Encrypt], None).is_err());
    assert!(validate_grant(
        KeySpec::Hmac512,
        KeyUsage::GenerateVerifyMac,
        &[O::GenerateMac],
        None
    )
    .is_ok());
    assert!(validate_grant(
        KeySpec::SymmetricDefault,
        KeyUsage::EncryptDecrypt,
        &[],
        None
    )
    .is_err());
}

#[test]
fn constraint_validation() {
    use GrantOperation as O;
    let sym = |c: Option<GrantConstraints>| {
        validate_grant(
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            &[O::Decrypt],
            c.as_ref(),
        )
    };
    assert!(sym(equals(&[("aws:ebs:id", "vol-1")])).is_ok());
    assert!(sym(subset(&[("a", "1")])).is_ok());
    let both = GrantConstraints {
        encryption_context_equals: Some(ctx(&[("a", "1")])),
        encryption_context_subset: Some(ctx(&[("b", "2")])),
    };
    assert!(sym(Some(both))
        .unwrap_err()
        .to_string()
        .contains("not both"));
    let nine: Vec<(String, String)> = (0..9).map(|i| (format!("k{i}"), "v".to_string())).collect();
    let nine: Vec<(&str, &str)> = nine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(sym(subset(&nine))
        .unwrap_err()
        .to_string()
        .contains("at most 8"));
    assert!(sym(subset(&nine[..8])).is_ok());
    let long = "v".repeat(MAX_CONSTRAINT_CHARS + 1);
    assert!(sym(subset(&[("k", &long)])).is_err());
    assert!(sym(subset(&[("k", &long[1..])])).is_ok());
    assert!(sym(subset(&[("Dept", "a"), ("dept", "a")]))
        .unwrap_err()
        .to_string()
        .contains("case"));
    let hmac = validate_grant(
        KeySpec::Hmac256,
        KeyUsage::GenerateVerifyMac,
        &[O::GenerateMac],
        subset(&[("a", "1")]).as_ref(),
    );
    assert!(hmac
        .unwrap_err()
        .to_string()
        .contains("symmetric encryption keys"));
    // Empty maps are no constraint at all, on any key.
    assert!(validate_grant(
        KeySpec::Rsa2048,
        KeyUsage::SignVerify,
        &[O::Sign],
        subset(&[]).as_ref()
    )
    .is_ok());
}

#[test]
fn names_principals_and_ids_are_checked() {
    assert!(validate_grant_name("attach-vol-0123:host/a_b").is_ok());
    for bad in ["", "has space", "naïve", &"n".repeat(257)] {
        assert_eq!(
            validate_grant_name(bad).unwrap_err().aws_type(),
            "ValidationException",
            "{bad}"
        );
    }
    assert!(validate_principal("GranteePrincipal", HOST).is_ok());
    assert!(validate_principal("GranteePrincipal", ROOT).is_ok());
    for bad in [
        "host-a",
        "111122223333",
        "arn:aws:iam::1",
        "arn:aws:iam::111122223333:user/a b",
    ] {
        let e = validate_principal("GranteePrincipal", bad).unwrap_err();
        assert!(e.to_string().starts_with("GranteePrincipal"), "{e}");
    }
    let id = new_grant_id();
    assert_eq!(id.len(), 64);
    assert!(validate_grant_id(&id).is_ok());
    assert_ne!(id, new_grant_id());
    assert_eq!(
        validate_grant_id("abc").unwrap_err().aws_type(),
        "InvalidGrantIdException"
    );
}

#[test]
fn grant_tokens_map_back_to_their_grant() {
    let id = new_grant_id();
    let t1 = new_grant_token(&id);
    let t2 = new_grant_token(&id);
    assert_ne!(t1, t2, "tokens are unique per call");
    assert_eq!(grant_id_from_token(&t1).unwrap(), id);
    assert_eq!(grant_id_from_token(&t2).unwrap(), id);
    assert!(!t1.contains(&id), "the id is not visible in the token");
    assert_eq!(
        grant_ids_from_tokens(&[t1.clone(), t2]).unwrap(),
        [id.clone(), id]
    );
}

#[test]
fn damaged_or_foreign_grant_tokens_are_rejected() {
    let token = new_grant_token(&new_grant_id());
    let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let flipped = URL_SAFE_NO_PAD.encode(&raw);
    for bad in [
        "",
        "!!!",
        "AQID",
        flipped.as_str(),
        &token[..token.len() - 4],
        &"A".repeat(MAX_TOKEN_LEN + 4),
    ] {
        let e = grant_id_from_token(bad).unwrap_err();
        assert_eq!(e.aws_type(), "InvalidGrantTokenException", "{bad}");
    }
    let eleven: Vec<String> = (0..11).map(|_| token.clone()).collect();
    assert_eq!(
        grant_ids_from_tokens(&eleven).unwrap_err().aws_type(),
        "ValidationException"
    );
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

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn token_round_trips_any_id(id in ".{1,80}") {
            prop_assert_eq!(grant_id_from_token(&new_grant_token(&id)).unwrap(), id);
        }

        #[test]
        fn token_parser_never_panics(s in ".{0,200}") {
            let _ = grant_id_from_token(&s);
        }

        #[test]
        fn equals_constraint_matches_its_own_context(
            pairs in proptest::collection::btree_map("[a-z]{1,6}", "[a-zA-Z0-9]{0,6}", 1..6)
        ) {
            let g = grant(&[GrantOperation::Decrypt], Some(GrantConstraints {
                encryption_context_equals: Some(pairs.clone()),
                ..Default::default()
            }));
            prop_assert!(grant_allows(&g, HOST, "Decrypt", &pairs));
            let mut more = pairs.clone();
            more.insert("zz-extra".into(), "v".into());
            prop_assert!(!grant_allows(&g, HOST, "Decrypt", &more));
        }
    }
}

#[test]
fn stored_records_are_checked_like_listed_grants() {
    let g = grant(
        &[GrantOperation::Decrypt, GrantOperation::RetireGrant],
        equals(&[("aws:ebs:id", "vol-1")]),
    );
    let record = GrantRecord {
        grant_id: g.grant_id.clone(),
        name: g.name.clone(),
        creation_date: g.creation_date,
        grantee_principal: g.grantee_principal.clone(),
        retiring_principal: g.retiring_principal.clone(),
        issuing_account: g.issuing_account.clone(),
        operations: g.operations.clone(),
        constraints: g.constraints.clone(),
    };
    assert_eq!(Grant::from_record(KEY, &record), g);
    let vol = ctx(&[("aws:ebs:id", "vol-1")]);
    assert!(grant_allows(&record, HOST, "Decrypt", &vol));
    assert!(!grant_allows(&record, OTHER, "Decrypt", &vol));
    assert!(can_retire(&record, HOST, ACCT));
    assert!(!grant_allows_create_grant(
        &record,
        HOST,
        &[GrantOperation::Decrypt],
        None
    ));
}
