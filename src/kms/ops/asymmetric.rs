//! Operations of asymmetric and HMAC keys: GenerateDataKeyPair(+
//! WithoutPlaintext), Sign, Verify, GenerateMac, VerifyMac, GetPublicKey.
//! The cryptography itself is [`crate::kms::asym`].

use serde::{Deserialize, Serialize};

use super::authorize::{self, Extra};
use super::crypto::{check_symmetric, check_usage, current_material, encrypt_with};
use super::json::{b64, check_len, secret_b64};
use super::keys::{parse_enum, parse_key_spec};
use super::OpCtx;
use crate::crypto::SecretBytes;
use crate::kms::asym::{self, EncryptionAlgorithm, MacAlgorithm, MessageType, SigningAlgorithm};
use crate::kms::context::{self, EncryptionContext};
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, LocalKms};
use crate::kms::model::{KeyRecord, KeySpec, KeyUsage};

/// Sign/Verify/GenerateMac `Message` range (AWS).
pub const MESSAGE_BYTES: std::ops::RangeInclusive<usize> = 1..=4096;

/// Resolve → authorize `action` → state check; the key, cloned.
fn usable_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    key_id: &str,
    action: &str,
    ec: Option<&EncryptionContext>,
) -> Result<KeyRecord, KmsError> {
    let (state, id) = kms.resolve(key_id)?;
    let key = key_in(&state, &id)?;
    let extra = Extra {
        encryption_context: ec,
        ..Extra::default()
    };
    authorize::key_action(kms, ctx, key, action, extra)?;
    ctx.check_state(kms, key)?;
    Ok(key.clone())
}

fn asym_error(key: &KeyRecord, e: asym::AsymError) -> KmsError {
    match e {
        asym::AsymError::WrongAlgorithm { .. } => {
            KmsError::InvalidKeyUsage(format!("key {}: {e}", key.key_id))
        }
        asym::AsymError::BadDigestLen { .. } | asym::AsymError::PlaintextTooLong { .. } => {
            KmsError::Validation(e.to_string())
        }
        other => KmsError::Internal(format!("key {}: {other}", key.key_id)),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairRequest {
    pub key_id: String,
    pub key_pair_spec: String,
    pub encryption_context: Option<EncryptionContext>,
    pub recipient: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairResponse {
    #[serde(with = "b64")]
    pub private_key_ciphertext_blob: Vec<u8>,
    #[serde(with = "secret_b64")]
    pub private_key_plaintext: SecretBytes,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    pub key_id: String,
    pub key_pair_spec: KeySpec,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateDataKeyPairWithoutPlaintextResponse {
    #[serde(with = "b64")]
    pub private_key_ciphertext_blob: Vec<u8>,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    pub key_id: String,
    pub key_pair_spec: KeySpec,
}

fn data_key_pair(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyPairRequest,
    action: &str,
) -> Result<GenerateDataKeyPairResponse, KmsError> {
    if req.recipient.is_some() {
        return Err(KmsError::UnsupportedOperation(
            "Recipient (Nitro Enclaves attestation) is not supported by cryptvol's KMS".into(),
        ));
    }
    let spec = parse_key_spec("KeyPairSpec", &req.key_pair_spec)?;
    if !asym::is_asymmetric(spec) {
        return Err(KmsError::Validation(format!(
            "KeyPairSpec {spec} is not a key pair spec; use RSA_2048, RSA_3072, RSA_4096, \
             ECC_NIST_P256 or ECC_NIST_P384"
        )));
    }
    if asym::valid_usages(spec).is_empty() {
        return Err(KmsError::UnsupportedOperation(format!(
            "KeyPairSpec {spec} is not supported by cryptvol's KMS"
        )));
    }
    let ec = req.encryption_context.unwrap_or_default();
    context::validate(&ec)?;
    ctx.encryption_context = Some(ec.clone());
    let key = usable_key(kms, ctx, &req.key_id, action, Some(&ec))?;
    check_symmetric(&key, ctx.op.name)?;
    ctx.dry_run_stop()?;
    let internal =
        |e: asym::AsymError| KmsError::Internal(format!("cannot make a {spec} key pair: {e}"));
    let private = asym::generate_private_key(spec).map_err(internal)?;
    let public_key = asym::public_key_der(spec, &private).map_err(internal)?;
    let blob = encrypt_with(
        kms,
        &key,
        EncryptionAlgorithm::SymmetricDefault,
        private.expose(),
        &ec,
    )?;
    Ok(GenerateDataKeyPairResponse {
        private_key_ciphertext_blob: blob,
        private_key_plaintext: private,
        public_key,
        key_id: kms.arn_of(&key),
        key_pair_spec: spec,
    })
}

pub fn generate_data_key_pair(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyPairRequest,
) -> Result<GenerateDataKeyPairResponse, KmsError> {
    data_key_pair(kms, ctx, req, "kms:GenerateDataKeyPair")
}

pub fn generate_data_key_pair_without_plaintext(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateDataKeyPairRequest,
) -> Result<GenerateDataKeyPairWithoutPlaintextResponse, KmsError> {
    let out = data_key_pair(kms, ctx, req, "kms:GenerateDataKeyPairWithoutPlaintext")?;
    Ok(GenerateDataKeyPairWithoutPlaintextResponse {
        private_key_ciphertext_blob: out.private_key_ciphertext_blob,
        public_key: out.public_key,
        key_id: out.key_id,
        key_pair_spec: out.key_pair_spec,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignRequest {
    pub key_id: String,
    #[serde(with = "b64")]
    pub message: Vec<u8>,
    pub message_type: Option<String>,
    pub signing_algorithm: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignResponse {
    pub key_id: String,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    pub signing_algorithm: SigningAlgorithm,
}

fn signing_params(
    message: &[u8],
    message_type: Option<&str>,
    alg: &str,
) -> Result<(MessageType, SigningAlgorithm), KmsError> {
    check_len("Message", message.len(), MESSAGE_BYTES)?;
    let mt = match message_type {
        None => MessageType::Raw,
        Some(m) => parse_enum(
            "MessageType",
            m,
            MessageType::parse,
            MessageType::ALL,
            MessageType::as_str,
        )?,
    };
    let alg = parse_enum(
        "SigningAlgorithm",
        alg,
        SigningAlgorithm::parse,
        SigningAlgorithm::ALL,
        SigningAlgorithm::as_str,
    )?;
    Ok((mt, alg))
}

pub fn sign(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: SignRequest,
) -> Result<SignResponse, KmsError> {
    let (mt, alg) = signing_params(
        &req.message,
        req.message_type.as_deref(),
        &req.signing_algorithm,
    )?;
    let key = usable_key(kms, ctx, &req.key_id, "kms:Sign", None)?;
    check_usage(&key, KeyUsage::SignVerify, "Sign")?;
    ctx.dry_run_stop()?;
    let (_, private) = current_material(kms, &key)?;
    let signature = asym::sign(key.key_spec, &private, alg, &req.message, mt)
        .map_err(|e| asym_error(&key, e))?;
    Ok(SignResponse {
        key_id: kms.arn_of(&key),
        signature,
        signing_algorithm: alg,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyRequest {
    pub key_id: String,
    #[serde(with = "b64")]
    pub message: Vec<u8>,
    pub message_type: Option<String>,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
    pub signing_algorithm: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyResponse {
    pub key_id: String,
    pub signature_valid: bool,
    pub signing_algorithm: SigningAlgorithm,
}

pub fn verify(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: VerifyRequest,
) -> Result<VerifyResponse, KmsError> {
    let (mt, alg) = signing_params(
        &req.message,
        req.message_type.as_deref(),
        &req.signing_algorithm,
    )?;
    check_len("Signature", req.signature.len(), 1..=6144)?;
    let key = usable_key(kms, ctx, &req.key_id, "kms:Verify", None)?;
    check_usage(&key, KeyUsage::SignVerify, "Verify")?;
    ctx.dry_run_stop()?;
    let public = key.public_key.as_deref().ok_or_else(|| {
        KmsError::Internal(format!("key {} has no stored public key", key.key_id))
    })?;
    let valid = asym::verify(key.key_spec, public, alg, &req.message, mt, &req.signature)
        .map_err(|e| asym_error(&key, e))?;
    if !valid {
        return Err(KmsError::InvalidSignature(format!(
            "the signature does not match the message under key {} with {alg}",
            key.key_id
        )));
    }
    Ok(VerifyResponse {
        key_id: kms.arn_of(&key),
        signature_valid: true,
        signing_algorithm: alg,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateMacRequest {
    pub key_id: String,
    #[serde(with = "b64")]
    pub message: Vec<u8>,
    pub mac_algorithm: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GenerateMacResponse {
    #[serde(with = "b64")]
    pub mac: Vec<u8>,
    pub mac_algorithm: MacAlgorithm,
    pub key_id: String,
}

/// Checks the message and algorithm, and returns the HMAC key (unsealed).
fn mac_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    key_id: &str,
    message: &[u8],
    alg: &str,
    action: &str,
) -> Result<(KeyRecord, MacAlgorithm, SecretBytes), KmsError> {
    check_len("Message", message.len(), MESSAGE_BYTES)?;
    let alg = parse_enum(
        "MacAlgorithm",
        alg,
        MacAlgorithm::parse,
        MacAlgorithm::ALL,
        MacAlgorithm::as_str,
    )?;
    let key = usable_key(kms, ctx, key_id, action, None)?;
    check_usage(&key, KeyUsage::GenerateVerifyMac, ctx.op.name)?;
    if !asym::mac_algorithms(key.key_spec, key.key_usage).contains(&alg) {
        return Err(KmsError::InvalidKeyUsage(format!(
            "key {} is a {} key; {alg} needs the matching HMAC key spec",
            key.key_id, key.key_spec
        )));
    }
    ctx.dry_run_stop()?;
    let (_, secret) = current_material(kms, &key)?;
    Ok((key, alg, secret))
}

pub fn generate_mac(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GenerateMacRequest,
) -> Result<GenerateMacResponse, KmsError> {
    let (key, alg, secret) = mac_key(
        kms,
        ctx,
        &req.key_id,
        &req.message,
        &req.mac_algorithm,
        "kms:GenerateMac",
    )?;
    Ok(GenerateMacResponse {
        mac: asym::hmac(alg, &secret, &req.message),
        mac_algorithm: alg,
        key_id: kms.arn_of(&key),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyMacRequest {
    pub key_id: String,
    #[serde(with = "b64")]
    pub message: Vec<u8>,
    pub mac_algorithm: String,
    #[serde(with = "b64")]
    pub mac: Vec<u8>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct VerifyMacResponse {
    pub key_id: String,
    pub mac_valid: bool,
    pub mac_algorithm: MacAlgorithm,
}

pub fn verify_mac(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: VerifyMacRequest,
) -> Result<VerifyMacResponse, KmsError> {
    let (key, alg, secret) = mac_key(
        kms,
        ctx,
        &req.key_id,
        &req.message,
        &req.mac_algorithm,
        "kms:VerifyMac",
    )?;
    if !asym::hmac_verify(alg, &secret, &req.message, &req.mac) {
        return Err(KmsError::InvalidMac(format!(
            "the MAC does not match the message under key {} with {alg}",
            key.key_id
        )));
    }
    Ok(VerifyMacResponse {
        key_id: kms.arn_of(&key),
        mac_valid: true,
        mac_algorithm: alg,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPublicKeyRequest {
    pub key_id: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetPublicKeyResponse {
    pub key_id: String,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    pub customer_master_key_spec: KeySpec,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub encryption_algorithms: Vec<EncryptionAlgorithm>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signing_algorithms: Vec<SigningAlgorithm>,
}

pub fn get_public_key(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GetPublicKeyRequest,
) -> Result<GetPublicKeyResponse, KmsError> {
    let key = usable_key(kms, ctx, &req.key_id, "kms:GetPublicKey", None)?;
    let Some(public_key) = key.public_key.clone() else {
        return Err(KmsError::UnsupportedOperation(format!(
            "key {} is a {} key, which has no public key; GetPublicKey works on RSA and ECC keys",
            key.key_id, key.key_spec
        )));
    };
    Ok(GetPublicKeyResponse {
        key_id: kms.arn_of(&key),
        public_key,
        customer_master_key_spec: key.key_spec,
        key_spec: key.key_spec,
        key_usage: key.key_usage,
        encryption_algorithms: asym::encryption_algorithms(key.key_spec, key.key_usage).to_vec(),
        signing_algorithms: asym::signing_algorithms(key.key_spec, key.key_usage).to_vec(),
    })
}

#[cfg(test)]
mod tests;
