//! `RemoteKms`: the [`KeyService`] of a KMS reached over HTTP(S) with the
//! AWS KMS JSON protocol and SigV4 — `cryptvol kms serve`, or any endpoint
//! that speaks AWS KMS (AWS itself, LocalStack, moto).
//!
//! Why not `aws-sdk-kms`: measured on this project's 2-core machine (same
//! profile, clean target dir), `aws-sdk-kms` + `aws-config` took 1249
//! CPU-seconds to build (two hyper and two rustls versions, aws-lc-sys, the
//! STS/SSO clients), against 436 for this whole stack (the hyper server,
//! tokio-rustls, ureq, aws-sigv4) — about 7 more minutes of wall time on
//! every clean build. So requests are signed by `aws-sigv4` (the signer
//! inside the SDK) and sent by `ureq` (blocking, rustls with ring): the
//! KeyService trait is synchronous, and its callers (volume attach and
//! create, snapshot copy) run outside any async runtime.
//!
//! The caller argument of the trait's methods is not sent anywhere: the
//! endpoint decides who is calling from the signature. [`RemoteKms::caller_identity`]
//! asks it (STS GetCallerIdentity at the same endpoint, or at
//! `sts.<region>.amazonaws.com` for an AWS KMS endpoint).
//!
//! Secrets: plaintext in responses is decoded straight into
//! [`SecretBytes`]; response bodies live in zeroizing buffers.
//! XXX: ureq's internal read buffers, and the per-request SigV4 signing key
//! that `aws-sigv4` derives, are not zeroized.

pub mod attach;
pub mod credentials;

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::{json, Value};
use zeroize::{Zeroize, Zeroizing};

pub use credentials::{AwsCredentials, CredentialsError};

use super::error::KmsError;
use super::service::{
    AliasListEntry, Caller, CreateKeyRequest, DecryptResponse, EncryptionContext,
    GenerateDataKeyResponse, KeyMetadata, KeyService,
};
use crate::crypto::SecretBytes;

/// Largest response body read (KMS responses are a few KiB).
const MAX_RESPONSE: u64 = 4 << 20;
/// Whole-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Environment variable naming a PEM bundle of CA certificates to trust
/// (the AWS CLI's name), for a `cryptvol kms serve --tls-cert` with a
/// private CA.
pub const CA_BUNDLE_ENV: &str = "AWS_CA_BUNDLE";

/// A KMS reached over HTTP(S).
pub struct RemoteKms {
    endpoint: String,
    sts_endpoint: String,
    region: String,
    credentials: AwsCredentials,
    agent: ureq::Agent,
    /// `kms:ViaService` claimed for every request: this client is the
    /// volume layer acting as EBS (see `kms::api`); AWS ignores the header.
    via_service: String,
}

impl std::fmt::Debug for RemoteKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKms")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

impl RemoteKms {
    /// A client of the KMS at `endpoint` (`http://host:port` or
    /// `https://…`) in `region`, signing with `credentials`.
    pub fn new(
        endpoint: &str,
        region: &str,
        credentials: AwsCredentials,
    ) -> Result<RemoteKms, KmsError> {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let uri: http::Uri = endpoint.parse().map_err(|e| {
            KmsError::Validation(format!(
                "--kms-endpoint {endpoint:?} is not a URL ({e}); write it as http://HOST:PORT or \
                 https://HOST:PORT"
            ))
        })?;
        let host = match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(h)) => h.to_owned(),
            _ => {
                return Err(KmsError::Validation(format!(
                    "--kms-endpoint {endpoint:?} must be an http:// or https:// URL with a host"
                )))
            }
        };
        // AWS serves STS on its own host; everything else (cryptvol,
        // LocalStack, moto) answers STS at the KMS endpoint.
        let sts_endpoint = match host.strip_prefix("kms.") {
            Some(rest) if rest.ends_with(".amazonaws.com") => format!("https://sts.{rest}"),
            _ => endpoint.clone(),
        };
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(bundle) = std::env::var_os(CA_BUNDLE_ENV).filter(|v| !v.is_empty()) {
            let pem = std::fs::read(&bundle).map_err(|e| {
                KmsError::Validation(format!(
                    "cannot read {CA_BUNDLE_ENV} file {}: {e}",
                    std::path::Path::new(&bundle).display()
                ))
            })?;
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(KmsError::Validation(format!(
                    "{CA_BUNDLE_ENV} file {} holds no PEM certificate",
                    std::path::Path::new(&bundle).display()
                )));
            }
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls.build())
            .build()
            .into();
        Ok(RemoteKms {
            endpoint,
            sts_endpoint,
            region: region.to_owned(),
            credentials,
            agent,
            via_service: super::policy_eval::via_service_for("ebs", region),
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Signs and sends one request; returns the status and the body.
    fn send(
        &self,
        url: &str,
        service: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(u16, Zeroizing<Vec<u8>>), KmsError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        use aws_sigv4::sign::v4;
        let c = &self.credentials;
        let identity = aws_credential_types::Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.as_str().to_owned(),
            c.session_token.as_ref().map(|t| t.as_str().to_owned()),
            None,
            "cryptvol",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| KmsError::Internal(format!("cannot build SigV4 parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            url,
            headers.iter().copied(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| KmsError::Validation(format!("cannot sign a request to {url}: {e}")))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| KmsError::Internal(format!("cannot sign a request to {url}: {e}")))?
            .into_parts();
        let mut req = self.agent.post(url);
        for (k, v) in headers.iter().copied().chain(instructions.headers()) {
            req = req.header(k, v);
        }
        let mut resp = req.send(body).map_err(|e| {
            KmsError::Internal(format!(
                "cannot reach the KMS at {url}: {e}; check --kms-endpoint and that the KMS \
                 (`cryptvol kms serve`) is running"
            ))
        })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE)
            .read_to_vec()
            .map_err(|e| {
                KmsError::Internal(format!("reading the response of {url} failed: {e}"))
            })?;
        Ok((status, Zeroizing::new(bytes)))
    }

    /// One KMS operation: AWS JSON in, the raw JSON response body out (it
    /// may hold plaintext, so it is zeroized when dropped).
    pub fn call_raw(
        &self,
        operation: &str,
        request: &Value,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        let body =
            Zeroizing::new(serde_json::to_vec(request).expect("BUG: a JSON value serializes"));
        let target = format!("TrentService.{operation}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
            (super::api::VIA_SERVICE_HEADER, self.via_service.as_str()),
        ];
        let url = format!("{}/", self.endpoint);
        let (status, resp) = self.send(&url, "kms", &headers, &body)?;
        if status == 200 {
            return Ok(resp);
        }
        Err(self.error_from(status, &resp, operation))
    }

    /// Maps an AWS error response to a [`KmsError`].
    fn error_from(&self, status: u16, body: &[u8], operation: &str) -> KmsError {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let raw_type = v["__type"].as_str().unwrap_or("");
        // `com.amazonaws.kms#NotFoundException` and `Name:http://…` forms.
        let t = raw_type.rsplit('#').next().unwrap_or(raw_type);
        let t = t.split(':').next().unwrap_or(t);
        let msg = v["message"]
            .as_str()
            .or_else(|| v["Message"].as_str())
            .unwrap_or("")
            .to_owned();
        if t.is_empty() {
            return KmsError::Internal(format!(
                "the KMS at {} answered {operation} with HTTP {status} and no AWS error",
                self.endpoint
            ));
        }
        let creds = || {
            format!(
                "{t} from the KMS at {} (access key {} from {}): {msg}",
                self.endpoint, self.credentials.access_key_id, self.credentials.source
            )
        };
        kms_error(t, msg.clone()).unwrap_or_else(|| match t {
            "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "IncompleteSignatureException"
            | "MissingAuthenticationTokenException"
            | "RequestExpired"
            | "ExpiredTokenException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch" => KmsError::AccessDenied(creds()),
            _ if status >= 500 => KmsError::Internal(creds()),
            _ => KmsError::Validation(creds()),
        })
    }

    /// The ARN the endpoint knows these credentials as (STS
    /// GetCallerIdentity).
    pub fn caller_identity(&self) -> Result<String, KmsError> {
        let url = format!("{}/", self.sts_endpoint);
        let headers = [(
            "content-type",
            "application/x-www-form-urlencoded; charset=utf-8",
        )];
        let body = b"Action=GetCallerIdentity&Version=2011-06-15";
        let (status, resp) = self.send(&url, "sts", &headers, body)?;
        let text = String::from_utf8_lossy(&resp);
        let tag = |name: &str| {
            let open = format!("<{name}>");
            let start = text.find(&open)? + open.len();
            let len = text[start..].find(&format!("</{name}>"))?;
            Some(text[start..start + len].to_owned())
        };
        if status == 200 {
            if let Some(arn) = tag("Arn") {
                return Ok(arn);
            }
        }
        let code = tag("Code").unwrap_or_else(|| format!("HTTP {status}"));
        let message = tag("Message").unwrap_or_default();
        let e = format!(
            "the KMS at {} did not tell who access key {} (from {}) is: STS GetCallerIdentity \
             at {url} failed with {code}: {message}",
            self.endpoint, self.credentials.access_key_id, self.credentials.source
        );
        Err(if status >= 500 || status == 200 || status == 404 {
            KmsError::Internal(e)
        } else {
            KmsError::AccessDenied(e)
        })
    }

    /// Runs `operation` and parses the response.
    fn call_value(&self, operation: &str, request: &Value) -> Result<Value, KmsError> {
        let raw = self.call_raw(operation, request)?;
        serde_json::from_slice(&raw).map_err(|e| {
            KmsError::Internal(format!(
                "the KMS at {} answered {operation} with invalid JSON: {e}",
                self.endpoint
            ))
        })
    }

    fn bad_response(&self, operation: &str, field: &str) -> KmsError {
        KmsError::Internal(format!(
            "the KMS at {} answered {operation} without a valid {field}",
            self.endpoint
        ))
    }

    /// Takes the base64 `field` of `v` into a secret, scrubbing `v`.
    fn secret_field(
        &self,
        v: &mut Value,
        operation: &str,
        field: &str,
    ) -> Result<SecretBytes, KmsError> {
        let out = v[field]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .map(SecretBytes::new)
            .ok_or_else(|| self.bad_response(operation, field));
        scrub(v);
        out
    }
}

/// Overwrites every string of a parsed response.
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

/// The [`KmsError`] variant of an AWS KMS exception name, if it is one.
pub fn kms_error(aws_type: &str, m: String) -> Option<KmsError> {
    Some(match aws_type {
        "NotFoundException" => KmsError::NotFound(m),
        "DisabledException" => KmsError::Disabled(m),
        "KMSInvalidStateException" => KmsError::InvalidState(m),
        "InvalidCiphertextException" => KmsError::InvalidCiphertext(m),
        "IncorrectKeyException" => KmsError::IncorrectKey(m),
        "ValidationException" => KmsError::Validation(m),
        "AlreadyExistsException" => KmsError::AlreadyExists(m),
        "AccessDeniedException" => KmsError::AccessDenied(m),
        "NotAuthorizedException" => KmsError::NotAuthorized(m),
        "InvalidKeyUsageException" => KmsError::InvalidKeyUsage(m),
        "LimitExceededException" => KmsError::LimitExceeded(m),
        "UnsupportedOperationException" => KmsError::UnsupportedOperation(m),
        "InvalidArnException" => KmsError::InvalidArn(m),
        "InvalidAliasNameException" => KmsError::InvalidAliasName(m),
        "InvalidMarkerException" => KmsError::InvalidMarker(m),
        "InvalidGrantTokenException" => KmsError::InvalidGrantToken(m),
        "InvalidGrantIdException" => KmsError::InvalidGrantId(m),
        "KeyUnavailableException" => KmsError::KeyUnavailable(m),
        "KMSInvalidSignatureException" => KmsError::InvalidSignature(m),
        "KMSInvalidMacException" => KmsError::InvalidMac(m),
        "TagException" => KmsError::Tag(m),
        "MalformedPolicyDocumentException" => KmsError::MalformedPolicyDocument(m),
        "InvalidImportTokenException" => KmsError::InvalidImportToken(m),
        "ExpiredImportTokenException" => KmsError::ExpiredImportToken(m),
        "IncorrectKeyMaterialException" => KmsError::IncorrectKeyMaterial(m),
        "DryRunOperationException" => KmsError::DryRunOperation(m),
        "SerializationException" => KmsError::Serialization(m),
        "UnknownOperationException" => KmsError::UnknownOperation(m),
        "KMSInternalException" | "DependencyTimeoutException" => KmsError::Internal(m),
        _ => return None,
    })
}

fn metadata(v: &Value, kms: &RemoteKms, operation: &str) -> Result<KeyMetadata, KmsError> {
    serde_json::from_value(v["KeyMetadata"].clone())
        .map_err(|_| kms.bad_response(operation, "KeyMetadata"))
}

impl KeyService for RemoteKms {
    fn region(&self) -> &str {
        &self.region
    }

    fn create_key(&self, _caller: &Caller, req: CreateKeyRequest) -> Result<KeyMetadata, KmsError> {
        let mut body = json!({ "Description": req.description });
        if let Some(spec) = req.key_spec {
            body["KeySpec"] = Value::String(spec);
        }
        let v = self.call_value("CreateKey", &body)?;
        metadata(&v, self, "CreateKey")
    }

    fn describe_key(&self, _caller: &Caller, key_id: &str) -> Result<KeyMetadata, KmsError> {
        let v = self.call_value("DescribeKey", &json!({ "KeyId": key_id }))?;
        metadata(&v, self, "DescribeKey")
    }

    fn list_keys(&self, caller: &Caller) -> Result<Vec<KeyMetadata>, KmsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = json!({});
            if let Some(m) = &marker {
                req["Marker"] = Value::String(m.clone());
            }
            let v = self.call_value("ListKeys", &req)?;
            for k in v["Keys"].as_array().into_iter().flatten() {
                let id = k["KeyArn"]
                    .as_str()
                    .or_else(|| k["KeyId"].as_str())
                    .ok_or_else(|| self.bad_response("ListKeys", "Keys"))?;
                out.push(self.describe_key(caller, id)?);
            }
            marker = v["NextMarker"].as_str().map(str::to_owned);
            if !v["Truncated"].as_bool().unwrap_or(false) || marker.is_none() {
                return Ok(out);
            }
        }
    }

    fn create_alias(
        &self,
        _caller: &Caller,
        alias_name: &str,
        target_key_id: &str,
    ) -> Result<(), KmsError> {
        self.call_value(
            "CreateAlias",
            &json!({ "AliasName": alias_name, "TargetKeyId": target_key_id }),
        )?;
        Ok(())
    }

    fn list_aliases(&self, _caller: &Caller) -> Result<Vec<AliasListEntry>, KmsError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut req = json!({});
            if let Some(m) = &marker {
                req["Marker"] = Value::String(m.clone());
            }
            let v = self.call_value("ListAliases", &req)?;
            for a in v["Aliases"].as_array().into_iter().flatten() {
                out.push(AliasListEntry {
                    alias_name: a["AliasName"].as_str().unwrap_or_default().to_owned(),
                    alias_arn: a["AliasArn"].as_str().unwrap_or_default().to_owned(),
                    target_key_id: a["TargetKeyId"].as_str().map(str::to_owned),
                });
            }
            marker = v["NextMarker"].as_str().map(str::to_owned);
            if !v["Truncated"].as_bool().unwrap_or(false) || marker.is_none() {
                return Ok(out);
            }
        }
    }

    fn generate_data_key(
        &self,
        _caller: &Caller,
        key_id: &str,
        number_of_bytes: usize,
        context: &EncryptionContext,
    ) -> Result<GenerateDataKeyResponse, KmsError> {
        let mut req = json!({ "KeyId": key_id, "NumberOfBytes": number_of_bytes });
        if !context.is_empty() {
            req["EncryptionContext"] = json!(context);
        }
        let mut v = self.call_value("GenerateDataKey", &req)?;
        let key_id = v["KeyId"].as_str().unwrap_or_default().to_owned();
        let ciphertext_blob = v["CiphertextBlob"]
            .as_str()
            .and_then(|s| STANDARD.decode(s).ok())
            .ok_or_else(|| self.bad_response("GenerateDataKey", "CiphertextBlob"))?;
        let plaintext = self.secret_field(&mut v, "GenerateDataKey", "Plaintext")?;
        Ok(GenerateDataKeyResponse {
            key_id,
            plaintext,
            ciphertext_blob,
        })
    }

    fn decrypt(
        &self,
        caller: &Caller,
        ciphertext_blob: &[u8],
        context: &EncryptionContext,
        key_id: Option<&str>,
    ) -> Result<DecryptResponse, KmsError> {
        decrypt_with_tokens(self, caller, ciphertext_blob, context, key_id, &[])
    }

    fn call_json(
        &self,
        _caller: &Caller,
        operation: &str,
        request: Value,
    ) -> Result<Value, KmsError> {
        self.call_value(operation, &request)
    }
}

/// Decrypt with `GrantTokens`, keeping the plaintext in a secret.
fn decrypt_with_tokens(
    kms: &RemoteKms,
    _caller: &Caller,
    ciphertext_blob: &[u8],
    context: &EncryptionContext,
    key_id: Option<&str>,
    grant_tokens: &[String],
) -> Result<DecryptResponse, KmsError> {
    let mut req = json!({ "CiphertextBlob": STANDARD.encode(ciphertext_blob) });
    if !context.is_empty() {
        req["EncryptionContext"] = json!(context);
    }
    if let Some(k) = key_id {
        req["KeyId"] = Value::String(k.to_owned());
    }
    if !grant_tokens.is_empty() {
        req["GrantTokens"] = json!(grant_tokens);
    }
    let mut v = kms.call_value("Decrypt", &req)?;
    let key_id = v["KeyId"].as_str().unwrap_or_default().to_owned();
    let plaintext = kms.secret_field(&mut v, "Decrypt", "Plaintext")?;
    Ok(DecryptResponse { key_id, plaintext })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn creds() -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIAEXAMPLEEXAMPLE12".into(),
            secret_access_key: Zeroizing::new("s".repeat(40)),
            session_token: None,
            source: "test".into(),
        }
    }

    #[test]
    fn endpoints_are_checked_and_sts_follows_aws_hosts() {
        let r = RemoteKms::new("http://127.0.0.1:4599/", "us-east-1", creds()).unwrap();
        assert_eq!(r.endpoint(), "http://127.0.0.1:4599");
        assert_eq!(r.sts_endpoint, "http://127.0.0.1:4599");
        let r =
            RemoteKms::new("https://kms.eu-west-1.amazonaws.com", "eu-west-1", creds()).unwrap();
        assert_eq!(r.sts_endpoint, "https://sts.eu-west-1.amazonaws.com");
        for bad in ["127.0.0.1:4599", "ftp://x", "not a url"] {
            let e = RemoteKms::new(bad, "us-east-1", creds()).unwrap_err();
            assert_eq!(e.aws_type(), "ValidationException", "{bad}");
        }
        assert!(!format!("{r:?}").contains(&"s".repeat(40)));
    }

    #[test]
    fn aws_errors_map_to_kms_errors() {
        let r = RemoteKms::new("http://127.0.0.1:1", "us-east-1", creds()).unwrap();
        let e = r.error_from(
            400,
            br#"{"__type":"com.amazonaws.kms#DisabledException","message":"off"}"#,
            "Decrypt",
        );
        assert_eq!(e.aws_type(), "DisabledException");
        assert_eq!(e.to_string(), "off");
        let e = r.error_from(
            400,
            br#"{"__type":"UnrecognizedClientException","message":"who?"}"#,
            "Decrypt",
        );
        assert_eq!(e.aws_type(), "AccessDeniedException");
        assert!(e.to_string().contains("AKIAEXAMPLEEXAMPLE12") && e.to_string().contains("who?"));
        let e = r.error_from(502, b"<html>", "Decrypt");
        assert!(e.is_internal());
    }

    #[test]
    fn an_unreachable_endpoint_is_a_clear_error() {
        let r = RemoteKms::new("http://127.0.0.1:1", "us-east-1", creds()).unwrap();
        let e = r
            .describe_key(&Caller::account_root("111122223333"), "k")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("cannot reach the KMS at http://127.0.0.1:1/"),
            "{e}"
        );
    }
}
