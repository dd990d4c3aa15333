//! Imported key material: GetParametersForImport, ImportKeyMaterial,
//! DeleteImportedKeyMaterial.
//!
//! A key created with `Origin: EXTERNAL` starts in PendingImport. The
//! caller asks for an RSA wrapping public key and an import token (valid
//! 24 hours), wraps its material with RSAES-OAEP, and imports it; the key
//! becomes Enabled. DeleteImportedKeyMaterial (or the material's
//! `ValidTo`) returns it to PendingImport, and only the *same* material may
//! be imported again (checked against a keyed fingerprint, so the KMS never
//! keeps deleted material).
//!
//! The import token carries its own wrapping private key, sealed under a
//! root-derived key and bound to region and key id, so issuing parameters
//! writes nothing to the key store:
//!
//! ```text
//! "CVI" 0x01 | nonce (12) | AES-256-GCM( alg u8 | spec u8 | valid_to u64 LE | PKCS #8 DER )
//!                             AAD = "cryptvol/kms/import-token/v1" 0x00 region 0x00 key id
//! ```

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use super::json::{b64, Empty};
use super::keys::{modify_key, parse_enum, sealed_version, DAY};
use super::OpCtx;
use crate::crypto::aead::{self, NONCE_LEN};
use crate::crypto::SecretBytes;
use crate::kms::asym::{self, EncryptionAlgorithm};
use crate::kms::error::KmsError;
use crate::kms::local::{key_in, LocalKms};
use crate::kms::model::{ExpirationModel, ImportRecord, KeyRecord, KeySpec, KeyState, Origin};

/// Import parameters are valid for 24 hours (AWS).
pub const IMPORT_TOKEN_LIFETIME: u64 = DAY;
/// `ValidTo` may be at most 365 days ahead (AWS).
pub const MAX_VALID_TO_AHEAD: u64 = 365 * DAY;
const TOKEN_MAGIC: &[u8; 4] = b"CVI\x01";
const TOKEN_PURPOSE: &[u8] = b"cryptvol/kms/import-token/v1";
const FINGERPRINT_PURPOSE: &[u8] = b"cryptvol/kms/material-fingerprint/v1";

fn require_external(key: &KeyRecord, op: &str) -> Result<(), KmsError> {
    if key.origin == Origin::External {
        return Ok(());
    }
    Err(KmsError::UnsupportedOperation(format!(
        "key {} has origin {}; {op} works only on keys created with Origin EXTERNAL",
        key.key_id, key.origin
    )))
}

fn token_aad(kms: &LocalKms, key_id: &str) -> Vec<u8> {
    [
        TOKEN_PURPOSE,
        b"\0",
        kms.region().as_bytes(),
        b"\0",
        key_id.as_bytes(),
    ]
    .concat()
}

/// Acceptable imported material lengths for a key spec (AWS); `None` for
/// specs whose material cannot be imported here.
fn material_lengths(spec: KeySpec) -> Option<std::ops::RangeInclusive<usize>> {
    match spec {
        KeySpec::SymmetricDefault => Some(32..=32),
        KeySpec::Hmac224 => Some(28..=64),
        KeySpec::Hmac256 => Some(32..=64),
        KeySpec::Hmac384 => Some(48..=128),
        KeySpec::Hmac512 => Some(64..=128),
        _ => None,
    }
}

fn fingerprint(kms: &LocalKms, key_id: &str, material: &SecretBytes) -> Vec<u8> {
    let key = kms.store().derive(FINGERPRINT_PURPOSE);
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key.expose())
        .expect("BUG: HMAC accepts any key length");
    mac.update(key_id.as_bytes());
    mac.update(&[0]);
    mac.update(material.expose());
    mac.finalize().into_bytes().to_vec()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetParametersForImportRequest {
    pub key_id: String,
    pub wrapping_algorithm: String,
    pub wrapping_key_spec: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct GetParametersForImportResponse {
    pub key_id: String,
    #[serde(with = "b64")]
    pub import_token: Vec<u8>,
    #[serde(with = "b64")]
    pub public_key: Vec<u8>,
    pub parameters_valid_to: u64,
}

pub fn get_parameters_for_import(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: GetParametersForImportRequest,
) -> Result<GetParametersForImportResponse, KmsError> {
    let alg = match req.wrapping_algorithm.as_str() {
        "RSAES_OAEP_SHA_1" => EncryptionAlgorithm::RsaesOaepSha1,
        "RSAES_OAEP_SHA_256" => EncryptionAlgorithm::RsaesOaepSha256,
        "RSAES_PKCS1_V1_5" | "RSA_AES_KEY_WRAP_SHA_1" | "RSA_AES_KEY_WRAP_SHA_256" | "SM2PKE" => {
            return Err(KmsError::UnsupportedOperation(format!(
                "WrappingAlgorithm {} is not supported by cryptvol's KMS; use RSAES_OAEP_SHA_256 \
                 or RSAES_OAEP_SHA_1",
                req.wrapping_algorithm
            )))
        }
        other => {
            return Err(KmsError::Validation(format!(
            "WrappingAlgorithm '{other}' is not valid; use RSAES_OAEP_SHA_256 or RSAES_OAEP_SHA_1"
        )))
        }
    };
    let spec = match req.wrapping_key_spec.as_str() {
        "RSA_2048" => KeySpec::Rsa2048,
        "RSA_3072" => KeySpec::Rsa3072,
        "RSA_4096" => KeySpec::Rsa4096,
        other => {
            return Err(KmsError::Validation(format!(
                "WrappingKeySpec '{other}' is not valid; use RSA_2048, RSA_3072 or RSA_4096"
            )))
        }
    };
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    super::authorize::key_action(
        kms,
        ctx,
        key,
        "kms:GetParametersForImport",
        Default::default(),
    )?;
    ctx.check_state(kms, key)?;
    require_external(key, "GetParametersForImport")?;
    let internal =
        |e: asym::AsymError| KmsError::Internal(format!("cannot make a wrapping key: {e}"));
    let private = asym::generate_private_key(spec).map_err(internal)?;
    let public_key = asym::public_key_der(spec, &private).map_err(internal)?;
    let valid_to = ctx.now + IMPORT_TOKEN_LIFETIME;
    let mut plain = Vec::with_capacity(10 + private.len());
    plain.push(u8::from(alg == EncryptionAlgorithm::RsaesOaepSha256));
    plain.push(match spec {
        KeySpec::Rsa2048 => 1,
        KeySpec::Rsa3072 => 2,
        _ => 3,
    });
    plain.extend_from_slice(&valid_to.to_le_bytes());
    plain.extend_from_slice(private.expose());
    let plain = SecretBytes::new(plain);
    let sealed = aead::seal(
        &kms.store().derive(TOKEN_PURPOSE),
        plain.expose(),
        &token_aad(kms, &id),
    );
    let mut token = TOKEN_MAGIC.to_vec();
    token.extend_from_slice(&sealed.nonce);
    token.extend_from_slice(&sealed.ciphertext);
    Ok(GetParametersForImportResponse {
        key_id: kms.arn_of(key),
        import_token: token,
        public_key,
        parameters_valid_to: valid_to,
    })
}

/// Opens an import token for `key_id`: the wrapping algorithm, key spec and
/// private key, if the token is genuine, for this key and not expired.
fn open_token(
    kms: &LocalKms,
    key_id: &str,
    token: &[u8],
    now: u64,
) -> Result<(EncryptionAlgorithm, KeySpec, SecretBytes), KmsError> {
    let bad = || {
        KmsError::InvalidImportToken(format!(
            "the import token was not issued for key {key_id} by this KMS (or was altered); get \
             a new one with `cryptvol kms get-parameters-for-import --key-id {key_id}`"
        ))
    };
    let rest = token.strip_prefix(TOKEN_MAGIC.as_slice()).ok_or_else(bad)?;
    if rest.len() < NONCE_LEN {
        return Err(bad());
    }
    let (nonce, ct) = rest.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| bad())?;
    let plain = aead::open(
        &kms.store().derive(TOKEN_PURPOSE),
        &nonce,
        ct,
        &token_aad(kms, key_id),
    )
    .map_err(|_| bad())?;
    let p = plain.expose();
    if p.len() < 10 {
        return Err(bad());
    }
    let alg = if p[0] == 1 {
        EncryptionAlgorithm::RsaesOaepSha256
    } else {
        EncryptionAlgorithm::RsaesOaepSha1
    };
    let spec = match p[1] {
        1 => KeySpec::Rsa2048,
        2 => KeySpec::Rsa3072,
        _ => KeySpec::Rsa4096,
    };
    let mut t = [0u8; 8];
    t.copy_from_slice(&p[2..10]);
    let valid_to = u64::from_le_bytes(t);
    if now > valid_to {
        return Err(KmsError::ExpiredImportToken(format!(
            "the import token for key {key_id} expired (import parameters are valid for 24 \
             hours); get new ones with `cryptvol kms get-parameters-for-import --key-id {key_id}`"
        )));
    }
    Ok((alg, spec, SecretBytes::from_slice(&p[10..])))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportKeyMaterialRequest {
    pub key_id: String,
    #[serde(with = "b64")]
    pub import_token: Vec<u8>,
    #[serde(with = "b64")]
    pub encrypted_key_material: Vec<u8>,
    /// Epoch seconds (botocore may send a fraction).
    pub valid_to: Option<f64>,
    pub expiration_model: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImportKeyMaterialResponse {
    pub key_id: String,
}

pub fn import_key_material(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: ImportKeyMaterialRequest,
) -> Result<ImportKeyMaterialResponse, KmsError> {
    let model = match &req.expiration_model {
        Some(m) => Some(parse_enum(
            "ExpirationModel",
            m,
            ExpirationModel::parse,
            ExpirationModel::ALL,
            ExpirationModel::as_str,
        )?),
        None => None,
    };
    let valid_to = req.valid_to.map(|t| t.max(0.0) as u64);
    let model = match (model, valid_to) {
        (Some(ExpirationModel::KeyMaterialExpires) | None, Some(_)) => {
            ExpirationModel::KeyMaterialExpires
        }
        (Some(ExpirationModel::KeyMaterialExpires), None) => {
            return Err(KmsError::Validation(
                "ExpirationModel KEY_MATERIAL_EXPIRES needs ValidTo".into(),
            ))
        }
        (Some(ExpirationModel::KeyMaterialDoesNotExpire), Some(_)) => {
            return Err(KmsError::Validation(
                "ValidTo cannot be given with ExpirationModel KEY_MATERIAL_DOES_NOT_EXPIRE".into(),
            ))
        }
        (_, None) => ExpirationModel::KeyMaterialDoesNotExpire,
    };
    if let Some(t) = valid_to {
        if t <= ctx.now || t > ctx.now + MAX_VALID_TO_AHEAD {
            return Err(KmsError::Validation(format!(
                "ValidTo is {t}; it must be in the future and at most 365 days from now"
            )));
        }
    }
    let (state, id) = kms.resolve(&req.key_id)?;
    let key = key_in(&state, &id)?;
    super::authorize::key_action(kms, ctx, key, "kms:ImportKeyMaterial", Default::default())?;
    ctx.check_state(kms, key)?;
    require_external(key, "ImportKeyMaterial")?;
    let (alg, spec, wrapping) = open_token(kms, &id, &req.import_token, ctx.now)?;
    let material =
        asym::rsa_decrypt(spec, &wrapping, alg, &req.encrypted_key_material).map_err(|_| {
            KmsError::InvalidCiphertext(format!(
            "EncryptedKeyMaterial cannot be unwrapped with the wrapping key of this import token \
             ({alg}); wrap the material with the public key returned with the token"
        ))
        })?;
    let lens = material_lengths(key.key_spec).ok_or_else(|| {
        KmsError::UnsupportedOperation(format!(
            "importing {} key material is not supported by cryptvol's KMS",
            key.key_spec
        ))
    })?;
    if !lens.contains(&material.len()) {
        return Err(KmsError::IncorrectKeyMaterial(format!(
            "the imported material is {} bytes; a {} key takes {} to {} bytes",
            material.len(),
            key.key_spec,
            lens.start(),
            lens.end()
        )));
    }
    let print = fingerprint(kms, &id, &material);
    let now = ctx.now;
    modify_key(kms, ctx, &req.key_id, "kms:ImportKeyMaterial", |key, _| {
        require_external(key, "ImportKeyMaterial")?;
        if key.import.as_ref().is_some_and(|i| i.fingerprint != print) {
            return Err(KmsError::IncorrectKeyMaterial(format!(
                "key {} already had other key material; only the same material can be imported \
                 into it again (import new material into a new key instead)",
                key.key_id
            )));
        }
        key.material = vec![sealed_version(kms, &key.key_id, 1, &material, now)];
        key.import = Some(ImportRecord {
            fingerprint: print.clone(),
            expiration_model: Some(model),
            valid_to,
        });
        if key.key_state == KeyState::PendingImport {
            key.key_state = KeyState::Enabled;
        }
        Ok(())
    })?;
    Ok(ImportKeyMaterialResponse {
        key_id: kms.arn_of_id(&id),
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeleteImportedKeyMaterialRequest {
    pub key_id: String,
}

pub fn delete_imported_key_material(
    kms: &LocalKms,
    ctx: &mut OpCtx<'_>,
    req: DeleteImportedKeyMaterialRequest,
) -> Result<Empty, KmsError> {
    modify_key(
        kms,
        ctx,
        &req.key_id,
        "kms:DeleteImportedKeyMaterial",
        |key, _| {
            require_external(key, "DeleteImportedKeyMaterial")?;
            key.material.clear();
            if let Some(i) = key.import.as_mut() {
                i.valid_to = None;
            }
            if key.key_state != KeyState::PendingDeletion {
                key.key_state = KeyState::PendingImport;
            }
            Ok(Empty {})
        },
    )
}

#[cfg(test)]
mod tests;
