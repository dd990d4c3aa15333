//! One request, start to finish, without sockets: route (KMS JSON 1.1 or
//! STS query), authenticate (SigV4), parse, call the backend, shape the
//! response. The server runs this on a blocking thread, since the backend
//! and the credential store do file I/O.

use std::sync::Arc;

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use zeroize::Zeroize;

use super::error::{xml_escape, ApiError};
use super::sigv4::{self, Expect};
use super::{Backend, CredentialStore, VIA_SERVICE_HEADER};
use crate::kms::iam::Credential;
use crate::kms::service::Caller;

/// `X-Amz-Target` prefix of every KMS operation.
pub const TARGET_PREFIX: &str = "TrentService.";
/// The content type of the KMS protocol (awsJson1_1).
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.1";
/// The content type of STS requests (awsQuery).
const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A request as received.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// A response to send. `body` may hold plaintext (Decrypt, GenerateDataKey):
/// the server hands it to the connection and keeps no copy.
#[derive(Debug)]
pub struct Outgoing {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// For the access log: operation, principal, outcome.
    pub operation: String,
    pub principal: Option<String>,
    pub outcome: &'static str,
}

/// The protocol handler: a backend, a credential store, and the clock.
pub struct Api {
    backend: Arc<dyn Backend>,
    credentials: Arc<dyn CredentialStore>,
    now: fn() -> u64,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("region", &self.backend.region())
            .finish_non_exhaustive()
    }
}

impl Api {
    pub fn new(backend: Arc<dyn Backend>, credentials: Arc<dyn CredentialStore>) -> Api {
        Api {
            backend,
            credentials,
            now: crate::kms::now,
        }
    }

    pub fn region(&self) -> &str {
        self.backend.region()
    }

    /// Handles one request; never fails (errors become error responses).
    pub fn handle(&self, req: &Incoming<'_>, request_id: &str) -> Outgoing {
        let target = req
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let content_type = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if req.method != "POST" || req.path != "/" {
            let e = ApiError::client(
                "UnknownOperationException",
                format!(
                    "{} {} is not an operation: the AWS KMS protocol is POST / with an \
                     X-Amz-Target: TrentService.<Operation> header",
                    req.method, req.path
                ),
            )
            .with_status(if req.method == "POST" {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::METHOD_NOT_ALLOWED
            });
            return json_error(e, String::new(), None);
        }
        match target {
            Some(t) => self.kms(req, &t, &content_type, request_id),
            None if content_type.starts_with(FORM_CONTENT_TYPE) => self.sts(req, request_id),
            None => json_error(
                ApiError::client(
                    "UnknownOperationException",
                    "the request has no X-Amz-Target header; KMS requests name their operation \
                     as X-Amz-Target: TrentService.<Operation>",
                ),
                String::new(),
                None,
            ),
        }
    }

    fn authenticate(
        &self,
        req: &Incoming<'_>,
        service: &str,
    ) -> Result<Credential, sigv4::AuthError> {
        let sreq = sigv4::Request {
            method: req.method,
            path: req.path,
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let expect = Expect {
            service,
            region: self.backend.region(),
            now: (self.now)(),
        };
        sigv4::verify(&sreq, &expect, |k| self.credentials.credential(k))
    }

    fn kms(
        &self,
        req: &Incoming<'_>,
        target: &str,
        content_type: &str,
        request_id: &str,
    ) -> Outgoing {
        let Some(op) = target.strip_prefix(TARGET_PREFIX) else {
            let e = ApiError::client(
                "UnknownOperationException",
                format!(
                    "X-Amz-Target {target:?} is not a KMS operation (TrentService.<Operation>)"
                ),
            );
            return json_error(e, target.to_owned(), None);
        };
        let op = op.to_owned();
        if !(content_type.starts_with(JSON_CONTENT_TYPE)
            || content_type.starts_with("application/x-amz-json-1.0")
            || content_type.starts_with("application/json"))
        {
            let e = ApiError::client(
                "SerializationException",
                format!(
                    "Content-Type {content_type:?} is not supported; KMS requests are \
                     {JSON_CONTENT_TYPE}"
                ),
            );
            return json_error(e, op, None);
        }
        let cred = match self.authenticate(req, "kms") {
            Ok(c) => c,
            Err(e) => return json_error(ApiError::from_auth(&e, request_id), op, None),
        };
        let principal = cred.principal_arn.clone();
        drop(cred);
        let request: Value = if req.body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(Default::default())
        } else {
            match serde_json::from_slice(req.body) {
                Ok(v @ Value::Object(_)) => v,
                Ok(_) => {
                    let e = ApiError::client(
                        "SerializationException",
                        "the request body must be a JSON object",
                    );
                    return json_error(e, op, Some(principal));
                }
                Err(e) => {
                    let e = ApiError::client(
                        "SerializationException",
                        format!("the request body is not valid JSON: {e}"),
                    );
                    return json_error(e, op, Some(principal));
                }
            }
        };
        let via_service = match self.via_service(req) {
            Ok(v) => v,
            Err(e) => return json_error(e, op, Some(principal)),
        };
        let caller = Caller {
            principal_arn: principal.clone(),
        };
        // XXX: the parsed request (Encrypt's Plaintext, in base64) goes to
        // the backend by value and is not scrubbed; nor are hyper's read
        // buffers. The raw body is (the server keeps it in `Zeroizing`).
        match self.backend.call(&caller, &op, request, via_service) {
            Ok(mut v) => {
                let body = serde_json::to_vec(&v).expect("BUG: a JSON value serializes");
                scrub(&mut v);
                Outgoing {
                    status: StatusCode::OK,
                    content_type: JSON_CONTENT_TYPE,
                    body,
                    operation: op,
                    principal: Some(principal),
                    outcome: "Success",
                }
            }
            Err(e) => json_error(ApiError::from_kms(&e, request_id), op, Some(principal)),
        }
    }

    /// `kms:ViaService` from a signed [`VIA_SERVICE_HEADER`] (an unsigned
    /// one is ignored); only EBS's value for this region is accepted.
    fn via_service(&self, req: &Incoming<'_>) -> Result<Option<String>, ApiError> {
        let Some(v) = req.headers.get(VIA_SERVICE_HEADER) else {
            return Ok(None);
        };
        if !sigv4::is_signed(req.headers, VIA_SERVICE_HEADER) {
            return Ok(None);
        }
        let want = crate::kms::policy_eval::via_service_for("ebs", self.backend.region());
        match v.to_str() {
            Ok(s) if s.trim() == want => Ok(Some(want)),
            _ => Err(ApiError::client(
                "ValidationException",
                format!(
                    "{VIA_SERVICE_HEADER} may only name the service cryptvol's volume layer                      acts as in this region, {want}"
                ),
            )),
        }
    }

    /// STS over the query protocol: only `GetCallerIdentity`.
    fn sts(&self, req: &Incoming<'_>, request_id: &str) -> Outgoing {
        let form = String::from_utf8_lossy(req.body);
        let action = form.split('&').find_map(|p| p.strip_prefix("Action="));
        let action = action.unwrap_or("").to_owned();
        if action != "GetCallerIdentity" {
            let e = ApiError::client(
                "InvalidAction",
                format!(
                    "STS action {action:?} is not served here; this endpoint answers \
                     GetCallerIdentity only"
                ),
            );
            return xml_error(e, action, request_id);
        }
        let cred = match self.authenticate(req, "sts") {
            Ok(c) => c,
            Err(e) => return xml_error(ApiError::from_auth(&e, request_id), action, request_id),
        };
        let account = crate::kms::arn::principal_account(&cred.principal_arn).unwrap_or("");
        let body = format!(
            "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">\
             <GetCallerIdentityResult><Arn>{}</Arn><UserId>{}</UserId><Account>{}</Account>\
             </GetCallerIdentityResult><ResponseMetadata><RequestId>{}</RequestId>\
             </ResponseMetadata></GetCallerIdentityResponse>",
            xml_escape(&cred.principal_arn),
            xml_escape(&cred.user_id),
            xml_escape(account),
            xml_escape(request_id)
        );
        Outgoing {
            status: StatusCode::OK,
            content_type: "text/xml",
            body: body.into_bytes(),
            operation: action,
            principal: Some(cred.principal_arn.clone()),
            outcome: "Success",
        }
    }
}

fn json_error(e: ApiError, operation: String, principal: Option<String>) -> Outgoing {
    Outgoing {
        status: e.status,
        content_type: JSON_CONTENT_TYPE,
        body: e.json_body(),
        operation,
        principal,
        outcome: e.aws_type,
    }
}

fn xml_error(e: ApiError, operation: String, request_id: &str) -> Outgoing {
    Outgoing {
        status: e.status,
        content_type: "text/xml",
        body: e.xml_body(request_id),
        operation,
        principal: None,
        outcome: e.aws_type,
    }
}

/// Overwrites every string of a response value (it may hold plaintext or
/// private keys in base64) before the value is dropped.
fn scrub(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => o.values_mut().for_each(scrub),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
