//! Behaviour of the embedded KMS, through the `KeyService` trait.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use super::*;
use crate::kms::blob::Blob;
use crate::kms::keystore::KEYS_FILE_NAME;
use crate::kms::model::{KeyState, MaterialVersion};

const EAST: &str = "us-east-1";
const WEST: &str = "us-west-2";

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn vol_ctx() -> EncryptionContext {
    ctx(&[("aws:ebs:id", "vol-0123456789abcdef0")])
}

fn open(dir: &Path, region: &str) -> LocalKms {
    LocalKms::open_with_root_key_file(dir, region, None).unwrap()
}

fn new_key(kms: &LocalKms) -> KeyMetadata {
    let req = CreateKeyRequest {
        description: "test key".into(),
        key_spec: None,
    };
    kms.create_key(&kms.root_caller(), req).unwrap()
}

fn err_type<T: std::fmt::Debug>(r: Result<T, KmsError>) -> (&'static str, String) {
    let e = r.unwrap_err();
    (e.aws_type(), e.to_string())
}

fn set_state(kms: &LocalKms, key_id: &str, state: KeyState) {
    kms.store
        .update(|s| {
            let key = s.keys.get_mut(key_id).unwrap();
            key.key_state = state;
            key.deletion_date = (state == KeyState::PendingDeletion).then_some(u64::MAX);
            Ok(())
        })
        .unwrap();
}

#[test]
fn local_kms_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<LocalKms>();
    let _: Arc<dyn KeyService> = Arc::new(open(tempfile::tempdir().unwrap().path(), EAST));
}

#[test]
fn create_describe_list_keys() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let md = new_key(&kms);
    assert_eq!(
        md.arn,
        format!("arn:aws:kms:{EAST}:{}:key/{}", kms.account_id(), md.key_id)
    );
    assert_eq!(
        (
            md.key_state.as_str(),
            md.key_manager.as_str(),
            md.key_spec.as_str()
        ),
        ("Enabled", "CUSTOMER", "SYMMETRIC_DEFAULT")
    );
    assert!(md.enabled);
    assert_eq!(
        (md.key_usage.as_str(), md.origin.as_str()),
        ("ENCRYPT_DECRYPT", "AWS_KMS")
    );
    assert_eq!(md.aws_account_id, kms.account_id());
    assert_eq!(
        kms.describe_key(&kms.root_caller(), &md.key_id).unwrap(),
        md
    );
    assert_eq!(kms.describe_key(&kms.root_caller(), &md.arn).unwrap(), md);
    assert_eq!(
        kms.describe_key(&kms.root_caller(), &md.key_id.to_uppercase())
            .unwrap(),
        md
    );
    let md2 = new_key(&kms);
    let ids: Vec<String> = kms
        .list_keys(&kms.root_caller())
        .unwrap()
        .into_iter()
        .map(|k| k.key_id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&md.key_id) && ids.contains(&md2.key_id));
    assert_eq!(
        kms.root_caller().principal_arn,
        format!("arn:aws:iam::{}:root", kms.account_id())
    );
}

#[test]
fn create_key_validates_spec_and_description() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let req = |spec: &str| CreateKeyRequest {
        description: String::new(),
        key_spec: Some(spec.into()),
    };
    assert_eq!(
        err_type(kms.create_key(&c, req("SM2"))).0,
        "UnsupportedOperationException"
    );
    let (t, m) = err_type(kms.create_key(&c, req("AES_256")));
    assert_eq!(t, "ValidationException");
    assert!(m.contains("SYMMETRIC_DEFAULT"), "{m}");
    assert!(kms.create_key(&c, req("SYMMETRIC_DEFAULT")).is_ok());
    let long = CreateKeyRequest {
        description: "x".repeat(MAX_DESCRIPTION_LEN + 1),
        key_spec: None,
    };
    assert_eq!(err_type(kms.create_key(&c, long)).0, "ValidationException");
}

#[test]
fn data_key_round_trip_by_every_key_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let md = new_key(&kms);
    kms.create_alias(&c, "alias/vols", &md.key_id).unwrap();
    let alias_arn = format!("arn:aws:kms:{EAST}:{}:alias/vols", kms.account_id());
    for spelling in [
        md.key_id.as_str(),
        md.arn.as_str(),
        "alias/vols",
        alias_arn.as_str(),
    ] {
        let dk = kms.generate_data_key(&c, spelling, 64, &vol_ctx()).unwrap();
        assert_eq!(
            dk.key_id, md.arn,
            "response names the key ARN, not the alias"
        );
        assert_eq!(dk.plaintext.len(), 64);
        let out = kms
            .decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), None)
            .unwrap();
        assert_eq!(out.plaintext, dk.plaintext);
        assert_eq!(out.key_id, md.arn);
        let out = kms
            .decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), Some(spelling))
            .unwrap();
        assert_eq!(out.plaintext, dk.plaintext);
    }
}

#[test]
fn number_of_bytes_must_be_1_to_1024() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    for n in [1, 1024] {
        assert_eq!(
            kms.generate_data_key(&c, &id, n, &vol_ctx())
                .unwrap()
                .plaintext
                .len(),
            n
        );
    }
    for n in [0, 1025] {
        let (t, m) = err_type(kms.generate_data_key(&c, &id, n, &vol_ctx()));
        assert_eq!(t, "ValidationException");
        assert!(m.contains(&n.to_string()), "{m}");
    }
}

#[test]
fn wrong_encryption_context_is_invalid_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    let dk = kms
        .generate_data_key(&c, &id, 64, &ctx(&[("a", "bc")]))
        .unwrap();
    for wrong in [
        ctx(&[("ab", "c")]),
        ctx(&[]),
        ctx(&[("a", "bc"), ("x", "y")]),
        ctx(&[("a", "bC")]),
    ] {
        let (t, m) = err_type(kms.decrypt(&c, &dk.ciphertext_blob, &wrong, None));
        assert_eq!(t, "InvalidCiphertextException", "{wrong:?}");
        assert!(m.contains("encryption context") && m.contains(&id), "{m}");
    }
    assert!(kms
        .decrypt(&c, &dk.ciphertext_blob, &ctx(&[("a", "bc")]), None)
        .is_ok());
}

#[test]
fn flipping_any_blob_byte_is_invalid_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    let blob = kms
        .generate_data_key(&c, &id, 64, &vol_ctx())
        .unwrap()
        .ciphertext_blob;
    for i in 0..blob.len() {
        let mut b = blob.clone();
        b[i] ^= 0x01;
        let (t, m) = err_type(kms.decrypt(&c, &b, &vol_ctx(), None));
        assert_eq!(t, "InvalidCiphertextException", "byte {i}: {m}");
    }
    let mut longer = blob.clone();
    longer.push(0);
    assert_eq!(
        err_type(kms.decrypt(&c, &longer, &vol_ctx(), None)).0,
        "InvalidCiphertextException"
    );
    assert_eq!(
        err_type(kms.decrypt(&c, &blob[..blob.len() - 1], &vol_ctx(), None)).0,
        "InvalidCiphertextException"
    );
    assert_eq!(
        err_type(kms.decrypt(&c, &[], &vol_ctx(), None)).0,
        "ValidationException"
    );
    assert_eq!(
        err_type(kms.decrypt(&c, &vec![1; 6145], &vol_ctx(), None)).0,
        "ValidationException"
    );
}

#[test]
fn decrypt_with_another_key_id_is_incorrect_key() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let (a, b) = (new_key(&kms), new_key(&kms));
    let dk = kms
        .generate_data_key(&c, &a.key_id, 64, &vol_ctx())
        .unwrap();
    let (t, m) = err_type(kms.decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), Some(&b.arn)));
    assert_eq!(t, "IncorrectKeyException");
    assert!(m.contains(&a.key_id) && m.contains(&b.key_id), "{m}");
    let (t, _) = err_type(kms.decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), Some("alias/nope")));
    assert_eq!(t, "NotFoundException");
}

#[test]
fn aws_managed_ebs_key_is_created_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    assert!(kms.list_keys(&c).unwrap().is_empty());
    let aliases = kms.list_aliases(&c).unwrap();
    let ebs = aliases
        .iter()
        .find(|a| a.alias_name == "alias/aws/ebs")
        .unwrap();
    assert_eq!(
        ebs.target_key_id, None,
        "listed before it exists, without a target, as AWS does"
    );
    assert_eq!(
        ebs.alias_arn,
        format!("arn:aws:kms:{EAST}:{}:alias/aws/ebs", kms.account_id())
    );

    let dk = kms
        .generate_data_key(&c, "alias/aws/ebs", 64, &vol_ctx())
        .unwrap();
    let md = kms.describe_key(&c, "alias/aws/ebs").unwrap();
    assert_eq!(dk.key_id, md.arn);
    assert_eq!(md.key_manager, "AWS");
    assert_eq!(
        md.description,
        "Default key that protects my EBS volumes when no other key is defined"
    );
    assert_eq!(md.key_state, "Enabled");
    // Created once: later uses, and other instances, see the same key.
    let again = open(dir.path(), EAST);
    assert_eq!(again.describe_key(&c, "alias/aws/ebs").unwrap(), md);
    assert_eq!(kms.list_keys(&c).unwrap(), vec![md.clone()]);
    let ebs = kms
        .list_aliases(&c)
        .unwrap()
        .into_iter()
        .find(|a| a.alias_name == "alias/aws/ebs")
        .unwrap();
    assert_eq!(ebs.target_key_id, Some(md.key_id.clone()));
    assert_eq!(
        kms.decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), None)
            .unwrap()
            .plaintext,
        dk.plaintext
    );
}

#[test]
fn describe_key_also_creates_the_managed_key_but_not_unknown_aws_aliases() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    assert_eq!(
        kms.describe_key(&c, "alias/aws/ebs").unwrap().key_manager,
        "AWS"
    );
    let (t, m) = err_type(kms.describe_key(&c, "alias/aws/nonesuch"));
    assert_eq!(t, "NotFoundException");
    assert!(m.contains("alias/aws/nonesuch") && m.contains(EAST), "{m}");
}

#[test]
fn concurrent_first_use_creates_one_managed_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    open(&path, EAST);
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let kms = open(&path, EAST);
                kms.describe_key(&kms.root_caller(), "alias/aws/ebs")
                    .unwrap()
                    .key_id
            })
        })
        .collect();
    let ids: std::collections::BTreeSet<String> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(ids.len(), 1);
    let kms = open(&path, EAST);
    assert_eq!(kms.list_keys(&kms.root_caller()).unwrap().len(), 1);
}

#[test]
fn concurrent_writers_lose_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    open(&path, EAST);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let kms = open(&path, EAST);
                for i in 0..5 {
                    let id = new_key(&kms).key_id;
                    kms.create_alias(&kms.root_caller(), &format!("alias/t{t}-{i}"), &id)
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let kms = open(&path, EAST);
    assert_eq!(kms.list_keys(&kms.root_caller()).unwrap().len(), 20);
    let customer = kms
        .list_aliases(&kms.root_caller())
        .unwrap()
        .into_iter()
        .filter(|a| !a.alias_name.starts_with("alias/aws/"));
    assert_eq!(customer.count(), 20);
}

#[test]
fn create_alias_rules() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let md = new_key(&kms);
    kms.create_alias(&c, "alias/app/data_1", &md.arn).unwrap();
    assert_eq!(
        kms.describe_key(&c, "alias/app/data_1").unwrap().key_id,
        md.key_id
    );

    let cases: [(&str, &str, &str); 6] = [
        (
            "alias/aws/mine",
            md.key_id.as_str(),
            "NotAuthorizedException",
        ),
        ("no-prefix", md.key_id.as_str(), "ValidationException"),
        ("alias/has space", md.key_id.as_str(), "ValidationException"),
        (
            "alias/app/data_1",
            md.key_id.as_str(),
            "AlreadyExistsException",
        ),
        ("alias/other", "alias/app/data_1", "ValidationException"),
        (
            "alias/other",
            "11111111-2222-3333-4444-555555555555",
            "NotFoundException",
        ),
    ];
    for (alias, target, want) in cases {
        let (t, m) = err_type(kms.create_alias(&c, alias, target));
        assert_eq!(t, want, "{alias} -> {target}: {m}");
    }
    let ebs = kms.describe_key(&c, "alias/aws/ebs").unwrap();
    assert_eq!(
        err_type(kms.create_alias(&c, "alias/mine", &ebs.key_id)).0,
        "AccessDeniedException"
    );
    let names: Vec<String> = kms
        .list_aliases(&c)
        .unwrap()
        .into_iter()
        .map(|a| a.alias_name)
        .collect();
    assert_eq!(names, vec!["alias/app/data_1", "alias/aws/ebs"]);
}

#[test]
fn alias_limit_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    kms.store
        .update(|s| {
            for i in 0..MAX_ALIASES_PER_KEY {
                s.aliases.insert(
                    format!("alias/a{i}"),
                    AliasRecord {
                        target_key_id: id.clone(),
                        creation_date: 0,
                        last_updated_date: None,
                    },
                );
            }
            Ok(())
        })
        .unwrap();
    assert_eq!(
        err_type(kms.create_alias(&c, "alias/one-too-many", &id)).0,
        "LimitExceededException"
    );
}

#[test]
fn key_states_refuse_crypto_with_aws_exceptions() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    let blob = kms
        .generate_data_key(&c, &id, 64, &vol_ctx())
        .unwrap()
        .ciphertext_blob;

    set_state(&kms, &id, KeyState::Disabled);
    let (t, m) = err_type(kms.generate_data_key(&c, &id, 64, &vol_ctx()));
    assert_eq!(t, "DisabledException");
    assert!(
        m.contains(&format!("cryptvol kms enable-key --key-id {id}")),
        "{m}"
    );
    assert_eq!(
        err_type(kms.decrypt(&c, &blob, &vol_ctx(), None)).0,
        "DisabledException"
    );
    assert!(!kms.describe_key(&c, &id).unwrap().enabled);

    set_state(&kms, &id, KeyState::PendingDeletion);
    assert_eq!(
        err_type(kms.generate_data_key(&c, &id, 64, &vol_ctx())).0,
        "KMSInvalidStateException"
    );
    assert_eq!(
        err_type(kms.decrypt(&c, &blob, &vol_ctx(), None)).0,
        "KMSInvalidStateException"
    );
    assert_eq!(
        err_type(kms.create_alias(&c, "alias/late", &id)).0,
        "KMSInvalidStateException"
    );

    set_state(&kms, &id, KeyState::Enabled);
    assert!(kms.decrypt(&c, &blob, &vol_ctx(), None).is_ok());
}

#[test]
fn non_symmetric_key_is_invalid_key_usage() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    kms.store
        .update(|s| {
            s.keys.get_mut(&id).unwrap().key_usage = KeyUsage::SignVerify;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        err_type(kms.generate_data_key(&c, &id, 64, &vol_ctx())).0,
        "InvalidKeyUsageException"
    );
}

#[test]
fn old_material_versions_keep_decrypting_and_new_blobs_use_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    let old = kms.generate_data_key(&c, &id, 64, &vol_ctx()).unwrap();
    // What rotation will do: append material version 2.
    let sealed = kms.store.seal_material(&id, 2, &SecretBytes::random(32));
    kms.store
        .update(|s| {
            s.keys.get_mut(&id).unwrap().material.push(MaterialVersion {
                version: 2,
                creation_date: 0,
                sealed,
                rotation_type: None,
            });
            Ok(())
        })
        .unwrap();
    let new = kms.generate_data_key(&c, &id, 64, &vol_ctx()).unwrap();
    assert_eq!(
        Blob::decode(&old.ciphertext_blob)
            .unwrap()
            .material_version(),
        1
    );
    assert_eq!(
        Blob::decode(&new.ciphertext_blob)
            .unwrap()
            .material_version(),
        2
    );
    assert_eq!(
        kms.decrypt(&c, &old.ciphertext_blob, &vol_ctx(), None)
            .unwrap()
            .plaintext,
        old.plaintext
    );
    assert_eq!(
        kms.decrypt(&c, &new.ciphertext_blob, &vol_ctx(), None)
            .unwrap()
            .plaintext,
        new.plaintext
    );
}

#[test]
fn keys_and_blobs_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (md, dk, account) = {
        let kms = open(dir.path(), EAST);
        let md = new_key(&kms);
        kms.create_alias(&kms.root_caller(), "alias/keep", &md.key_id)
            .unwrap();
        let dk = kms
            .generate_data_key(&kms.root_caller(), "alias/keep", 64, &vol_ctx())
            .unwrap();
        (md, dk, kms.account_id().to_owned())
    };
    let kms = open(dir.path(), EAST);
    assert_eq!(kms.account_id(), account);
    assert_eq!(
        kms.describe_key(&kms.root_caller(), "alias/keep").unwrap(),
        md
    );
    let out = kms
        .decrypt(
            &kms.root_caller(),
            &dk.ciphertext_blob,
            &vol_ctx(),
            Some("alias/keep"),
        )
        .unwrap();
    assert_eq!(out.plaintext, dk.plaintext);
}

#[test]
fn tampered_key_material_in_keys_json_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let id = new_key(&kms).key_id;
    let path = dir
        .path()
        .join("regions")
        .join(EAST)
        .join("kms")
        .join(KEYS_FILE_NAME);
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ct = &mut json["state"]["keys"][&id]["material"][0]["sealed"]["ciphertext"];
    let mut bytes = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        ct.as_str().unwrap(),
    )
    .unwrap();
    bytes[0] ^= 1;
    *ct = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &bytes).into();
    std::fs::write(&path, serde_json::to_vec_pretty(&json).unwrap()).unwrap();

    let (t, m) = err_type(kms.generate_data_key(&kms.root_caller(), &id, 64, &vol_ctx()));
    assert_eq!(t, "KMSInternalException");
    assert!(
        m.contains("keys.json") && m.contains("modified outside cryptvol"),
        "{m}"
    );
    let (t, _) = err_type(LocalKms::open_with_root_key_file(dir.path(), EAST, None));
    assert_eq!(t, "KMSInternalException");
}

#[test]
fn root_key_file_from_outside_the_data_dir_and_its_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rk = dir.path().join("elsewhere.key");
    std::fs::write(&rk, [0x42u8; 32]).unwrap();
    std::fs::set_permissions(&rk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (t, m) = err_type(LocalKms::open_with_root_key_file(&data, EAST, Some(&rk)));
    assert_eq!(t, "KMSInternalException");
    assert!(
        m.contains("chmod 600") && m.contains("elsewhere.key"),
        "{m}"
    );

    std::fs::set_permissions(&rk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let kms = LocalKms::open_with_root_key_file(&data, EAST, Some(&rk)).unwrap();
    let id = new_key(&kms).key_id;
    assert!(
        !data.join("root.key").exists(),
        "no root key is generated when one is given"
    );
    // The default root key (generated now) is not the one the store was sealed with.
    let (t, m) = err_type(LocalKms::open_with_root_key_file(&data, EAST, None));
    assert_eq!(t, "KMSInternalException");
    assert!(m.contains("different root key"), "{m}");
    let kms = LocalKms::open_with_root_key_file(&data, EAST, Some(&rk)).unwrap();
    assert!(kms.describe_key(&kms.root_caller(), &id).is_ok());
}

#[test]
fn keys_are_confined_to_their_region() {
    let dir = tempfile::tempdir().unwrap();
    let east = open(dir.path(), EAST);
    let west = open(dir.path(), WEST);
    assert_eq!(
        east.account_id(),
        west.account_id(),
        "one account per data dir"
    );
    let md = new_key(&east);
    let dk = east
        .generate_data_key(&east.root_caller(), &md.key_id, 64, &vol_ctx())
        .unwrap();
    let c = west.root_caller();
    for named in [md.arn.as_str(), md.key_id.as_str()] {
        let (t, m) = err_type(west.describe_key(&c, named));
        assert_eq!(t, "NotFoundException");
        assert!(m.contains(EAST) && m.contains(WEST), "{m}");
    }
    let (t, m) = err_type(west.decrypt(&c, &dk.ciphertext_blob, &vol_ctx(), None));
    assert_eq!(t, "NotFoundException");
    assert!(m.contains(EAST) && m.contains(WEST), "{m}");
    let (t, m) = err_type(west.generate_data_key(&c, &md.arn, 64, &vol_ctx()));
    assert_eq!(t, "NotFoundException");
    assert!(m.contains(&format!("--region {EAST}")), "{m}");
    // Each region gets its own AWS managed key.
    let e = east
        .describe_key(&east.root_caller(), "alias/aws/ebs")
        .unwrap();
    let w = west.describe_key(&c, "alias/aws/ebs").unwrap();
    assert_ne!(e.key_id, w.key_id);
    assert!(w.arn.contains(WEST));
    assert_eq!(
        err_type(LocalKms::open_with_root_key_file(
            dir.path(),
            "../evil",
            None
        ))
        .0,
        "ValidationException"
    );
}

#[test]
fn other_accounts_are_denied() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let id = new_key(&kms).key_id;
    let stranger = Caller {
        principal_arn: "arn:aws:iam::999999999999:user/mallory".into(),
    };
    let (t, m) = err_type(kms.generate_data_key(&stranger, &id, 64, &vol_ctx()));
    assert_eq!(t, "AccessDeniedException");
    assert!(
        m.contains("mallory") && m.contains("kms:GenerateDataKey"),
        "{m}"
    );
    assert_eq!(
        err_type(kms.list_keys(&stranger)).0,
        "AccessDeniedException"
    );
    let other_account_arn = format!("arn:aws:kms:{EAST}:999999999999:key/{id}");
    assert_eq!(
        err_type(kms.describe_key(&kms.root_caller(), &other_account_arn)).0,
        "NotFoundException"
    );
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let dir = tempfile::tempdir().unwrap();
    let kms = open(dir.path(), EAST);
    let c = kms.root_caller();
    let id = new_key(&kms).key_id;
    let dk = kms.generate_data_key(&c, &id, 64, &vol_ctx()).unwrap();
    let debug = format!("{dk:?} {kms:?}");
    assert!(debug.contains("redacted"), "{debug}");
    let hex_key = hex::encode(dk.plaintext.expose());
    assert!(!debug.contains(&hex_key) && !debug.contains(&format!("{:?}", dk.plaintext.expose())));
    let err = kms
        .decrypt(&c, &dk.ciphertext_blob, &BTreeMap::new(), None)
        .unwrap_err();
    assert!(!format!("{err} {err:?}").contains(&hex_key));
}

#[test]
fn key_store_files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let kms = open(&data, EAST);
    new_key(&kms);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("root.key")), 0o600);
    assert_eq!(mode(&data.join("account.json")), 0o600);
    let kms_dir = data.join("regions").join(EAST).join("kms");
    assert_eq!(mode(&kms_dir), 0o700);
    assert_eq!(mode(&kms_dir.join(KEYS_FILE_NAME)), 0o600);
    // No key material in the clear: keys.json holds only sealed bytes.
    let text = std::fs::read_to_string(kms_dir.join(KEYS_FILE_NAME)).unwrap();
    assert!(text.contains("\"sealed\""));
}
