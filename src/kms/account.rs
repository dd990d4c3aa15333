//! The account id of a data dir: twelve random digits, made on first use
//! and stored in `<data_dir>/account.json`.
//!
//! Why random and persistent: ARNs (`arn:aws:kms:<region>:<account>:key/…`)
//! and the root principal (`arn:aws:iam::<account>:root`) must be stable for
//! the life of the data dir (volume headers record key ARNs), and two data
//! dirs should not pretend to be the same account.

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::arn::is_account_id;
use super::error::KmsError;
use crate::fsutil;

/// File name of the account record inside the data dir.
pub const ACCOUNT_FILE_NAME: &str = "account.json";

#[derive(Debug, Serialize, Deserialize)]
struct AccountFile {
    #[serde(rename = "AccountId")]
    account_id: String,
    /// Seconds since the Unix epoch.
    #[serde(rename = "CreationDate")]
    creation_date: u64,
}

/// The data dir's account id, created (race-free) on first use.
pub fn load_or_create(data_dir: &Path) -> Result<String, KmsError> {
    fsutil::create_private_dir_all(data_dir)?;
    let path = data_dir.join(ACCOUNT_FILE_NAME);
    if !path.exists() {
        let mut rng = rand::rngs::OsRng;
        let account_id: String = (0..12)
            .map(|_| char::from(b'0' + rng.gen_range(0..10u8)))
            .collect();
        let record = AccountFile {
            account_id,
            creation_date: super::now(),
        };
        let json = serde_json::to_vec_pretty(&record).expect("BUG: AccountFile serializes");
        // If another process won the race, its id is the one we read below.
        fsutil::create_new_atomic(&path, &json)?;
    }
    fsutil::ensure_private(&path, fsutil::Private::File)?;
    let bytes = fsutil::read(&path)?;
    let record: AccountFile =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, &e.to_string()))?;
    if !is_account_id(&record.account_id) {
        return Err(corrupt(&path, "AccountId is not 12 digits"));
    }
    Ok(record.account_id)
}

fn corrupt(path: &Path, why: &str) -> KmsError {
    KmsError::Internal(format!(
        "account file {} is corrupt ({why}); restore it from a backup: every key ARN and volume \
         header of this data dir names the account it holds",
        path.display()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn account_id_is_twelve_digits_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        assert!(is_account_id(&a), "{a}");
        assert_eq!(load_or_create(dir.path()).unwrap(), a);
        let meta = std::fs::metadata(dir.path().join(ACCOUNT_FILE_NAME)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn corrupt_account_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        fsutil::write_atomic(
            &dir.path().join(ACCOUNT_FILE_NAME),
            br#"{"AccountId":"12","CreationDate":0}"#,
        )
        .unwrap();
        let msg = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(
            msg.contains("corrupt") && msg.contains("account.json"),
            "{msg}"
        );
    }
}
