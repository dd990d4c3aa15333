//! AWS Signature Version 4 verification, sans-I/O.
//!
//! Implements the verifier side of "Create a signed AWS API request"
//! (AWS IAM User Guide, "Signature Version 4 for API requests"):
//!
//! ```text
//! Authorization: AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request,
//!                SignedHeaders=content-type;host;x-amz-date, Signature=<64 hex>
//!
//! CanonicalRequest = Method \n CanonicalURI \n CanonicalQuery \n
//!                    CanonicalHeaders \n SignedHeaders \n hex(SHA256(body))
//! StringToSign     = "AWS4-HMAC-SHA256" \n X-Amz-Date \n Scope \n hex(SHA256(CanonicalRequest))
//! SigningKey       = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")
//! Signature        = hex(HMAC(SigningKey, StringToSign))
//! ```
//!
//! Checks, in order, each with the exception AWS answers: a missing
//! `Authorization` (`MissingAuthenticationTokenException`); a malformed one,
//! or `host`/`x-amz-date` not signed (`IncompleteSignatureException`); an
//! unknown or inactive access key (`UnrecognizedClientException`); a
//! timestamp more than 15 minutes off the server clock (`RequestExpired`);
//! a scope for another service, region or date, or a wrong signature
//! (`InvalidSignatureException`). The signature comparison is constant-time
//! (`Mac::verify_slice`); the signing keys are zeroized.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::kms::iam::Credential;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm of SigV4 with symmetric keys.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// AWS rejects requests whose timestamp is more than 15 minutes off.
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// The fixed last element of a credential scope.
const TERMINATOR: &str = "aws4_request";

/// Why a request is not authenticated. `Display` is the message; names are
/// AWS's exception names ([`AuthError::aws_type`]).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    MissingAuthenticationToken(String),
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("{0}")]
    UnrecognizedClient(String),
    #[error("{0}")]
    RequestExpired(String),
    #[error("{0}")]
    InvalidSignature(String),
    /// The credential store failed (a 500; the message stays in the log).
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The `__type` AWS sends.
    pub fn aws_type(&self) -> &'static str {
        match self {
            AuthError::MissingAuthenticationToken(_) => "MissingAuthenticationTokenException",
            AuthError::IncompleteSignature(_) => "IncompleteSignatureException",
            AuthError::UnrecognizedClient(_) => "UnrecognizedClientException",
            AuthError::RequestExpired(_) => "RequestExpired",
            AuthError::InvalidSignature(_) => "InvalidSignatureException",
            AuthError::Internal(_) => "InternalFailure",
        }
    }
}

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    /// `YYYYMMDD`.
    pub date: String,
    pub region: String,
    pub service: String,
    /// Lowercase header names, in the order the signer listed them.
    pub signed_headers: Vec<String>,
    /// The 32 signature bytes.
    pub signature: Vec<u8>,
}

impl Authorization {
    /// Parses `AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
    pub fn parse(value: &str) -> Result<Authorization, AuthError> {
        let incomplete = |why: &str| {
            AuthError::IncompleteSignature(format!(
                "Authorization header is not a valid AWS Signature Version 4 header ({why}); it \
                 must read `{ALGORITHM} Credential=<access key id>/<date>/<region>/<service>/\
                 {TERMINATOR}, SignedHeaders=<names>, Signature=<hex>`"
            ))
        };
        let rest = value
            .trim()
            .strip_prefix(ALGORITHM)
            .filter(|r| r.starts_with(' '))
            .ok_or_else(|| incomplete(&format!("the algorithm must be {ALGORITHM}")))?;
        let (mut credential, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (k, v) = part
                .trim()
                .split_once('=')
                .ok_or_else(|| incomplete("a component is not key=value"))?;
            let slot = match k {
                "Credential" => &mut credential,
                "SignedHeaders" => &mut signed,
                "Signature" => &mut signature,
                _ => return Err(incomplete(&format!("unknown component {k:?}"))),
            };
            if slot.replace(v).is_some() {
                return Err(incomplete(&format!("{k} is given twice")));
            }
        }
        let credential = credential.ok_or_else(|| incomplete("Credential is missing"))?;
        let signed = signed.ok_or_else(|| incomplete("SignedHeaders is missing"))?;
        let signature = signature.ok_or_else(|| incomplete("Signature is missing"))?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [akid, date, region, service, terminator] = scope[..] else {
            return Err(incomplete("Credential must have five parts separated by /"));
        };
        if akid.is_empty() || region.is_empty() || service.is_empty() {
            return Err(incomplete("Credential has an empty part"));
        }
        if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
            return Err(incomplete("the Credential date must be YYYYMMDD"));
        }
        if terminator != TERMINATOR {
            return Err(incomplete(&format!(
                "the Credential must end with {TERMINATOR}"
            )));
        }
        let signed_headers: Vec<String> = signed.split(';').map(str::to_owned).collect();
        if signed_headers.iter().any(|h| {
            h.is_empty()
                || h.bytes()
                    .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
        }) {
            return Err(incomplete(
                "SignedHeaders must be lowercase names separated by ;",
            ));
        }
        if signature.len() != 64 || !signature.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(incomplete("Signature must be 64 hexadecimal digits"));
        }
        let signature =
            hex::decode(signature).map_err(|_| incomplete("Signature is not hexadecimal"))?;
        Ok(Authorization {
            access_key_id: akid.to_owned(),
            date: date.to_owned(),
            region: region.to_owned(),
            service: service.to_owned(),
            signed_headers,
            signature,
        })
    }
}

/// The parts of an HTTP request a signature covers.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The query string as received, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// What the server expects a signature to be scoped to.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// `kms` (or `sts` for GetCallerIdentity).
    pub service: &'a str,
    pub region: &'a str,
    /// Server time, seconds since the epoch.
    pub now: u64,
}

/// Whether `name` is among the signed headers of `req` (call after
/// [`verify`] succeeded, which proves the list is the signer's).
pub fn is_signed(headers: &HeaderMap, name: &str) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Authorization::parse(v).ok())
        .is_some_and(|a| a.signed_headers.iter().any(|h| h == name))
}

/// Authenticates `req`: returns the credential that signed it.
/// `lookup` finds an access key (`Ok(None)`: no such key).
pub fn verify<E: std::fmt::Display>(
    req: &Request<'_>,
    expect: &Expect<'_>,
    lookup: impl FnOnce(&str) -> Result<Option<Credential>, E>,
) -> Result<Credential, AuthError> {
    let header = |name: &str| req.headers.get(name).map(|v| v.to_str());
    let auth = match header("authorization") {
        None => {
            return Err(AuthError::MissingAuthenticationToken(
                "Missing Authentication Token: sign the request with AWS Signature Version 4 \
                 (credentials from `cryptvol iam create-access-key`)"
                    .into(),
            ))
        }
        Some(Err(_)) => {
            return Err(AuthError::IncompleteSignature(
                "Authorization header is not ASCII".into(),
            ))
        }
        Some(Ok(v)) => Authorization::parse(v)?,
    };
    for must in ["host", "x-amz-date"] {
        if !auth.signed_headers.iter().any(|h| h == must) {
            return Err(AuthError::IncompleteSignature(format!(
                "'{must}' must be a SignedHeader in the AWS Authorization"
            )));
        }
    }
    if req.headers.contains_key("x-amz-security-token") {
        return Err(AuthError::UnrecognizedClient(
            "The security token included in the request is invalid: this KMS issues no session \
             tokens; unset AWS_SESSION_TOKEN and use an access key from `cryptvol iam \
             create-access-key`"
                .into(),
        ));
    }
    let unrecognized = || {
        AuthError::UnrecognizedClient(format!(
            "The security token included in the request is invalid: access key {} is not an \
             active access key of this KMS (list keys with `cryptvol iam list-access-keys`)",
            auth.access_key_id
        ))
    };
    let cred = lookup(&auth.access_key_id)
        .map_err(|e| AuthError::Internal(format!("credential lookup failed: {e}")))?
        .ok_or_else(unrecognized)?;
    if !cred.active {
        return Err(unrecognized());
    }
    let amz_date = match header("x-amz-date") {
        Some(Ok(d)) => d.trim(),
        _ => {
            return Err(AuthError::IncompleteSignature(
                "the request has no valid X-Amz-Date header (format YYYYMMDDTHHMMSSZ)".into(),
            ))
        }
    };
    let when = parse_amz_date(amz_date).ok_or_else(|| {
        AuthError::IncompleteSignature(format!(
            "X-Amz-Date {amz_date:?} is not in the format YYYYMMDDTHHMMSSZ"
        ))
    })?;
    if when.abs_diff(expect.now) > MAX_SKEW_SECS {
        return Err(AuthError::RequestExpired(format!(
            "Signature expired: {amz_date} is more than 15 minutes away from the server time {}; \
             correct the clock of the client (or of the KMS server)",
            format_amz_date(expect.now)
        )));
    }
    if !amz_date.starts_with(&auth.date) {
        return Err(AuthError::InvalidSignature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from \
             HTTP: '{}' != '{}'",
            auth.date,
            &amz_date[..8]
        )));
    }
    if auth.service != expect.service {
        return Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped to correct service: '{}' (not '{}')",
            expect.service, auth.service
        )));
    }
    if auth.region != expect.region {
        return Err(AuthError::InvalidSignature(format!(
            "Credential should be scoped to a valid region: this KMS serves region '{}', the \
             request was signed for '{}'; use --region {} (or AWS_REGION)",
            expect.region, auth.region, expect.region
        )));
    }
    let creq = canonical_request(req, &auth.signed_headers)?;
    let scope = format!(
        "{}/{}/{}/{TERMINATOR}",
        auth.date, auth.region, auth.service
    );
    let sts = string_to_sign(amz_date, &scope, &creq);
    let key = signing_key(
        cred.secret.expose(),
        &auth.date,
        &auth.region,
        &auth.service,
    );
    let mut mac = HmacSha256::new_from_slice(key.as_slice())
        .expect("BUG: HMAC-SHA256 takes keys of any length");
    mac.update(sts.as_bytes());
    if mac.verify_slice(&auth.signature).is_err() {
        return Err(AuthError::InvalidSignature(format!(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key (of access key {}) and signing method.",
            auth.access_key_id
        )));
    }
    Ok(cred)
}

/// The canonical request (SigV4 task 1).
pub fn canonical_request(req: &Request<'_>, signed: &[String]) -> Result<String, AuthError> {
    let mut out = String::new();
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_uri(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed {
        let values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| canonical_header_value(v.as_bytes()))
            .collect();
        if values.is_empty() {
            return Err(AuthError::InvalidSignature(format!(
                "signed header '{name}' is not in the request"
            )));
        }
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(&hex::encode(Sha256::digest(req.body)));
    Ok(out)
}

/// `AWS4-HMAC-SHA256 \n date \n scope \n hex(SHA256(canonical request))`.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The SigV4 signing key for one day, region and service (zeroized on drop).
pub fn signing_key(secret: &[u8], date: &str, region: &str, service: &str) -> Zeroizing<Vec<u8>> {
    let mut k = Zeroizing::new(Vec::with_capacity(4 + secret.len()));
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret);
    for part in [date, region, service, TERMINATOR] {
        let mut mac = HmacSha256::new_from_slice(k.as_slice())
            .expect("BUG: HMAC-SHA256 takes keys of any length");
        mac.update(part.as_bytes());
        k = Zeroizing::new(mac.finalize().into_bytes().to_vec());
    }
    k
}

/// `hex(HMAC(signing key, string to sign))`: what a signer computes.
pub fn signature(key: &[u8], string_to_sign: &str) -> String {
    let mut mac =
        HmacSha256::new_from_slice(key).expect("BUG: HMAC-SHA256 takes keys of any length");
    mac.update(string_to_sign.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-_.~` as `%XX`.
fn uri_encode(s: &[u8], keep_slash: bool, out: &mut String) {
    for &b in s {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push(u8::try_from(h * 16 + l).expect("BUG: two hex digits fit a byte"));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// The canonical URI of every AWS service but S3: the path with `.` and
/// `..` segments removed, each segment URI-encoded again (so the
/// on-the-wire encoding is encoded twice, as botocore and the SDKs do).
pub fn canonical_uri(path: &str) -> String {
    if path.is_empty() {
        return "/".to_owned();
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in path.split('/').skip(1) {
        match seg {
            "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let ends_dir = path.ends_with("/.") || path.ends_with("/..");
    let mut out = String::new();
    for s in &segs {
        out.push('/');
        uri_encode(s.as_bytes(), false, &mut out);
    }
    if out.is_empty() || ends_dir {
        out.push('/');
    }
    out
}

/// Query parameters decoded, re-encoded strictly and sorted.
pub fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), false, &mut ek);
            uri_encode(&percent_decode(v), false, &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    let parts: Vec<String> = pairs.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    parts.join("&")
}

/// Trimmed, with runs of spaces collapsed to one.
fn canonical_header_value(v: &[u8]) -> String {
    let s = String::from_utf8_lossy(v);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses `YYYYMMDDTHHMMSSZ` to seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(i64::try_from(y).ok()?, mo, d);
    let days = u64::try_from(days).ok()?;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec)
}

/// Formats seconds since the epoch as `YYYYMMDDTHHMMSSZ`.
pub fn format_amz_date(t: u64) -> String {
    let days = i64::try_from(t / 86_400).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    let r = t % 86_400;
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        r / 3600,
        r / 60 % 60,
        r % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u64, d: u64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
