//! TODO(kms-ops): delete this file (and `mod shim` / `use shim::CallShim`
//! in `mod.rs`) once `LocalKms::call` from `kms::ops` is compiled in.
//! Until then it maps the few operations the `KeyService` trait has onto
//! the JSON entry point, so `cryptvol kms` builds and its basics run. An
//! inherent `LocalKms::call` takes precedence over this trait method, so
//! the real one is used as soon as it exists.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::kms::service::{Caller, CreateKeyRequest, KeyService};
use crate::kms::{parse_encryption_context, KmsError, LocalKms};

pub trait CallShim {
    fn call(&self, caller: &Caller, operation: &str, request: Value) -> Result<Value, KmsError>;
}

fn s<'a>(req: &'a Value, f: &str) -> Option<&'a str> {
    req.get(f).and_then(Value::as_str)
}

fn key_id(req: &Value) -> Result<&str, KmsError> {
    s(req, "KeyId").ok_or_else(|| KmsError::Validation("KeyId is required".into()))
}

fn context(req: &Value) -> Result<crate::kms::EncryptionContext, KmsError> {
    match req.get("EncryptionContext") {
        Some(v) => parse_encryption_context(&v.to_string()),
        None => Ok(Default::default()),
    }
}

fn b64(req: &Value, f: &str) -> Result<Vec<u8>, KmsError> {
    STANDARD
        .decode(s(req, f).unwrap_or_default())
        .map_err(|e| KmsError::Validation(format!("{f} is not base64: {e}")))
}

impl CallShim for LocalKms {
    fn call(&self, caller: &Caller, operation: &str, req: Value) -> Result<Value, KmsError> {
        let meta = |m| json!({ "KeyMetadata": m });
        match operation {
            "CreateKey" => {
                let r = CreateKeyRequest {
                    description: s(&req, "Description").unwrap_or_default().to_owned(),
                    key_spec: s(&req, "KeySpec").map(str::to_owned),
                };
                Ok(meta(self.create_key(caller, r)?))
            }
            "DescribeKey" => Ok(meta(self.describe_key(caller, key_id(&req)?)?)),
            "ListKeys" => {
                let keys: Vec<Value> = self
                    .list_keys(caller)?
                    .into_iter()
                    .map(|k| json!({"KeyId": k.key_id, "KeyArn": k.arn}))
                    .collect();
                Ok(json!({"Keys": keys, "Truncated": false}))
            }
            "CreateAlias" => {
                let alias = s(&req, "AliasName").unwrap_or_default();
                let target = s(&req, "TargetKeyId").unwrap_or_default();
                self.create_alias(caller, alias, target)?;
                Ok(json!({}))
            }
            "ListAliases" => Ok(json!({"Aliases": self.list_aliases(caller)?, "Truncated": false})),
            "GenerateDataKey" => {
                let n = req
                    .get("NumberOfBytes")
                    .and_then(Value::as_u64)
                    .unwrap_or(32);
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let r = self.generate_data_key(caller, key_id(&req)?, n, &context(&req)?)?;
                Ok(
                    json!({"KeyId": r.key_id, "CiphertextBlob": STANDARD.encode(&r.ciphertext_blob),
                          "Plaintext": STANDARD.encode(r.plaintext.expose())}),
                )
            }
            "Decrypt" => {
                let blob = b64(&req, "CiphertextBlob")?;
                let r = self.decrypt(caller, &blob, &context(&req)?, s(&req, "KeyId"))?;
                Ok(
                    json!({"KeyId": r.key_id, "Plaintext": STANDARD.encode(r.plaintext.expose()),
                          "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}),
                )
            }
            other => Err(KmsError::UnsupportedOperation(format!(
                "{other} is not available in this build yet"
            ))),
        }
    }
}
