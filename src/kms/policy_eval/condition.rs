//! Condition blocks: operators, set operators, `IfExists`, and the condition
//! keys a request supplies.
//!
//! The IAM rules implemented here:
//! - all operators of a block, and all keys of an operator, must hold (AND);
//!   several values for one key match if any does (OR) — for the negated
//!   operators (`StringNotEquals`, …) the request value must match none;
//! - a key the request does not have: a plain operator does not hold, a
//!   negated one does, `…IfExists` holds, `Null: true` holds;
//! - multi-valued keys (`kms:EncryptionContextKeys`, `kms:GrantOperations`)
//!   take `ForAnyValue:` (some request value matches; false when there are
//!   none) or `ForAllValues:` (every request value matches; **true when there
//!   are none**, as AWS warns — pair it with a `Null` check);
//! - condition key names are case-insensitive, including the context key in
//!   `kms:EncryptionContext:<key>`; values compare case-sensitively unless
//!   the operator says otherwise.

use serde_json::Value;

use super::document::{arn_match, bad, glob};
use super::{Effect, PolicyError, RequestContext};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    Bool,
    Null,
    ArnEquals,
    ArnNotEquals,
    ArnLike,
    ArnNotLike,
}

const OPERATORS: &[(&str, Op)] = &[
    ("StringEquals", Op::StringEquals),
    ("StringNotEquals", Op::StringNotEquals),
    ("StringEqualsIgnoreCase", Op::StringEqualsIgnoreCase),
    ("StringNotEqualsIgnoreCase", Op::StringNotEqualsIgnoreCase),
    ("StringLike", Op::StringLike),
    ("StringNotLike", Op::StringNotLike),
    ("NumericEquals", Op::NumericEquals),
    ("NumericNotEquals", Op::NumericNotEquals),
    ("NumericLessThan", Op::NumericLessThan),
    ("NumericLessThanEquals", Op::NumericLessThanEquals),
    ("NumericGreaterThan", Op::NumericGreaterThan),
    ("NumericGreaterThanEquals", Op::NumericGreaterThanEquals),
    ("Bool", Op::Bool),
    ("Null", Op::Null),
    ("ArnEquals", Op::ArnEquals),
    ("ArnNotEquals", Op::ArnNotEquals),
    ("ArnLike", Op::ArnLike),
    ("ArnNotLike", Op::ArnNotLike),
];

impl Op {
    /// The `…Not…` operators: true when the value matches none of the
    /// policy's values, and when the key is absent.
    fn negated(self) -> bool {
        matches!(
            self,
            Op::StringNotEquals
                | Op::StringNotEqualsIgnoreCase
                | Op::StringNotLike
                | Op::NumericNotEquals
                | Op::ArnNotEquals
                | Op::ArnNotLike
        )
    }

    fn is_numeric(self) -> bool {
        matches!(
            self,
            Op::NumericEquals
                | Op::NumericNotEquals
                | Op::NumericLessThan
                | Op::NumericLessThanEquals
                | Op::NumericGreaterThan
                | Op::NumericGreaterThanEquals
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetOp {
    /// No qualifier.
    Single,
    /// `ForAnyValue:`
    AnyValue,
    /// `ForAllValues:`
    AllValues,
}

/// One `operator: {key: values}` test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    op: Op,
    set: SetOp,
    if_exists: bool,
    /// Lowercased: condition key names are case-insensitive.
    key: String,
    values: Vec<String>,
}

/// Parses a `Condition` element: `{"<operator>": {"<key>": value(s)}}`.
pub(super) fn parse_block(v: &Value, at: &str) -> Result<Vec<Condition>, PolicyError> {
    let Value::Object(ops) = v else {
        return Err(bad(at, "must be an object of condition operators"));
    };
    let mut out = Vec::new();
    for (name, keys) in ops {
        let at = format!("{at}.{name}");
        let (op, set, if_exists) = parse_operator(name).ok_or_else(|| {
            bad(
                &at,
                "unknown or unsupported condition operator; cryptvol supports String…, Numeric…, \
                 Bool, Null and Arn… operators, with ForAnyValue:/ForAllValues: and …IfExists",
            )
        })?;
        let Value::Object(keys) = keys else {
            return Err(bad(at, "must be an object of condition keys"));
        };
        if keys.is_empty() {
            return Err(bad(at, "names no condition key"));
        }
        for (key, values) in keys {
            let at = format!("{at}.{key}");
            if !key.contains(':') || key.ends_with(':') {
                return Err(bad(
                    at,
                    "a condition key looks like kms:ViaService or aws:PrincipalArn",
                ));
            }
            let values = condition_values(values, &at)?;
            check_values(op, &values, &at)?;
            out.push(Condition {
                op,
                set,
                if_exists,
                key: key.to_lowercase(),
                values,
            });
        }
    }
    Ok(out)
}

/// `[ForAnyValue:|ForAllValues:]<Operator>[IfExists]`.
fn parse_operator(name: &str) -> Option<(Op, SetOp, bool)> {
    let (set, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetOp::AnyValue, r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetOp::AllValues, r)
    } else {
        (SetOp::Single, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(base) => (base, true),
        None => (rest, false),
    };
    let op = OPERATORS.iter().find(|(n, _)| *n == base)?.1;
    // Null tests existence itself; neither qualifier means anything on it.
    if op == Op::Null && (if_exists || set != SetOp::Single) {
        return None;
    }
    Some((op, set, if_exists))
}

/// A string, number or boolean, or a non-empty array of them, as strings.
fn condition_values(v: &Value, at: &str) -> Result<Vec<String>, PolicyError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(bad(
            at,
            "condition values must be strings, numbers or booleans",
        )),
    };
    match v {
        Value::Array(items) if items.is_empty() => Err(bad(at, "needs at least one value")),
        Value::Array(items) => items.iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

fn check_values(op: Op, values: &[String], at: &str) -> Result<(), PolicyError> {
    for v in values {
        let ok = match op {
            Op::Bool | Op::Null => {
                v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("false")
            }
            _ if op.is_numeric() => v.parse::<f64>().is_ok_and(f64::is_finite),
            Op::ArnEquals | Op::ArnNotEquals | Op::ArnLike | Op::ArnNotLike => {
                v.splitn(6, ':').count() == 6
            }
            _ => true,
        };
        if !ok {
            return Err(bad(
                at,
                format!("'{v}' is not a valid value for this operator"),
            ));
        }
    }
    Ok(())
}

/// What the request has for one condition key.
enum Found<'a> {
    Absent,
    /// A single-valued key. More than one candidate only for
    /// `kms:EncryptionContext:<key>` when the request's context has keys
    /// that differ only by case.
    Single(Vec<&'a str>),
    /// A multi-valued key with at least one value.
    Multi(Vec<&'a str>),
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

/// The request's value(s) for a (lowercased) condition key.
fn lookup<'a>(key: &str, ctx: &RequestContext<'a>) -> Found<'a> {
    let ec: &'a crate::kms::service::EncryptionContext = ctx.encryption_context;
    if let Some(name) = key.strip_prefix("kms:encryptioncontext:") {
        let values: Vec<&'a str> = ec
            .iter()
            .filter(|(k, _)| k.to_lowercase() == name)
            .map(|(_, v)| v.as_str())
            .collect();
        return if values.is_empty() {
            Found::Absent
        } else {
            Found::Single(values)
        };
    }
    let one = |v: Option<&'a str>| v.map_or(Found::Absent, |v| Found::Single(vec![v]));
    let many = |v: Vec<&'a str>| {
        if v.is_empty() {
            Found::Absent
        } else {
            Found::Multi(v)
        }
    };
    match key {
        "kms:encryptioncontextkeys" => many(ec.keys().map(String::as_str).collect()),
        "kms:grantoperations" => many(
            ctx.grant_operations
                .map(|ops| ops.iter().map(String::as_str).collect())
                .unwrap_or_default(),
        ),
        "kms:viaservice" => one(ctx.via_service),
        "kms:calleraccount" | "aws:principalaccount" => one(Some(ctx.caller_account)),
        "aws:principalarn" => one(Some(ctx.principal_arn)),
        "aws:resourceaccount" => one(Some(ctx.key_account)),
        "kms:grantisforawsresource" => one(ctx.grant_is_for_aws_resource.map(bool_str)),
        "kms:granteeprincipal" => one(ctx.grantee_principal),
        "kms:retiringprincipal" => one(ctx.retiring_principal),
        "kms:requestalias" => one(ctx.request_alias),
        "kms:keyspec" => one(ctx.key_spec),
        "kms:keyusage" => one(ctx.key_usage),
        "kms:keyorigin" => one(ctx.key_origin),
        "aws:securetransport" => one(ctx.secure_transport.map(bool_str)),
        _ => Found::Absent,
    }
}

impl Condition {
    /// Whether the condition holds for the request. `effect` settles the
    /// one ambiguous case (several candidate values for one context key):
    /// an `Allow` needs every candidate to match, a `Deny` any of them, so
    /// the ambiguity never widens access.
    pub(super) fn holds(&self, ctx: &RequestContext<'_>, effect: Effect) -> bool {
        let found = lookup(&self.key, ctx);
        if self.op == Op::Null {
            let absent = matches!(found, Found::Absent);
            return self
                .values
                .iter()
                .any(|v| v.eq_ignore_ascii_case("true") == absent);
        }
        match (self.set, found) {
            (_, Found::Absent) if self.if_exists => true,
            (SetOp::Single, Found::Absent) => self.op.negated(),
            (SetOp::AnyValue, Found::Absent) => false,
            (SetOp::AllValues, Found::Absent) => true,
            (SetOp::Single, Found::Single(candidates)) => match effect {
                Effect::Allow => candidates.iter().all(|v| self.matches(v)),
                Effect::Deny => candidates.iter().any(|v| self.matches(v)),
            },
            // A plain operator on a multi-valued key: some value must match;
            // for a negated operator, every value must (none may equal).
            (SetOp::Single, Found::Multi(values)) if self.op.negated() => {
                values.iter().all(|v| self.matches(v))
            }
            (SetOp::Single, Found::Multi(values)) => values.iter().any(|v| self.matches(v)),
            (SetOp::AnyValue, Found::Single(values) | Found::Multi(values)) => {
                values.iter().any(|v| self.matches(v))
            }
            (SetOp::AllValues, Found::Single(values) | Found::Multi(values)) => {
                values.iter().all(|v| self.matches(v))
            }
        }
    }

    /// One request value against the policy's values.
    fn matches(&self, value: &str) -> bool {
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|p| f(p));
        let hit = match self.op {
            Op::StringEquals | Op::StringNotEquals => any(&|p| p == value),
            Op::StringEqualsIgnoreCase | Op::StringNotEqualsIgnoreCase => {
                let value = value.to_lowercase();
                any(&|p| p.to_lowercase() == value)
            }
            Op::StringLike | Op::StringNotLike => any(&|p| glob(p, value)),
            Op::Bool => any(&|p| p.eq_ignore_ascii_case(value)),
            Op::ArnEquals | Op::ArnNotEquals | Op::ArnLike | Op::ArnNotLike => {
                any(&|p| arn_match(p, value))
            }
            Op::Null => return false,
            numeric => {
                // A request value that is not a number matches nothing,
                // negated operator or not.
                let Ok(n) = value.parse::<f64>() else {
                    return false;
                };
                any(&|p| {
                    p.parse::<f64>().is_ok_and(|p| match numeric {
                        Op::NumericLessThan => n < p,
                        Op::NumericLessThanEquals => n <= p,
                        Op::NumericGreaterThan => n > p,
                        Op::NumericGreaterThanEquals => n >= p,
                        _ => n == p,
                    })
                })
            }
        };
        hit != self.op.negated()
    }
}
