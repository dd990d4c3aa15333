#![allow(clippy::unwrap_used)]

use super::*;

const ACCT: &str = "111122223333";
const OTHER: &str = "444455556666";
const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const ROOT: &str = "arn:aws:iam::111122223333:root";
const ALICE: &str = "arn:aws:iam::111122223333:user/alice";
const BOB: &str = "arn:aws:iam::111122223333:user/bob";
const MALLORY: &str = "arn:aws:iam::444455556666:user/mallory";

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn account_of(principal: &str) -> &str {
    arn::principal_account(principal).unwrap()
}

/// Decision for `principal` calling `action` on KEY with encryption context
/// `ec`, every optional condition key absent.
fn decide(policy: &str, principal: &str, action: &str, ec: &EncryptionContext) -> Decision {
    let p = Policy::parse(policy).unwrap();
    evaluate(
        &p,
        &RequestContext::new(principal, account_of(principal), action, KEY, ACCT, ec),
    )
}

/// A one-statement policy: `effect` of `action` for everyone, with
/// `condition` (a JSON object, or "" for none).
fn one(effect: &str, action: &str, condition: &str) -> String {
    let cond = if condition.is_empty() {
        String::new()
    } else {
        format!(r#", "Condition": {condition}"#)
    };
    format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Effect": "{effect}", "Principal": {{"AWS": "*"}},
            "Action": "{action}", "Resource": "*"{cond}}}]}}"#
    )
}

#[test]
fn default_policy_lets_every_principal_of_the_account_do_everything() {
    let policy = default_policy(ACCT);
    let none = EncryptionContext::new();
    for who in [ROOT, ALICE, BOB] {
        for action in ["kms:Decrypt", "kms:PutKeyPolicy", "kms:ScheduleKeyDeletion"] {
            assert_eq!(
                decide(&policy, who, action, &none),
                Decision::Allow,
                "{who} {action}"
            );
        }
    }
    assert_eq!(
        decide(&policy, MALLORY, "kms:Decrypt", &none),
        Decision::ImplicitDeny
    );
    let p = Policy::parse(&policy).unwrap();
    assert_eq!(p.id(), Some("key-default-1"));
    assert_eq!(p.statements()[0].sid(), Some("Enable IAM User Permissions"));
    assert_eq!(p.named_principals().collect::<Vec<_>>(), [ROOT]);
}

#[test]
fn bare_account_id_principal_means_the_account_root() {
    let policy = r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "111122223333"},
        "Action": "kms:*", "Resource": "*"}}"#;
    let none = EncryptionContext::new();
    assert_eq!(decide(policy, BOB, "kms:Encrypt", &none), Decision::Allow);
    assert_eq!(
        decide(policy, MALLORY, "kms:Encrypt", &none),
        Decision::ImplicitDeny
    );
    let p = Policy::parse(policy).unwrap();
    assert_eq!(p.named_principals().collect::<Vec<_>>(), [ROOT]);
}

#[test]
fn named_user_principal_allows_only_that_user() {
    let policy = format!(
        r#"{{"Statement": [{{"Effect": "Allow", "Principal": {{"AWS": ["{ALICE}"]}},
            "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": "*"}}]}}"#
    );
    let none = EncryptionContext::new();
    assert_eq!(
        decide(&policy, ALICE, "kms:Decrypt", &none),
        Decision::Allow
    );
    assert_eq!(
        decide(&policy, BOB, "kms:Decrypt", &none),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(&policy, ROOT, "kms:Decrypt", &none),
        Decision::ImplicitDeny
    );
    assert_eq!(
        decide(&policy, ALICE, "kms:PutKeyPolicy", &none),
        Decision::ImplicitDeny
    );
}

#[test]
fn explicit_deny_beats_allow_whatever_the_order() {
    let deny_bob = format!(
        r#"{{"Effect": "Deny", "Principal": {{"AWS": "{BOB}"}}, "Action": "kms:Decrypt", "Resource": "*"}}"#
    );
    let allow_all = format!(
        r#"{{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}}"#
    );
    let none = EncryptionContext::new();
    for policy in [
        format!(r#"{{"Statement": [{allow_all}, {deny_bob}]}}"#),
        format!(r#"{{"Statement": [{deny_bob}, {allow_all}]}}"#),
    ] {
        assert_eq!(
            decide(&policy, BOB, "kms:Decrypt", &none),
            Decision::ExplicitDeny
        );
        assert_eq!(decide(&policy, BOB, "kms:Encrypt", &none), Decision::Allow);
        assert_eq!(
            decide(&policy, ALICE, "kms:Decrypt", &none),
            Decision::Allow
        );
    }
}

#[test]
fn no_statement_applies_means_implicit_deny() {
    let policy = one("Allow", "kms:DescribeKey", "");
    let none = EncryptionContext::new();
    assert_eq!(
        decide(&policy, ALICE, "kms:Decrypt", &none),
        Decision::ImplicitDeny
    );
    assert!(!Decision::ImplicitDeny.is_allow() && Decision::Allow.is_allow());
}

#[test]
fn wildcard_actions_match_case_insensitively() {
    let none = EncryptionContext::new();
    let gen = one("Allow", "kms:Generate*", "");
    for action in [
        "kms:GenerateDataKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "KMS:generatedatakeypair",
        "kms:GenerateMac",
    ] {
        assert_eq!(
            decide(&gen, ALICE, action, &none),
            Decision::Allow,
            "{action}"
        );
    }
    assert_eq!(
        decide(&gen, ALICE, "kms:Decrypt", &none),
        Decision::ImplicitDeny
    );
    let reenc = one("Allow", "kms:ReEncrypt*", "");
    assert!(decide(&reenc, ALICE, "kms:ReEncryptFrom", &none).is_allow());
    assert!(decide(&reenc, ALICE, "kms:ReEncryptTo", &none).is_allow());
    let q = one("Allow", "kms:?ncrypt", "");
    assert!(decide(&q, ALICE, "kms:Encrypt", &none).is_allow());
    assert!(!decide(&q, ALICE, "kms:Decrypt", &none).is_allow());
    let star = one("Allow", "*", "");
    assert!(decide(&star, MALLORY, "kms:Decrypt", &none).is_allow());
    let upper = one("Allow", "KMS:DECRYPT", "");
    assert!(decide(&upper, ALICE, "kms:Decrypt", &none).is_allow());
}

#[test]
fn not_action_applies_to_every_other_action() {
    let policy = format!(
        r#"{{"Statement": [
            {{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Deny", "Principal": {{"AWS": "{BOB}"}},
              "NotAction": ["kms:Describe*", "kms:List*"], "Resource": "*"}}]}}"#
    );
    let none = EncryptionContext::new();
    assert!(decide(&policy, BOB, "kms:DescribeKey", &none).is_allow());
    assert_eq!(
        decide(&policy, BOB, "kms:Decrypt", &none),
        Decision::ExplicitDeny
    );
    assert!(decide(&policy, ALICE, "kms:Decrypt", &none).is_allow());
}

#[test]
fn not_principal_excludes_a_user_only_with_its_account_root() {
    // AWS: a request is made by the user and by its account, so a Deny with
    // NotPrincipal must list both to spare the user.
    let policy = |listed: &str| {
        format!(
            r#"{{"Statement": [
                {{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}},
                {{"Effect": "Deny", "NotPrincipal": {{"AWS": [{listed}]}}, "Action": "kms:Decrypt", "Resource": "*"}}]}}"#
        )
    };
    let none = EncryptionContext::new();
    let both = policy(&format!(r#""{ALICE}", "{ROOT}""#));
    assert!(decide(&both, ALICE, "kms:Decrypt", &none).is_allow());
    assert!(decide(&both, ROOT, "kms:Decrypt", &none).is_allow());
    assert_eq!(
        decide(&both, BOB, "kms:Decrypt", &none),
        Decision::ExplicitDeny
    );
    let user_only = policy(&format!(r#""{ALICE}""#));
    assert_eq!(
        decide(&user_only, ALICE, "kms:Decrypt", &none),
        Decision::ExplicitDeny
    );
}

#[test]
fn resource_must_name_this_key() {
    let policy = |resource: &str| {
        format!(
            r#"{{"Statement": {{"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt",
                "Resource": "{resource}"}}}}"#
        )
    };
    let none = EncryptionContext::new();
    assert!(decide(&policy(KEY), ALICE, "kms:Decrypt", &none).is_allow());
    assert!(decide(
        &policy("arn:aws:kms:*:111122223333:key/*"),
        ALICE,
        "kms:Decrypt",
        &none
    )
    .is_allow());
    let other = "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000";
    assert!(!decide(&policy(other), ALICE, "kms:Decrypt", &none).is_allow());
}

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
    let deny = format!(
        r#"{{"Statement": [
            {{"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
              "Condition": {{"StringNotEquals": {{"kms:EncryptionContext:department": "IT"}}}}}}]}}"#
    );
    assert_eq!(
        decide(&deny, ALICE, "kms:Decrypt", &ec),
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

#[test]
fn aws_managed_key_is_usable_only_through_the_service() {
    let policy = aws_managed_policy(ACCT, "us-east-1", "ebs");
    let p = Policy::parse(&policy).unwrap();
    assert_eq!(p.id(), Some("auto-ebs-2"));
    let ec = ctx(&[("aws:ebs:id", "vol-0123456789abcdef0")]);
    let direct = RequestContext::new(BOB, ACCT, "kms:Decrypt", KEY, ACCT, &ec);
    assert_eq!(evaluate(&p, &direct), Decision::ImplicitDeny);
    let via = RequestContext {
        via_service: Some("ec2.us-east-1.amazonaws.com"),
        ..direct
    };
    assert_eq!(
        via_service_for("ebs", "us-east-1"),
        "ec2.us-east-1.amazonaws.com"
    );
    assert_eq!(evaluate(&p, &via), Decision::Allow);
    let wrong_region = RequestContext {
        via_service: Some("ec2.eu-west-1.amazonaws.com"),
        ..direct
    };
    assert_eq!(evaluate(&p, &wrong_region), Decision::ImplicitDeny);
    let other_account = RequestContext {
        principal_arn: MALLORY,
        caller_account: OTHER,
        ..via
    };
    assert_eq!(evaluate(&p, &other_account), Decision::ImplicitDeny);
    for (action, want) in [
        ("kms:DescribeKey", Decision::Allow),
        ("kms:GetKeyPolicy", Decision::Allow),
        ("kms:RevokeGrant", Decision::Allow),
        ("kms:PutKeyPolicy", Decision::ImplicitDeny),
        ("kms:ScheduleKeyDeletion", Decision::ImplicitDeny),
        ("kms:DisableKey", Decision::ImplicitDeny),
    ] {
        let c = RequestContext { action, ..direct };
        assert_eq!(evaluate(&p, &c), want, "{action}");
    }
}

#[test]
fn generated_policies_cannot_be_injected_into() {
    let policy = aws_managed_policy(ACCT, "us-east-1", "x\", \"Effect\": \"Deny");
    assert!(Policy::parse(&policy).is_ok());
}

#[test]
fn lockout_check_rejects_a_policy_that_drops_the_caller() {
    let drops_alice = format!(
        r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{BOB}"}}, "Action": "kms:*", "Resource": "*"}}}}"#
    );
    let p = Policy::parse(&drops_alice).unwrap();
    let e = lockout_check(&p, ALICE, ACCT).unwrap_err();
    assert_eq!(e.aws_type(), "MalformedPolicyDocumentException");
    let m = e.to_string();
    assert!(m.starts_with(
        "The new key policy will not allow you to update the key policy in the future"
    ));
    assert!(
        m.contains(ALICE) && m.contains("BypassPolicyLockoutSafetyCheck"),
        "{m}"
    );
    assert!(lockout_check(&p, BOB, ACCT).is_ok());

    let default = Policy::parse(&default_policy(ACCT)).unwrap();
    assert!(lockout_check(&default, ALICE, ACCT).is_ok());
    assert!(lockout_check(&default, ROOT, ACCT).is_ok());

    // Allowed, then denied: still a lockout.
    let denied = format!(
        r#"{{"Statement": [
            {{"Effect": "Allow", "Principal": {{"AWS": "{ROOT}"}}, "Action": "kms:*", "Resource": "*"}},
            {{"Effect": "Deny", "Principal": {{"AWS": "{ALICE}"}}, "Action": "kms:Put*", "Resource": "*"}}]}}"#
    );
    assert!(lockout_check(&Policy::parse(&denied).unwrap(), ALICE, ACCT).is_err());
    // Only usable through a service: a direct PutKeyPolicy is not allowed.
    let managed = Policy::parse(&aws_managed_policy(ACCT, "us-east-1", "ebs")).unwrap();
    assert!(lockout_check(&managed, ROOT, ACCT).is_err());
}

#[test]
fn lockout_check_for_key_matches_the_key_arn() {
    let policy = format!(
        r#"{{"Statement": {{"Effect": "Allow", "Principal": {{"AWS": "{ALICE}"}}, "Action": "kms:PutKeyPolicy",
            "Resource": "{KEY}"}}}}"#
    );
    let p = Policy::parse(&policy).unwrap();
    assert!(lockout_check_for_key(&p, ALICE, ACCT, KEY).is_ok());
    assert!(lockout_check(&p, ALICE, ACCT).is_err());
}

#[test]
fn access_denied_names_caller_action_and_key() {
    let none = EncryptionContext::new();
    let c = RequestContext::new(BOB, ACCT, "kms:Decrypt", KEY, ACCT, &none);
    let e = access_denied(&c, Decision::ImplicitDeny);
    assert_eq!(e.aws_type(), "AccessDeniedException");
    let m = e.to_string();
    assert!(m.starts_with(&format!(
        "User: {BOB} is not authorized to perform: kms:Decrypt on resource: {KEY}"
    )));
    assert!(m.contains("no resource-based policy allows the kms:Decrypt action"));
    assert!(access_denied(&c, Decision::ExplicitDeny)
        .to_string()
        .contains("explicit deny"));
}

#[test]
fn malformed_policies_are_rejected_with_the_element_named() {
    let st = |body: &str| format!(r#"{{"Version": "2012-10-17", "Statement": [{{{body}}}]}}"#);
    let cases = [
        ("not json".to_string(), "not a valid JSON"),
        ("[]".to_string(), "top level"),
        (r#"{"Version": "2012-10-17"}"#.to_string(), "Statement"),
        (r#"{"Statement": []}"#.to_string(), "Statement"),
        (
            r#"{"Version": "2020-01-01", "Statement": {}}"#.to_string(),
            "Version",
        ),
        (
            r#"{"Statment": []}"#.to_string(),
            "unknown element 'Statment'",
        ),
        (
            st(r#""Effect": "allow", "Principal": "*", "Action": "kms:*", "Resource": "*""#),
            "Effect",
        ),
        (
            st(r#""Effect": "Allow", "Action": "kms:*", "Resource": "*""#),
            "Principal",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "*", "Resource": "*""#),
            "Action",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "*", "Action": "kms:*""#),
            "Resource",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "NotAction": "kms:x", "Resource": "*""#,
            ),
            "both",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*""#),
            "Action",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "*", "Action": "Decrypt", "Resource": "*""#),
            "not an action",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "key/1""#),
            "not a resource",
        ),
        (
            st(r#""Effect": "Allow", "Principal": "alice", "Action": "kms:*", "Resource": "*""#),
            "Principal",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:user/*"}, "Action": "kms:*", "Resource": "*""#,
            ),
            "wildcards",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": {"AWS": "bob"}, "Action": "kms:*", "Resource": "*""#,
            ),
            "not a principal",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": {"Federated": "x"}, "Action": "kms:*", "Resource": "*""#,
            ),
            "Federated",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"DateLessThan": {"aws:CurrentTime": "2030-01-01T00:00:00Z"}}"#,
            ),
            "DateLessThan",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"stringequals": {"kms:ViaService": "x"}}"#,
            ),
            "stringequals",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"Bool": {"kms:GrantIsForAWSResource": "yes"}}"#,
            ),
            "not a valid value",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"NumericEquals": {"kms:x": "ten"}}"#,
            ),
            "not a valid value",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"NullIfExists": {"kms:x": "true"}}"#,
            ),
            "NullIfExists",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"kms:x": []}}"#,
            ),
            "at least one value",
        ),
        (
            st(
                r#""Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringEquals": {"ViaService": "x"}}"#,
            ),
            "condition key",
        ),
    ];
    for (policy, want) in cases {
        let e = Policy::parse_document(&policy).unwrap_err();
        assert!(e.to_string().contains(want), "{policy}\n=> {e}");
        assert_eq!(
            KmsError::from(e).aws_type(),
            "MalformedPolicyDocumentException"
        );
    }
}

#[test]
fn repeated_member_names_are_rejected() {
    let policy = r#"{"Statement": {"Effect": "Allow", "Effect": "Deny", "Principal": "*",
        "Action": "kms:*", "Resource": "*"}}"#;
    let e = Policy::parse_document(policy).unwrap_err();
    assert!(
        matches!(e, PolicyError::Json(_)) && e.to_string().contains("Effect"),
        "{e}"
    );
}

#[test]
fn policies_over_32_kib_are_rejected() {
    let filler = " ".repeat(MAX_POLICY_BYTES);
    let big = format!("{}{filler}", default_policy(ACCT));
    assert_eq!(
        Policy::parse_document(&big).unwrap_err(),
        PolicyError::TooLarge { size: big.len() }
    );
    let fits = format!(
        "{}{}",
        default_policy(ACCT),
        " ".repeat(MAX_POLICY_BYTES - default_policy(ACCT).len())
    );
    assert!(Policy::parse(&fits).is_ok());
}

#[test]
fn statement_may_be_a_single_object_and_version_may_be_absent() {
    let policy = r#"{"Statement": {"Sid": "one", "Effect": "Allow", "Principal": {"AWS": ["111122223333"], "Service": "ec2.amazonaws.com"},
        "Action": "kms:Decrypt", "Resource": ["*"]}}"#;
    let p = Policy::parse(policy).unwrap();
    assert_eq!(p.version(), None);
    assert_eq!(p.statements().len(), 1);
    assert_eq!(p.statements()[0].effect(), Effect::Allow);
    let none = EncryptionContext::new();
    let svc = RequestContext::new("ec2.amazonaws.com", "", "kms:Decrypt", KEY, ACCT, &none);
    assert_eq!(evaluate(&p, &svc), Decision::Allow);
}

#[test]
fn glob_and_arn_matching() {
    use super::document::{arn_match, glob};
    assert!(glob("*", ""));
    assert!(glob("a*c", "abbbc"));
    assert!(glob("a*b*c", "axxbyyc"));
    assert!(!glob("a*b*c", "axxbyy"));
    assert!(glob("??", "ab") && !glob("??", "abc"));
    assert!(glob("vol-*", "vol-") && !glob("vol-*", "vo"));
    assert!(glob("ü*", "üx"));
    assert!(arn_match("arn:aws:iam::*:user/*", ALICE));
    assert!(!arn_match("arn:aws:iam::*:role/*", ALICE));
    assert!(!arn_match("arn:aws:iam::*:user/*", "user/alice"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,400}") {
            let _ = Policy::parse(&s);
        }

        #[test]
        fn literal_glob_is_equality(a in "[a-z:/-]{0,12}", b in "[a-z:/-]{0,12}") {
            prop_assert_eq!(document::glob(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix_match(a in "[a-z]{0,8}", b in "[a-z]{0,12}") {
            prop_assert_eq!(document::glob(&format!("{a}*"), &b), b.starts_with(&a));
        }
    }
}
