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

mod conditions;
mod parse;
