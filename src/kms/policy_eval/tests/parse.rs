#![allow(clippy::unwrap_used)]

use super::*;

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
    use crate::kms::policy_eval::document::{arn_match, glob};
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
            prop_assert_eq!(crate::kms::policy_eval::document::glob(&a, &b), a == b);
        }

        #[test]
        fn star_suffix_is_prefix_match(a in "[a-z]{0,8}", b in "[a-z]{0,12}") {
            prop_assert_eq!(crate::kms::policy_eval::document::glob(&format!("{a}*"), &b), b.starts_with(&a));
        }
    }
}
