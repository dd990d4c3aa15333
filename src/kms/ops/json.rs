//! The wire side of the handlers: JSON request → typed request, typed
//! response → JSON, the parameters every operation shares (`GrantTokens`,
//! `DryRun`), base64 blobs, and `Limit`/`Marker` pagination.
//!
//! Request structs ignore fields they do not know (as AWS's JSON protocol
//! does for forward compatibility); a field of the wrong type is a
//! `SerializationException`, a missing required one a
//! `ValidationException`, each naming the field.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::OpCtx;
use crate::crypto::SecretBytes;
use crate::kms::error::KmsError;
use crate::kms::local::LocalKms;

/// AWS: at most 10 grant tokens per request.
pub const MAX_GRANT_TOKENS: usize = 10;

/// Parses `req`, runs the typed handler `f`, serializes its response.
pub(crate) fn adapt<Req: DeserializeOwned, Resp: Serialize>(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: Value,
    f: fn(&LocalKms, &mut OpCtx<'_>, Req) -> Result<Resp, KmsError>,
) -> Result<Value, KmsError> {
    let req: Req = serde_json::from_value(req).map_err(|e| request_error(ctx.op.name, &e))?;
    let resp = f(kms, ctx, req)?;
    serde_json::to_value(resp)
        .map_err(|e| KmsError::Internal(format!("BUG: cannot serialize the response: {e}")))
}

fn request_error(op: &str, e: &serde_json::Error) -> KmsError {
    let msg = e.to_string();
    if let Some(rest) = msg.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return KmsError::Validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: \
             Member must not be null ({op} requires {field})"
        ));
    }
    KmsError::Serialization(format!(
        "the {op} request is not in the AWS KMS JSON shape: {msg}"
    ))
}

/// Reads the shared parameters into `ctx`: `GrantTokens` (at most 10, each
/// one this KMS issued) and `DryRun`.
pub(crate) fn prepare(kms: &LocalKms, ctx: &mut OpCtx<'_>, req: &Value) -> Result<(), KmsError> {
    let Value::Object(map) = req else {
        return Err(KmsError::Serialization(format!(
            "the {} request must be a JSON object",
            ctx.op.name
        )));
    };
    if let Some(tokens) = map.get("GrantTokens") {
        let tokens: Vec<String> = serde_json::from_value(tokens.clone())
            .map_err(|_| KmsError::Serialization("GrantTokens must be a list of strings".into()))?;
        if tokens.len() > MAX_GRANT_TOKENS {
            return Err(KmsError::Validation(format!(
                "GrantTokens has {} tokens; at most {MAX_GRANT_TOKENS} are allowed",
                tokens.len()
            )));
        }
        for t in &tokens {
            super::grants::parse_token(kms, t)?;
        }
        ctx.grant_tokens = tokens;
    }
    match map.get("DryRun") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(b)) => ctx.dry_run = *b,
        Some(_) => return Err(KmsError::Serialization("DryRun must be a boolean".into())),
    }
    Ok(())
}

/// serde: a base64 string as a zeroizing [`SecretBytes`], and back.
pub(crate) mod secret_b64 {
    use super::*;

    pub fn serialize<S: Serializer>(v: &SecretBytes, s: S) -> Result<S::Ok, S::Error> {
        // XXX: the base64 text lives in a plain String (and then in the JSON
        // response) until the caller drops it; only the typed KeyService path
        // keeps plaintext in zeroizing memory end to end.
        s.serialize_str(&STANDARD.encode(v.expose()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SecretBytes, D::Error> {
        let s = zeroize::Zeroizing::new(String::deserialize(d)?);
        STANDARD
            .decode(s.as_bytes())
            .map(SecretBytes::new)
            .map_err(|_| serde::de::Error::custom("a blob field is not valid base64"))
    }
}

/// serde: a base64 string as bytes.
pub(crate) use crate::kms::model::b64;

/// `Limit` checked against AWS's range for the operation.
pub(crate) fn limit(v: Option<i64>, max: usize, default: usize) -> Result<usize, KmsError> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 && n as u64 <= max as u64 => Ok(n as usize),
        Some(n) => Err(KmsError::Validation(format!(
            "Limit is {n}; it must be between 1 and {max}"
        ))),
    }
}

/// One page of a listing.
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    /// Set when more items follow: pass it back as `Marker`.
    pub next_marker: Option<String>,
}

impl<T> Page<T> {
    pub fn truncated(&self) -> bool {
        self.next_marker.is_some()
    }
}

/// Pages through `items`, each paired with a sort key that is unique and
/// ascending. A marker is the (opaque) sort key of the last item returned.
pub(crate) fn paginate<T>(
    mut items: Vec<(String, T)>,
    limit: usize,
    marker: Option<&str>,
) -> Result<Page<T>, KmsError> {
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let after = match marker {
        None => None,
        Some(m) => Some(
            URL_SAFE_NO_PAD
                .decode(m.as_bytes())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    KmsError::InvalidMarker(format!(
                        "Marker '{m}' is not a marker this KMS issued; pass the NextMarker of \
                         the previous response unchanged"
                    ))
                })?,
        ),
    };
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_deref().is_none_or(|a| k.as_str() > a))
        .collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next_marker = if more {
        rest.last()
            .map(|(k, _)| URL_SAFE_NO_PAD.encode(k.as_bytes()))
    } else {
        None
    };
    Ok(Page {
        items: rest.into_iter().map(|(_, v)| v).collect(),
        next_marker,
    })
}

/// An empty JSON object: the response of operations that return nothing.
#[derive(Debug, Serialize)]
pub(crate) struct Empty {}

/// Checks a byte parameter's length against AWS's range.
pub(crate) fn check_len(
    field: &str,
    len: usize,
    range: std::ops::RangeInclusive<usize>,
) -> Result<(), KmsError> {
    if range.contains(&len) {
        Ok(())
    } else {
        Err(KmsError::Validation(format!(
            "{field} is {len} bytes; it must be {} to {} bytes",
            range.start(),
            range.end()
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn page(limit: usize, marker: Option<&str>) -> Page<u32> {
        let items = (0..5u32).rev().map(|i| (format!("k{i}"), i)).collect();
        paginate(items, limit, marker).unwrap()
    }

    #[test]
    fn pagination_walks_every_item_once() {
        let p1 = page(2, None);
        assert_eq!(p1.items, vec![0, 1]);
        assert!(p1.truncated());
        let p2 = page(2, p1.next_marker.as_deref());
        assert_eq!(p2.items, vec![2, 3]);
        let p3 = page(2, p2.next_marker.as_deref());
        assert_eq!(p3.items, vec![4]);
        assert!(!p3.truncated());
        assert_eq!(page(5, None).next_marker, None);
    }

    #[test]
    fn bad_markers_and_limits_are_aws_errors() {
        let e = paginate(vec![("a".to_owned(), 1)], 1, Some("!!!")).unwrap_err();
        assert_eq!(e.aws_type(), "InvalidMarkerException");
        assert_eq!(
            limit(Some(0), 100, 50).unwrap_err().aws_type(),
            "ValidationException"
        );
        assert_eq!(
            limit(Some(101), 100, 50).unwrap_err().aws_type(),
            "ValidationException"
        );
        assert_eq!(limit(None, 100, 50).unwrap(), 50);
        assert_eq!(limit(Some(100), 100, 50).unwrap(), 100);
    }
}
