//! The app's screens, one module each: its `State`, `Message`, `Event` (what it asks of the
//! app) and `update -> (Task<Message>, Option<Event>)`. Shared here: plain-language errors.

pub mod catalogue;
pub mod login;
pub mod player;
pub mod points;
pub mod settings;

use rivulet_tracker_client::{ClientError, codes};

/// What a failed tracker call means, said for the person at the screen.
pub fn describe(error: &ClientError) -> String {
    match error {
        ClientError::Transport(detail) => format!(
            "The tracker cannot be reached: check its address and that it is running ({detail})."
        ),
        ClientError::Decode(detail) => {
            format!("The tracker answered something this app does not understand ({detail}).")
        }
        ClientError::Api { code, message, .. } => match code.as_str() {
            codes::BAD_CREDENTIALS => "Wrong user name or password.".into(),
            codes::LOCKED_OUT => {
                "Too many failed log-ins: this account is locked for a while. Try again later."
                    .into()
            }
            codes::INSUFFICIENT_POINTS => {
                "You do not have enough points for this movie. Keep the cache running to earn more."
                    .into()
            }
            codes::USERNAME_TAKEN => "That user name is taken: pick another.".into(),
            codes::UNAUTHORIZED => "Your session has ended: log in again.".into(),
            codes::NOT_BOUGHT => "Buy this movie in the catalogue before watching it.".into(),
            codes::NOT_FOUND => "The tracker does not know this movie.".into(),
            _ => format!("{message}."),
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
    fn sizes_and_clock_read_well() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500_000_000), "1.50 GB");
        assert_eq!(clock(61_000), "1:01");
    }

    #[test]
    fn errors_are_plain() {
        let e = ClientError::Api {
            status: 401,
            code: codes::BAD_CREDENTIALS.into(),
            message: "x".into(),
        };
        assert_eq!(describe(&e), "Wrong user name or password.");
        let e = ClientError::Transport("refused".into());
        assert!(describe(&e).contains("cannot be reached"));
    }
}
