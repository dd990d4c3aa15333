//! AWS credentials the way the AWS CLI finds them.
//!
//! With `--profile NAME`: that profile, from the shared credentials file
//! (`~/.aws/credentials`, or `AWS_SHARED_CREDENTIALS_FILE`; section
//! `[NAME]`) or else the config file (`~/.aws/config`, or
//! `AWS_CONFIG_FILE`; section `[profile NAME]`, `[default]` for the
//! default). Without it: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY`
//! (+ `AWS_SESSION_TOKEN`) from the environment, else the profile named by
//! `AWS_PROFILE`, else `default`.
//!
//! Only static keys are supported (no SSO, `credential_process`, or role
//! assumption); a profile that has none says so.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Static AWS credentials. `Debug` shows the access key id only.
#[derive(Clone)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Zeroizing<String>,
    pub session_token: Option<Zeroizing<String>>,
    /// Where they came from, for messages (`profile host-a in …`).
    pub source: String,
}

impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "[redacted]"),
            )
            .field("source", &self.source)
            .finish()
    }
}

/// Credentials could not be found.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CredentialsError(pub String);

impl AwsCredentials {
    /// Finds credentials as the AWS CLI does (see the module doc).
    pub fn load(profile: Option<&str>) -> Result<AwsCredentials, CredentialsError> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        if profile.is_none() {
            if let (Some(id), Some(secret)) =
                (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
            {
                return Ok(AwsCredentials {
                    access_key_id: id,
                    secret_access_key: Zeroizing::new(secret),
                    session_token: env("AWS_SESSION_TOKEN").map(Zeroizing::new),
                    source: "the environment (AWS_ACCESS_KEY_ID)".into(),
                });
            }
        }
        let name = profile
            .map(str::to_owned)
            .or_else(|| env("AWS_PROFILE"))
            .unwrap_or_else(|| "default".to_owned());
        let home = env("HOME").map(PathBuf::from);
        let in_home = |rel: &str| home.as_ref().map(|h| h.join(rel));
        let cred_file = env("AWS_SHARED_CREDENTIALS_FILE")
            .map(PathBuf::from)
            .or_else(|| in_home(".aws/credentials"));
        let config_file = env("AWS_CONFIG_FILE")
            .map(PathBuf::from)
            .or_else(|| in_home(".aws/config"));
        let config_section = if name == "default" {
            "default".to_owned()
        } else {
            format!("profile {name}")
        };
        for (file, section) in [(&cred_file, name.clone()), (&config_file, config_section)] {
            let Some(file) = file else { continue };
            if let Some(c) = from_file(file, &section, &name)? {
                return Ok(c);
            }
        }
        let files: Vec<String> = [cred_file, config_file]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect();
        Err(CredentialsError(format!(
            "no AWS credentials for profile {name:?}: none in {} {}; create an access key with \
             `cryptvol --output json iam create-access-key --user-name <user>` and store it with \
             `aws configure --profile {name}`, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
            if files.is_empty() {
                "(no HOME)".to_owned()
            } else {
                files.join(" or ")
            },
            if profile.is_none() {
                "and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are not set"
            } else {
                ""
            }
        )))
    }
}

fn from_file(
    path: &Path,
    section: &str,
    profile: &str,
) -> Result<Option<AwsCredentials>, CredentialsError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CredentialsError(format!(
                "cannot read AWS credentials file {}: {e}",
                path.display()
            )))
        }
    };
    let Some(values) = parse_ini(&text).remove(section) else {
        return Ok(None);
    };
    let get = |k: &str| values.get(k).filter(|v| !v.is_empty());
    match (get("aws_access_key_id"), get("aws_secret_access_key")) {
        (Some(id), Some(secret)) => Ok(Some(AwsCredentials {
            access_key_id: id.to_string(),
            secret_access_key: Zeroizing::new(secret.to_string()),
            session_token: get("aws_session_token").map(|t| Zeroizing::new(t.to_string())),
            source: format!("profile {profile} in {}", path.display()),
        })),
        (None, None) => Ok(None),
        _ => Err(CredentialsError(format!(
            "profile {profile} in {} has only one of aws_access_key_id and \
             aws_secret_access_key; it needs both",
            path.display()
        ))),
    }
}

/// A minimal INI reader for the AWS files: `[section]`, `key = value`,
/// `#`/`;` comments. Values are returned as `Zeroizing` strings.
fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, Zeroizing<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Zeroizing<String>>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        if let (Some(sec), Some((k, v))) = (&current, line.split_once('=')) {
            if let Some(m) = out.get_mut(sec) {
                m.insert(k.trim().to_owned(), Zeroizing::new(v.trim().to_owned()));
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections_and_profiles_parse_like_the_aws_cli() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        std::fs::write(
            &creds,
            "# comment\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key=s1\n\n\
             [host-a]\naws_access_key_id=AKIAHOSTA\naws_secret_access_key = s2 \n\
             aws_session_token = tok\n[half]\naws_access_key_id=AKIAX\n",
        )
        .unwrap();
        let c = from_file(&creds, "host-a", "host-a").unwrap().unwrap();
        assert_eq!(c.access_key_id, "AKIAHOSTA");
        assert_eq!(c.secret_access_key.as_str(), "s2");
        assert_eq!(c.session_token.as_deref().map(|s| s.as_str()), Some("tok"));
        assert!(!format!("{c:?}").contains("s2"));
        assert!(from_file(&creds, "nope", "nope").unwrap().is_none());
        let e = from_file(&creds, "half", "half").unwrap_err();
        assert!(e.to_string().contains("both"), "{e}");
        let config = dir.path().join("config");
        std::fs::write(
            &config,
            "[profile  cfg]\nregion=us-east-1\naws_access_key_id=AKIACFG\naws_secret_access_key=s3\n",
        )
        .unwrap();
        let c = from_file(&config, "profile cfg", "cfg").unwrap().unwrap();
        assert_eq!(c.access_key_id, "AKIACFG");
    }
}
