//! Attach like EBS: a host that serves a volume through a KMS unwraps the
//! volume's data key under a grant it creates for itself, and retires the
//! grant on detach.
//!
//! AWS EBS does this on every attach ("How Amazon EBS uses AWS KMS"): it
//! calls CreateGrant for the volume's key, limited to Decrypt and
//! constrained to the volume's encryption context, decrypts the data key
//! with that grant, keeps the key in memory while the volume is attached,
//! and retires the grant at detach. The consequences cryptvol keeps:
//!
//! - a principal that may not create that grant (by key policy or by a
//!   grant of its own that includes CreateGrant) cannot attach, and the
//!   error names the permission, the principal and the key;
//! - disabling the key, or revoking the host's access, stops new attaches;
//!   volumes already attached keep their in-memory key until detached;
//! - the grant names exactly one volume: its `EncryptionContextEquals`
//!   constraint is `{"aws:ebs:id": <volume id>}`.
//!
//! The grant is for the caller itself: its ARN comes from the KMS endpoint
//! (STS GetCallerIdentity), so the host needs no configuration beyond its
//! credentials. The grant is created with the host as retiring principal
//! too, so the host can always retire it.

use serde_json::json;

use super::super::error::KmsError;
use super::super::service::{
    AliasListEntry, Caller, CreateKeyRequest, DecryptResponse, EncryptionContext,
    GenerateDataKeyResponse, KeyMetadata, KeyService,
};

/// The encryption-context key EBS binds a volume's data key to.
pub const EBS_CONTEXT_KEY: &str = "aws:ebs:id";

/// A grant a host holds for one attached volume. `Debug` hides the token
/// (a grant token is a bearer credential for the grant).
pub struct AttachGrant {
    pub key_arn: String,
    pub grant_id: String,
    pub volume_id: String,
    grant_token: String,
}

impl std::fmt::Debug for AttachGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachGrant")
            .field("key_arn", &self.key_arn)
            .field("grant_id", &self.grant_id)
            .field("volume_id", &self.volume_id)
            .finish_non_exhaustive()
    }
}

/// The grant name of a volume's attach grant.
pub fn grant_name(volume_id: &str) -> String {
    format!("cryptvol-attach-{volume_id}")
}

impl AttachGrant {
    /// CreateGrant on `key_arn` for the caller itself: Decrypt only, with
    /// `EncryptionContextEquals {"aws:ebs:id": volume_id}`.
    pub fn create(
        kms: &dyn KeyService,
        caller: &Caller,
        key_arn: &str,
        volume_id: &str,
    ) -> Result<AttachGrant, KmsError> {
        let me = caller.principal_arn.as_str();
        let req = json!({
            "KeyId": key_arn,
            "GranteePrincipal": me,
            "RetiringPrincipal": me,
            "Operations": ["Decrypt"],
            "Constraints": {"EncryptionContextEquals": {EBS_CONTEXT_KEY: volume_id}},
            "Name": grant_name(volume_id),
        });
        let resp = kms
            .call_json(caller, "CreateGrant", req)
            .map_err(|e| match e {
                KmsError::AccessDenied(m) => KmsError::AccessDenied(format!(
                "{me} may not attach volume {volume_id}: attaching needs kms:CreateGrant on key \
                 {key_arn} (for a Decrypt grant to itself, as EBS does), and the KMS refused it: \
                 {m}. Allow kms:CreateGrant for {me} in the key policy, or give it a grant: \
                 `aws kms create-grant --key-id {key_arn} --grantee-principal {me} --operations \
                 Decrypt CreateGrant RetireGrant`"
            )),
                other => other,
            })?;
        let grant_id = resp["GrantId"].as_str().unwrap_or_default().to_owned();
        let grant_token = resp["GrantToken"].as_str().unwrap_or_default().to_owned();
        if grant_id.is_empty() || grant_token.is_empty() {
            return Err(KmsError::Internal(format!(
                "the KMS answered CreateGrant on key {key_arn} without GrantId and GrantToken"
            )));
        }
        tracing::info!(
            volume_id,
            key = key_arn,
            grant_id,
            grantee = me,
            "created attach grant"
        );
        Ok(AttachGrant {
            key_arn: key_arn.to_owned(),
            grant_id,
            volume_id: volume_id.to_owned(),
            grant_token,
        })
    }

    /// A view of `kms` whose Decrypt passes this grant's token, so the
    /// grant works at once (grants are eventually consistent in AWS).
    pub fn key_service<'a>(&'a self, kms: &'a dyn KeyService) -> WithGrant<'a> {
        WithGrant {
            inner: kms,
            grant: self,
        }
    }

    /// RetireGrant (at detach).
    pub fn retire(&self, kms: &dyn KeyService, caller: &Caller) -> Result<(), KmsError> {
        kms.call_json(
            caller,
            "RetireGrant",
            json!({"KeyId": self.key_arn, "GrantId": self.grant_id}),
        )?;
        tracing::info!(volume_id = %self.volume_id, grant_id = %self.grant_id, "retired attach grant");
        Ok(())
    }
}

/// A [`KeyService`] that decrypts with an attach grant's token.
pub struct WithGrant<'a> {
    inner: &'a dyn KeyService,
    grant: &'a AttachGrant,
}

impl std::fmt::Debug for WithGrant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithGrant")
            .field("grant", self.grant)
            .finish_non_exhaustive()
    }
}

impl KeyService for WithGrant<'_> {
    fn region(&self) -> &str {
        self.inner.region()
    }
    fn create_key(&self, caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        self.inner.create_key(caller, req)
    }
    fn describe_key(&self, caller: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError> {
        self.inner.describe_key(caller, key_id)
    }
    fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyMetadata>, KmsError> {
        self.inner.list_keys(caller)
    }
    fn create_alias(&self, caller: &Caller, alias: &str, target: &str) -> Result<(), KmsError> {
        self.inner.create_alias(caller, alias, target)
    }
    fn list_aliases(&self, caller: &Caller) -> Result<Vec<AliasListEntry>, KmsError> {
        self.inner.list_aliases(caller)
    }
    fn generate_data_key(
        &self,
        caller: &Caller,
        key_id: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        self.inner
            .generate_data_key(caller, key_id, number_of_bytes, context)
    }
    fn decrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, KmsError> {
        use base64::Engine as _;
        let b64 = &base64::engine::general_purpose::STANDARD;
        let mut req = json!({
            "CiphertextBlob": b64.encode(ciphertext_blob),
            "GrantTokens": [self.grant.grant_token],
        });
        if !context.is_empty() {
            req["EncryptionContext"] = json!(context);
        }
        if let Some(k) = key_id {
            req["KeyId"] = json!(k);
        }
        let mut resp = self.inner.call_json(caller, "Decrypt", req)?;
        let key_id = resp["KeyId"].as_str().unwrap_or_default().to_owned();
        let plaintext = resp["Plaintext"]
            .as_str()
            .and_then(|s| b64.decode(s).ok())
            .map(crate::crypto::SecretBytes::new);
        if let Some(serde_json::Value::String(s)) = resp.get_mut("Plaintext") {
            zeroize::Zeroize::zeroize(s);
        }
        let plaintext = plaintext.ok_or_else(|| {
            KmsError::Internal("the KMS answered Decrypt without a valid Plaintext".into())
        })?;
        Ok(DecryptResponse { key_id, plaintext })
    }
    fn call_json(
        &self,
        caller: &Caller,
        operation: &str,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, KmsError> {
        self.inner.call_json(caller, operation, request)
    }
}
