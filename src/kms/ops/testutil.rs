//! Test helpers: a KMS in a temporary data dir, driven through the JSON
//! operation table exactly as the CLI and the HTTP API drive it.
#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
pub use serde_json::{json, Value};

use crate::kms::audit::{AuditFilter, AuditRecord};
use crate::kms::local::LocalKms;
use crate::kms::service::Caller;

pub const REGION: &str = "us-east-1";
pub const OTHER_REGION: &str = "eu-west-1";

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub kms: LocalKms,
    pub root: Caller,
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(v: &Value) -> Vec<u8> {
    STANDARD
        .decode(v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .unwrap()
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let kms = LocalKms::open_with_root_key_file(dir.path(), REGION, None).unwrap();
        let root = kms.root_caller();
        Fixture { dir, kms, root }
    }

    /// The KMS of another region of the same data dir.
    pub fn region(&self, region: &str) -> LocalKms {
        LocalKms::open_with_root_key_file(self.dir.path(), region, None).unwrap()
    }

    pub fn caller(&self, arn: &str) -> Caller {
        Caller {
            principal_arn: arn.to_owned(),
        }
    }

    /// A user of this KMS's account.
    pub fn user(&self, name: &str) -> Caller {
        self.caller(&format!(
            "arn:aws:iam::{}:user/{name}",
            self.kms.account_id()
        ))
    }

    pub fn ok(&self, op: &str, req: Value) -> Value {
        self.ok_as(&self.root, op, req)
    }

    pub fn err(&self, op: &str, req: Value) -> (&'static str, String) {
        self.err_as(&self.root, op, req)
    }

    pub fn ok_as(&self, caller: &Caller, op: &str, req: Value) -> Value {
        match self.kms.call(caller, op, req.clone()) {
            Ok(v) => v,
            Err(e) => panic!("{op} {req} failed: {} {e}", e.aws_type()),
        }
    }

    pub fn err_as(&self, caller: &Caller, op: &str, req: Value) -> (&'static str, String) {
        match self.kms.call(caller, op, req.clone()) {
            Ok(v) => panic!("{op} {req} succeeded: {v}"),
            Err(e) => (e.aws_type(), e.to_string()),
        }
    }

    /// Creates a key from a CreateKey request; returns its key id.
    pub fn key(&self, req: Value) -> String {
        let out = self.ok("CreateKey", req);
        out["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
    }

    /// A new SYMMETRIC_DEFAULT key.
    pub fn symmetric_key(&self) -> String {
        self.key(json!({"Description": "test"}))
    }

    pub fn describe(&self, key_id: &str) -> Value {
        self.ok("DescribeKey", json!({"KeyId": key_id}))["KeyMetadata"].clone()
    }

    pub fn state(&self, key_id: &str) -> String {
        self.describe(key_id)["KeyState"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Moves this KMS's clock `secs` seconds forward.
    pub fn advance(&self, secs: u64) {
        self.kms.advance_clock(secs);
    }

    pub fn audit_records(&self) -> Vec<AuditRecord> {
        self.kms.audit_log().list(&AuditFilter::default()).unwrap()
    }
}
