//! The `KeyService` trait: what the rest of cryptvol may ask of a KMS.
//!
//! Request and response types follow the AWS KMS JSON shapes (PascalCase
//! field names, blobs as bytes here and base64 on the wire) so the HTTP API
//! and a remote client can reuse them unchanged. The embedded
//! [`super::local::LocalKms`] implements this trait today; a remote client
//! speaking the AWS wire protocol slots in behind it later.

use std::collections::BTreeMap;

use super::error::KmsError;
use crate::crypto::SecretBytes;

/// Encryption context: string pairs bound to a ciphertext as AAD.
/// A `BTreeMap` so iteration order is canonical.
pub type EncryptionContext = BTreeMap<String, String>;

/// Who is calling. The embedded KMS used from the local CLI acts as the
/// account root; the KMS service sets the authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `arn:aws:iam::<account>:root` or `arn:aws:iam::<account>:user/<name>`.
    pub principal_arn: String,
}

impl Caller {
    /// The root principal of `account_id`: `arn:aws:iam::<account>:root`.
    pub fn account_root(account_id: &str) -> Caller {
        Caller {
            principal_arn: super::arn::root_principal(account_id),
        }
    }

    /// The account the principal belongs to, if its ARN is an IAM ARN.
    pub fn account_id(&self) -> Option<&str> {
        super::arn::principal_account(&self.principal_arn)
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateKeyRequest {
    pub description: String,
    /// Only `SYMMETRIC_DEFAULT` until the full KMS issue.
    pub key_spec: Option<String>,
}

/// AWS `KeyMetadata`, field for field (those cryptvol can have).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyMetadata {
    pub key_id: String,
    pub arn: String,
    #[serde(rename = "AWSAccountId")]
    pub aws_account_id: String,
    pub creation_date: u64,
    pub description: String,
    pub enabled: bool,
    pub key_state: String,
    pub key_manager: String,
    pub key_spec: String,
    pub key_usage: String,
    pub origin: String,
    /// Deprecated twin of `KeySpec` that AWS still returns.
    #[serde(default)]
    pub customer_master_key_spec: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_algorithms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_algorithms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_algorithms: Option<Vec<String>>,
    #[serde(default)]
    pub multi_region: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_region_configuration: Option<MultiRegionConfiguration>,
}

/// AWS `MultiRegionConfiguration`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiRegionConfiguration {
    /// `PRIMARY` or `REPLICA`.
    pub multi_region_key_type: String,
    pub primary_key: MultiRegionKey,
    pub replica_keys: Vec<MultiRegionKey>,
}

/// AWS `MultiRegionKey`: a key ARN and its region.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MultiRegionKey {
    pub arn: String,
    pub region: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AliasListEntry {
    pub alias_name: String,
    pub alias_arn: String,
    pub target_key_id: Option<String>,
}

#[derive(Debug)]
pub struct GenerateDataKeyResponse {
    /// ARN of the key that wrapped the data key (the key, not an alias).
    pub key_id: String,
    pub plaintext: SecretBytes,
    pub ciphertext_blob: Vec<u8>,
}

#[derive(Debug)]
pub struct DecryptResponse {
    /// ARN of the key that the blob names.
    pub key_id: String,
    pub plaintext: SecretBytes,
}

/// A key management service. `key_id` arguments accept a key id, key ARN,
/// alias name (`alias/…`) or alias ARN, as AWS does.
pub trait KeyService: Send + Sync {
    /// The region this service's keys live in.
    fn region(&self) -> &str;

    fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError>;
    fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError>;
    fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyMetadata>, KmsError>;
    fn create_alias(
        &self,
        caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError>;
    fn list_aliases(&self, caller: &Caller) -> Result<Vec<AliasListEntry>, KmsError>;

    /// GenerateDataKey with `NumberOfBytes = number_of_bytes` (1..=1024).
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, KmsError>;

    /// Decrypt. `key_id`, when given, must name the key the blob was made
    /// with (else `IncorrectKeyException`).
    fn decrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, KmsError>;

    /// Any KMS operation in its AWS JSON form (`operation` as in
    /// `X-Amz-Target: TrentService.<operation>`). The typed methods above
    /// cover what volumes need; this reaches everything else (ReEncrypt,
    /// CreateGrant, …) through the same operation table, locally or remotely.
    fn call_json(
        &self,
        caller: &Caller,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        let _ = (caller, request);
        Err(KmsError::UnsupportedOperation(format!(
            "{operation} is not available from this key service"
        )))
    }

    /// ReEncrypt: re-wraps a ciphertext blob under `destination_key_id`
    /// without the plaintext leaving the KMS. Returns (new blob, key ARN).
    fn re_encrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        source_context: &EncryptionContext,
        destination_key_id: &str,
        destination_context: &EncryptionContext,
    ) -> Result<(Vec<u8>, String), KmsError> {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let resp = self.call_json(
            caller,
            "ReEncrypt",
            serde_json::json!({
                "CiphertextBlob": b64.encode(ciphertext_blob),
                "SourceEncryptionContext": source_context,
                "DestinationKeyId": destination_key_id,
                "DestinationEncryptionContext": destination_context,
            }),
        )?;
        let blob = resp["CiphertextBlob"]
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .ok_or_else(|| KmsError::Internal("ReEncrypt response lacks CiphertextBlob".into()))?;
        let key = resp["KeyId"].as_str().unwrap_or_default().to_string();
        Ok((blob, key))
    }
}
