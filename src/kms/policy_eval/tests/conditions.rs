#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn string_equals_on_encryption_context_value() {
    let policy = one(
        "Allow",
        "kms:Decrypt",
        r#"{"StringEquals": {"kms:EncryptionContext:Department": "IT"}}"#,
    );
    assert!(decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("Department", "IT")])).is_allow());
    // The context key matches case-insensitively, the value does not.
    assert!(decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("department", "IT")])).is_allow());
    assert!(!decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("Department", "it")])).is_allow());
    assert!(!decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("Project", "IT")])).is_allow());
    assert!(!decide(&policy, ALICE, "kms:Decrypt", &EncryptionContext::new()).is_allow());
}

#[test]
fn case_variant_context_keys_never_widen_access() {
    let ec = ctx(&[("Department", "IT"), ("department", "HR")]);
    let allow = one(
        "Allow",
        "kms:Decrypt",
        r#"{"StringEquals": {"kms:EncryptionContext:Department": "IT"}}"#,
    );
    assert!(!decide(&allow, ALICE, "kms:Decrypt", &ec).is_allow());
    let deny = r#"{"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
              "Condition": {"StringNotEquals": {"kms:EncryptionContext:department": "IT"}}}]}"#;
    assert_eq!(
        decide(deny, ALICE, "kms:Decrypt", &ec),
        Decision::ExplicitDeny
    );
}

#[test]
fn string_like_on_encryption_context_values() {
    let policy = one(
        "Allow",
        "kms:GenerateDataKey*",
        r#"{"StringLike": {"kms:EncryptionContext:aws:ebs:id": ["vol-*", "snap-0?"]}}"#,
    );
    for (v, want) in [
        ("vol-0123456789abcdef0", true),
        ("snap-01", true),
        ("snap-012", false),
        ("VOL-1", false),
    ] {
        let got = decide(
            &policy,
            ALICE,
            "kms:GenerateDataKey",
            &ctx(&[("aws:ebs:id", v)]),
        );
        assert_eq!(got.is_allow(), want, "{v}");
    }
}

#[test]
fn negated_operator_holds_when_key_is_absent() {
    let policy = one(
        "Deny",
        "kms:*",
        r#"{"StringNotEquals": {"kms:EncryptionContext:Department": "IT"}}"#,
    );
    let none = EncryptionContext::new();
    assert_eq!(
        decide(&policy, ALICE, "kms:Decrypt", &none),
        Decision::ExplicitDeny
    );
    assert_eq!(
        decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("Department", "IT")])),
        Decision::ImplicitDeny
    );
}

#[test]
fn if_exists_skips_absent_keys() {
    let policy = one(
        "Allow",
        "kms:Decrypt",
        r#"{"StringEqualsIfExists": {"kms:ViaService": "ec2.us-east-1.amazonaws.com"}}"#,
    );
    let none = EncryptionContext::new();
    assert!(decide(&policy, ALICE, "kms:Decrypt", &none).is_allow());
    let p = Policy::parse(&policy).unwrap();
    let mut c = RequestContext::new(ALICE, ACCT, "kms:Decrypt", KEY, ACCT, &none);
    c.via_service = Some("rds.us-east-1.amazonaws.com");
    assert_eq!(evaluate(&p, &c), Decision::ImplicitDeny);
    c.via_service = Some("ec2.us-east-1.amazonaws.com");
    assert_eq!(evaluate(&p, &c), Decision::Allow);
}

#[test]
fn for_any_value_on_encryption_context_keys() {
    let policy = one(
        "Allow",
        "kms:Encrypt",
        r#"{"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": ["Purpose", "Project"]}}"#,
    );
    let d = |ec| decide(&policy, ALICE, "kms:Encrypt", &ec).is_allow();
    assert!(d(ctx(&[("Purpose", "x"), ("Other", "y")])));
    assert!(d(ctx(&[("Project", "x")])));
    assert!(
        !d(ctx(&[("purpose", "x")])),
        "keys compare case-sensitively"
    );
    assert!(!d(ctx(&[("Other", "y")])));
    assert!(
        !d(EncryptionContext::new()),
        "no context: ForAnyValue is false"
    );
}

#[test]
fn for_all_values_on_encryption_context_keys_and_the_empty_context_pitfall() {
    let policy = one(
        "Allow",
        "kms:Encrypt",
        r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Purpose", "Project"]}}"#,
    );
    let d = |p: &str, ec| decide(p, ALICE, "kms:Encrypt", &ec).is_allow();
    assert!(d(&policy, ctx(&[("Purpose", "x"), ("Project", "y")])));
    assert!(d(&policy, ctx(&[("Purpose", "x")])));
    assert!(!d(&policy, ctx(&[("Purpose", "x"), ("Other", "y")])));
    // As AWS warns: ForAllValues holds when the request has no context…
    assert!(d(&policy, EncryptionContext::new()));
    // …so the guide pairs it with a Null check.
    let guarded = one(
        "Allow",
        "kms:Encrypt",
        r#"{"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Purpose", "Project"]},
            "Null": {"kms:EncryptionContextKeys": "false"}}"#,
    );
    assert!(!d(&guarded, EncryptionContext::new()));
    assert!(d(&guarded, ctx(&[("Project", "y")])));
}

#[test]
fn deny_with_for_any_value_string_not_equals() {
    let policy = format!(
        r#"{{"Statement": [
            {{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Deny", "Principal": "*", "Action": "kms:Encrypt", "Resource": "*",
              "Condition": {{"ForAnyValue:StringNotEquals": {{"kms:EncryptionContextKeys": ["A", "B"]}}}}}}]}}"#
    );
    let d = |ec| decide(&policy, ALICE, "kms:Encrypt", &ec);
    assert_eq!(d(ctx(&[("A", "1")])), Decision::Allow);
    assert_eq!(d(ctx(&[("A", "1"), ("C", "3")])), Decision::ExplicitDeny);
    assert_eq!(d(EncryptionContext::new()), Decision::Allow);
}

#[test]
fn bool_on_grant_is_for_aws_resource() {
    // The AWS guide's least-privilege CreateGrant statement for EBS.
    let policy = one(
        "Allow",
        "kms:CreateGrant",
        r#"{"Bool": {"kms:GrantIsForAWSResource": true}}"#,
    );
    let p = Policy::parse(&policy).unwrap();
    let none = EncryptionContext::new();
    let mut c = RequestContext::new(ALICE, ACCT, "kms:CreateGrant", KEY, ACCT, &none);
    assert_eq!(evaluate(&p, &c), Decision::ImplicitDeny);
    c.grant_is_for_aws_resource = Some(false);
    assert_eq!(evaluate(&p, &c), Decision::ImplicitDeny);
    c.grant_is_for_aws_resource = Some(true);
    assert_eq!(evaluate(&p, &c), Decision::Allow);
    // A string "true" works too, as in AWS.
    let s = one(
        "Allow",
        "kms:CreateGrant",
        r#"{"Bool": {"kms:GrantIsForAWSResource": "TRUE"}}"#,
    );
    assert_eq!(evaluate(&Policy::parse(&s).unwrap(), &c), Decision::Allow);
}

#[test]
fn grant_operations_limit_create_grant() {
    let policy = one(
        "Allow",
        "kms:CreateGrant",
        r#"{"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "RetireGrant"]}}"#,
    );
    let p = Policy::parse(&policy).unwrap();
    let none = EncryptionContext::new();
    let ok = vec!["Decrypt".to_string()];
    let too_much = vec!["Decrypt".to_string(), "Encrypt".to_string()];
    let mut c = RequestContext::new(ALICE, ACCT, "kms:CreateGrant", KEY, ACCT, &none);
    c.grant_operations = Some(&ok);
    assert_eq!(evaluate(&p, &c), Decision::Allow);
    c.grant_operations = Some(&too_much);
    assert_eq!(evaluate(&p, &c), Decision::ImplicitDeny);
}

#[test]
fn caller_account_via_service_and_principal_arn_keys() {
    let policy = r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt",
        "Resource": "*", "Condition": {
            "StringEquals": {"kms:CallerAccount": "111122223333"},
            "ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/a*"}}}}"#;
    let none = EncryptionContext::new();
    assert!(decide(policy, ALICE, "kms:Decrypt", &none).is_allow());
    assert!(!decide(policy, BOB, "kms:Decrypt", &none).is_allow());
    let mal = "arn:aws:iam::444455556666:user/alice";
    assert!(!decide(policy, mal, "kms:Decrypt", &none).is_allow());
}

#[test]
fn numeric_and_null_operators() {
    let policy = one(
        "Allow",
        "kms:Decrypt",
        r#"{"NumericLessThan": {"kms:EncryptionContext:n": 10}}"#,
    );
    let d = |v| decide(&policy, ALICE, "kms:Decrypt", &ctx(&[("n", v)])).is_allow();
    assert!(d("9.5") && !d("10") && !d("ten"));
    let null = one(
        "Allow",
        "kms:Decrypt",
        r#"{"Null": {"kms:ViaService": "true"}}"#,
    );
    assert!(decide(&null, ALICE, "kms:Decrypt", &EncryptionContext::new()).is_allow());
}

#[test]
fn condition_key_names_are_case_insensitive() {
    let policy = one(
        "Allow",
        "kms:Decrypt",
        r#"{"StringEquals": {"KMS:CALLERACCOUNT": "111122223333"}}"#,
    );
    assert!(decide(&policy, ALICE, "kms:Decrypt", &EncryptionContext::new()).is_allow());
}
