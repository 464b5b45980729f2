//! Every way an API call fails, as HTTP: the status, the wire's [`ErrorCode`] and the message
//! for each error kind of the tracker, in this one file (like rqbit's `api_error.rs`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rivulet_tracker_client::{ErrorBody, ErrorCode, ErrorDetail};

use super::MAX_BODY_BYTES;
use crate::accounts::AccountError;
use crate::nodes::NodeError;
use crate::service::TrackerError;
use crate::tickets::TicketRefusal;

/// An API failure: an HTTP status and the error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "log in first: no valid session token was given, or it expired",
        )
    }

    pub fn internal(message: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            format!("the tracker failed: {message}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> ApiError {
        let message = e.to_string();
        match e {
            AccountError::BadUsername => ApiError::bad_request(message),
            AccountError::WeakPassword | AccountError::PasswordHasUsername => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::WeakPassword, message)
            }
            AccountError::UsernameTaken(_) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::UsernameTaken, message)
            }
            AccountError::BadCredentials => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::BadCredentials, message)
            }
            AccountError::NoSuchAccount(_) => ApiError::not_found(message),
            AccountError::Disabled(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::AccountDisabled, message)
            }
            AccountError::Hash(_) | AccountError::Db(_) => ApiError::internal(message),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(e: NodeError) -> ApiError {
        let message = e.to_string();
        match e {
            NodeError::Invalid(_) => ApiError::bad_request(message),
            NodeError::AddressRefused(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::AddressRefused, message)
            }
            NodeError::Unknown(_) => ApiError::not_found(message),
            NodeError::Db(_) => ApiError::internal(message),
        }
    }
}

impl From<TicketRefusal> for ApiError {
    fn from(e: TicketRefusal) -> ApiError {
        let message = e.to_string();
        match e {
            TicketRefusal::NotYourNode(_) | TicketRefusal::NoSuchServer(_) => {
                ApiError::not_found(message)
            }
            TicketRefusal::NotBought(_) | TicketRefusal::PlacedFromOriginOnly(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotBought, message)
            }
            TicketRefusal::Account(e) => e.into(),
            TicketRefusal::Db(e) => ApiError::internal(e),
        }
    }
}

impl From<TrackerError> for ApiError {
    fn from(e: TrackerError) -> ApiError {
        let message = e.to_string();
        match e {
            TrackerError::BadRequest(_) => ApiError::bad_request(message),
            TrackerError::NotFound(_) => ApiError::not_found(message),
            TrackerError::AdminOnly => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
            }
            TrackerError::NotBought(_) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::NotBought, message)
            }
            TrackerError::InsufficientPoints { .. } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorCode::InsufficientPoints,
                message,
            ),
            TrackerError::LockedOut(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, ErrorCode::LockedOut, message)
            }
            TrackerError::Account(e) => e.into(),
            TrackerError::Node(e) => e.into(),
            TrackerError::Ticket(e) => e.into(),
            TrackerError::Db(e) => e.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> ApiError {
        ApiError::internal(e)
    }
}

/// A JSON body the API could not take, as the API's error body.
pub(super) fn json_rejection(rejection: JsonRejection) -> ApiError {
    let status = rejection.status();
    let text = rejection.body_text();
    if status == StatusCode::PAYLOAD_TOO_LARGE || text.contains("length limit exceeded") {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("request body is larger than {MAX_BODY_BYTES} bytes"),
        );
    }
    ApiError::bad_request(text)
}
