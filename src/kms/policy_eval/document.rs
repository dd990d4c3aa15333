//! The policy document: JSON in, checked statements out, and the matching of
//! principals, actions and resources.
//!
//! Everything is checked once, in [`Policy::parse`]: element names (case
//! sensitive, unknown ones rejected), exactly one of `Principal` /
//! `NotPrincipal`, `Action` / `NotAction` and `Resource` / `NotResource` per
//! statement, action and ARN syntax, condition operators and values. A JSON
//! object that repeats a member name is rejected: two parsers reading the
//! same policy must never see different `Effect`s.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::condition::{self, Condition};
use super::{PolicyError, RequestContext, MAX_POLICY_BYTES};
use crate::kms::arn;
use crate::kms::error::KmsError;

/// A parsed, checked key policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    version: Option<String>,
    id: Option<String>,
    statements: Vec<Statement>,
}

/// `Allow` or `Deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Allow,
    Deny,
}

/// One statement of a policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    sid: Option<String>,
    effect: Effect,
    principal: PrincipalClause,
    action: Clause,
    resource: Clause,
    conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PrincipalClause {
    Principal(Principals),
    NotPrincipal(Principals),
}

/// The principals a `Principal` or `NotPrincipal` element names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Principals {
    /// `"*"` or `{"AWS": "*"}`.
    everyone: bool,
    /// IAM ARNs; a bare account id is stored as its root ARN.
    aws: Vec<String>,
    /// Service principals (`ec2.amazonaws.com`), matched exactly.
    services: Vec<String>,
}

/// `Action`/`NotAction` or `Resource`/`NotResource`: patterns with `*` and
/// `?`. Actions are stored lowercased (they match case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Clause {
    negated: bool,
    patterns: Vec<String>,
}

const POLICY_ELEMENTS: &[&str] = &["Version", "Id", "Statement"];
const STATEMENT_ELEMENTS: &[&str] = &[
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
];
/// Policy language versions; without `Version` AWS assumes 2008-10-17.
const VERSIONS: &[&str] = &["2012-10-17", "2008-10-17"];

pub(super) fn bad(at: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError::Element {
        at: at.into(),
        reason: reason.into(),
    }
}

impl Policy {
    /// Parses and checks a key policy document (at most 32 KiB). Errors say
    /// which element is wrong and why.
    pub fn parse(json: &str) -> Result<Policy, KmsError> {
        Ok(Policy::parse_document(json)?)
    }

    /// [`Policy::parse`] with the error before it becomes a [`KmsError`].
    pub fn parse_document(json: &str) -> Result<Policy, PolicyError> {
        if json.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge { size: json.len() });
        }
        let StrictJson(doc) =
            serde_json::from_str(json).map_err(|e| PolicyError::Json(e.to_string()))?;
        let Value::Object(top) = doc else {
            return Err(bad("the top level", "a policy must be a JSON object"));
        };
        only_elements(&top, POLICY_ELEMENTS, "the top level")?;
        let version = opt_string(&top, "Version", "Version")?;
        if let Some(v) = &version {
            if !VERSIONS.contains(&v.as_str()) {
                return Err(bad(
                    "Version",
                    format!("'{v}' is not a policy version; use 2012-10-17"),
                ));
            }
        }
        let id = opt_string(&top, "Id", "Id")?;
        let statements = match top.get("Statement") {
            None => return Err(bad("Statement", "a policy needs at least one statement")),
            Some(Value::Object(one)) => vec![Statement::parse(one, "Statement")?],
            Some(Value::Array(list)) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let at = format!("Statement[{i}]");
                    match s {
                        Value::Object(o) => Statement::parse(o, &at),
                        _ => Err(bad(at, "a statement must be a JSON object")),
                    }
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(bad(
                    "Statement",
                    "must be a statement object or a non-empty array of them",
                ))
            }
        };
        Ok(Policy {
            version,
            id,
            statements,
        })
    }

    pub fn version(&self) -> Option<&str> {
        self.version.as_deref()
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    /// Every IAM ARN the policy names in `Principal` or `NotPrincipal`
    /// (account ids as root ARNs), for checking that they exist.
    pub fn named_principals(&self) -> impl Iterator<Item = &str> {
        self.statements.iter().flat_map(|s| {
            let (PrincipalClause::Principal(p) | PrincipalClause::NotPrincipal(p)) = &s.principal;
            p.aws.iter().map(String::as_str)
        })
    }
}

impl Statement {
    fn parse(obj: &Map<String, Value>, at: &str) -> Result<Statement, PolicyError> {
        only_elements(obj, STATEMENT_ELEMENTS, at)?;
        let sid = opt_string(obj, "Sid", &format!("{at}.Sid"))?;
        let effect = match obj.get("Effect") {
            Some(Value::String(s)) if s == "Allow" => Effect::Allow,
            Some(Value::String(s)) if s == "Deny" => Effect::Deny,
            _ => return Err(bad(format!("{at}.Effect"), "must be \"Allow\" or \"Deny\"")),
        };
        let principal = match one_of(obj, "Principal", "NotPrincipal", at)? {
            (v, false) => {
                PrincipalClause::Principal(Principals::parse(v, &format!("{at}.Principal"))?)
            }
            (v, true) => {
                PrincipalClause::NotPrincipal(Principals::parse(v, &format!("{at}.NotPrincipal"))?)
            }
        };
        let (v, negated) = one_of(obj, "Action", "NotAction", at)?;
        let name = if negated { "NotAction" } else { "Action" };
        let action = Clause {
            negated,
            patterns: strings(v, &format!("{at}.{name}"))?
                .into_iter()
                .map(|a| check_action(&a, &format!("{at}.{name}")).map(|()| a.to_lowercase()))
                .collect::<Result<_, _>>()?,
        };
        let (v, negated) = one_of(obj, "Resource", "NotResource", at)?;
        let name = if negated { "NotResource" } else { "Resource" };
        let patterns = strings(v, &format!("{at}.{name}"))?;
        for r in &patterns {
            check_resource(r, &format!("{at}.{name}"))?;
        }
        let resource = Clause { negated, patterns };
        let conditions = match obj.get("Condition") {
            None => Vec::new(),
            Some(v) => condition::parse_block(v, &format!("{at}.Condition"))?,
        };
        Ok(Statement {
            sid,
            effect,
            principal,
            action,
            resource,
            conditions,
        })
    }

    pub fn sid(&self) -> Option<&str> {
        self.sid.as_deref()
    }

    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// True when principal, action, resource and every condition match.
    pub(super) fn applies(&self, ctx: &RequestContext<'_>) -> bool {
        let principal = match &self.principal {
            PrincipalClause::Principal(p) => p.includes(ctx),
            PrincipalClause::NotPrincipal(p) => !p.excludes(ctx),
        };
        let action = ctx.action.to_lowercase();
        principal
            && self.action.matches(&action)
            && self.resource.matches(ctx.key_arn)
            && self.conditions.iter().all(|c| c.holds(ctx, self.effect))
    }
}

impl Principals {
    fn parse(v: &Value, at: &str) -> Result<Principals, PolicyError> {
        let mut p = Principals::default();
        let obj = match v {
            Value::String(s) if s == "*" => {
                p.everyone = true;
                return Ok(p);
            }
            Value::Object(obj) if !obj.is_empty() => obj,
            _ => return Err(bad(
                at,
                "must be \"*\" or an object such as {\"AWS\": \"arn:aws:iam::111122223333:root\"}",
            )),
        };
        for (kind, value) in obj {
            let at = format!("{at}.{kind}");
            let names = strings(value, &at)?;
            match kind.as_str() {
                "AWS" => {
                    for name in names {
                        if name == "*" {
                            p.everyone = true;
                        } else {
                            p.aws.push(aws_principal(&name, &at)?);
                        }
                    }
                }
                "Service" => {
                    for name in names {
                        if name.is_empty() || name.contains(['*', '?']) {
                            return Err(bad(at, format!("'{name}' is not a service principal")));
                        }
                        p.services.push(name);
                    }
                }
                _ => {
                    return Err(bad(
                        at,
                        "cryptvol supports only AWS (IAM ARNs, account ids, \"*\") and Service principals",
                    ))
                }
            }
        }
        Ok(p)
    }

    /// Listed by exact ARN (or service name).
    fn lists(&self, name: &str) -> bool {
        self.aws.iter().chain(&self.services).any(|p| p == name)
    }

    /// `Principal` semantics: everyone, the exact ARN, or — cryptvol's rule,
    /// see the module doc — the root of the caller's account.
    fn includes(&self, ctx: &RequestContext<'_>) -> bool {
        self.everyone
            || self.lists(ctx.principal_arn)
            || self
                .aws
                .iter()
                .any(|p| root_account(p) == Some(ctx.caller_account))
    }

    /// `NotPrincipal` semantics, as AWS documents them: a request is made
    /// both by the principal and by its account, so a user is excluded only
    /// when both its ARN and its account's root are listed.
    fn excludes(&self, ctx: &RequestContext<'_>) -> bool {
        self.everyone
            || (self.lists(ctx.principal_arn)
                && self.lists(&arn::root_principal(ctx.caller_account)))
    }
}

impl Clause {
    fn matches(&self, value: &str) -> bool {
        self.patterns.iter().any(|p| glob(p, value)) != self.negated
    }
}

/// A principal ARN (no wildcards but the whole `*`), or a bare account id,
/// which means the account root.
fn aws_principal(name: &str, at: &str) -> Result<String, PolicyError> {
    if arn::is_account_id(name) {
        return Ok(arn::root_principal(name));
    }
    if name.contains(['*', '?']) {
        return Err(bad(
            at,
            format!(
                "'{name}': wildcards are not allowed in principals (only \"*\" alone); to match \
                 principals by pattern use Principal \"*\" with an ArnLike condition on aws:PrincipalArn"
            ),
        ));
    }
    if name.starts_with("arn:") && name.splitn(6, ':').count() == 6 {
        Ok(name.to_owned())
    } else {
        Err(bad(
            at,
            format!(
                "'{name}' is not a principal; use an ARN such as arn:aws:iam::111122223333:user/name, \
                 an account id, or \"*\""
            ),
        ))
    }
}

/// The account of `arn:aws:iam::<account>:root`.
pub(super) fn root_account(principal: &str) -> Option<&str> {
    principal
        .strip_prefix("arn:aws:iam::")
        .and_then(|rest| rest.strip_suffix(":root"))
        .filter(|a| arn::is_account_id(a))
}

/// `*`, or `<service>:<action pattern>` (`kms:Decrypt`, `kms:Generate*`).
fn check_action(action: &str, at: &str) -> Result<(), PolicyError> {
    if action == "*" {
        return Ok(());
    }
    let ok = action.split_once(':').is_some_and(|(service, name)| {
        !service.is_empty()
            && service
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
    });
    if ok {
        Ok(())
    } else {
        Err(bad(
            at,
            format!(
                "'{action}' is not an action; write actions as kms:Decrypt, kms:Generate* or kms:*"
            ),
        ))
    }
}

/// `*` (this key) or an ARN pattern.
fn check_resource(resource: &str, at: &str) -> Result<(), PolicyError> {
    if resource == "*" || (resource.starts_with("arn:") && resource.splitn(6, ':').count() == 6) {
        Ok(())
    } else {
        Err(bad(
            at,
            format!("'{resource}' is not a resource; in a key policy use \"*\" (this key) or the key's ARN"),
        ))
    }
}

/// IAM wildcard match: `*` is any run of characters, `?` any one character;
/// everything else literal. Callers lowercase both sides for
/// case-insensitive matches.
pub(super) fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and how much text it has swallowed so far.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// ArnEquals/ArnLike: both must be ARNs; the six `:`-separated parts are
/// matched one by one, each with wildcards.
pub(super) fn arn_match(pattern: &str, value: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let v: Vec<&str> = value.splitn(6, ':').collect();
    p.len() == 6 && v.len() == 6 && p.iter().zip(&v).all(|(p, v)| glob(p, v))
}

/// A string, or a non-empty array of strings.
pub(super) fn strings(v: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| match i {
                Value::String(s) => Ok(s.clone()),
                _ => Err(bad(at, "every item must be a string")),
            })
            .collect(),
        _ => Err(bad(at, "must be a string or a non-empty array of strings")),
    }
}

fn opt_string(
    obj: &Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<String>, PolicyError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(at, "must be a string")),
    }
}

/// Exactly one of `name` / `not_name`; returns its value and whether it was
/// the negated one.
fn one_of<'v>(
    obj: &'v Map<String, Value>,
    name: &str,
    not_name: &str,
    at: &str,
) -> Result<(&'v Value, bool), PolicyError> {
    match (obj.get(name), obj.get(not_name)) {
        (Some(v), None) => Ok((v, false)),
        (None, Some(v)) => Ok((v, true)),
        (Some(_), Some(_)) => Err(bad(at, format!("has both {name} and {not_name}; use one"))),
        (None, None) => Err(bad(at, format!("needs a {name} (or {not_name}) element"))),
    }
}

fn only_elements(obj: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), PolicyError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(k) => Err(bad(
            at,
            format!(
                "unknown element '{k}' (element names are case-sensitive: {})",
                allowed.join(", ")
            ),
        )),
    }
}

/// A JSON value whose objects never repeat a member name (serde_json's
/// `Value` silently keeps the last one).
struct StrictJson(Value);

impl<'de> Deserialize<'de> for StrictJson {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictJson)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictJson(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictJson(v) = map.next_value()?;
            if obj.insert(key.clone(), v).is_some() {
                return Err(serde::de::Error::custom(format!(
                    "the member name \"{key}\" appears twice in one object"
                )));
            }
        }
        Ok(Value::Object(obj))
    }
}
