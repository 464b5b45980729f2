//! The app's screens, one module each: its `State`, `Message`, `Event` (what it asks of the
//! app) and `update -> (Task<Message>, Option<Event>)`. Shared here: plain-language errors.

pub mod catalogue;
pub mod first_run;
pub mod login;
pub mod player;
pub mod points;
pub mod settings;

use rivulet_tracker_client::{ClientError, ErrorCode};

/// What a failed tracker call means, said for the person at the screen.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Transport(detail) => format!(
            "The tracker cannot be reached: check its address and that it is running ({detail})."
        ),
        ClientError::Decode(detail) => {
            format!("The tracker answered something this app does not understand ({detail}).")
        }
        ClientError::Api { code, message, .. } => match code {
            ErrorCode::BadCredentials => "Wrong user name or password.".into(),
            ErrorCode::LockedOut => {
                "Too many failed log-ins: this account is locked for a while. Try again later."
                    .into()
            }
            ErrorCode::InsufficientPoints => {
                "You do not have enough points for this movie. Keep the cache running to earn more."
                    .into()
            }
            ErrorCode::UsernameTaken => "That user name is taken: pick another.".into(),
            ErrorCode::Unauthorized => "Your session has ended: log in again.".into(),
            ErrorCode::NotBought => "Buy this movie in the catalogue before watching it.".into(),
            ErrorCode::AccountDisabled => {
                "This account is disabled: ask the tracker's operator.".into()
            }
            ErrorCode::NotFound => "The tracker does not know this movie.".into(),
            ErrorCode::WeakPassword => format!("Pick a stronger password: {message}."),
            ErrorCode::Forbidden => format!("This account may not do that: {message}."),
            ErrorCode::TooLarge => format!("The request was too large for the tracker: {message}."),
            ErrorCode::BadRequest => format!("The tracker refused the request: {message}."),
            ErrorCode::Internal => format!("The tracker failed; try again later ({message})."),
            ErrorCode::AddressRefused => format!(
                "The tracker cannot reach your cache at the address it has ({message}); see the \
                 cache port in the settings."
            ),
            ErrorCode::Unknown(_) => format!("{message}."),
        },
    }
}

/// Bytes as people read them (`1.50 GB`): node-core's formatter, as the web pages use.
pub fn bytes(n: u64) -> String {
    rivulet_node_core::units::format_bytes(n)
}

/// Milliseconds as `m:ss`.
pub fn clock(ms: u64) -> String {
    let s = ms / 1000;
    format!("{}:{:02}", s / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_reads_minutes_and_seconds() {
        assert_eq!(clock(61_000), "1:01");
        assert_eq!(clock(3_599_999), "59:59");
    }

    #[test]
    fn errors_are_plain() {
        let e = ClientError::Api {
            status: 401,
            code: ErrorCode::BadCredentials,
            message: "x".into(),
        };
        assert_eq!(describe(&e), "Wrong user name or password.");
        let e = ClientError::Api {
            status: 400,
            code: ErrorCode::Unknown("from_a_newer_tracker".into()),
            message: "the newer tracker says why".into(),
        };
        assert_eq!(describe(&e), "the newer tracker says why.");
        let e = ClientError::Transport("refused".into());
        assert!(describe(&e).contains("cannot be reached"));
    }
}
