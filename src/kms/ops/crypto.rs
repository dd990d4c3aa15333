//! Encryption operations: Encrypt, Decrypt, ReEncrypt, GenerateDataKey,
//! GenerateDataKeyWithoutPlaintext, GenerateRandom.
//!
//! Symmetric keys produce cryptvol ciphertext blobs ([`crate::kms::blob`]:
//! they name key and material version, and bind the encryption context as
//! AAD). RSA ENCRYPT_DECRYPT keys produce raw RSAES-OAEP ciphertexts, as AWS
//! does; those cannot name their key, so Decrypt needs `KeyId` for them, and
//! they take no encryption context.

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::json::{b64, check_len, secret_b64};
use super::keys::parse_enum;
use super::OpCtx;
use crate::crypto::SecretBytes;
use crate::kms::arn;
use crate::kms::asym::{self, EncryptionAlgorithm};
use crate::kms::blob::{Blob, MAX_BLOB_LEN};
use crate::kms::context::{self, EncryptionContext};
use crate::kms::error::KmsError;
use crate::kms::keystore::{self, StoreState};
use crate::kms::local::{key_in, LocalKms, DATA_KEY_BYTES};
use crate::kms::model::{KeyRecord, KeySpec, KeyUsage, MaterialVersion};

/// Encrypt `Plaintext` range (AWS).
pub const PLAINTEXT_BYTES: std::ops::RangeInclusive<usize> = 1..=4096;
/// GenerateRandom `NumberOfBytes` range (AWS).
pub const RANDOM_BYTES: std::ops::RangeInclusive<usize> = 1..=1024;

/// The key must have `usage` (else `InvalidKeyUsageException`).
pub fn check_usage(key: &KeyRecord, usage: KeyUsage, op: &str) -> Result<(), KmsError> {
    if key.key_usage == usage {
        return Ok(());
    }
    Err(KmsError::InvalidKeyUsage(format!(
        "key {} has key usage {} (key spec {}); {op} needs a key with usage {usage}",
        key.key_id, key.key_usage, key.key_spec
    )))
}

/// The key must be a SYMMETRIC_DEFAULT ENCRYPT_DECRYPT key.
pub fn check_symmetric(key: &KeyRecord, op: &str) -> Result<(), KmsError> {
    check_usage(key, KeyUsage::EncryptDecrypt, op)?;
    if key.key_spec != KeySpec::SymmetricDefault {
        return Err(KmsError::InvalidKeyUsage(format!(
            "key {} has key spec {}; {op} needs a {} key",
            key.key_id,
            key.key_spec,
            KeySpec::SymmetricDefault
        )));
    }
    Ok(())
}

/// The newest material of `key`, unsealed.
pub fn current_material<'a>(
    kms: &LocalKms,
    key: &'a KeyRecord,
) -> Result<(&'a MaterialVersion, SecretBytes), KmsError> {
    let mv = key
        .current_material()
        .ok_or_else(|| KmsError::key_pending_import(&key.key_id))?;
    Ok((mv, kms.store().unseal_material(&key.key_id, mv)?))
}

fn parse_algorithm(s: Option<&str>) -> Result<EncryptionAlgorithm, KmsError> {
    match s {
        None => Ok(EncryptionAlgorithm::SymmetricDefault),
        Some(s) => parse_enum(
            "EncryptionAlgorithm",
            s,
            EncryptionAlgorithm::parse,
            EncryptionAlgorithm::ALL,
            EncryptionAlgorithm::as_str,
        ),
    }
}

fn check_algorithm(key: &KeyRecord, alg: EncryptionAlgorithm) -> Result<(), KmsError> {
    let algs = asym::encryption_algorithms(key.key_spec, key.key_usage);
    if algs.contains(&alg) {
        return Ok(());
    }
    let valid: Vec<&str> = algs.iter().map(|a| a.as_str()).collect();
    Err(KmsError::InvalidKeyUsage(format!(
        "key {} ({}) does not support EncryptionAlgorithm {alg}; use {}",
        key.key_id,
        key.key_spec,
        valid.join(" or ")
    )))
}

/// Encrypts `plaintext` under `key` (checked by the caller): a blob for
/// symmetric keys, RSAES-OAEP for RSA keys.
pub fn encrypt_with(
    kms: &LocalKms,
    key: &KeyRecord,
    alg: EncryptionAlgorithm,
    plaintext: &[u8],
    ec: &EncryptionContext,
) -> Result<Vec<u8>, KmsError> {
    check_usage(key, KeyUsage::EncryptDecrypt, "encryption")?;
    check_algorithm(key, alg)?;
    if alg != EncryptionAlgorithm::SymmetricDefault {
        if !ec.is_empty() {
            return Err(KmsError::Validation(format!(
                "EncryptionContext is not supported with {alg}: asymmetric keys take none"
            )));
        }
        let public = key.public_key.as_deref().ok_or_else(|| {
            KmsError::Internal(format!("key {} has no stored public key", key.key_id))
        })?;
        return asym::rsa_encrypt(key.key_spec, public, alg, plaintext)
            .map_err(|e| KmsError::Validation(e.to_string()));
    }
    let aad = context::canonical_encoding(ec)?;
    let (mv, material) = current_material(kms, key)?;
    let key_bytes = arn::key_id_to_bytes(&key.key_id).ok_or_else(|| {
        KmsError::Internal(format!(
            "BUG: stored key id {} has no blob form",
            key.key_id
        ))
    })?;
    Blob::seal(key_bytes, mv.version, &material, plaintext, &aad)
        .map(|b| b.to_bytes())
        .map_err(|e| KmsError::Internal(format!("BUG: sealing failed: {e}")))
}

fn describe_context(ctx: &EncryptionContext) -> String {
    if ctx.is_empty() {
        "no encryption context".to_owned()
    } else {
        format!("encryption context {}", context::format_cli(ctx))
    }
}

/// What a decryption found: the key and the plaintext.
pub struct Decrypted {
    pub key: KeyRecord,
    pub plaintext: SecretBytes,
    pub algorithm: EncryptionAlgorithm,
}

/// Authorize → check → decrypt a ciphertext (a blob, or an RSA ciphertext
/// when `key_id` names an RSA key). `action` is `kms:Decrypt` or
/// `kms:ReEncryptFrom`.
pub fn decrypt_any(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    ciphertext: &[u8],
    ec: &EncryptionContext,
    key_id: Option<&str>,
    alg: Option<&str>,
    action: &str,
) -> Result<Decrypted, KmsError> {
    check_len("CiphertextBlob", ciphertext.len(), 1..=MAX_BLOB_LEN)?;
    let aad = context::canonical_encoding(ec)?;
    let alg = parse_algorithm(alg)?;
    let (state, named) = match key_id {
        Some(k) => {
            let (state, id) = kms.resolve(k)?;
            (state, Some(id))
        }
        None => (kms.load()?, None),
    };
    let extra = Extra {
        encryption_context: Some(ec),
        ..Extra::default()
    };
    if alg != EncryptionAlgorithm::SymmetricDefault {
        let Some(id) = named else {
            return Err(KmsError::Validation(format!(
                "KeyId is required to decrypt with {alg}: an asymmetric ciphertext does not name \
                 its key"
            )));
        };
        let key = key_in(&state, &id)?;
        authorize::key_action(kms, ctx, key, action, extra)?;
        ctx.check_state(kms, key)?;
        check_usage(key, KeyUsage::EncryptDecrypt, ctx.op.name)?;
        check_algorithm(key, alg)?;
        ctx.dry_run_stop()?;
        let (_, private) = current_material(kms, key)?;
        let plaintext = asym::rsa_decrypt(key.key_spec, &private, alg, ciphertext)
            .map_err(|e| KmsError::InvalidCiphertext(format!("key {}: {e}", key.key_id)))?;
        return Ok(Decrypted {
            key: key.clone(),
            plaintext,
            algorithm: alg,
        });
    }
    if let Some(id) = &named {
        let key = key_in(&state, id)?;
        if key.key_spec != KeySpec::SymmetricDefault {
            check_algorithm(key, alg)?;
        }
    }
    let blob = Blob::decode(ciphertext).map_err(|e| KmsError::InvalidCiphertext(e.to_string()))?;
    let blob_key = blob_key(kms, &state, &blob)?;
    if let Some(named) = named.filter(|n| *n != blob_key.key_id) {
        return Err(KmsError::IncorrectKey(format!(
            "the ciphertext blob was encrypted under key {}, not under key {named} given as \
             KeyId; omit the key id or pass {}",
            blob_key.key_id, blob_key.key_id
        )));
    }
    authorize::key_action(kms, ctx, blob_key, action, extra)?;
    ctx.check_state(kms, blob_key)?;
    check_symmetric(blob_key, ctx.op.name)?;
    ctx.dry_run_stop()?;
    let version = blob.material_version();
    let mv = blob_key.material_version(version).ok_or_else(|| {
        let have: Vec<String> = blob_key
            .material
            .iter()
            .map(|m| m.version.to_string())
            .collect();
        KmsError::InvalidCiphertext(format!(
            "the ciphertext blob names material version {version} of key {}, which has versions \
             [{}]; the blob is corrupt",
            blob_key.key_id,
            have.join(", ")
        ))
    })?;
    let material = kms.store().unseal_material(&blob_key.key_id, mv)?;
    let plaintext = blob.open(&material, &aad).map_err(|_| {
        KmsError::InvalidCiphertext(format!(
            "cannot decrypt with key {}: the {} given differs from the one used to encrypt, or \
             the ciphertext blob was altered",
            blob_key.key_id,
            describe_context(ec)
        ))
    })?;
    Ok(Decrypted {
        key: blob_key.clone(),
        plaintext,
        algorithm: alg,
    })
}

/// The key a blob names, or why it is not in this region.
fn blob_key<'a>(
    kms: &LocalKms,
    state: &'a StoreState,
    blob: &Blob,
) -> Result<&'a KeyRecord, KmsError> {
    let spellings = arn::key_id_from_bytes(&blob.key_id_bytes());
    if let Some(k) = spellings.iter().find_map(|id| state.keys.get(id)) {
        return Ok(k);
    }
    let id = &spellings[0];
    let other = spellings
        .iter()
        .find_map(|s| keystore::find_key_in_other_region(kms.data_dir(), s, kms.region()));
    Err(match other {
        Some(r) => KmsError::wrong_region(
            &format!("key {id}, which made this ciphertext blob,"),
            &r,
            kms.region(),
        ),
        None => KmsError::InvalidCiphertext(format!(
            "the ciphertext blob names key {id}, which does not exist in region {}: the blob is \
             corrupt, was made by another KMS, or its key was deleted",
            kms.region()
        )),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptRequest {
    pub key_id: String,
    #[serde(with = "secret_b64")]
    pub plaintext: SecretBytes,
    pub encryption_context: Option<EncryptionContext>,
    pub encryption_algorithm: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EncryptResponse {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
    pub encryption_algorithm: EncryptionAlgorithm,
}

pub fn encrypt(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: EncryptRequest,
) -> Result<EncryptResponse, KmsError> {
    check_len("Plaintext", req.plaintext.len(), PLAINTEXT_BYTES)?;
    let ec = req.encryption_context.unwrap_or_default();
    context::validate(&ec)?;
    let alg = parse_algorithm(req.encryption_algorithm.as_deref())?;
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    ctx.encryption_context = Some(ec.clone());
    let extra = Extra {
        encryption_context: Some(&ec),
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, key, "kms:Encrypt", extra)?;
    ctx.check_state(kms, key)?;
    check_usage(key, KeyUsage::EncryptDecrypt, "Encrypt")?;
    check_algorithm(key, alg)?;
    ctx.dry_run_stop()?;
    Ok(EncryptResponse {
        ciphertext_blob: encrypt_with(kms, key, alg, req.plaintext.expose(), &ec)?,
        key_id: kms.arn_of(key),
        encryption_algorithm: alg,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptRequest {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    pub encryption_context: Option<EncryptionContext>,
    pub key_id: Option<String>,
    pub encryption_algorithm: Option<String>,
    pub recipient: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DecryptResponse {
    pub key_id: String,
    #[serde(with = "secret_b64")]
    pub plaintext: SecretBytes,
    pub encryption_algorithm: EncryptionAlgorithm,
}

fn no_recipient(r: &Option<serde_json::Value>) -> Result<(), KmsError> {
    if r.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Recipient (Nitro Enclaves attestation) is not supported by cryptvol's KMS".into(),
        ));
    }
    Ok(())
}

pub fn decrypt(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: DecryptRequest,
) -> Result<DecryptResponse, KmsError> {
    no_recipient(&req.recipient)?;
    let ec = req.encryption_context.unwrap_or_default();
    ctx.encryption_context = Some(ec.clone());
    let d = decrypt_any(
        kms,
        ctx,
        &req.ciphertext_blob,
        &ec,
        req.key_id.as_deref(),
        req.encryption_algorithm.as_deref(),
        "kms:Decrypt",
    )?;
    Ok(DecryptResponse {
        key_id: kms.arn_of(&d.key),
        plaintext: d.plaintext,
        encryption_algorithm: d.algorithm,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptRequest {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    pub source_encryption_context: Option<EncryptionContext>,
    pub source_key_id: Option<String>,
    pub destination_key_id: String,
    pub destination_encryption_context: Option<EncryptionContext>,
    pub source_encryption_algorithm: Option<String>,
    pub destination_encryption_algorithm: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReEncryptResponse {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    pub source_key_id: String,
    pub key_id: String,
    pub source_encryption_algorithm: EncryptionAlgorithm,
    pub destination_encryption_algorithm: EncryptionAlgorithm,
}

pub fn re_encrypt(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ReEncryptRequest,
) -> Result<ReEncryptResponse, KmsError> {
    let src_ec = req.source_encryption_context.unwrap_or_default();
    let dst_ec = req.destination_encryption_context.unwrap_or_default();
    context::validate(&dst_ec)?;
    let dst_alg = parse_algorithm(req.destination_encryption_algorithm.as_deref())?;
    let (state, dst_id) = kms.resolve(&req.destination_key_id)?;
    let dst = key_in(&state, &dst_id)?.clone();
    ctx.encryption_context = Some(src_ec.clone());
    // A dry run must pass the destination's checks too: stop after them.
    let dry_run = std::mem::replace(&mut ctx.dry_run, false);
    let d = decrypt_any(
        kms,
        ctx,
        &req.ciphertext_blob,
        &src_ec,
        req.source_key_id.as_deref(),
        req.source_encryption_algorithm.as_deref(),
        "kms:ReEncryptFrom",
    )?;
    ctx.dry_run = dry_run;
    let extra = Extra {
        encryption_context: Some(&dst_ec),
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, &dst, "kms:ReEncryptTo", extra)?;
    ctx.check_state(kms, &dst)?;
    check_usage(&dst, KeyUsage::EncryptDecrypt, "ReEncrypt")?;
    check_algorithm(&dst, dst_alg)?;
    ctx.dry_run_stop()?;
    Ok(ReEncryptResponse {
        ciphertext_blob: encrypt_with(kms, &dst, dst_alg, d.plaintext.expose(), &dst_ec)?,
        source_key_id: kms.arn_of(&d.key),
        key_id: kms.arn_of(&dst),
        source_encryption_algorithm: d.algorithm,
        destination_encryption_algorithm: dst_alg,
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyRequest {
    pub key_id: String,
    pub encryption_context: Option<EncryptionContext>,
    pub number_of_bytes: Option<i64>,
    pub key_spec: Option<String>,
    pub recipient: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyResponse {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    #[serde(with = "secret_b64")]
    pub plaintext: SecretBytes,
    pub key_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyWithoutPlaintextResponse {
    #[serde(with = "b64")]
    pub ciphertext_blob: Vec<u8>,
    pub key_id: String,
}

/// `NumberOfBytes` or `KeySpec` (AES_128/AES_256), exactly one.
fn data_key_len(number_of_bytes: Option<i64>, key_spec: Option<&str>) -> Result<usize, KmsError> {
    match (number_of_bytes, key_spec) {
        (Some(_), Some(_)) => Err(KmsError::Validation(
            "give either NumberOfBytes or KeySpec, not both".into(),
        )),
        (None, None) => Err(KmsError::Validation(
            "give NumberOfBytes (1 to 1024) or KeySpec (AES_256 or AES_128)".into(),
        )),
        (None, Some("AES_256")) => Ok(32),
        (None, Some("AES_128")) => Ok(16),
        (None, Some(other)) => Err(KmsError::Validation(format!(
            "KeySpec '{other}' is not valid; valid values: AES_256, AES_128"
        ))),
        (Some(n), None) => usize::try_from(n)
            .ok()
            .filter(|n| DATA_KEY_BYTES.contains(n))
            .ok_or_else(|| {
                KmsError::Validation(format!(
                    "NumberOfBytes is {n}; it must be between {} and {} (an XTS volume key is 64)",
                    DATA_KEY_BYTES.start(),
                    DATA_KEY_BYTES.end()
                ))
            }),
    }
}

/// GenerateDataKey and its WithoutPlaintext twin.
fn data_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyRequest,
    action: &str,
) -> Result<GenerateDataKeyResponse, KmsError> {
    no_recipient(&req.recipient)?;
    let len = data_key_len(req.number_of_bytes, req.key_spec.as_deref())?;
    let ec = req.encryption_context.unwrap_or_default();
    context::validate(&ec)?;
    ctx.encryption_context = Some(ec.clone());
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    let extra = Extra {
        encryption_context: Some(&ec),
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, key, action, extra)?;
    ctx.check_state(kms, key)?;
    check_symmetric(key, ctx.op.name)?;
    ctx.dry_run_stop()?;
    let plaintext = SecretBytes::random(len);
    let blob = encrypt_with(
        kms,
        key,
        EncryptionAlgorithm::SymmetricDefault,
        plaintext.expose(),
        &ec,
    )?;
    Ok(GenerateDataKeyResponse {
        ciphertext_blob: blob,
        plaintext,
        key_id: kms.arn_of(key),
    })
}

pub fn generate_data_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyRequest,
) -> Result<GenerateDataKeyResponse, KmsError> {
    data_key(kms, ctx, req, "kms:GenerateDataKey")
}

pub fn generate_data_key_without_plaintext(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyRequest,
) -> Result<GenerateDataKeyWithoutPlaintextResponse, KmsError> {
    let out = data_key(kms, ctx, req, "kms:GenerateDataKeyWithoutPlaintext")?;
    Ok(GenerateDataKeyWithoutPlaintextResponse {
        ciphertext_blob: out.ciphertext_blob,
        key_id: out.key_id,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomRequest {
    pub number_of_bytes: Option<i64>,
    pub custom_key_store_id: Option<String>,
    pub recipient: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateRandomResponse {
    #[serde(with = "secret_b64")]
    pub plaintext: SecretBytes,
}

pub fn generate_random(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateRandomRequest,
) -> Result<GenerateRandomResponse, KmsError> {
    no_recipient(&req.recipient)?;
    if req.custom_key_store_id.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "CustomKeyStoreId is not supported by cryptvol's KMS".into(),
        ));
    }
    let n = req
        .number_of_bytes
        .ok_or_else(|| KmsError::Validation("NumberOfBytes is required (1 to 1024)".into()))?;
    let len = usize::try_from(n)
        .ok()
        .filter(|n| RANDOM_BYTES.contains(n))
        .ok_or_else(|| {
            KmsError::Validation(format!(
                "NumberOfBytes is {n}; it must be between 1 and 1024"
            ))
        })?;
    authorize::account_action(kms, ctx, "kms:GenerateRandom")?;
    Ok(GenerateRandomResponse {
        plaintext: SecretBytes::random(len),
    })
}

#[cfg(test)]
mod tests;
