//! One error type for the whole library. Every AWS failure carries the IAM action that was
//! attempted and the resource it was attempted on, so an AccessDenied names the missing
//! permission and a log line says what was being done.

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// How a failure should be treated by whoever drives the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ErrorClass {
    /// The caller's input or the account's setup is wrong (bad event, bad parameter, missing
    /// permission, resource that cannot be handled): retrying will not help.
    Customer,
    /// Something transient (throttling that outlasted the SDK's retries, 5xx, network):
    /// retrying later may succeed.
    Transient,
    /// A bug or an AWS answer we do not understand.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed Config event: {0}")]
    MalformedEvent(String),

    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter { name: String, reason: String },

    #[error("unknown parameter {name}; accepted parameters: {accepted}")]
    UnknownParameter { name: String, accepted: String },

    #[error("access denied calling {action} on {resource}: grant the function's role `{action}`{detail}")]
    AccessDenied { action: &'static str, resource: String, detail: String },

    #[error("{action} on {resource} failed: {code}: {message}")]
    Aws { action: &'static str, resource: String, code: String, message: String, class: ErrorClass },

    #[error("{0}")]
    Unsupported(String),

    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::MalformedEvent(_)
            | Error::InvalidParameter { .. }
            | Error::UnknownParameter { .. }
            | Error::AccessDenied { .. }
            | Error::Unsupported(_) => ErrorClass::Customer,
            Error::Aws { class, .. } => *class,
            Error::Internal(_) => ErrorClass::Internal,
        }
    }

    /// The AWS error code, when the failure came from AWS.
    pub fn aws_code(&self) -> Option<&str> {
        match self {
            Error::Aws { code, .. } => Some(code),
            Error::AccessDenied { .. } => Some("AccessDenied"),
            _ => None,
        }
    }

    /// A short machine-readable code, as rdklib reports in `customerErrorCode`.
    pub fn code(&self) -> &str {
        match self {
            Error::MalformedEvent(_) => "MalformedEvent",
            Error::InvalidParameter { .. } => "InvalidParameterValueException",
            Error::UnknownParameter { .. } => "InvalidParameterValueException",
            Error::AccessDenied { .. } => "AccessDenied",
            Error::Aws { code, .. } => code,
            Error::Unsupported(_) => "Unsupported",
            Error::Internal(_) => "InternalError",
        }
    }

    pub fn invalid_parameter(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParameter { name: name.into(), reason: reason.into() }
    }
}

const ACCESS_DENIED_CODES: &[&str] = &[
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "AuthorizationError",
    "AuthorizationErrorException",
    "KMSAccessDeniedException",
    "KMSAccessDenied",
];

const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Converts an SDK failure into our error, remembering which IAM action on which resource failed.
///
/// `action` is the IAM action name (`s3:PutEncryptionConfiguration`), not the API name: it is what
/// an operator must add to a policy, and what the least-privilege checks compare with the template.
pub fn aws_error<E>(action: &'static str, resource: impl Into<String>, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.into();
    match &err {
        SdkError::ServiceError(service) => {
            let inner = service.err();
            let code = inner.code().unwrap_or("Unknown").to_string();
            let message = inner.message().unwrap_or("no message").to_string();
            classify(action, resource, code, message, Some(service.raw().status().as_u16()))
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Error::Aws {
            action,
            resource,
            code: "NetworkError".into(),
            message: DisplayErrorContext(&err).to_string(),
            class: ErrorClass::Transient,
        },
        _ => Error::Aws {
            action,
            resource,
            code: "ClientError".into(),
            message: DisplayErrorContext(&err).to_string(),
            class: ErrorClass::Internal,
        },
    }
}

fn classify(action: &'static str, resource: String, code: String, message: String, status: Option<u16>) -> Error {
    if ACCESS_DENIED_CODES.contains(&code.as_str()) {
        let detail = if message.is_empty() || message == "no message" { String::new() } else { format!(" ({message})") };
        return Error::AccessDenied { action, resource, detail };
    }
    let class = if THROTTLING_CODES.contains(&code.as_str()) || matches!(status, Some(500..=599)) {
        ErrorClass::Transient
    } else if code.contains("AlreadyExists") || (is_delete(action) && (code.contains("NotFound") || code.starts_with("NoSuch"))) {
        // A create under a deterministic name, or a delete of an intermediate artifact, whose
        // earlier attempt landed but whose response was lost: the SDK retried it. Not the
        // caller's fault; the next step observes what exists and carries on (or reports a name
        // taken by something else).
        ErrorClass::Transient
    } else if code == "Unknown" {
        ErrorClass::Internal
    } else {
        ErrorClass::Customer
    };
    Error::Aws { action, resource, code, message, class }
}

fn is_delete(action: &str) -> bool {
    action.split_once(':').is_some_and(|(_, op)| op.starts_with("Delete"))
}

/// Formats an error with its whole source chain (the SDK's Display stops at the top level).
pub struct DisplayErrorContext<'a, E: std::error::Error>(pub &'a E);

impl<E: std::error::Error> std::fmt::Display for DisplayErrorContext<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_denied_names_the_permission() {
        let err = classify("s3:GetEncryptionConfiguration", "my-bucket".into(), "AccessDenied".into(), "Access Denied".into(), Some(403));
        assert_eq!(err.class(), ErrorClass::Customer);
        let text = err.to_string();
        assert!(text.contains("grant the function's role `s3:GetEncryptionConfiguration`"), "{text}");
        assert!(text.contains("my-bucket"), "{text}");
    }

    #[test]
    fn throttling_and_5xx_are_transient() {
        for code in ["ThrottlingException", "SlowDown", "RequestLimitExceeded"] {
            let err = classify("config:PutEvaluations", "rule".into(), code.into(), "slow".into(), Some(400));
            assert_eq!(err.class(), ErrorClass::Transient, "{code}");
        }
        let err = classify("s3:PutEncryptionConfiguration", "b".into(), "InternalError".into(), "x".into(), Some(500));
        assert_eq!(err.class(), ErrorClass::Transient);
    }

    #[test]
    fn a_retried_create_that_already_landed_is_transient() {
        // Found by the fault proxy: CreateDBSnapshot performed, response lost, the SDK's retry
        // answered DBSnapshotAlreadyExists, and the fix failed instead of observing again.
        for code in ["DBSnapshotAlreadyExists", "DBInstanceAlreadyExists", "DBClusterSnapshotAlreadyExistsFault", "AlreadyExistsException"]
        {
            let err = classify("rds:CreateDBSnapshot", "snap".into(), code.into(), "exists".into(), Some(400));
            assert_eq!(err.class(), ErrorClass::Transient, "{code}");
        }
        // Likewise a retried delete of an intermediate snapshot (DeleteDBSnapshot, response lost).
        let err = classify("rds:DeleteDBSnapshot", "snap".into(), "DBSnapshotNotFound".into(), "gone".into(), Some(404));
        assert_eq!(err.class(), ErrorClass::Transient);
        // A missing resource is still the caller's problem anywhere else.
        let err = classify("rds:DescribeDBInstances", "db".into(), "DBInstanceNotFound".into(), "gone".into(), Some(404));
        assert_eq!(err.class(), ErrorClass::Customer);
    }

    #[test]
    fn other_service_errors_are_customer_errors() {
        let err = classify("s3:PutEncryptionConfiguration", "b".into(), "NoSuchBucket".into(), "gone".into(), Some(404));
        assert_eq!(err.class(), ErrorClass::Customer);
        assert_eq!(err.aws_code(), Some("NoSuchBucket"));
    }
}
