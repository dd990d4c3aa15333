//! The key model as stored: key records, material versions, aliases, and the
//! AWS vocabularies (key state, spec, usage, origin, manager) as enums.
//!
//! Why enums with the AWS spellings: these are closed sets that AWS defines;
//! an enum makes "which states allow GenerateDataKey" a `match` the
//! compiler checks, and serde writes exactly the strings AWS uses, so
//! `keys.json` and the API speak the same words. The full KMS (issue 3)
//! uses the variants this minimum does not yet create (PendingDeletion,
//! HMAC and RSA specs, EXTERNAL origin, …).
//!
//! Key material is never held here in the clear: a [`MaterialVersion`]
//! carries it sealed under the root key ([`super::keystore`] seals and
//! opens it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::arn;
use super::service::{EncryptionContext, KeyMetadata};
use crate::crypto::aead::NONCE_LEN;

/// Declares an AWS string enum: serde and `as_str` use the AWS spelling.
macro_rules! aws_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $variant,)+
        }

        impl $name {
            /// Every value, in AWS documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The AWS spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $s,)+ }
            }

            /// Parses the AWS spelling (exact, case-sensitive, as AWS is).
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use aws_enum;

aws_enum! {
    /// `KeyState` (AWS "Key states of AWS KMS keys").
    KeyState {
        Creating = "Creating",
        Enabled = "Enabled",
        Disabled = "Disabled",
        PendingDeletion = "PendingDeletion",
        PendingImport = "PendingImport",
        PendingReplicaDeletion = "PendingReplicaDeletion",
        Unavailable = "Unavailable",
        Updating = "Updating",
    }
}

aws_enum! {
    /// `KeyManager`: who manages the key.
    KeyManager {
        Aws = "AWS",
        Customer = "CUSTOMER",
    }
}

aws_enum! {
    /// `KeySpec`. Only `SYMMETRIC_DEFAULT` can be created so far.
    KeySpec {
        SymmetricDefault = "SYMMETRIC_DEFAULT",
        Rsa2048 = "RSA_2048",
        Rsa3072 = "RSA_3072",
        Rsa4096 = "RSA_4096",
        EccNistP256 = "ECC_NIST_P256",
        EccNistP384 = "ECC_NIST_P384",
        EccNistP521 = "ECC_NIST_P521",
        EccSecgP256k1 = "ECC_SECG_P256K1",
        Hmac224 = "HMAC_224",
        Hmac256 = "HMAC_256",
        Hmac384 = "HMAC_384",
        Hmac512 = "HMAC_512",
        Sm2 = "SM2",
    }
}

aws_enum! {
    /// `KeyUsage`.
    KeyUsage {
        EncryptDecrypt = "ENCRYPT_DECRYPT",
        SignVerify = "SIGN_VERIFY",
        GenerateVerifyMac = "GENERATE_VERIFY_MAC",
        KeyAgreement = "KEY_AGREEMENT",
    }
}

aws_enum! {
    /// `Origin`: where the key material came from.
    Origin {
        AwsKms = "AWS_KMS",
        External = "EXTERNAL",
        AwsCloudhsm = "AWS_CLOUDHSM",
        ExternalKeyStore = "EXTERNAL_KEY_STORE",
    }
}

aws_enum! {
    /// `RotationType` of a material version made by rotation.
    RotationType {
        Automatic = "AUTOMATIC",
        OnDemand = "ON_DEMAND",
    }
}

aws_enum! {
    /// `ExpirationModel` of imported key material.
    ExpirationModel {
        KeyMaterialExpires = "KEY_MATERIAL_EXPIRES",
        KeyMaterialDoesNotExpire = "KEY_MATERIAL_DOES_NOT_EXPIRE",
    }
}

aws_enum! {
    /// `GrantOperation`: what a grant may allow.
    GrantOperation {
        Decrypt = "Decrypt",
        Encrypt = "Encrypt",
        GenerateDataKey = "GenerateDataKey",
        GenerateDataKeyWithoutPlaintext = "GenerateDataKeyWithoutPlaintext",
        ReEncryptFrom = "ReEncryptFrom",
        ReEncryptTo = "ReEncryptTo",
        Sign = "Sign",
        Verify = "Verify",
        GetPublicKey = "GetPublicKey",
        CreateGrant = "CreateGrant",
        RetireGrant = "RetireGrant",
        DescribeKey = "DescribeKey",
        GenerateDataKeyPair = "GenerateDataKeyPair",
        GenerateDataKeyPairWithoutPlaintext = "GenerateDataKeyPairWithoutPlaintext",
        GenerateMac = "GenerateMac",
        VerifyMac = "VerifyMac",
        DeriveSharedSecret = "DeriveSharedSecret",
    }
}

/// Bytes sealed with AES-256-GCM under the root key; base64 in JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedBytes {
    #[serde(with = "b64_array")]
    pub nonce: [u8; NONCE_LEN],
    /// Ciphertext followed by the GCM tag.
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

/// One version of a key's material. Versions count up from 1; the newest
/// encrypts, all of them decrypt (rotation appends, never replaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaterialVersion {
    pub version: u32,
    /// Seconds since the Unix epoch.
    pub creation_date: u64,
    /// The material, sealed under the root key with AAD binding key id and
    /// version. SYMMETRIC_DEFAULT: 32 bytes; HMAC: the raw key; RSA and ECC:
    /// the PKCS #8 DER private key.
    pub sealed: SealedBytes,
    /// How this version came to be, for versions made by rotation (the
    /// original material has none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation_type: Option<RotationType>,
}

/// Automatic rotation settings of a key (`EnableKeyRotation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationConfig {
    pub enabled: bool,
    /// Days between automatic rotations, 90..=2560.
    pub period_days: u32,
    /// When automatic rotation next runs (seconds since the epoch), while
    /// enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_rotation: Option<u64>,
}

/// What the KMS remembers about imported (EXTERNAL) key material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportRecord {
    /// HMAC of the first material imported, under a root-derived key: lets
    /// a re-import be checked for "the same material" without keeping it.
    #[serde(with = "b64")]
    pub fingerprint: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration_model: Option<ExpirationModel>,
    /// When the imported material expires (seconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<u64>,
}

/// Grant constraints, in AWS's shape (`GrantConstraints`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct GrantConstraints {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_subset: Option<EncryptionContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_context_equals: Option<EncryptionContext>,
}

/// A grant on a key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantRecord {
    /// 64 lowercase hex digits, as AWS grant ids are.
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub creation_date: u64,
    pub grantee_principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retiring_principal: Option<String>,
    /// `arn:aws:iam::<account>:root` of the account that created it.
    pub issuing_account: String,
    pub operations: Vec<GrantOperation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<GrantConstraints>,
}

/// A KMS key as stored in `keys.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub key_id: String,
    /// Seconds since the Unix epoch.
    pub creation_date: u64,
    pub description: String,
    pub key_state: KeyState,
    pub key_manager: KeyManager,
    pub key_spec: KeySpec,
    pub key_usage: KeyUsage,
    pub origin: Origin,
    /// Oldest first; the last entry is the current material.
    pub material: Vec<MaterialVersion>,
    /// Set exactly while the key is PendingDeletion: when it is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_date: Option<u64>,
    /// The key policy document; `None` means the default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<GrantRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationConfig>,
    /// SPKI DER public key of RSA and ECC keys (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "b64_opt")]
    pub public_key: Option<Vec<u8>>,
    /// Imported material bookkeeping (EXTERNAL origin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub import: Option<ImportRecord>,
    /// For multi-region keys: the region of the primary key (equal to the
    /// store's own region for the primary itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_region_primary: Option<String>,
}

impl KeyRecord {
    /// The material that new encryptions use.
    pub fn current_material(&self) -> Option<&MaterialVersion> {
        self.material.last()
    }

    /// The material of `version`, if the key still has it.
    pub fn material_version(&self, version: u32) -> Option<&MaterialVersion> {
        self.material.iter().find(|m| m.version == version)
    }

    /// `arn:aws:kms:<region>:<account>:key/<key-id>`.
    pub fn arn(&self, region: &str, account: &str) -> String {
        arn::key_arn(region, account, &self.key_id)
    }

    /// A new record with the given identity and no optional settings.
    pub fn new(
        key_id: String,
        creation_date: u64,
        spec: KeySpec,
        usage: KeyUsage,
        origin: Origin,
        manager: KeyManager,
    ) -> KeyRecord {
        KeyRecord {
            key_id,
            creation_date,
            description: String::new(),
            key_state: KeyState::Enabled,
            key_manager: manager,
            key_spec: spec,
            key_usage: usage,
            origin,
            material: Vec::new(),
            deletion_date: None,
            policy: None,
            tags: BTreeMap::new(),
            grants: Vec::new(),
            rotation: None,
            public_key: None,
            import: None,
            multi_region_primary: None,
        }
    }

    /// The AWS `KeyMetadata` view of this key (without the replica list of
    /// a multi-region key, which lives in other regions' stores).
    pub fn metadata(&self, region: &str, account: &str) -> KeyMetadata {
        let algorithms = |v: Vec<&'static str>| {
            (!v.is_empty()).then(|| v.into_iter().map(str::to_owned).collect())
        };
        let (enc, sig, mac) = super::asym::algorithms_for(self.key_spec, self.key_usage);
        KeyMetadata {
            key_id: self.key_id.clone(),
            arn: self.arn(region, account),
            aws_account_id: account.to_owned(),
            creation_date: self.creation_date,
            description: self.description.clone(),
            enabled: self.key_state == KeyState::Enabled,
            key_state: self.key_state.as_str().to_owned(),
            key_manager: self.key_manager.as_str().to_owned(),
            key_spec: self.key_spec.as_str().to_owned(),
            key_usage: self.key_usage.as_str().to_owned(),
            origin: self.origin.as_str().to_owned(),
            customer_master_key_spec: self.key_spec.as_str().to_owned(),
            deletion_date: self.deletion_date,
            valid_to: self.import.as_ref().and_then(|i| i.valid_to),
            expiration_model: (self.origin == Origin::External).then(|| {
                self.import
                    .as_ref()
                    .and_then(|i| i.expiration_model)
                    .unwrap_or(ExpirationModel::KeyMaterialDoesNotExpire)
                    .as_str()
                    .to_owned()
            }),
            encryption_algorithms: algorithms(enc),
            signing_algorithms: algorithms(sig),
            mac_algorithms: algorithms(mac),
            multi_region: self.multi_region_primary.is_some(),
            multi_region_configuration: None,
        }
    }

    /// True for multi-region keys whose primary lives in another region.
    pub fn is_replica(&self, region: &str) -> bool {
        self.multi_region_primary
            .as_deref()
            .is_some_and(|p| p != region)
    }
}

/// An alias as stored; the map key is the alias name (`alias/…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub target_key_id: String,
    /// Seconds since the Unix epoch.
    pub creation_date: u64,
    /// When UpdateAlias last repointed it (absent: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date: Option<u64>,
}

/// serde helpers: `Vec<u8>` as a base64 string.
pub(crate) mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// serde helpers: `Option<Vec<u8>>` as an optional base64 string.
pub(crate) mod b64_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => super::b64::serialize(b, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        #[derive(Deserialize)]
        struct W(#[serde(with = "super::b64")] Vec<u8>);
        Ok(Option::<W>::deserialize(d)?.map(|w| w.0))
    }
}

/// serde helpers: `[u8; N]` as a base64 string of exactly N bytes.
pub(crate) mod b64_array {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer, const N: usize>(
        bytes: &[u8; N],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        super::b64::serialize(bytes, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let v = super::b64::deserialize(d)?;
        let len = v.len();
        v.try_into()
            .map_err(|_| serde::de::Error::custom(format_args!("expected {N} bytes, found {len}")))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn enums_use_aws_spellings() {
        assert_eq!(
            serde_json::to_string(&KeyState::PendingDeletion).unwrap(),
            "\"PendingDeletion\""
        );
        assert_eq!(serde_json::to_string(&KeyManager::Aws).unwrap(), "\"AWS\"");
        assert_eq!(
            KeySpec::parse("SYMMETRIC_DEFAULT"),
            Some(KeySpec::SymmetricDefault)
        );
        assert_eq!(KeySpec::parse("symmetric_default"), None);
        for s in KeySpec::ALL {
            assert_eq!(KeySpec::parse(s.as_str()), Some(*s));
        }
        assert_eq!(Origin::AwsKms.to_string(), "AWS_KMS");
    }

    /// Key stores written before keys had policies, grants, rotation… must
    /// keep their MAC: a record with none of those serializes exactly as
    /// the old format did.
    #[test]
    fn new_optional_fields_are_absent_when_unset() {
        let key = KeyRecord::new(
            "k".into(),
            1,
            KeySpec::SymmetricDefault,
            KeyUsage::EncryptDecrypt,
            Origin::AwsKms,
            KeyManager::Customer,
        );
        let json = serde_json::to_value(&key).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            fields,
            vec![
                "creation_date",
                "description",
                "key_id",
                "key_manager",
                "key_spec",
                "key_state",
                "key_usage",
                "material",
                "origin"
            ]
        );
        let back: KeyRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, key);
    }

    #[test]
    fn sealed_bytes_round_trip_as_base64() {
        let s = SealedBytes {
            nonce: [1; NONCE_LEN],
            ciphertext: vec![2, 3],
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"{"nonce":"AQEBAQEBAQEBAQEB","ciphertext":"AgM="}"#);
        assert_eq!(serde_json::from_str::<SealedBytes>(&json).unwrap(), s);
        assert!(
            serde_json::from_str::<SealedBytes>(r#"{"nonce":"AQE=","ciphertext":""}"#).is_err()
        );
    }
}
