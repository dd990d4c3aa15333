//! Encryption context: its canonical byte encoding (the AAD), validation,
//! and the `k=v,k2=v2` syntax of the command line.
//!
//! Why a length-prefixed encoding: the context is bound to a ciphertext as
//! GCM associated data, so two different contexts must never encode to the
//! same bytes. moto, LocalStack and local-kms concatenate `key || value`
//! pairs, under which `{"a":"bc"}` and `{"ab":"c"}` collide. Here every
//! string carries its length, and the pair count comes first:
//!
//! ```text
//! +-------------+----------------+--------+----------------+--------+-- …
//! | count u32LE | key len u32LE  | key    | value len u32LE| value  | next pair
//! +-------------+----------------+--------+----------------+--------+-- …
//! ```
//!
//! Pairs are in ascending byte order of their keys (the order of
//! [`EncryptionContext`], a `BTreeMap<String, String>`), so equal maps
//! always encode equally. The empty context encodes as four zero bytes.

use super::error::KmsError;
pub use super::service::EncryptionContext;

/// Upper bound on the total UTF-8 bytes of all keys and values. AWS does not
/// publish one; cryptvol bounds the context so that requests, AAD and audit
/// records stay small.
pub const MAX_CONTEXT_BYTES: usize = 8192;

/// Checks a context before it is used: keys must be non-empty, and the keys
/// and values together must stay within [`MAX_CONTEXT_BYTES`].
pub fn validate(ctx: &EncryptionContext) -> Result<(), KmsError> {
    if ctx.contains_key("") {
        return Err(KmsError::Validation(
            "encryption context keys must not be empty; give every pair a name, as in k=v".into(),
        ));
    }
    let total: usize = ctx.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_CONTEXT_BYTES {
        return Err(KmsError::Validation(format!(
            "encryption context is {total} bytes of keys and values; at most {MAX_CONTEXT_BYTES} are allowed"
        )));
    }
    Ok(())
}

/// Validates `ctx` and returns its canonical encoding (see the module doc).
pub fn canonical_encoding(ctx: &EncryptionContext) -> Result<Vec<u8>, KmsError> {
    validate(ctx)?;
    let mut out = Vec::with_capacity(
        4 + ctx
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum::<usize>(),
    );
    put_len(&mut out, ctx.len());
    for (k, v) in ctx {
        put_len(&mut out, k.len());
        out.extend_from_slice(k.as_bytes());
        put_len(&mut out, v.len());
        out.extend_from_slice(v.as_bytes());
    }
    Ok(out)
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Validation bounds every length by MAX_CONTEXT_BYTES (and the pair
    // count by the same, as each key is at least one byte).
    let len =
        u32::try_from(len).expect("BUG: encryption context lengths are validated below 8 KiB");
    out.extend_from_slice(&len.to_le_bytes());
}

/// Parses the `--encryption-context` argument: either the aws CLI shorthand
/// `k=v,k2=v2` (a value may contain `=`, not `,`) or a JSON object of
/// strings, `{"k":"v"}`. The empty string is the empty context.
pub fn parse_cli(s: &str) -> Result<EncryptionContext, KmsError> {
    let s = s.trim();
    let mut ctx = EncryptionContext::new();
    if s.is_empty() {
        return Ok(ctx);
    }
    if s.starts_with('{') {
        ctx = serde_json::from_str(s).map_err(|e| {
            KmsError::Validation(format!(
                "encryption context JSON must be an object whose values are strings, \
                 like {{\"aws:ebs:id\":\"vol-…\"}}: {e}"
            ))
        })?;
    } else {
        for pair in s.split(',') {
            let Some((k, v)) = pair.split_once('=') else {
                return Err(KmsError::Validation(format!(
                    "encryption context item '{pair}' is not key=value; write it as \
                     k=v,k2=v2 (or as JSON, {{\"k\":\"v\"}}, when a value contains a comma)"
                )));
            };
            let k = k.trim();
            if ctx.insert(k.to_owned(), v.to_owned()).is_some() {
                return Err(KmsError::Validation(format!(
                    "encryption context key '{k}' is given twice; each key may appear once"
                )));
            }
        }
    }
    validate(&ctx)?;
    Ok(ctx)
}

/// Renders a context in the `k=v,k2=v2` syntax, for messages.
pub fn format_cli(ctx: &EncryptionContext) -> String {
    let pairs: Vec<String> = ctx.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_bc_and_ab_c_encode_differently() {
        let one = canonical_encoding(&ctx(&[("a", "bc")])).unwrap();
        let two = canonical_encoding(&ctx(&[("ab", "c")])).unwrap();
        assert_ne!(one, two);
        // Neither do splits across pairs collide with a single pair.
        let three = canonical_encoding(&ctx(&[("a", ""), ("b", "c")])).unwrap();
        assert_ne!(one, three);
        assert_ne!(two, three);
    }

    #[test]
    fn encoding_is_golden() {
        assert_eq!(
            canonical_encoding(&EncryptionContext::new()).unwrap(),
            [0, 0, 0, 0]
        );
        let got = canonical_encoding(&ctx(&[("b", "2"), ("a", "xy")])).unwrap();
        let want: &[u8] = &[
            2, 0, 0, 0, // two pairs
            1, 0, 0, 0, b'a', 2, 0, 0, 0, b'x', b'y', // "a" = "xy" (sorted first)
            1, 0, 0, 0, b'b', 1, 0, 0, 0, b'2', // "b" = "2"
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn parse_cli_shorthand_and_json() {
        assert_eq!(
            parse_cli("aws:ebs:id=vol-1,b=x=y").unwrap(),
            ctx(&[("aws:ebs:id", "vol-1"), ("b", "x=y")])
        );
        assert_eq!(parse_cli(r#"{"a":"1,2"}"#).unwrap(), ctx(&[("a", "1,2")]));
        assert_eq!(parse_cli("  ").unwrap(), EncryptionContext::new());
        assert_eq!(parse_cli("k=").unwrap(), ctx(&[("k", "")]));
    }

    #[test]
    fn parse_cli_rejects_bad_input_with_validation_errors() {
        for bad in ["novalue", "a=1,a=2", "=v", r#"{"a":1}"#, "a=1,"] {
            let e = parse_cli(bad).unwrap_err();
            assert_eq!(e.aws_type(), "ValidationException", "{bad}: {e}");
        }
    }

    #[test]
    fn oversized_context_is_rejected() {
        let big = ctx(&[("k", &"v".repeat(MAX_CONTEXT_BYTES))]);
        assert_eq!(
            canonical_encoding(&big).unwrap_err().aws_type(),
            "ValidationException"
        );
        let fits = ctx(&[("k", &"v".repeat(MAX_CONTEXT_BYTES - 1))]);
        assert!(canonical_encoding(&fits).is_ok());
    }

    #[test]
    fn format_cli_round_trips_simple_contexts() {
        let c = ctx(&[("aws:ebs:id", "vol-0123"), ("x", "y")]);
        assert_eq!(parse_cli(&format_cli(&c)).unwrap(), c);
    }
}
