//! Shared by the KMS targets: a real `LocalKms` with a few keys in a
//! tmpfs data dir, and the HTTP protocol handler (`api::protocol::Api`) in
//! front of it with one known access key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cryptvol::crypto::SecretBytes;
use cryptvol::kms::api::protocol::Api;
use cryptvol::kms::api::CredentialStore;
use cryptvol::kms::iam::{Credential, IamError};
use cryptvol::kms::LocalKms;
use serde_json::{json, Value};

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY_ID: &str = "AKIAFUZZFUZZFUZZFUZZ";
pub const SECRET: &[u8] = b"fuzz/secret/key/for/the/kms/api/target0";

/// One access key, standing for the account root.
pub struct OneKey {
    pub principal_arn: String,
}

impl CredentialStore for OneKey {
    fn credential(&self, access_key_id: &str) -> Result<Option<Credential>, IamError> {
        Ok((access_key_id == ACCESS_KEY_ID).then(|| Credential {
            access_key_id: ACCESS_KEY_ID.to_owned(),
            principal_arn: self.principal_arn.clone(),
            user_id: "111122223333".to_owned(),
            active: true,
            secret: SecretBytes::new(SECRET.to_vec()),
        }))
    }
}

/// The names seeds use for the fixture's keys and blobs, and their values.
pub type Placeholders = Vec<(&'static str, String)>;

fn call(kms: &LocalKms, op: &str, req: Value) -> Value {
    let root = kms.root_caller();
    kms.call(&root, op, req)
        .unwrap_or_else(|e| panic!("fixture {op} failed: {e}"))
}

fn key(kms: &LocalKms, req: Value) -> String {
    call(kms, "CreateKey", req)["KeyMetadata"]["KeyId"]
        .as_str()
        .expect("KeyId")
        .to_owned()
}

/// Builds the fixture data dir once: keys of each kind, an alias, a
/// ciphertext blob and a grant token.
pub fn build_fixture(dir: &Path) -> Placeholders {
    let kms = LocalKms::open_with_root_key_file(dir, REGION, None).expect("open KMS");
    let sym = key(&kms, json!({"Description": "fuzz"}));
    let hmac = key(
        &kms,
        json!({"KeySpec": "HMAC_256", "KeyUsage": "GENERATE_VERIFY_MAC"}),
    );
    let ecc = key(
        &kms,
        json!({"KeySpec": "ECC_NIST_P256", "KeyUsage": "SIGN_VERIFY"}),
    );
    let rsa = key(
        &kms,
        json!({"KeySpec": "RSA_2048", "KeyUsage": "ENCRYPT_DECRYPT"}),
    );
    call(
        &kms,
        "CreateAlias",
        json!({"AliasName": "alias/fuzz", "TargetKeyId": sym}),
    );
    let blob = call(
        &kms,
        "Encrypt",
        json!({"KeyId": sym, "Plaintext": "aGVsbG8=", "EncryptionContext": {"k": "v"}}),
    )["CiphertextBlob"]
        .as_str()
        .expect("blob")
        .to_owned();
    let grant = call(
        &kms,
        "CreateGrant",
        json!({"KeyId": sym, "GranteePrincipal": format!("arn:aws:iam::{}:user/bob", kms.account_id()),
               "Operations": ["Decrypt", "Encrypt", "RetireGrant"]}),
    );
    let arn = format!("arn:aws:kms:{REGION}:{}:key/{sym}", kms.account_id());
    vec![
        ("$SYM", sym),
        ("$HMAC", hmac),
        ("$ECC", ecc),
        ("$RSA", rsa),
        ("$ARN", arn),
        ("$ACCOUNT", kms.account_id().to_owned()),
        ("$BLOB", blob),
        (
            "$TOKEN",
            grant["GrantToken"].as_str().expect("token").to_owned(),
        ),
        (
            "$GRANT",
            grant["GrantId"].as_str().expect("grant id").to_owned(),
        ),
    ]
}

/// Replaces every file under `dst` by the ones under `src`.
pub fn restore(src: &Path, dst: &Path) {
    let _ = std::fs::remove_dir_all(dst);
    copy_dir(src, dst);
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    // The key store refuses directories others can read: keep 0700.
    let mode = std::fs::metadata(src).expect("stat").permissions();
    std::fs::set_permissions(dst, mode).expect("chmod");
    for e in std::fs::read_dir(src).expect("read_dir") {
        let e = e.expect("dir entry");
        let to = dst.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// A scratch directory in tmpfs (fsync is free there), unique per process.
pub fn scratch(name: &str) -> PathBuf {
    let base = if Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    base.join(format!("cryptvol-fuzz-{name}-{}", std::process::id()))
}

/// An `Api` over the KMS in `dir`.
pub fn api(dir: &Path) -> Api {
    let kms = LocalKms::open_with_root_key_file(dir, REGION, None).expect("open KMS");
    let creds = OneKey {
        principal_arn: kms.root_caller().principal_arn,
    };
    Api::new(Arc::new(kms), Arc::new(creds))
}

/// SigV4 `Authorization` for `headers` (which must hold host and
/// x-amz-date) as the crate's own signer computes it.
pub fn authorization(
    method: &str,
    path: &str,
    query: &str,
    headers: &http::HeaderMap,
    body: &[u8],
    amz_date: &str,
    service: &str,
) -> String {
    use cryptvol::kms::api::sigv4;
    let mut signed: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
    signed.sort();
    signed.dedup();
    let req = sigv4::Request {
        method,
        path,
        query,
        headers,
        body,
    };
    let creq = sigv4::canonical_request(&req, &signed).expect("all signed headers present");
    let date = &amz_date[..8];
    let scope = format!("{date}/{REGION}/{service}/aws4_request");
    let sts = sigv4::string_to_sign(amz_date, &scope, &creq);
    let key = sigv4::signing_key(SECRET, date, REGION, service);
    let sig = sigv4::signature(&key, &sts);
    format!(
        "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, SignedHeaders={}, Signature={sig}",
        signed.join(";")
    )
}
