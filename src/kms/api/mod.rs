//! The AWS KMS wire protocol over HTTP: `cryptvol kms serve`.
//!
//! ```text
//! TCP ─ (TLS, rustls) ─ hyper HTTP/1.1 ─ server::handle
//!   limits: connections, header/body timeouts, 1 MiB bodies       (server)
//!   └─ POST /, X-Amz-Target: TrentService.<Op>, x-amz-json-1.1    (protocol)
//!        └─ SigV4 → access key → principal ARN                   (sigv4, kms::iam)
//!             └─ Backend::call(caller, op, JSON) = LocalKms::call (authorize → act → audit)
//!        └─ errors: {"__type", "message"}, 400 client / 500 internal (error)
//!   └─ POST / Action=GetCallerIdentity (STS query protocol)       (protocol)
//! ```
//!
//! `kms:ViaService`: AWS sets it when a service (EBS) calls KMS for a
//! principal. cryptvol's volume layer plays EBS; when it calls through
//! [`super::remote::RemoteKms`] it says so in a signed
//! `X-Cryptvol-Via-Service: ec2.<region>.amazonaws.com` header
//! ([`VIA_SERVICE_HEADER`]), which the server honours only when signed and
//! only with that value. `kms:CallerAccount` is the account of the
//! authenticated principal.
//!
//! XXX: unlike AWS, where only the service itself can set ViaService, here
//! any principal can make that claim for its own requests. So a key policy
//! condition on `kms:ViaService` scopes what a principal does *through*
//! cryptvol's volume layer, but does not stop an otherwise-allowed principal
//! from using the key directly (the AWS managed key `alias/aws/ebs` is thus
//! usable directly by every principal of the account that sets the header).
//!
//! STS `GetCallerIdentity` is served at the same endpoint (as LocalStack and
//! moto do) so that a host can learn the ARN its credentials stand for —
//! `aws sts get-caller-identity --endpoint-url …` works — and name itself as
//! the grantee of the grant it attaches volumes with.

pub mod error;
pub mod protocol;
pub mod server;
pub mod sigv4;

use serde_json::Value;

use super::error::KmsError;
use super::iam::{Credential, Iam, IamError};
use super::local::LocalKms;
use super::service::Caller;

/// The header in which cryptvol's volume layer states that it calls as
/// EBS (`kms:ViaService`); see the module doc.
pub const VIA_SERVICE_HEADER: &str = "x-cryptvol-via-service";

/// What the HTTP API serves: the operation table of one region.
pub trait Backend: Send + Sync {
    /// The region requests must be signed for.
    fn region(&self) -> &str;
    /// Runs one AWS KMS operation for `caller`, made through `via_service`
    /// (`kms:ViaService`) when set.
    fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
        via_service: Option<String>,
    ) -> Result<Value, KmsError>;
}

impl Backend for LocalKms {
    fn region(&self) -> &str {
        super::service::KeyService::region(self)
    }

    fn call(
        &self,
        caller: &Caller,
        operation: &str,
        request: Value,
        via_service: Option<String>,
    ) -> Result<Value, KmsError> {
        LocalKms::call_via(self, caller, operation, request, via_service)
    }
}

/// Where access keys are looked up.
pub trait CredentialStore: Send + Sync {
    /// The credential of `access_key_id`, `Ok(None)` when there is none.
    fn credential(&self, access_key_id: &str) -> Result<Option<Credential>, IamError>;
}

impl CredentialStore for Iam {
    fn credential(&self, access_key_id: &str) -> Result<Option<Credential>, IamError> {
        Iam::credential(self, access_key_id)
    }
}
