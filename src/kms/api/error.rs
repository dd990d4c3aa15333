//! Errors at the HTTP edge: AWS's JSON error shape and status codes.
//!
//! Real AWS KMS answers every client error with HTTP 400 and
//! `{"__type": "<Exception>", "message": "…"}` (even where the service model
//! says 404 or 409), and internal failures with 500; botocore reads the
//! error code from `__type`. Internal failures can name paths and OS
//! errors, so their message stays in the server log under a request id and
//! the client only gets that id.

use http::StatusCode;
use serde_json::json;

use super::sigv4::AuthError;
use crate::kms::error::KmsError;

/// One error response, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// `__type`.
    pub aws_type: &'static str,
    /// `message` (never internal details).
    pub message: String,
}

impl ApiError {
    pub fn client(aws_type: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            aws_type,
            message: message.into(),
        }
    }

    /// A 500 whose details were logged under `request_id`.
    pub fn internal(aws_type: &'static str, request_id: &str) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            aws_type,
            message: format!(
                "internal error in the KMS service; its details are in the server log under \
                 request id {request_id}"
            ),
        }
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    /// A KMS error: 400 with its exception name, or a logged 500.
    pub fn from_kms(e: &KmsError, request_id: &str) -> ApiError {
        if e.is_internal() {
            tracing::error!(request_id, error = %e, "KMS internal error");
            ApiError::internal(e.aws_type(), request_id)
        } else {
            ApiError::client(e.aws_type(), e.to_string())
        }
    }

    /// An authentication failure (AWS answers these with 400 too, except
    /// a missing token, which is 403).
    pub fn from_auth(e: &AuthError, request_id: &str) -> ApiError {
        match e {
            AuthError::Internal(m) => {
                tracing::error!(request_id, error = %m, "credential store failure");
                ApiError::internal("InternalFailure", request_id)
            }
            AuthError::MissingAuthenticationToken(_) => {
                ApiError::client(e.aws_type(), e.to_string()).with_status(StatusCode::FORBIDDEN)
            }
            _ => ApiError::client(e.aws_type(), e.to_string()),
        }
    }

    /// The AWS JSON 1.1 error body.
    pub fn json_body(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"__type": self.aws_type, "message": self.message}))
            .expect("BUG: an error body serializes")
    }

    /// The STS (query protocol) XML error body.
    pub fn xml_body(&self, request_id: &str) -> Vec<u8> {
        let code = match self.aws_type {
            "UnrecognizedClientException" => "InvalidClientTokenId",
            "InvalidSignatureException" => "SignatureDoesNotMatch",
            "IncompleteSignatureException" => "IncompleteSignature",
            "MissingAuthenticationTokenException" => "MissingAuthenticationToken",
            other => other,
        };
        let kind = if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        };
        format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>{kind}\
             </Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{}</RequestId>\
             </ErrorResponse>",
            xml_escape(code),
            xml_escape(&self.message),
            xml_escape(request_id)
        )
        .into_bytes()
    }
}

/// Escapes text for an XML element.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_400_with_the_exception_name() {
        let e = ApiError::from_kms(&KmsError::key_disabled("k"), "r1");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&e.json_body()).unwrap();
        assert_eq!(v["__type"], "DisabledException");
        assert!(v["message"].as_str().unwrap().contains("enable-key"));
    }

    #[test]
    fn internal_errors_hide_their_details() {
        let fs = crate::fsutil::FsError::new(
            "read",
            std::path::Path::new("/secret/path/keys.json"),
            std::io::ErrorKind::PermissionDenied.into(),
        );
        let e = ApiError::from_kms(&KmsError::from(fs), "req-42");
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let body = String::from_utf8(e.json_body()).unwrap();
        assert!(!body.contains("/secret/path"), "{body}");
        assert!(
            body.contains("req-42") && body.contains("KMSInternalException"),
            "{body}"
        );
    }

    #[test]
    fn sts_errors_use_sts_codes_and_escape_xml() {
        let e = ApiError::client("UnrecognizedClientException", "bad <key> & co");
        let x = String::from_utf8(e.xml_body("r")).unwrap();
        assert!(x.contains("<Code>InvalidClientTokenId</Code>"), "{x}");
        assert!(x.contains("bad &lt;key&gt; &amp; co"), "{x}");
    }
}
