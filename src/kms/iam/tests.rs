//! The identity store: users, access keys, sealing, AWS limits, locking.

#![allow(clippy::unwrap_used)]

use super::*;

fn iam() -> (tempfile::TempDir, Iam) {
    let dir = tempfile::tempdir().unwrap();
    let iam = Iam::open(dir.path()).unwrap();
    (dir, iam)
}

#[test]
fn users_are_created_listed_and_unique_regardless_of_case() {
    let (_d, iam) = iam();
    let u = iam.create_user("host-a").unwrap();
    assert_eq!(
        u.arn,
        format!("arn:aws:iam::{}:user/host-a", iam.account_id())
    );
    assert!(u.user_id.starts_with("AIDA") && u.user_id.len() == 21);
    let e = iam.create_user("HOST-A").unwrap_err();
    assert_eq!(e.code(), "EntityAlreadyExists");
    assert_eq!(iam.list_users().unwrap(), vec![u]);
    assert_eq!(
        iam.create_user("bad/name").unwrap_err().code(),
        "ValidationError"
    );
    assert_eq!(iam.create_user("").unwrap_err().code(), "ValidationError");
}

#[test]
fn access_keys_authenticate_their_owner_and_secrets_are_sealed() {
    let (dir, iam) = iam();
    iam.create_user("host-a").unwrap();
    let k = iam.create_access_key(Some("host-a")).unwrap();
    let id = &k.metadata.access_key_id;
    assert_eq!(id.len(), 20);
    assert!(id.starts_with("AKIA"));
    assert_eq!(k.secret_access_key.len(), 40);
    let c = iam.credential(id).unwrap().unwrap();
    assert_eq!(c.principal_arn, iam.user_arn("host-a"));
    assert_eq!(c.secret.expose(), k.secret_access_key.as_bytes());
    assert!(c.active);
    let text = std::fs::read_to_string(dir.path().join(IAM_FILE_NAME)).unwrap();
    assert!(
        !text.contains(k.secret_access_key.as_str()),
        "secret at rest in clear"
    );
    assert!(!format!("{k:?}").contains(k.secret_access_key.as_str()));
    assert!(!format!("{c:?}").contains(k.secret_access_key.as_str()));
    // Root keys.
    let r = iam.create_access_key(None).unwrap();
    let c = iam.credential(&r.metadata.access_key_id).unwrap().unwrap();
    assert_eq!(c.principal_arn, arn::root_principal(iam.account_id()));
    assert_eq!(iam.list_access_keys(None).unwrap().len(), 1);
    assert_eq!(iam.list_access_keys(Some("host-a")).unwrap().len(), 1);
    assert!(iam.credential("AKIAAAAAAAAAAAAAAAAA").unwrap().is_none());
    assert!(iam.credential("nonsense").unwrap().is_none());
}

#[test]
fn a_sealed_secret_moved_to_another_owner_does_not_open() {
    let (dir, iam) = iam();
    iam.create_user("a").unwrap();
    iam.create_user("b").unwrap();
    let k = iam.create_access_key(Some("a")).unwrap();
    let path = dir.path().join(IAM_FILE_NAME);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("\"UserName\": \"a\"", "\"UserName\": \"b\""),
    )
    .unwrap();
    let e = iam.credential(&k.metadata.access_key_id).unwrap_err();
    assert!(e.to_string().contains("does not open"), "{e}");
}

#[test]
fn limits_conflicts_and_deletion_follow_aws() {
    let (_d, iam) = iam();
    iam.create_user("u").unwrap();
    let k1 = iam.create_access_key(Some("u")).unwrap();
    iam.create_access_key(Some("U")).unwrap();
    assert_eq!(
        iam.create_access_key(Some("u")).unwrap_err().code(),
        "LimitExceeded"
    );
    assert_eq!(iam.delete_user("u").unwrap_err().code(), "DeleteConflict");
    let id = &k1.metadata.access_key_id;
    assert_eq!(
        iam.delete_access_key(id, None).unwrap_err().code(),
        "NoSuchEntity"
    );
    iam.delete_access_key(id, Some("u")).unwrap();
    assert!(iam.credential(id).unwrap().is_none());
    assert_eq!(
        iam.create_access_key(Some("nobody")).unwrap_err().code(),
        "NoSuchEntity"
    );
    for k in iam.list_access_keys(Some("u")).unwrap() {
        iam.delete_access_key(&k.access_key_id, Some("u")).unwrap();
    }
    iam.delete_user("u").unwrap();
    assert_eq!(iam.delete_user("u").unwrap_err().code(), "NoSuchEntity");
}

#[test]
fn concurrent_processes_do_not_lose_users() {
    let dir = tempfile::tempdir().unwrap();
    Iam::open(dir.path()).unwrap();
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let p = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let iam = Iam::open(&p).unwrap();
                for i in 0..5 {
                    iam.create_user(&format!("u{t}-{i}")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(
        Iam::open(dir.path()).unwrap().list_users().unwrap().len(),
        20
    );
}
