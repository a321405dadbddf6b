//! The OCI error codes, their HTTP statuses, and the JSON body every error carries.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use wharf_registry::Error as RegistryError;

/// The header that carries the id under which a server-side failure was logged.
const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// An error code of the distribution spec (and the few Distribution adds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `BLOB_UNKNOWN`, 404.
    BlobUnknown,
    /// `BLOB_UPLOAD_INVALID`, 400.
    BlobUploadInvalid,
    /// `BLOB_UPLOAD_UNKNOWN`, 404.
    BlobUploadUnknown,
    /// `DIGEST_INVALID`, 400.
    DigestInvalid,
    /// `MANIFEST_BLOB_UNKNOWN`, 400.
    ManifestBlobUnknown,
    /// `MANIFEST_INVALID`, 400.
    ManifestInvalid,
    /// `MANIFEST_UNKNOWN`, 404.
    ManifestUnknown,
    /// `NAME_INVALID`, 400.
    NameInvalid,
    /// `NAME_UNKNOWN`, 404.
    NameUnknown,
    /// `SIZE_INVALID`, 400.
    SizeInvalid,
    /// `SIZE_INVALID` for a manifest over the limit, 413.
    ManifestTooLarge,
    /// `UNAUTHORIZED`, 401.
    Unauthorized,
    /// `DENIED`, 403.
    Denied,
    /// `UNSUPPORTED`, 405.
    Unsupported,
    /// `TOOMANYREQUESTS`, 429.
    TooManyRequests,
    /// `RANGE_INVALID`, 416.
    RangeInvalid,
    /// `TAG_INVALID`, 400.
    TagInvalid,
    /// `PAGINATION_NUMBER_INVALID`, 400.
    PaginationNumberInvalid,
    /// `NOT_FOUND`, 404: the path is no endpoint of the API.
    NotFound,
    /// `UNKNOWN`, 500.
    Unknown,
    /// `UNAVAILABLE`, 503.
    Unavailable,
}

impl ErrorCode {
    /// The code as the JSON body writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BlobUnknown => "BLOB_UNKNOWN",
            ErrorCode::BlobUploadInvalid => "BLOB_UPLOAD_INVALID",
            ErrorCode::BlobUploadUnknown => "BLOB_UPLOAD_UNKNOWN",
            ErrorCode::DigestInvalid => "DIGEST_INVALID",
            ErrorCode::ManifestBlobUnknown => "MANIFEST_BLOB_UNKNOWN",
            ErrorCode::ManifestInvalid => "MANIFEST_INVALID",
            ErrorCode::ManifestUnknown => "MANIFEST_UNKNOWN",
            ErrorCode::NameInvalid => "NAME_INVALID",
            ErrorCode::NameUnknown => "NAME_UNKNOWN",
            ErrorCode::SizeInvalid | ErrorCode::ManifestTooLarge => "SIZE_INVALID",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::Denied => "DENIED",
            ErrorCode::Unsupported => "UNSUPPORTED",
            ErrorCode::TooManyRequests => "TOOMANYREQUESTS",
            ErrorCode::RangeInvalid => "RANGE_INVALID",
            ErrorCode::TagInvalid => "TAG_INVALID",
            ErrorCode::PaginationNumberInvalid => "PAGINATION_NUMBER_INVALID",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unknown => "UNKNOWN",
            ErrorCode::Unavailable => "UNAVAILABLE",
        }
    }

    /// The HTTP status the code is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::BlobUnknown
            | ErrorCode::BlobUploadUnknown
            | ErrorCode::ManifestUnknown
            | ErrorCode::NameUnknown
            | ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::BlobUploadInvalid
            | ErrorCode::DigestInvalid
            | ErrorCode::ManifestBlobUnknown
            | ErrorCode::ManifestInvalid
            | ErrorCode::NameInvalid
            | ErrorCode::SizeInvalid
            | ErrorCode::TagInvalid
            | ErrorCode::PaginationNumberInvalid => StatusCode::BAD_REQUEST,
            ErrorCode::ManifestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorCode::Denied => StatusCode::FORBIDDEN,
            ErrorCode::Unsupported => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RangeInvalid => StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::Unknown => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// An error answered to a client: a code, a message saying what was wrong, and extra headers
/// (a `Range` with a 416, a challenge with a 401).
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The error code.
    pub code: ErrorCode,
    /// What was wrong, for people.
    pub message: String,
    /// Extra response headers.
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), headers: Vec::new() }
    }

    /// Adds a response header.
    #[must_use]
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": null }]
        });
        let mut response = (self.code.status(), axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let code = match &e {
            RegistryError::BlobUnknown { .. } => ErrorCode::BlobUnknown,
            RegistryError::UploadUnknown { .. } => ErrorCode::BlobUploadUnknown,
            RegistryError::UploadOffset { expected, .. } => {
                let range = if *expected == 0 { "0-0".to_owned() } else { format!("0-{}", expected - 1) };
                return ApiError::new(ErrorCode::RangeInvalid, e.to_string()).with_header(
                    header::RANGE,
                    HeaderValue::from_str(&range).unwrap_or(HeaderValue::from_static("0-0")),
                );
            }
            RegistryError::UploadAbandoned { .. } => ErrorCode::BlobUploadInvalid,
            RegistryError::UploadInUse { .. } => ErrorCode::RangeInvalid,
            RegistryError::DigestMismatch { .. } => ErrorCode::DigestInvalid,
            RegistryError::ManifestUnknown { .. } => ErrorCode::ManifestUnknown,
            RegistryError::ManifestInvalid(_) => ErrorCode::ManifestInvalid,
            RegistryError::Storage(wharf_storage::Error::ContentFailed { .. }) => {
                // The client went away or sent a broken body: its fault, and no failure of ours.
                tracing::debug!(error = %e, "request body ended early");
                return ApiError::new(ErrorCode::BlobUploadInvalid, "the request body ended before its end");
            }
            RegistryError::ManifestBlobUnknown { .. } => ErrorCode::ManifestBlobUnknown,
            RegistryError::ManifestTooLarge { .. } => ErrorCode::ManifestTooLarge,
            RegistryError::TagInvalid(_) => ErrorCode::TagInvalid,
            RegistryError::TagDenied { reason, .. } => return ApiError::new(ErrorCode::Denied, reason.clone()),
            RegistryError::DigestInvalid(_) => ErrorCode::DigestInvalid,
            // Content gone between a check and its read: said without the store's paths.
            RegistryError::Storage(storage) if storage.is_not_found() => {
                return ApiError::new(ErrorCode::BlobUnknown, "the content was removed while the request read it");
            }
            RegistryError::Storage(wharf_storage::Error::InvalidOffset { offset, size, .. }) => {
                return ApiError::new(
                    ErrorCode::RangeInvalid,
                    format!("offset {offset} is past the end ({size} bytes)"),
                );
            }
            _ => ErrorCode::Unknown,
        };
        if code == ErrorCode::Unknown {
            // What failed inside (paths, the store's own words) goes to the log only; the client
            // gets an id to quote.
            let request_id = uuid::Uuid::new_v4().simple().to_string();
            tracing::error!(error = %e, request_id, "storage failure");
            return ApiError::new(
                code,
                format!("the registry could not complete the request (request id {request_id})"),
            )
            .with_header(REQUEST_ID, HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("-")));
        }
        ApiError::new(code, e.to_string())
    }
}
