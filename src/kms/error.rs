//! The KMS error type: one variant per AWS KMS exception.
//!
//! Why mirror AWS: the HTTP API (a later issue) must answer with
//! `{"__type": "<Exception>", "message": "…"}` exactly as AWS does, and
//! callers (the volume layer, tests, boto3 users) branch on the exception
//! name. So the variant *is* the AWS exception, [`KmsError::aws_type`] gives
//! its wire name, and the payload is the human message.
//!
//! Messages name the thing that was wrong and what to do about it. They
//! never contain key material, data keys or plaintext: only key ids, ARNs,
//! alias names, regions, paths and encryption contexts (which AWS documents
//! as non-secret; they appear in CloudTrail). The constructors below keep
//! the wording of the common cases in one place.

use crate::fsutil::FsError;

/// A KMS failure. The `Display` text is the message AWS would put in
/// `"message"`; [`KmsError::aws_type`] is its `"__type"`.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// `NotFoundException`: no such key, alias or ARN in this region.
    #[error("{0}")]
    NotFound(String),
    /// `DisabledException`: the key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// `KMSInvalidStateException`: the key's state (pending deletion,
    /// pending import, …) does not allow the operation.
    #[error("{0}")]
    InvalidState(String),
    /// `InvalidCiphertextException`: the blob is malformed or altered, or the
    /// encryption context differs from the one used to encrypt.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// `IncorrectKeyException`: the blob was not made with the key the caller
    /// named.
    #[error("{0}")]
    IncorrectKey(String),
    /// `ValidationException`: a parameter is out of range or malformed.
    #[error("{0}")]
    Validation(String),
    /// `AlreadyExistsException`: the alias (or other resource) exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// `AccessDeniedException`: the caller may not do this.
    #[error("{0}")]
    AccessDenied(String),
    /// `NotAuthorizedException`: what AWS answers when a customer tries to
    /// create an alias in the reserved `alias/aws/` namespace.
    #[error("{0}")]
    NotAuthorized(String),
    /// `InvalidKeyUsageException`: the key's spec or usage does not allow the
    /// operation (e.g. GenerateDataKey with a signing key).
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// `LimitExceededException`: a per-key or per-account limit was reached.
    #[error("{0}")]
    LimitExceeded(String),
    /// `UnsupportedOperationException`: valid in AWS, not (yet) in cryptvol.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// `InvalidArnException`: an ARN parameter is malformed.
    #[error("{0}")]
    InvalidArn(String),
    /// `InvalidAliasNameException`.
    #[error("{0}")]
    InvalidAliasName(String),
    /// `InvalidMarkerException`: a pagination marker is not one we issued.
    #[error("{0}")]
    InvalidMarker(String),
    /// `InvalidGrantTokenException`.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// `InvalidGrantIdException`.
    #[error("{0}")]
    InvalidGrantId(String),
    /// `KeyUnavailableException`: the key exists but cannot be used now.
    #[error("{0}")]
    KeyUnavailable(String),
    /// `KMSInvalidSignatureException`: Verify found that the signature does
    /// not match the message.
    #[error("{0}")]
    InvalidSignature(String),
    /// `KMSInvalidMacException`: VerifyMac found that the MAC does not match.
    #[error("{0}")]
    InvalidMac(String),
    /// `TagException`: a tag key or value is malformed or reserved.
    #[error("{0}")]
    Tag(String),
    /// `MalformedPolicyDocumentException`: the key policy is not valid.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// `InvalidImportTokenException`: the import token is not one this KMS
    /// issued for this key.
    #[error("{0}")]
    InvalidImportToken(String),
    /// `ExpiredImportTokenException`: the import token is older than 24 hours.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// `IncorrectKeyMaterialException`: imported material is not the material
    /// this key had before (or not valid material for its key spec).
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// `DryRunOperationException`: a `DryRun` request that would have
    /// succeeded.
    #[error("{0}")]
    DryRunOperation(String),
    /// `SerializationException`: the request body is not the JSON shape the
    /// operation takes (a field of the wrong type, bad base64).
    #[error("{0}")]
    Serialization(String),
    /// `UnknownOperationException`: no such KMS operation.
    #[error("{0}")]
    UnknownOperation(String),
    /// `KMSInternalException`: the KMS itself is broken or misconfigured
    /// (corrupt or tampered key store, wrong root key, bad permissions).
    #[error("{0}")]
    Internal(String),
    /// `KMSInternalException` caused by a file-system step (the message
    /// names the step, the path and the OS error).
    #[error(transparent)]
    Storage(#[from] FsError),
}

impl KmsError {
    /// The AWS exception name, as sent in the `__type` field of the JSON
    /// error response.
    pub fn aws_type(&self) -> &'static str {
        match self {
            KmsError::NotFound(_) => "NotFoundException",
            KmsError::Disabled(_) => "DisabledException",
            KmsError::InvalidState(_) => "KMSInvalidStateException",
            KmsError::InvalidCiphertext(_) => "InvalidCiphertextException",
            KmsError::IncorrectKey(_) => "IncorrectKeyException",
            KmsError::Validation(_) => "ValidationException",
            KmsError::AlreadyExists(_) => "AlreadyExistsException",
            KmsError::AccessDenied(_) => "AccessDeniedException",
            KmsError::NotAuthorized(_) => "NotAuthorizedException",
            KmsError::InvalidKeyUsage(_) => "InvalidKeyUsageException",
            KmsError::LimitExceeded(_) => "LimitExceededException",
            KmsError::UnsupportedOperation(_) => "UnsupportedOperationException",
            KmsError::InvalidArn(_) => "InvalidArnException",
            KmsError::InvalidAliasName(_) => "InvalidAliasNameException",
            KmsError::InvalidMarker(_) => "InvalidMarkerException",
            KmsError::InvalidGrantToken(_) => "InvalidGrantTokenException",
            KmsError::InvalidGrantId(_) => "InvalidGrantIdException",
            KmsError::KeyUnavailable(_) => "KeyUnavailableException",
            KmsError::InvalidSignature(_) => "KMSInvalidSignatureException",
            KmsError::InvalidMac(_) => "KMSInvalidMacException",
            KmsError::Tag(_) => "TagException",
            KmsError::MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            KmsError::InvalidImportToken(_) => "InvalidImportTokenException",
            KmsError::ExpiredImportToken(_) => "ExpiredImportTokenException",
            KmsError::IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            KmsError::DryRunOperation(_) => "DryRunOperationException",
            KmsError::Serialization(_) => "SerializationException",
            KmsError::UnknownOperation(_) => "UnknownOperationException",
            KmsError::Internal(_) | KmsError::Storage(_) => "KMSInternalException",
        }
    }

    /// True for failures of the KMS itself rather than of the request
    /// (the HTTP edge may want to log these and hide paths from clients).
    pub fn is_internal(&self) -> bool {
        matches!(self, KmsError::Internal(_) | KmsError::Storage(_))
    }

    /// No key with this id or ARN in `region`.
    pub fn key_not_found(key: &str, region: &str) -> KmsError {
        KmsError::NotFound(format!(
            "key '{key}' does not exist in region {region}; list the keys with \
             `cryptvol kms list-keys --region {region}`"
        ))
    }

    /// No alias with this name in `region`.
    pub fn alias_not_found(alias_name: &str, region: &str) -> KmsError {
        KmsError::NotFound(format!(
            "alias '{alias_name}' does not exist in region {region}; create it with \
             `cryptvol kms create-alias --alias-name {alias_name} --target-key-id <key-id>` \
             or list aliases with `cryptvol kms list-aliases --region {region}`"
        ))
    }

    /// A key ARN or alias ARN names another region than the one served.
    pub fn wrong_region(what: &str, its_region: &str, this_region: &str) -> KmsError {
        KmsError::NotFound(format!(
            "'{what}' belongs to region {its_region}, but this KMS serves region {this_region}; \
             a key can only be used in its own region: rerun with `--region {its_region}`, \
             or copy the data into {this_region} with a re-encrypting copy"
        ))
    }

    /// A key ARN or alias ARN names another account.
    pub fn wrong_account(what: &str, its_account: &str, this_account: &str) -> KmsError {
        KmsError::NotFound(format!(
            "'{what}' belongs to account {its_account}, but this KMS holds the keys of \
             account {this_account}; use a key of account {this_account}"
        ))
    }

    /// The key is disabled.
    pub fn key_disabled(key_id: &str) -> KmsError {
        KmsError::Disabled(format!(
            "key {key_id} is disabled; enable it with `cryptvol kms enable-key --key-id {key_id}`"
        ))
    }

    /// The key is scheduled for deletion.
    pub fn key_pending_deletion(key_id: &str) -> KmsError {
        KmsError::InvalidState(format!(
            "key {key_id} is pending deletion; cancel the deletion with \
             `cryptvol kms cancel-key-deletion --key-id {key_id}` and then enable it with \
             `cryptvol kms enable-key --key-id {key_id}`"
        ))
    }

    /// The key has no usable key material.
    pub fn key_pending_import(key_id: &str) -> KmsError {
        KmsError::InvalidState(format!(
            "key {key_id} has no key material (state PendingImport); import its material with \
             `cryptvol kms import-key-material --key-id {key_id} …`"
        ))
    }

    /// Any other state that refuses the operation.
    pub fn key_in_state(key_id: &str, state: &str, operation: &str) -> KmsError {
        KmsError::InvalidState(format!(
            "key {key_id} is in state {state}, which does not allow {operation}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_type_is_the_exception_name() {
        assert_eq!(KmsError::key_disabled("k").aws_type(), "DisabledException");
        assert_eq!(
            KmsError::key_pending_deletion("k").aws_type(),
            "KMSInvalidStateException"
        );
        assert_eq!(
            KmsError::Internal("x".into()).aws_type(),
            "KMSInternalException"
        );
        let fs = FsError::new(
            "read",
            std::path::Path::new("/x"),
            std::io::ErrorKind::NotFound.into(),
        );
        let e = KmsError::from(fs);
        assert_eq!(e.aws_type(), "KMSInternalException");
        assert!(e.is_internal());
    }

    #[test]
    fn messages_name_the_key_and_the_fix() {
        let m = KmsError::key_disabled("1234abcd-12ab-34cd-56ef-1234567890ab").to_string();
        assert_eq!(
            m,
            "key 1234abcd-12ab-34cd-56ef-1234567890ab is disabled; enable it with \
             `cryptvol kms enable-key --key-id 1234abcd-12ab-34cd-56ef-1234567890ab`"
        );
        let m = KmsError::wrong_region(
            "arn:aws:kms:us-west-2:111122223333:key/k",
            "us-west-2",
            "us-east-1",
        )
        .to_string();
        assert!(
            m.contains("us-west-2") && m.contains("us-east-1") && m.contains("--region us-west-2")
        );
    }
}
