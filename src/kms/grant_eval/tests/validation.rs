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
