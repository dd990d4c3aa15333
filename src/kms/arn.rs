//! Names: key ids, ARNs, alias names, regions, account ids — building them
//! and parsing what a caller passes as `KeyId`.
//!
//! AWS accepts four spellings wherever a key is named (key id, key ARN,
//! alias name, alias ARN); [`KeyRef::parse`] turns a string into one of them
//! once, at the boundary, so the key store only ever sees checked values.
//! The partition is always `aws`, which keeps AWS tools and SDKs happy.
//!
//! Region names become directory names in the data dir, so
//! [`validate_region`] is also what keeps a region from escaping it.

use uuid::Uuid;

use super::error::KmsError;

/// The ARN partition cryptvol uses.
pub const PARTITION: &str = "aws";
/// Every alias name starts with this (AWS API convention).
pub const ALIAS_PREFIX: &str = "alias/";
/// Aliases of AWS managed keys; customers may not create them.
pub const AWS_ALIAS_PREFIX: &str = "alias/aws/";
/// AWS limit on alias name length, `alias/` included.
pub const MAX_ALIAS_LEN: usize = 256;
/// Multi-region key ids are `mrk-` followed by 32 hex digits.
pub const MRK_PREFIX: &str = "mrk-";

/// `arn:aws:kms:<region>:<account>:key/<key-id>`.
pub fn key_arn(region: &str, account: &str, key_id: &str) -> String {
    format!("arn:{PARTITION}:kms:{region}:{account}:key/{key_id}")
}

/// `arn:aws:kms:<region>:<account>:alias/<name>`; `alias_name` includes the
/// `alias/` prefix.
pub fn alias_arn(region: &str, account: &str, alias_name: &str) -> String {
    format!("arn:{PARTITION}:kms:{region}:{account}:{alias_name}")
}

/// `arn:aws:iam::<account>:root`, the account's root principal.
pub fn root_principal(account: &str) -> String {
    format!("arn:{PARTITION}:iam::{account}:root")
}

/// The account of an IAM principal ARN (`arn:aws:iam::<account>:…`).
pub fn principal_account(principal_arn: &str) -> Option<&str> {
    let mut parts = principal_arn.splitn(6, ':');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("arn"), Some(_), Some("iam"), Some(""), Some(account), Some(_))
            if is_account_id(account) =>
        {
            Some(account)
        }
        _ => None,
    }
}

/// Twelve ASCII digits.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A key as the caller named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRef {
    /// A bare key id (lowercased UUID, or `mrk-…`).
    KeyId(String),
    KeyArn {
        region: String,
        account: String,
        key_id: String,
    },
    /// `alias/<name>`.
    AliasName(String),
    AliasArn {
        region: String,
        account: String,
        alias_name: String,
    },
}

impl KeyRef {
    /// Parses a key id, key ARN, alias name or alias ARN. Anything else is
    /// `NotFoundException`, as AWS answers for an unparseable `KeyId`.
    pub fn parse(s: &str) -> Result<KeyRef, KmsError> {
        if let Some(rest) = s.strip_prefix("arn:") {
            return parse_arn(s, rest);
        }
        if s.starts_with(ALIAS_PREFIX) {
            validate_alias_name(s)?;
            return Ok(KeyRef::AliasName(s.to_owned()));
        }
        normalize_key_id(s).map(KeyRef::KeyId).ok_or_else(|| {
            KmsError::NotFound(format!(
                "'{s}' is not a key id, key ARN, alias name or alias ARN; name a key as \
                 1234abcd-12ab-34cd-56ef-1234567890ab, arn:aws:kms:<region>:<account>:key/<key-id>, \
                 alias/<name> or arn:aws:kms:<region>:<account>:alias/<name>"
            ))
        })
    }

    /// True for alias names and alias ARNs.
    pub fn is_alias(&self) -> bool {
        matches!(self, KeyRef::AliasName(_) | KeyRef::AliasArn { .. })
    }
}

fn parse_arn(whole: &str, rest: &str) -> Result<KeyRef, KmsError> {
    let bad = || {
        KmsError::NotFound(format!(
            "'{whole}' is not a KMS key or alias ARN; expected \
             arn:aws:kms:<region>:<account>:key/<key-id> or arn:aws:kms:<region>:<account>:alias/<name>"
        ))
    };
    let parts: Vec<&str> = rest.splitn(5, ':').collect();
    let [partition, service, region, account, resource] = parts[..] else {
        return Err(bad());
    };
    if partition != PARTITION
        || service != "kms"
        || validate_region(region).is_err()
        || !is_account_id(account)
    {
        return Err(bad());
    }
    let (region, account) = (region.to_owned(), account.to_owned());
    if let Some(id) = resource.strip_prefix("key/") {
        let key_id = normalize_key_id(id).ok_or_else(bad)?;
        Ok(KeyRef::KeyArn {
            region,
            account,
            key_id,
        })
    } else if resource.starts_with(ALIAS_PREFIX) {
        validate_alias_name(resource)?;
        Ok(KeyRef::AliasArn {
            region,
            account,
            alias_name: resource.to_owned(),
        })
    } else {
        Err(bad())
    }
}

/// The canonical (lowercase) form of a key id, or `None` if `s` is not one.
/// Key ids are hyphenated UUIDs, or `mrk-` + 32 hex digits.
pub fn normalize_key_id(s: &str) -> Option<String> {
    if let Some(hex) = s.strip_prefix(MRK_PREFIX) {
        return (hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| format!("{MRK_PREFIX}{}", hex.to_ascii_lowercase()));
    }
    // Only the hyphenated form: `Uuid::parse_str` would also take braces,
    // `urn:uuid:` and bare hex, which AWS does not.
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok().map(|u| u.hyphenated().to_string())
}

/// The 16 bytes a ciphertext blob stores for a (normalized) key id: the
/// UUID's bytes, or the 32 hex digits of an `mrk-` id.
pub fn key_id_to_bytes(key_id: &str) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    if let Some(hex) = key_id.strip_prefix(MRK_PREFIX) {
        hex::decode_to_slice(hex, &mut out).ok()?;
        return Some(out);
    }
    Uuid::parse_str(key_id).ok().map(|u| *u.as_bytes())
}

/// The key ids that 16 blob bytes may stand for: the UUID spelling, then
/// the multi-region (`mrk-`) spelling. A key store holds at most one of
/// them in practice (2^-122 odds otherwise); the UUID one is tried first.
pub fn key_id_from_bytes(bytes: &[u8; 16]) -> [String; 2] {
    [
        Uuid::from_bytes(*bytes).hyphenated().to_string(),
        format!("{MRK_PREFIX}{}", hex::encode(bytes)),
    ]
}

/// Alias name syntax (AWS): `alias/` then 1..=250 of `[A-Za-z0-9/_-]`.
/// Does not check the reserved `alias/aws/` prefix.
pub fn validate_alias_name(name: &str) -> Result<(), KmsError> {
    let Some(rest) = name.strip_prefix(ALIAS_PREFIX) else {
        return Err(KmsError::Validation(format!(
            "alias name '{name}' must begin with alias/, as in alias/my-key"
        )));
    };
    let ok_chars = rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
    if rest.is_empty() || name.len() > MAX_ALIAS_LEN || !ok_chars {
        return Err(KmsError::Validation(format!(
            "alias name '{name}' is not valid: after alias/ it needs 1 to {} of the characters \
             A-Z a-z 0-9 / _ -",
            MAX_ALIAS_LEN - ALIAS_PREFIX.len()
        )));
    }
    Ok(())
}

/// True for the reserved `alias/aws/…` names of AWS managed keys.
pub fn is_aws_alias(name: &str) -> bool {
    name.starts_with(AWS_ALIAS_PREFIX)
}

/// Region names are lowercase letters, digits and single hyphens, start with
/// a letter, end with a letter or digit, and are at most 32 bytes
/// (`us-east-1`, `eu-central-2`, `local-1`). They become directory names.
pub fn validate_region(region: &str) -> Result<(), KmsError> {
    let b = region.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 32
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !region.ends_with('-')
        && !region.contains("--");
    if ok {
        Ok(())
    } else {
        Err(KmsError::Validation(format!(
            "'{region}' is not a valid region name; use an AWS-style name such as us-east-1 \
             (lowercase letters, digits and single hyphens)"
        )))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_all_four_spellings() {
        assert_eq!(KeyRef::parse(ID).unwrap(), KeyRef::KeyId(ID.into()));
        assert_eq!(
            KeyRef::parse(&ID.to_uppercase()).unwrap(),
            KeyRef::KeyId(ID.into())
        );
        assert_eq!(
            KeyRef::parse(&format!("arn:aws:kms:us-west-2:111122223333:key/{ID}")).unwrap(),
            KeyRef::KeyArn {
                region: "us-west-2".into(),
                account: "111122223333".into(),
                key_id: ID.into()
            }
        );
        assert_eq!(
            KeyRef::parse("alias/aws/ebs").unwrap(),
            KeyRef::AliasName("alias/aws/ebs".into())
        );
        assert_eq!(
            KeyRef::parse("arn:aws:kms:us-east-1:111122223333:alias/my/key_1").unwrap(),
            KeyRef::AliasArn {
                region: "us-east-1".into(),
                account: "111122223333".into(),
                alias_name: "alias/my/key_1".into()
            }
        );
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        assert_eq!(KeyRef::parse(mrk).unwrap(), KeyRef::KeyId(mrk.into()));
    }

    #[test]
    fn rejects_malformed_references() {
        for bad in [
            "",
            "not-a-key",
            "1234abcd12ab34cd56ef1234567890ab",
            "{1234abcd-12ab-34cd-56ef-1234567890ab}",
            "arn:aws:s3:::bucket",
            "arn:aws:kms:us-east-1:111122223333:key/nope",
            "arn:aws:kms:us-east-1:1111:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:../..:111122223333:alias/x",
            "arn:aws:kms:us-east-1:111122223333:grant/x",
        ] {
            assert!(KeyRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            KeyRef::parse("alias/").unwrap_err().aws_type(),
            "ValidationException"
        );
        assert_eq!(
            KeyRef::parse("alias/a b").unwrap_err().aws_type(),
            "ValidationException"
        );
    }

    #[test]
    fn key_ids_map_to_blob_bytes_and_back() {
        let b = key_id_to_bytes(ID).unwrap();
        assert_eq!(key_id_from_bytes(&b)[0], ID);
        let mrk = "mrk-1234abcd12ab34cd56ef1234567890ab";
        let b = key_id_to_bytes(mrk).unwrap();
        assert_eq!(key_id_from_bytes(&b)[1], mrk);
        assert_eq!(key_id_to_bytes("nope"), None);
    }

    #[test]
    fn builds_arns() {
        assert_eq!(
            key_arn("us-east-1", "111122223333", ID),
            format!("arn:aws:kms:us-east-1:111122223333:key/{ID}")
        );
        assert_eq!(
            alias_arn("us-east-1", "111122223333", "alias/aws/ebs"),
            "arn:aws:kms:us-east-1:111122223333:alias/aws/ebs"
        );
        assert_eq!(
            root_principal("111122223333"),
            "arn:aws:iam::111122223333:root"
        );
        assert_eq!(
            principal_account("arn:aws:iam::111122223333:user/bob"),
            Some("111122223333")
        );
        assert_eq!(principal_account("arn:aws:iam::1:root"), None);
    }

    #[test]
    fn alias_and_region_rules() {
        assert!(validate_alias_name(&format!("alias/{}", "a".repeat(250))).is_ok());
        assert!(validate_alias_name(&format!("alias/{}", "a".repeat(251))).is_err());
        assert!(validate_alias_name("my-key").is_err());
        assert!(is_aws_alias("alias/aws/ebs") && !is_aws_alias("alias/awsome"));
        for ok in ["us-east-1", "eu-central-2", "local-1", "local"] {
            assert!(validate_region(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "US-EAST-1",
            "../x",
            "us_east_1",
            "-us",
            "us-",
            "us--1",
            "1us",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }
}
