//! `cryptvol kms serve` driven by clients nobody here wrote: the AWS CLI and
//! boto3 (botocore signs with its own SigV4), plus `cryptvol serve
//! --kms-endpoint` attaching a volume like EBS (with a grant of its own).
//!
//! `.ci/run` installs the AWS CLI and boto3 into /opt/cryptvol-venv; a test
//! that finds neither there nor on PATH says SKIPPED and returns.

#![allow(clippy::unwrap_used)] // tests: a panic is a failure report

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{cryptvol_ok, files_under, BIN};
use serde_json::{json, Value};

const VENV: &str = "/opt/cryptvol-venv/bin";

/// `tool` from the CI virtualenv, else from PATH.
fn find_tool(tool: &str) -> Option<PathBuf> {
    let venv = Path::new(VENV).join(tool);
    if venv.exists() {
        return Some(venv);
    }
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .ok()?;
    let p = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !p.is_empty()).then(|| PathBuf::from(p))
}

fn aws_cli() -> Option<PathBuf> {
    let found = find_tool("aws");
    if found.is_none() {
        eprintln!("SKIPPED: the AWS CLI (`aws`) is not installed; .ci/run installs it (pip install awscli)");
    }
    found
}

fn boto3_python() -> Option<PathBuf> {
    let found = ["python3", "python"].iter().find_map(|t| {
        let p = find_tool(t)?;
        let ok = Command::new(&p)
            .args(["-c", "import boto3"])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(p)
    });
    if found.is_none() {
        eprintln!("SKIPPED: no python3 with boto3; .ci/run installs it (pip install boto3)");
    }
    found
}

/// A running `cryptvol kms serve`, stopped when dropped.
struct Kms {
    child: Child,
    endpoint: String,
}

impl Kms {
    fn start(dir: &Path) -> Kms {
        Kms::start_with(dir, &[])
    }

    fn start_with(dir: &Path, extra: &[&str]) -> Kms {
        let mut child = Command::new(BIN)
            .arg("--data-dir")
            .arg(dir)
            .args(["kms", "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("CRYPTVOL_REGION")
            .env("RUST_LOG", "cryptvol=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start cryptvol kms serve");
        let line = first_line_with(&mut child, "serving at ");
        let endpoint = line.rsplit("serving at ").next().unwrap().trim().to_owned();
        Kms { child, endpoint }
    }
}

impl Drop for Kms {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Reads the child's stdout until a line containing `needle` (keeps
/// draining afterwards so the child never blocks on a full pipe).
fn first_line_with(child: &mut Child, needle: &str) -> String {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no line with {needle:?}");
        let mut line = String::new();
        if lines.read_line(&mut line).unwrap() == 0 {
            let st = child.wait().unwrap();
            panic!("the process exited ({st}) before printing {needle:?}");
        }
        if line.contains(needle) {
            std::thread::spawn(move || for _ in lines.lines() {});
            return line;
        }
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[derive(Clone)]
struct Creds {
    id: String,
    secret: String,
}

fn access_key(dir: &Path, user: Option<&str>) -> Creds {
    let mut args = vec!["--output", "json", "iam", "create-access-key"];
    if let Some(u) = user {
        args.extend(["--user-name", u]);
    }
    let v: Value = serde_json::from_str(&cryptvol_ok(dir, &args)).unwrap();
    let k = &v["AccessKey"];
    assert_eq!(k["Status"], "Active");
    assert_eq!(k["AccessKeyId"].as_str().unwrap().len(), 20);
    Creds {
        id: k["AccessKeyId"].as_str().unwrap().to_owned(),
        secret: k["SecretAccessKey"].as_str().unwrap().to_owned(),
    }
}

fn create_user(dir: &Path, name: &str) -> (String, Creds) {
    let v: Value = serde_json::from_str(&cryptvol_ok(
        dir,
        &["--output", "json", "iam", "create-user", name],
    ))
    .unwrap();
    let arn = v["User"]["Arn"].as_str().unwrap().to_owned();
    assert!(arn.ends_with(&format!(":user/{name}")), "{arn}");
    (arn, access_key(dir, Some(name)))
}

/// A command with only `creds` as AWS configuration (no files, no profile,
/// no retries).
fn aws_env(cmd: &mut Command, creds: &Creds) {
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", &creds.id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        )
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "");
}

/// `aws --endpoint-url … --output json ARGS`: the JSON response, or the
/// error code and message from "An error occurred (Code) when calling …".
fn aws(cli: &Path, kms: &Kms, creds: &Creds, args: &[&str]) -> Result<Value, (String, String)> {
    let mut cmd = Command::new(cli);
    cmd.args(["--endpoint-url", &kms.endpoint, "--output", "json"])
        .args(args);
    aws_env(&mut cmd, creds);
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.success() {
        if stdout.trim().is_empty() {
            return Ok(json!({}));
        }
        return Ok(serde_json::from_str(&stdout).unwrap());
    }
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = err
        .split("An error occurred (")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or("")
        .to_owned();
    Err((code, err))
}

fn aws_ok(cli: &Path, kms: &Kms, creds: &Creds, args: &[&str]) -> Value {
    aws(cli, kms, creds, args).unwrap_or_else(|(_, e)| panic!("aws {args:?} failed: {e}"))
}

fn aws_err(cli: &Path, kms: &Kms, creds: &Creds, args: &[&str]) -> (String, String) {
    match aws(cli, kms, creds, args) {
        Ok(v) => panic!("aws {args:?} should have failed, got {v}"),
        Err(e) => e,
    }
}

fn b64(v: &Value) -> Vec<u8> {
    STANDARD.decode(v.as_str().expect("base64 string")).unwrap()
}

fn fileb(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    format!("fileb://{}", p.display())
}

fn create_key(cli: &Path, kms: &Kms, creds: &Creds, description: &str) -> String {
    let v = aws_ok(
        cli,
        kms,
        creds,
        &["kms", "create-key", "--description", description],
    );
    v["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned()
}

#[test]
fn aws_cli_seed_flow_against_kms_serve() {
    let Some(cli) = aws_cli() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let root = access_key(dir, None);
    let kms = Kms::start(dir);
    let k1 = create_key(&cli, &kms, &root, "seed one");
    let k2 = create_key(&cli, &kms, &root, "seed two");
    // Encrypt / decrypt with an encryption context.
    let p = fileb(dir, "plain", b"the seed flow");
    let enc = aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "encrypt",
            "--key-id",
            &k1,
            "--plaintext",
            &p,
            "--encryption-context",
            "purpose=seed",
        ],
    );
    assert!(enc["KeyId"].as_str().unwrap().ends_with(&k1), "{enc}");
    let blob = b64(&enc["CiphertextBlob"]);
    let blob_file = fileb(dir, "blob", &blob);
    let dec = aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "decrypt",
            "--ciphertext-blob",
            &blob_file,
            "--encryption-context",
            "purpose=seed",
        ],
    );
    assert_eq!(b64(&dec["Plaintext"]), b"the seed flow");
    assert!(dec["KeyId"].as_str().unwrap().ends_with(&k1));
    // Re-encrypt to the other key: the new blob decrypts under k2.
    let re = aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "re-encrypt",
            "--ciphertext-blob",
            &blob_file,
            "--source-encryption-context",
            "purpose=seed",
            "--destination-key-id",
            &k2,
        ],
    );
    assert!(re["KeyId"].as_str().unwrap().ends_with(&k2), "{re}");
    assert!(re["SourceKeyId"].as_str().unwrap().ends_with(&k1), "{re}");
    let re_file = fileb(dir, "reblob", &b64(&re["CiphertextBlob"]));
    let dec = aws_ok(
        &cli,
        &kms,
        &root,
        &["kms", "decrypt", "--ciphertext-blob", &re_file],
    );
    assert_eq!(b64(&dec["Plaintext"]), b"the seed flow");
    assert!(dec["KeyId"].as_str().unwrap().ends_with(&k2));
    // Rotation.
    aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "enable-key-rotation",
            "--key-id",
            &k1,
            "--rotation-period-in-days",
            "180",
        ],
    );
    let st = aws_ok(
        &cli,
        &kms,
        &root,
        &["kms", "get-key-rotation-status", "--key-id", &k1],
    );
    assert_eq!(st["KeyRotationEnabled"], true, "{st}");
    assert_eq!(st["RotationPeriodInDays"], 180, "{st}");
    // GenerateDataKey: the blob decrypts to the same data key.
    let dk = aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "generate-data-key",
            "--key-id",
            &k1,
            "--key-spec",
            "AES_256",
        ],
    );
    let data_key = b64(&dk["Plaintext"]);
    assert_eq!(data_key.len(), 32);
    let dk_file = fileb(dir, "dk", &b64(&dk["CiphertextBlob"]));
    let dec = aws_ok(
        &cli,
        &kms,
        &root,
        &["kms", "decrypt", "--ciphertext-blob", &dk_file],
    );
    assert_eq!(b64(&dec["Plaintext"]), data_key);
    // STS: who the credentials are.
    let me = aws_ok(&cli, &kms, &root, &["sts", "get-caller-identity"]);
    assert!(me["Arn"].as_str().unwrap().ends_with(":root"), "{me}");
}

#[test]
fn aws_cli_gets_aws_exception_names() {
    let Some(cli) = aws_cli() else { return };
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let root = access_key(dir, None);
    let (bob_arn, bob) = create_user(dir, "bob");
    let kms = Kms::start(dir);
    let k1 = create_key(&cli, &kms, &root, "one");
    let k2 = create_key(&cli, &kms, &root, "two");
    let code = |args: &[&str], who: &Creds| aws_err(&cli, &kms, who, args).0;

    let missing = "1234abcd-12ab-34cd-56ef-1234567890ab";
    assert_eq!(
        code(&["kms", "describe-key", "--key-id", missing], &root),
        "NotFoundException"
    );
    let p = fileb(dir, "p", b"secret");
    let enc = aws_ok(
        &cli,
        &kms,
        &root,
        &["kms", "encrypt", "--key-id", &k1, "--plaintext", &p],
    );
    let blob = b64(&enc["CiphertextBlob"]);
    let blob_file = fileb(dir, "blob", &blob);
    // IncorrectKey: the blob is k1's.
    assert_eq!(
        code(
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob_file,
                "--key-id",
                &k2
            ],
            &root
        ),
        "IncorrectKeyException"
    );
    // InvalidCiphertext: altered blob; wrong context.
    let mut bad = blob.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let bad_file = fileb(dir, "bad", &bad);
    assert_eq!(
        code(&["kms", "decrypt", "--ciphertext-blob", &bad_file], &root),
        "InvalidCiphertextException"
    );
    assert_eq!(
        code(
            &[
                "kms",
                "decrypt",
                "--ciphertext-blob",
                &blob_file,
                "--encryption-context",
                "a=b"
            ],
            &root
        ),
        "InvalidCiphertextException"
    );
    // Validation: NumberOfBytes beyond 1024 (botocore checks only the minimum).
    assert_eq!(
        code(
            &[
                "kms",
                "generate-data-key",
                "--key-id",
                &k1,
                "--number-of-bytes",
                "2000"
            ],
            &root
        ),
        "ValidationException"
    );
    // Disabled.
    aws_ok(&cli, &kms, &root, &["kms", "disable-key", "--key-id", &k2]);
    let (c, m) = aws_err(
        &cli,
        &kms,
        &root,
        &["kms", "encrypt", "--key-id", &k2, "--plaintext", &p],
    );
    assert_eq!(c, "DisabledException", "{m}");
    // AccessDenied for bob, by the key policy.
    let account = bob_arn.split(':').nth(4).unwrap();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "admin", "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
             "Action": "kms:*", "Resource": "*"},
            {"Sid": "not-bob", "Effect": "Deny", "Principal": {"AWS": bob_arn},
             "Action": ["kms:Decrypt", "kms:Encrypt"], "Resource": "*"}
        ]
    });
    let policy_file = dir.join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    let policy_arg = format!("file://{}", policy_file.display());
    aws_ok(
        &cli,
        &kms,
        &root,
        &[
            "kms",
            "put-key-policy",
            "--key-id",
            &k1,
            "--policy-name",
            "default",
            "--policy",
            &policy_arg,
        ],
    );
    let (c, m) = aws_err(
        &cli,
        &kms,
        &bob,
        &["kms", "decrypt", "--ciphertext-blob", &blob_file],
    );
    assert_eq!(c, "AccessDeniedException", "{m}");
    assert!(m.contains("kms:Decrypt") && m.contains("bob"), "{m}");
    aws_ok(&cli, &kms, &bob, &["kms", "describe-key", "--key-id", &k1]);
    aws_ok(
        &cli,
        &kms,
        &root,
        &["kms", "decrypt", "--ciphertext-blob", &blob_file],
    );
    // Authentication failures.
    let stranger = Creds {
        id: "AKIAIOSFODNN7EXAMPLE".into(),
        secret: bob.secret.clone(),
    };
    let (c, m) = aws_err(&cli, &kms, &stranger, &["kms", "list-keys"]);
    assert_eq!(c, "UnrecognizedClientException", "{m}");
    let wrong = Creds {
        id: bob.id.clone(),
        secret: "0".repeat(40),
    };
    let (c, m) = aws_err(&cli, &kms, &wrong, &["kms", "list-keys"]);
    assert_eq!(c, "InvalidSignatureException", "{m}");
    // A deleted access key stops working at once.
    cryptvol_ok(
        dir,
        &[
            "iam",
            "delete-access-key",
            "--user-name",
            "bob",
            "--access-key-id",
            &bob.id,
        ],
    );
    assert_eq!(
        code(&["kms", "list-keys"], &bob),
        "UnrecognizedClientException"
    );
}

/// boto3 (a separate process: its own SigV4 signer), including a request
/// signed with a clock 20 minutes slow.
const BOTO3_SCRIPT: &str = r#"
import datetime, json, sys
import boto3, botocore.auth
from botocore.config import Config
from botocore.exceptions import ClientError
ep, akid, secret = sys.argv[1:4]
kms = boto3.client("kms", endpoint_url=ep, region_name="us-east-1",
                   aws_access_key_id=akid, aws_secret_access_key=secret,
                   config=Config(retries={"max_attempts": 1, "mode": "standard"}))
out = {}
def code(f):
    try:
        f()
        return "no error"
    except ClientError as e:
        return e.response["Error"]["Code"] + " " + str(e.response["ResponseMetadata"]["HTTPStatusCode"])
k = kms.create_key(Description="boto3")["KeyMetadata"]["KeyId"]
c = kms.encrypt(KeyId=k, Plaintext=b"hello boto3", EncryptionContext={"a": "bc"})["CiphertextBlob"]
out["roundtrip"] = kms.decrypt(CiphertextBlob=c, EncryptionContext={"a": "bc"})["Plaintext"].decode()
out["ambiguous_context"] = code(lambda: kms.decrypt(CiphertextBlob=c, EncryptionContext={"ab": "c"}))
dk = kms.generate_data_key(KeyId=k, NumberOfBytes=64)
out["dk_len"] = len(dk["Plaintext"])
out["dk_same"] = kms.decrypt(CiphertextBlob=dk["CiphertextBlob"])["Plaintext"] == dk["Plaintext"]
out["not_found"] = code(lambda: kms.describe_key(KeyId="alias/nope"))
out["aliases"] = [a["AliasName"] for a in kms.list_aliases()["Aliases"]]
real = botocore.auth.get_current_datetime
botocore.auth.get_current_datetime = lambda *a, **kw: real(*a, **kw) - datetime.timedelta(minutes=20)
out["skewed"] = code(lambda: kms.list_keys())
botocore.auth.get_current_datetime = lambda *a, **kw: real(*a, **kw) - datetime.timedelta(minutes=10)
out["within_15_min"] = code(lambda: kms.list_keys())
print(json.dumps(out))
"#;

#[test]
fn boto3_round_trips_and_gets_request_expired_for_a_skewed_clock() {
    let Some(python) = boto3_python() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = access_key(d.path(), None);
    let kms = Kms::start(d.path());
    let mut cmd = Command::new(python);
    cmd.args(["-c", BOTO3_SCRIPT, &kms.endpoint, &root.id, &root.secret]);
    aws_env(&mut cmd, &root);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["roundtrip"], "hello boto3", "{v}");
    assert_eq!(
        v["ambiguous_context"], "InvalidCiphertextException 400",
        "{v}"
    );
    assert_eq!(v["dk_len"], 64, "{v}");
    assert_eq!(v["dk_same"], true, "{v}");
    assert_eq!(v["not_found"], "NotFoundException 400", "{v}");
    assert!(
        v["aliases"]
            .as_array()
            .unwrap()
            .contains(&json!("alias/aws/ebs")),
        "{v}"
    );
    assert_eq!(v["skewed"], "RequestExpired 400", "{v}");
    assert_eq!(v["within_15_min"], "no error", "{v}");
}

/// `cryptvol serve VOL` on a host whose KMS is remote: spawned with the
/// host's credentials in a profile; returns the child once it announced
/// the export, or the failure output.
fn host_serve(
    host_dir: &Path,
    kms: &Kms,
    creds_file: &Path,
    profile: &str,
    args: &[&str],
) -> Result<(Child, String), String> {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(host_dir)
        .args([
            "--kms-endpoint",
            &kms.endpoint,
            "--profile",
            profile,
            "serve",
        ])
        .args(args)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("CRYPTVOL_REGION")
        .env("RUST_LOG", "cryptvol=warn");
    aws_env(
        &mut cmd,
        &Creds {
            id: String::new(),
            secret: String::new(),
        },
    );
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_SHARED_CREDENTIALS_FILE", creds_file);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    if lines.read_line(&mut line).unwrap() == 0 || !line.starts_with("serving ") {
        let out = child.wait_with_output().unwrap();
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    std::thread::spawn(move || for _ in lines.lines() {});
    let uri = line
        .split(" at ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap()
        .trim()
        .to_owned();
    Ok((child, uri))
}

fn grant_names(cli: &Path, kms: &Kms, creds: &Creds, key: &str) -> Vec<String> {
    let v = aws_ok(cli, kms, creds, &["kms", "list-grants", "--key-id", key]);
    v["Grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["Name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn a_host_with_only_a_grant_attaches_a_volume_and_without_it_is_refused() {
    let Some(cli) = aws_cli() else { return };
    let d = tempfile::tempdir().unwrap();
    let kms_dir = d.path().join("kms");
    let host_dir = d.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    cryptvol_ok(&kms_dir, &["iam", "list-users"]);
    let (admin_arn, admin) = create_user(&kms_dir, "admin");
    let (host_arn, host) = create_user(&kms_dir, "host-a");
    let kms = Kms::start(&kms_dir);
    // The key admin's key: the policy names only the admin, so host-a has
    // no permission of its own.
    let key = create_key(&cli, &kms, &admin, "volumes");
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "kms:*", "Resource": "*"}]
    });
    let policy_file = d.path().join("policy.json");
    std::fs::write(&policy_file, policy.to_string()).unwrap();
    aws_ok(
        &cli,
        &kms,
        &admin,
        &[
            "kms",
            "put-key-policy",
            "--key-id",
            &key,
            "--policy-name",
            "default",
            "--policy",
            &format!("file://{}", policy_file.display()),
        ],
    );
    // Credentials file with both profiles, as `aws configure` writes it.
    let creds_file = d.path().join("credentials");
    std::fs::write(
        &creds_file,
        format!(
            "[admin]\naws_access_key_id = {}\naws_secret_access_key = {}\n\n\
             [host-a]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            admin.id, admin.secret, host.id, host.secret
        ),
    )
    .unwrap();
    // The admin creates the volume through the KMS (GenerateDataKey).
    let mut create = Command::new(BIN);
    create
        .arg("--data-dir")
        .arg(&host_dir)
        .args(["--kms-endpoint", &kms.endpoint, "--profile", "admin"])
        .args([
            "volume",
            "create",
            "vol1",
            "--size",
            "16M",
            "--kms-key-id",
            &key,
        ])
        .env_remove("CRYPTVOL_REGION")
        .env("AWS_SHARED_CREDENTIALS_FILE", &creds_file);
    let out = create.output().unwrap();
    assert!(
        out.status.success(),
        "create: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Without a grant the host cannot attach: the error names the
    // permission, the principal and the key.
    let err = host_serve(&host_dir, &kms, &creds_file, "host-a", &["vol1"]).unwrap_err();
    assert!(err.contains("kms:CreateGrant"), "{err}");
    assert!(err.contains(&host_arn) && err.contains(&key), "{err}");

    // With a grant (Decrypt, and CreateGrant for its own attach grants) it can.
    aws_ok(
        &cli,
        &kms,
        &admin,
        &[
            "kms",
            "create-grant",
            "--key-id",
            &key,
            "--grantee-principal",
            &host_arn,
            "--operations",
            "Decrypt",
            "CreateGrant",
            "RetireGrant",
            "--name",
            "host-a",
        ],
    );
    let (mut child, uri) = host_serve(&host_dir, &kms, &creds_file, "host-a", &["vol1"])
        .unwrap_or_else(|e| panic!("serve with a grant failed: {e}"));
    assert!(uri.starts_with("nbd://"), "{uri}");
    let names = grant_names(&cli, &kms, &admin, &key);
    assert!(
        names.iter().any(|n| n.starts_with("cryptvol-attach-vol-")),
        "{names:?}"
    );
    // The host called with its own identity, through EBS.
    let me = aws_ok(&cli, &kms, &host, &["sts", "get-caller-identity"]);
    assert_eq!(me["Arn"], json!(host_arn));

    // Disabling the key stops new attaches; the running one keeps its key.
    aws_ok(
        &cli,
        &kms,
        &admin,
        &["kms", "disable-key", "--key-id", &key],
    );
    let err = host_serve(
        &host_dir,
        &kms,
        &creds_file,
        "host-a",
        &["vol1", "--read-only"],
    )
    .unwrap_err();
    assert!(err.contains("disabled"), "{err}");
    if common::have("nbdinfo", "libnbd-bin") {
        let out = Command::new("nbdinfo")
            .args(["--size", &uri])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "16777216");
    }
    aws_ok(&cli, &kms, &admin, &["kms", "enable-key", "--key-id", &key]);

    // Detach retires the attach grant; the admin's grant stays.
    stop(&mut child);
    let names = grant_names(&cli, &kms, &admin, &key);
    assert_eq!(names, vec!["host-a".to_owned()], "attach grant not retired");
}

#[test]
fn tls_endpoint_serves_the_aws_cli_and_cryptvols_remote_client() {
    let Some(cli) = aws_cli() else { return };
    if !common::have("openssl", "openssl") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("kms");
    let root = access_key(&dir, None);
    // A private CA and a server certificate for 127.0.0.1 signed by it.
    let p = |n: &str| d.path().join(n).to_str().unwrap().to_owned();
    let (ca, ca_key, csr) = (p("ca.pem"), p("ca.key"), p("server.csr"));
    let (cert, key, ext) = (p("server.pem"), p("server.key"), p("ext.cnf"));
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            &ca_key,
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ] {
        let out = Command::new("openssl").args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let kms = Kms::start_with(&dir, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(kms.endpoint.starts_with("https://"), "{}", kms.endpoint);
    // The AWS CLI, trusting the certificate.
    let mut cmd = Command::new(&cli);
    cmd.args([
        "--endpoint-url",
        &kms.endpoint,
        "--output",
        "json",
        "kms",
        "create-key",
    ]);
    aws_env(&mut cmd, &root);
    cmd.env("AWS_CA_BUNDLE", &ca);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key_id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_owned();
    // cryptvol's remote KeyService, with the same CA bundle variable.
    let host = d.path().join("host");
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(&host)
        .args(["--kms-endpoint", &kms.endpoint, "--output", "json"])
        .args([
            "volume",
            "create",
            "v1",
            "--size",
            "1M",
            "--kms-key-id",
            &key_id,
        ])
        .env_remove("CRYPTVOL_REGION");
    aws_env(&mut cmd, &root);
    cmd.env("AWS_CA_BUNDLE", &ca);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without trusting it, a clear error.
    cmd.env_remove("AWS_CA_BUNDLE");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("cannot reach the KMS"),
        "{err}"
    );
}

/// Every operation of the KMS, called by boto3; botocore parses each
/// response with the service model, so shapes and types are checked too.
#[test]
fn boto3_drives_every_kms_operation() {
    let Some(python) = boto3_python() else { return };
    let d = tempfile::tempdir().unwrap();
    let root = access_key(d.path(), None);
    let kms = Kms::start(d.path());
    let mut cmd = Command::new(python);
    cmd.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/boto3_every_operation.py"))
        .args([&kms.endpoint, &root.id, &root.secret]);
    aws_env(&mut cmd, &root);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v.as_object().unwrap();
    let failed: Vec<String> = results
        .iter()
        .filter(|(_, r)| r.as_str() != Some("ok"))
        .map(|(op, r)| format!("{op}: {r}"))
        .collect();
    for f in failed.iter().filter(|f| f.contains("skipped")) {
        eprintln!("SKIPPED: {f}");
    }
    let failed: Vec<&String> = failed.iter().filter(|f| !f.contains("skipped")).collect();
    assert!(
        failed.is_empty(),
        "operations that failed through boto3:\n{failed:#?}"
    );
    assert!(results.len() >= 45, "only {} operations ran", results.len());
}

/// `cryptvol --kms-endpoint URL kms <op>` talks to that KMS as the
/// credentials' principal, not to an embedded KMS of its own data dir.
#[test]
fn cryptvol_kms_commands_go_to_the_kms_endpoint() {
    let Some(cli) = aws_cli() else { return };
    let d = tempfile::tempdir().unwrap();
    let kms_dir = d.path().join("kms");
    let host_dir = d.path().join("host");
    std::fs::create_dir_all(&host_dir).unwrap();
    cryptvol_ok(&kms_dir, &["iam", "list-users"]);
    let (admin_arn, admin) = create_user(&kms_dir, "admin");
    let kms = Kms::start(&kms_dir);
    let run = |creds: &Creds, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("--data-dir")
            .arg(&host_dir)
            .args(["--kms-endpoint", &kms.endpoint, "--output", "json", "kms"])
            .args(args)
            .env_remove("CRYPTVOL_REGION");
        aws_env(&mut cmd, creds);
        cmd.output().unwrap()
    };

    let out = run(
        &admin,
        &["create-key", "--description", "made by cryptvol kms"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key_id = made["KeyMetadata"]["KeyId"].as_str().unwrap().to_owned();
    // The endpoint's store has it (seen through the AWS CLI), and the
    // host's data dir has no key store of its own.
    let seen = aws_ok(
        &cli,
        &kms,
        &admin,
        &["kms", "describe-key", "--key-id", &key_id],
    );
    assert_eq!(
        seen["KeyMetadata"]["Description"], "made by cryptvol kms",
        "{seen}"
    );
    let host_files = files_under(&host_dir);
    assert!(
        !host_files.iter().any(|p| p.ends_with("keys.json")),
        "{host_files:?}"
    );
    // The caller is the admin user: the audit trail says so.
    let out = run(
        &admin,
        &["encrypt", "--key-id", &key_id, "--plaintext", "aGVsbG8="],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trail = cryptvol_ok(
        &kms_dir,
        &[
            "--output",
            "json",
            "audit",
            "list",
            "--operation",
            "Encrypt",
        ],
    );
    assert!(trail.contains(&admin_arn), "{trail}");

    // Wrong secret: refused before the operation, saying what to check.
    let forged = Creds {
        id: admin.id.clone(),
        secret: "not-the-secret".into(),
    };
    let out = run(&forged, &["list-keys"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("SignatureDoesNotMatch")
            && err.contains("Check your AWS Secret Access Key"),
        "{err}"
    );
}
