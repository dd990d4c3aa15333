#![allow(clippy::unwrap_used)]

use super::*;

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

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
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
