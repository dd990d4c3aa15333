//! Turning `aws kms`-style option values into the AWS JSON request.
//!
//! The AWS CLI v2 rules, which scripts written for it rely on:
//!
//! - `file://PATH` as any value reads the value from a text file;
//! - `fileb://PATH` as a blob value reads raw bytes (sent base64);
//! - a plain blob value is already base64 (`cli_binary_format=base64`);
//! - maps take `k=v,k2=v2` or JSON, lists take several values, structures
//!   take JSON or `Name={k=v}` shorthand.

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

use super::table::{field_name, Kind, Param};
use crate::kms::context;

/// A value as clap parsed it, before reading files.
#[derive(Debug, Clone)]
pub enum Raw {
    One(String),
    Many(Vec<String>),
    Int(i64),
    Flag(bool),
}

/// An option value that cannot be used; the message names the option.
#[derive(Debug, thiserror::Error)]
#[error("--{flag}: {reason}")]
pub struct ParamError {
    pub flag: &'static str,
    pub reason: String,
}

/// The request field and JSON value for one option.
pub fn to_json(p: &Param, raw: &Raw) -> Result<(String, Value), ParamError> {
    let fail = |reason: String| ParamError {
        flag: p.flag,
        reason,
    };
    let value = match (p.kind, raw) {
        (Kind::Int, Raw::Int(n)) => Value::Number((*n).into()),
        (Kind::Bool(_), Raw::Flag(b)) => Value::Bool(*b),
        (Kind::Blob, Raw::One(s)) => Value::String(blob(s).map_err(fail)?),
        (Kind::Str, Raw::One(s)) => Value::String(text(s).map_err(fail)?),
        (Kind::Map, Raw::One(s)) => map(&text(s).map_err(fail)?).map_err(fail)?,
        (Kind::Time, Raw::One(s)) => time(&text(s).map_err(fail)?).map_err(fail)?,
        (Kind::Struct, Raw::One(s)) => structure(&text(s).map_err(fail)?).map_err(fail)?,
        (Kind::List, Raw::Many(v)) => list(v).map_err(fail)?,
        (Kind::Tags, Raw::Many(v)) => tags(v).map_err(fail)?,
        (kind, raw) => {
            return Err(fail(format!(
                "BUG: option of kind {kind:?} got value {raw:?}"
            )))
        }
    };
    Ok((field_name(p.flag), value))
}

/// `file://PATH` -> the file's text; anything else as given.
pub fn text(s: &str) -> Result<String, String> {
    match s.strip_prefix("file://") {
        Some(path) => std::fs::read_to_string(Path::new(path))
            .map_err(|e| format!("cannot read file://{path}: {e}")),
        None => Ok(s.to_owned()),
    }
}

/// A blob as the base64 string the request carries.
pub fn blob(s: &str) -> Result<String, String> {
    if let Some(path) = s.strip_prefix("fileb://") {
        let bytes = std::fs::read(Path::new(path))
            .map_err(|e| format!("cannot read fileb://{path}: {e}"))?;
        return Ok(STANDARD.encode(bytes));
    }
    let from_file = s.starts_with("file://");
    let b64: String = text(s)?.split_whitespace().collect();
    match STANDARD.decode(&b64) {
        Ok(_) => Ok(b64),
        Err(e) => Err(format!(
            "{} is not base64 ({e}); pass raw bytes with fileb://FILE",
            if from_file {
                "the file's text"
            } else {
                "the value"
            }
        )),
    }
}

/// `k=v,k2=v2` or a JSON object of strings.
fn map(s: &str) -> Result<Value, String> {
    let ctx = context::parse_cli(s).map_err(|e| e.to_string())?;
    Ok(Value::Object(
        ctx.into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    ))
}

/// Epoch seconds, or an RFC 3339 / ISO 8601 time (UTC if no zone).
fn time(s: &str) -> Result<Value, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Value::Number(n.into()));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|e| {
        format!("'{s}' is not a time ({e}); give epoch seconds or e.g. 2030-01-01T00:00:00Z")
    })?;
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|_| format!("'{s}' is before 1970"))?
        .as_secs();
    Ok(Value::Number(secs.into()))
}

/// Several values, each possibly `a,b`; or one JSON list.
fn list(values: &[String]) -> Result<Value, String> {
    if let [one] = values {
        let t = text(one)?;
        if t.trim_start().starts_with('[') {
            return serde_json::from_str(&t).map_err(|e| format!("invalid JSON list: {e}"));
        }
    }
    let mut out = Vec::new();
    for v in values {
        for item in text(v)?.split(',') {
            let item = item.trim();
            if !item.is_empty() {
                out.push(Value::String(item.to_owned()));
            }
        }
    }
    Ok(Value::Array(out))
}

/// `TagKey=k,TagValue=v …` or one JSON list of tag objects.
fn tags(values: &[String]) -> Result<Value, String> {
    if let [one] = values {
        let t = text(one)?;
        if t.trim_start().starts_with('[') {
            return serde_json::from_str(&t).map_err(|e| format!("invalid JSON list: {e}"));
        }
    }
    let mut out = Vec::new();
    for v in values {
        let obj = shorthand(&text(v)?)?;
        let tag = obj.as_object().ok_or("expected TagKey=k,TagValue=v")?;
        if !tag.contains_key("TagKey") || tag.keys().any(|k| k != "TagKey" && k != "TagValue") {
            return Err(format!(
                "'{v}' is not a tag; write TagKey=NAME,TagValue=VALUE (several separated by spaces)"
            ));
        }
        out.push(obj);
    }
    Ok(Value::Array(out))
}

/// JSON, or `Name={k=v,k2=v2},Other=x` shorthand.
fn structure(s: &str) -> Result<Value, String> {
    if s.trim_start().starts_with('{') {
        return serde_json::from_str(s).map_err(|e| format!("invalid JSON: {e}"));
    }
    shorthand(s)
}

/// AWS CLI shorthand: comma-separated `key=value` members, where a value
/// may be a `{…}` group of the same form. Numbers stay strings (KMS
/// structures given this way hold strings).
fn shorthand(s: &str) -> Result<Value, String> {
    let mut obj = Map::new();
    for member in split_top_level(s.trim())? {
        let (k, v) = member
            .split_once('=')
            .ok_or_else(|| format!("'{member}' is not key=value"))?;
        let v = v.trim();
        let value = match v.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(inner) => shorthand(inner)?,
            None => Value::String(v.to_owned()),
        };
        obj.insert(k.trim().to_owned(), value);
    }
    Ok(Value::Object(obj))
}

/// Splits on commas outside `{…}`.
fn split_top_level(s: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0usize, 0usize, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| format!("unbalanced '}}' in '{s}'"))?
            }
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced '{{' in '{s}'"));
    }
    out.push(&s[start..]);
    Ok(out.into_iter().filter(|m| !m.trim().is_empty()).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blobs_take_base64_fileb_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [0u8, 1, 2, 255]).unwrap();
        assert_eq!(
            blob(&format!("fileb://{}", raw.display())).unwrap(),
            "AAEC/w=="
        );
        let txt = dir.path().join("b64");
        std::fs::write(&txt, "AAEC/w==\n").unwrap();
        assert_eq!(
            blob(&format!("file://{}", txt.display())).unwrap(),
            "AAEC/w=="
        );
        assert_eq!(blob("aGVsbG8=").unwrap(), "aGVsbG8=");
        let e = blob("not base64!").unwrap_err();
        assert!(e.contains("fileb://"), "{e}");
        assert!(blob("fileb:///nonexistent/x")
            .unwrap_err()
            .contains("/nonexistent/x"));
    }

    #[test]
    fn maps_lists_tags_and_structures_take_aws_cli_syntax() {
        assert_eq!(map("a=1,b=x").unwrap(), json!({"a": "1", "b": "x"}));
        assert_eq!(map(r#"{"a":"1,2"}"#).unwrap(), json!({"a": "1,2"}));
        let many = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            list(&many(&["Encrypt", "Decrypt,ReEncryptFrom"])).unwrap(),
            json!(["Encrypt", "Decrypt", "ReEncryptFrom"])
        );
        assert_eq!(list(&many(&[r#"["A","B"]"#])).unwrap(), json!(["A", "B"]));
        assert_eq!(
            tags(&many(&[
                "TagKey=team,TagValue=db",
                "TagKey=env,TagValue=prod"
            ]))
            .unwrap(),
            json!([{"TagKey": "team", "TagValue": "db"}, {"TagKey": "env", "TagValue": "prod"}])
        );
        assert!(tags(&many(&["Key=x"])).is_err());
        assert_eq!(
            structure("EncryptionContextSubset={Department=IT,Project=x}").unwrap(),
            json!({"EncryptionContextSubset": {"Department": "IT", "Project": "x"}})
        );
        assert_eq!(
            structure(r#"{"EncryptionContextEquals":{"a":"b"}}"#).unwrap(),
            json!({"EncryptionContextEquals": {"a": "b"}})
        );
        assert!(structure("A={b=c").is_err());
    }

    #[test]
    fn times_become_epoch_seconds() {
        assert_eq!(time("1700000000").unwrap(), json!(1700000000u64));
        assert_eq!(time("2030-01-01T00:00:00Z").unwrap(), json!(1893456000u64));
        assert!(time("tomorrow").is_err());
    }
}
