//! The one place where errors become HTTP responses: RFC 9457
//! `application/problem+json`. Clients get a short, safe text; the full cause
//! chain goes to the log. No SQL, file path or panic text reaches a client.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::domain::{FieldError, InputError};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON, bad parameter, forged cursor).
    #[error("{detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// Well-formed, but an event breaks a rule.
    #[error("{0}")]
    Invalid(InputError),
    #[error("{0}")]
    TooLarge(String),
    /// The request body did not arrive in time; the connection is closed.
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A `Content-Encoding` other than `identity`: answered with
    /// `Accept-Encoding: identity` (RFC 9110, section 15.5.16).
    #[error("{0}")]
    UnsupportedEncoding(String),
    #[error("{0}")]
    Unauthorized(String),
    /// A token was presented and is not valid (unknown or revoked): 401 with
    /// `error="invalid_token"` in the challenge (RFC 6750, section 3.1).
    #[error("{0}")]
    InvalidToken(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The path exists but does not take this method; `allow` lists the
    /// methods it does take, for the `Allow` header.
    #[error("{detail}")]
    MethodNotAllowed { detail: String, allow: String },
    #[error("{0}")]
    Conflict(String),
    /// What the request names existed and was removed (by retention).
    #[error("{0}")]
    Gone(String),
    #[error("{detail}")]
    Unavailable { detail: String, retry_after: u32 },
    /// Anything the client cannot fix; the cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_param(field: &str, message: impl Into<String>) -> ApiError {
        let message = message.into();
        ApiError::BadRequest {
            detail: format!("query parameter {field}: {message}"),
            errors: vec![FieldError::new(field, message)],
        }
    }

    pub fn bad_params(e: InputError) -> ApiError {
        ApiError::BadRequest {
            detail: format!("invalid query parameters: {e}"),
            errors: e.errors,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Input(i) => ApiError::Invalid(i),
            e @ StoreError::Conflict { .. } => ApiError::Conflict(e.to_string()),
            StoreError::IdempotencyMismatch { key } => ApiError::Conflict(format!(
                "Idempotency-Key {key:?} was already used with a different request"
            )),
            StoreError::IdempotencyPruned { key } => ApiError::Gone(format!(
                "the events first written with Idempotency-Key {key:?} were removed by retention; they cannot be answered again, and the request was not written a second time"
            )),
            StoreError::QueueFull => ApiError::Unavailable {
                detail: "the writer's queue is full; nothing was written; retry after the indicated delay".into(),
                retry_after: 1,
            },
            StoreError::CommitFailed(cause) => {
                tracing::error!(%cause, "commit failed; requests in it answered 503");
                ApiError::Unavailable {
                    detail: "the events could not be stored durably; nothing was written".into(),
                    retry_after: 5,
                }
            }
            StoreError::ReadersBusy => ApiError::Unavailable {
                detail: "every read connection is busy with long reads (exports, summaries, verifications); retry after the indicated delay".into(),
                retry_after: 5,
            },
            StoreError::Closed => ApiError::Unavailable { detail: "the writer is not running: the server is shutting down, or its writer stopped (then /healthz says so)".into(), retry_after: 5 },
            other => ApiError::Internal(format!("{other:#}")),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [FieldError],
}

pub const PROBLEM_JSON: &str = "application/problem+json";

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) | ApiError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::Unauthorized(_) | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Gone(_) => StatusCode::GONE,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let (kind, title, detail, errors): (&str, &str, String, &[FieldError]) = match self {
            ApiError::BadRequest { detail, errors } => (
                "urn:trail:problem:bad-request",
                "Bad request",
                detail.clone(),
                errors,
            ),
            ApiError::Invalid(e) => (
                "urn:trail:problem:validation",
                "The input is not valid",
                format!("{} problem(s) with the input: {e}", e.errors.len()),
                &e.errors,
            ),
            ApiError::TooLarge(d) => (
                "urn:trail:problem:too-large",
                "Payload too large",
                d.clone(),
                &[],
            ),
            ApiError::RequestTimeout(d) => (
                "urn:trail:problem:request-timeout",
                "Request timeout",
                d.clone(),
                &[],
            ),
            ApiError::UnsupportedMediaType(d) => (
                "urn:trail:problem:unsupported-media-type",
                "Unsupported media type",
                d.clone(),
                &[],
            ),
            ApiError::UnsupportedEncoding(d) => (
                "urn:trail:problem:unsupported-encoding",
                "Unsupported content encoding",
                d.clone(),
                &[],
            ),
            ApiError::Unauthorized(d) | ApiError::InvalidToken(d) => (
                "urn:trail:problem:unauthorized",
                "Unauthorized",
                d.clone(),
                &[],
            ),
            ApiError::Forbidden(d) => ("urn:trail:problem:forbidden", "Forbidden", d.clone(), &[]),
            ApiError::NotFound(d) => ("urn:trail:problem:not-found", "Not found", d.clone(), &[]),
            ApiError::MethodNotAllowed { detail, .. } => (
                "urn:trail:problem:method-not-allowed",
                "Method not allowed",
                detail.clone(),
                &[],
            ),
            ApiError::Conflict(d) => ("urn:trail:problem:conflict", "Conflict", d.clone(), &[]),
            ApiError::Gone(d) => ("urn:trail:problem:gone", "Gone", d.clone(), &[]),
            ApiError::Unavailable { detail, .. } => (
                "urn:trail:problem:unavailable",
                "Service unavailable",
                detail.clone(),
                &[],
            ),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    "urn:trail:problem:internal",
                    "Internal error",
                    "an internal error occurred; it has been logged".into(),
                    &[],
                )
            }
        };
        let body = serde_json::to_string(&Problem {
            kind,
            title,
            status: status.as_u16(),
            detail: &detail,
            errors,
        })
        .expect("problem serializes");
        let mut resp = HttpResponse::build(status);
        resp.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
        match self {
            ApiError::Unauthorized(_) => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"trail\""));
            }
            ApiError::InvalidToken(_) => {
                resp.insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer realm=\"trail\", error=\"invalid_token\"",
                ));
            }
            _ => {}
        }
        if let ApiError::Unavailable { retry_after, .. } = self {
            resp.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        if let ApiError::MethodNotAllowed { allow, .. } = self {
            resp.insert_header((header::ALLOW, allow.as_str()));
        }
        if let ApiError::RequestTimeout(_) = self {
            resp.insert_header((header::CONNECTION, "close"));
        }
        if let ApiError::UnsupportedEncoding(_) = self {
            resp.insert_header((header::ACCEPT_ENCODING, "identity"));
        }
        resp.body(body)
    }
}
