//! Every `cryptvol kms` command in one table: its `aws kms` name, the AWS
//! operation it calls and its options, with the AWS CLI's spellings.
//!
//! An option's request field is its flag in PascalCase (`--key-id` ->
//! `KeyId`), which holds for every KMS parameter, so the table lists flags
//! only.

/// How an option's value is read and put in the JSON request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A string (`file://F` reads it from a file, as everywhere).
    Str,
    /// An integer.
    Int,
    /// `--flag` / `--no-flag` (the second spelling is given).
    Bool(&'static str),
    /// Binary: base64 text, `fileb://F` (raw bytes) or `file://F` (base64 text).
    Blob,
    /// A string map: `k=v,k2=v2` or JSON.
    Map,
    /// One or more strings: `A B`, `A,B` or a JSON list.
    List,
    /// Tags: `TagKey=k,TagValue=v …` or a JSON list of such objects.
    Tags,
    /// A structure: JSON, or shorthand such as `EncryptionContextSubset={k=v}`.
    Struct,
    /// A time: epoch seconds or ISO 8601; sent as epoch seconds.
    Time,
}

/// One option of a command.
#[derive(Debug)]
pub struct Param {
    /// The long flag without dashes, e.g. `key-id`.
    pub flag: &'static str,
    pub kind: Kind,
    pub required: bool,
}

/// One `cryptvol kms` command.
#[derive(Debug)]
pub struct CommandSpec {
    /// kebab-case, as `aws kms <name>`.
    pub name: &'static str,
    /// The AWS KMS operation, e.g. `GenerateDataKey`.
    pub operation: &'static str,
    pub about: &'static str,
    pub params: &'static [Param],
}

const fn opt(flag: &'static str, kind: Kind) -> Param {
    Param {
        flag,
        kind,
        required: false,
    }
}

const fn req(flag: &'static str, kind: Kind) -> Param {
    Param {
        flag,
        kind,
        required: true,
    }
}

use Kind::*;

const KEY_ID: Param = req("key-id", Str);
const OPT_KEY_ID: Param = opt("key-id", Str);
const GRANT_TOKENS: Param = opt("grant-tokens", List);
const DRY_RUN: Param = opt("dry-run", Bool("no-dry-run"));
const LIMIT: Param = opt("limit", Int);
const MARKER: Param = opt("marker", Str);
const CONTEXT: Param = opt("encryption-context", Map);
const BYPASS: Param = opt(
    "bypass-policy-lockout-safety-check",
    Bool("no-bypass-policy-lockout-safety-check"),
);
const DATA_KEY_PARAMS: &[Param] = &[
    KEY_ID,
    CONTEXT,
    opt("number-of-bytes", Int),
    opt("key-spec", Str),
    GRANT_TOKENS,
    DRY_RUN,
];
const DATA_KEY_PAIR_PARAMS: &[Param] = &[
    KEY_ID,
    req("key-pair-spec", Str),
    CONTEXT,
    GRANT_TOKENS,
    DRY_RUN,
];

/// Every command, in `aws kms help` order within groups.
pub const COMMANDS: &[CommandSpec] = &[
    // Keys.
    CommandSpec {
        name: "create-key",
        operation: "CreateKey",
        about: "Create a KMS key (symmetric by default)",
        params: &[
            opt("policy", Str),
            opt("description", Str),
            opt("key-usage", Str),
            opt("customer-master-key-spec", Str),
            opt("key-spec", Str),
            opt("origin", Str),
            BYPASS,
            opt("tags", Tags),
            opt("multi-region", Bool("no-multi-region")),
        ],
    },
    CommandSpec {
        name: "describe-key",
        operation: "DescribeKey",
        about: "Show a key's metadata",
        params: &[KEY_ID, GRANT_TOKENS],
    },
    CommandSpec {
        name: "list-keys",
        operation: "ListKeys",
        about: "List the keys of the region",
        params: &[LIMIT, MARKER],
    },
    CommandSpec {
        name: "enable-key",
        operation: "EnableKey",
        about: "Enable a disabled key",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "disable-key",
        operation: "DisableKey",
        about: "Disable a key (it can no longer be used until enabled)",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "schedule-key-deletion",
        operation: "ScheduleKeyDeletion",
        about: "Schedule a key's deletion after a waiting period (7-30 days)",
        params: &[KEY_ID, opt("pending-window-in-days", Int)],
    },
    CommandSpec {
        name: "cancel-key-deletion",
        operation: "CancelKeyDeletion",
        about: "Cancel a scheduled deletion (the key becomes Disabled)",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "update-key-description",
        operation: "UpdateKeyDescription",
        about: "Change a key's description",
        params: &[KEY_ID, req("description", Str)],
    },
    CommandSpec {
        name: "replicate-key",
        operation: "ReplicateKey",
        about: "Replicate a multi-Region key into another region",
        params: &[
            KEY_ID,
            req("replica-region", Str),
            opt("policy", Str),
            BYPASS,
            opt("description", Str),
            opt("tags", Tags),
        ],
    },
    // Aliases.
    CommandSpec {
        name: "create-alias",
        operation: "CreateAlias",
        about: "Create an alias (alias/NAME) for a key",
        params: &[req("alias-name", Str), req("target-key-id", Str)],
    },
    CommandSpec {
        name: "update-alias",
        operation: "UpdateAlias",
        about: "Point an alias at another key",
        params: &[req("alias-name", Str), req("target-key-id", Str)],
    },
    CommandSpec {
        name: "delete-alias",
        operation: "DeleteAlias",
        about: "Delete an alias (the key is not affected)",
        params: &[req("alias-name", Str)],
    },
    CommandSpec {
        name: "list-aliases",
        operation: "ListAliases",
        about: "List aliases, of one key or of the region",
        params: &[OPT_KEY_ID, LIMIT, MARKER],
    },
    // Tags.
    CommandSpec {
        name: "tag-resource",
        operation: "TagResource",
        about: "Add or overwrite tags on a key",
        params: &[KEY_ID, req("tags", Tags)],
    },
    CommandSpec {
        name: "untag-resource",
        operation: "UntagResource",
        about: "Remove tags from a key",
        params: &[KEY_ID, req("tag-keys", List)],
    },
    CommandSpec {
        name: "list-resource-tags",
        operation: "ListResourceTags",
        about: "List a key's tags",
        params: &[KEY_ID, LIMIT, MARKER],
    },
    // Cryptographic operations.
    CommandSpec {
        name: "encrypt",
        operation: "Encrypt",
        about: "Encrypt up to 4096 bytes under a key",
        params: &[
            KEY_ID,
            req("plaintext", Blob),
            CONTEXT,
            GRANT_TOKENS,
            opt("encryption-algorithm", Str),
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "decrypt",
        operation: "Decrypt",
        about: "Decrypt a ciphertext blob",
        params: &[
            req("ciphertext-blob", Blob),
            CONTEXT,
            GRANT_TOKENS,
            OPT_KEY_ID,
            opt("encryption-algorithm", Str),
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "re-encrypt",
        operation: "ReEncrypt",
        about: "Decrypt a blob and encrypt it again under another key or context",
        params: &[
            req("ciphertext-blob", Blob),
            opt("source-encryption-context", Map),
            opt("source-key-id", Str),
            req("destination-key-id", Str),
            opt("destination-encryption-context", Map),
            opt("source-encryption-algorithm", Str),
            opt("destination-encryption-algorithm", Str),
            GRANT_TOKENS,
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "generate-data-key",
        operation: "GenerateDataKey",
        about: "Make a data key: plaintext and a copy encrypted under a key",
        params: DATA_KEY_PARAMS,
    },
    CommandSpec {
        name: "generate-data-key-without-plaintext",
        operation: "GenerateDataKeyWithoutPlaintext",
        about: "Make a data key, returning only its encrypted copy",
        params: DATA_KEY_PARAMS,
    },
    CommandSpec {
        name: "generate-data-key-pair",
        operation: "GenerateDataKeyPair",
        about: "Make an asymmetric data key pair (private key also encrypted)",
        params: DATA_KEY_PAIR_PARAMS,
    },
    CommandSpec {
        name: "generate-data-key-pair-without-plaintext",
        operation: "GenerateDataKeyPairWithoutPlaintext",
        about: "Make a data key pair, returning the public key and encrypted private key",
        params: DATA_KEY_PAIR_PARAMS,
    },
    CommandSpec {
        name: "generate-random",
        operation: "GenerateRandom",
        about: "Random bytes (1-1024)",
        params: &[opt("number-of-bytes", Int)],
    },
    CommandSpec {
        name: "sign",
        operation: "Sign",
        about: "Sign a message or digest with an asymmetric key",
        params: &[
            KEY_ID,
            req("message", Blob),
            opt("message-type", Str),
            GRANT_TOKENS,
            req("signing-algorithm", Str),
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "verify",
        operation: "Verify",
        about: "Verify a signature",
        params: &[
            KEY_ID,
            req("message", Blob),
            opt("message-type", Str),
            req("signature", Blob),
            req("signing-algorithm", Str),
            GRANT_TOKENS,
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "generate-mac",
        operation: "GenerateMac",
        about: "Compute an HMAC with an HMAC key",
        params: &[
            req("message", Blob),
            KEY_ID,
            req("mac-algorithm", Str),
            GRANT_TOKENS,
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "verify-mac",
        operation: "VerifyMac",
        about: "Check an HMAC",
        params: &[
            req("message", Blob),
            KEY_ID,
            req("mac-algorithm", Str),
            req("mac", Blob),
            GRANT_TOKENS,
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "get-public-key",
        operation: "GetPublicKey",
        about: "The public key of an asymmetric key",
        params: &[KEY_ID, GRANT_TOKENS],
    },
    // Rotation.
    CommandSpec {
        name: "enable-key-rotation",
        operation: "EnableKeyRotation",
        about: "Rotate the key automatically (every 90-2560 days, default 365)",
        params: &[KEY_ID, opt("rotation-period-in-days", Int)],
    },
    CommandSpec {
        name: "disable-key-rotation",
        operation: "DisableKeyRotation",
        about: "Stop automatic rotation",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "get-key-rotation-status",
        operation: "GetKeyRotationStatus",
        about: "Whether and when the key rotates",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "rotate-key-on-demand",
        operation: "RotateKeyOnDemand",
        about: "Rotate the key's material now",
        params: &[KEY_ID],
    },
    CommandSpec {
        name: "list-key-rotations",
        operation: "ListKeyRotations",
        about: "List a key's completed rotations",
        params: &[KEY_ID, LIMIT, MARKER],
    },
    // Imported key material.
    CommandSpec {
        name: "get-parameters-for-import",
        operation: "GetParametersForImport",
        about: "A wrapping public key and import token for importing key material",
        params: &[
            KEY_ID,
            req("wrapping-algorithm", Str),
            req("wrapping-key-spec", Str),
        ],
    },
    CommandSpec {
        name: "import-key-material",
        operation: "ImportKeyMaterial",
        about: "Import wrapped key material into an EXTERNAL key",
        params: &[
            KEY_ID,
            req("import-token", Blob),
            req("encrypted-key-material", Blob),
            opt("valid-to", Time),
            opt("expiration-model", Str),
        ],
    },
    CommandSpec {
        name: "delete-imported-key-material",
        operation: "DeleteImportedKeyMaterial",
        about: "Delete imported key material (the key becomes PendingImport)",
        params: &[KEY_ID],
    },
    // Policies.
    CommandSpec {
        name: "put-key-policy",
        operation: "PutKeyPolicy",
        about: "Replace a key's policy",
        params: &[KEY_ID, opt("policy-name", Str), req("policy", Str), BYPASS],
    },
    CommandSpec {
        name: "get-key-policy",
        operation: "GetKeyPolicy",
        about: "Show a key's policy",
        params: &[KEY_ID, opt("policy-name", Str)],
    },
    CommandSpec {
        name: "list-key-policies",
        operation: "ListKeyPolicies",
        about: "List a key's policy names (always `default`)",
        params: &[KEY_ID, LIMIT, MARKER],
    },
    // Grants.
    CommandSpec {
        name: "create-grant",
        operation: "CreateGrant",
        about: "Allow a principal to use a key for some operations",
        params: &[
            KEY_ID,
            req("grantee-principal", Str),
            opt("retiring-principal", Str),
            req("operations", List),
            opt("constraints", Struct),
            GRANT_TOKENS,
            opt("name", Str),
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "list-grants",
        operation: "ListGrants",
        about: "List a key's grants",
        params: &[
            LIMIT,
            MARKER,
            KEY_ID,
            opt("grant-id", Str),
            opt("grantee-principal", Str),
        ],
    },
    CommandSpec {
        name: "list-retirable-grants",
        operation: "ListRetirableGrants",
        about: "List the grants a principal may retire",
        params: &[LIMIT, MARKER, req("retiring-principal", Str)],
    },
    CommandSpec {
        name: "retire-grant",
        operation: "RetireGrant",
        about: "Retire a grant (by token, or by key and grant id)",
        params: &[
            opt("grant-token", Str),
            OPT_KEY_ID,
            opt("grant-id", Str),
            DRY_RUN,
        ],
    },
    CommandSpec {
        name: "revoke-grant",
        operation: "RevokeGrant",
        about: "Revoke a grant",
        params: &[KEY_ID, req("grant-id", Str), DRY_RUN],
    },
];

/// `key-id` -> `KeyId`: the request field of a flag.
pub fn field_name(flag: &str) -> String {
    flag.split('-')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// Help text for a flag.
pub fn help(p: &Param) -> String {
    let what = match p.kind {
        Kind::Str => "",
        Kind::Int => " (a number)",
        Kind::Bool(_) => "",
        Kind::Blob => " (base64, fileb://FILE for raw bytes, or file://FILE holding base64)",
        Kind::Map => " (k=v,k2=v2 or JSON)",
        Kind::List => " (one or more values)",
        Kind::Tags => " (TagKey=k,TagValue=v … or JSON)",
        Kind::Struct => " (JSON, or shorthand Name={k=v})",
        Kind::Time => " (epoch seconds or ISO 8601)",
    };
    match describe(p.flag) {
        Some(d) => format!("{}: {d}{what}", field_name(p.flag)),
        None => format!("{}{what}", field_name(p.flag)),
    }
}

/// What the common options mean, for `--help`.
fn describe(flag: &str) -> Option<&'static str> {
    Some(match flag {
        "key-id" | "source-key-id" | "destination-key-id" | "target-key-id" => {
            "key id, key ARN, alias name (alias/NAME) or alias ARN"
        }
        "plaintext" => "the data to encrypt, 1-4096 bytes",
        "ciphertext-blob" => "a blob made by encrypt or generate-data-key",
        "encryption-context" | "source-encryption-context" | "destination-encryption-context" => {
            "pairs bound to the ciphertext; decrypt needs the same"
        }
        "key-spec" => {
            "SYMMETRIC_DEFAULT, RSA_2048, ECC_NIST_P256, HMAC_256, … (data keys: AES_256, AES_128)"
        }
        "key-usage" => "ENCRYPT_DECRYPT, SIGN_VERIFY or GENERATE_VERIFY_MAC",
        "number-of-bytes" => "data key or random length, 1-1024",
        "pending-window-in-days" => "7-30, default 30",
        "rotation-period-in-days" => "90-2560, default 365",
        "alias-name" => "alias/NAME (alias/aws/ is reserved)",
        "policy" => "a key policy document (JSON text, or file://FILE)",
        "operations" => "grant operations, e.g. Encrypt Decrypt GenerateDataKey",
        "grantee-principal" | "retiring-principal" => "a principal ARN",
        "grant-tokens" => "tokens of grants not yet visible everywhere",
        "origin" => "AWS_KMS (default) or EXTERNAL (import your own material)",
        "limit" => "at most this many items per page",
        "marker" => "NextMarker of the previous page",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_the_aws_parameter_names() {
        assert_eq!(field_name("key-id"), "KeyId");
        assert_eq!(
            field_name("bypass-policy-lockout-safety-check"),
            "BypassPolicyLockoutSafetyCheck"
        );
        assert_eq!(field_name("mac"), "Mac");
    }

    #[test]
    fn every_kms_operation_has_exactly_one_command() {
        for op in crate::kms::ops::OPERATIONS {
            let n = COMMANDS.iter().filter(|c| c.operation == op.name).count();
            assert_eq!(n, 1, "{}", op.name);
        }
        for c in COMMANDS {
            assert!(
                crate::kms::ops::operation(c.operation).is_some(),
                "{}",
                c.name
            );
            assert_eq!(
                field_name(c.name),
                c.operation,
                "{} is the kebab-case operation",
                c.name
            );
        }
    }

    #[test]
    fn command_names_and_flags_are_unique() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|c| c.name).collect();
        names.sort_unstable();
        let n = names.len();
        names.dedup();
        assert_eq!(n, names.len());
        assert_eq!(n, 45);
        for c in COMMANDS {
            let mut flags: Vec<&str> = c.params.iter().map(|p| p.flag).collect();
            flags.sort_unstable();
            let n = flags.len();
            flags.dedup();
            assert_eq!(n, flags.len(), "{}", c.name);
        }
    }
}
