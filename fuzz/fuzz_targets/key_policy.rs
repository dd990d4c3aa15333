//! Key policies (`kms::policy_eval`): parse a policy document, then
//! evaluate it for every principal × action of a small request universe.
//! Seeded with the default and AWS managed key policies and the policies of
//! the policy tests.
//!
//! Input: the policy JSON; optionally a NUL byte and selector bytes that
//! pick the encryption context, `kms:ViaService`, grant operations and
//! `aws:SecureTransport` of the requests.
//!
//! Properties: no panic; evaluation is case-insensitive in the action;
//! appending a `Deny` statement for everyone and everything makes every
//! request an explicit deny; appending an `Allow` for everyone and
//! everything allows every request the policy did not explicitly deny
//! (explicit deny always wins), and never changes an explicit deny.
#![no_main]

use std::collections::BTreeMap;

use cryptvol::kms::policy_eval::{
    evaluate, lockout_check, Decision, Policy, RequestContext, MAX_POLICY_BYTES,
};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const ACCOUNT: &str = "111122223333";
const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
const PRINCIPALS: &[(&str, &str)] = &[
    ("arn:aws:iam::111122223333:root", ACCOUNT),
    ("arn:aws:iam::111122223333:user/alice", ACCOUNT),
    ("arn:aws:iam::111122223333:role/ebs-host", ACCOUNT),
    ("arn:aws:iam::444455556666:user/mallory", "444455556666"),
    ("arn:aws:iam::444455556666:root", "444455556666"),
];
const ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:CreateGrant",
    "kms:PutKeyPolicy",
    "kms:ReEncryptFrom",
    "kms:DescribeKey",
    "kms:ScheduleKeyDeletion",
];
const VIA: &[Option<&str>] = &[
    None,
    Some("ec2.us-east-1.amazonaws.com"),
    Some("s3.us-east-1.amazonaws.com"),
];

fn decisions(policy: &Policy, sel: &[u8]) -> Vec<Decision> {
    let pick = |i: usize| sel.get(i).copied().unwrap_or(0);
    let ec: BTreeMap<String, String> = match pick(0) % 3 {
        0 => BTreeMap::new(),
        1 => [("aws:ebs:id".into(), "vol-0123456789abcdef0".into())].into(),
        _ => [
            ("Department".into(), "IT".into()),
            ("Project".into(), "x*?".into()),
        ]
        .into(),
    };
    let grant_ops: Vec<String> = match pick(2) % 3 {
        1 => vec!["Decrypt".into()],
        2 => vec!["Decrypt".into(), "RetireGrant".into()],
        _ => Vec::new(),
    };
    let flags = pick(3);
    let mut out = Vec::new();
    for &(principal, account) in PRINCIPALS {
        for &action in ACTIONS {
            let mut ctx = RequestContext::new(principal, account, action, KEY_ARN, ACCOUNT, &ec);
            ctx.via_service = VIA[usize::from(pick(1)) % VIA.len()];
            ctx.grant_operations = (pick(2) % 3 != 0).then_some(grant_ops.as_slice());
            ctx.secure_transport = (flags & 1 != 0).then_some(flags & 2 != 0);
            ctx.grant_is_for_aws_resource = (flags & 4 != 0).then_some(flags & 8 != 0);
            ctx.request_alias = (flags & 16 != 0).then_some("alias/aws/ebs");
            let d = evaluate(policy, &ctx);
            let upper = action.to_uppercase();
            let loud = RequestContext {
                action: &upper,
                ..ctx
            };
            assert_eq!(
                evaluate(policy, &loud),
                d,
                "action case changed the decision"
            );
            out.push(d);
        }
    }
    out
}

/// `doc` with one more statement, or `None` when that no longer fits.
fn with_statement(doc: &Value, statement: Value) -> Option<Policy> {
    let mut doc = doc.clone();
    let list = match doc.get_mut("Statement")?.take() {
        Value::Array(list) => list,
        one => vec![one],
    };
    let mut list = list;
    list.push(statement);
    doc["Statement"] = Value::Array(list);
    let text = doc.to_string();
    if text.len() > MAX_POLICY_BYTES {
        return None;
    }
    Some(Policy::parse_document(&text).expect("a policy plus one valid statement parses"))
}

fuzz_target!(|data: &[u8]| {
    let (text, sel) = match data.iter().rposition(|&b| b == 0) {
        Some(p) => (&data[..p], &data[p + 1..]),
        None => (data, &[][..]),
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let Ok(policy) = Policy::parse_document(text) else {
        return;
    };
    for &(principal, _) in PRINCIPALS {
        let _ = lockout_check(&policy, principal, ACCOUNT);
    }
    let base = decisions(&policy, sel);

    let doc: Value = serde_json::from_str(text).expect("parsed once already");
    let deny_all = json!({"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*"});
    if let Some(p) = with_statement(&doc, deny_all) {
        let all = decisions(&p, sel);
        assert!(
            all.iter().all(|&d| d == Decision::ExplicitDeny),
            "a Deny for everyone did not deny everything: {all:?}"
        );
    }
    let allow_all =
        json!({"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "kms:*", "Resource": "*"});
    if let Some(p) = with_statement(&doc, allow_all) {
        let all = decisions(&p, sel);
        for (before, after) in base.iter().zip(&all) {
            let want = match before {
                Decision::ExplicitDeny => Decision::ExplicitDeny,
                _ => Decision::Allow,
            };
            assert_eq!(*after, want, "allow-all turned {before:?} into {after:?}");
        }
    }
});
