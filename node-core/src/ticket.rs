//! FTP tickets: the tracker's signed, short-lived permission for one node (the holder) to
//! fetch one movie's chunks from one server (the origin or a cache). Servers check them
//! offline with the tracker's Ed25519 public key, fetched once.
//!
//! A ticket is `base64url(claims JSON) "." base64url(Ed25519 signature of those bytes)`,
//! sent as the FTP password with the holder's node id as the user name.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Longest ticket accepted, in bytes.
pub const MAX_TICKET_LEN: usize = 2048;

/// What a ticket allows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketClaims {
    /// Node id of the node allowed to fetch.
    pub holder: String,
    /// Node id of the server it may fetch from (`origin` for the origin).
    pub server: String,
    /// The movie whose chunks it may fetch.
    pub video: String,
    /// Seconds since the Unix epoch after which the ticket is void.
    pub expires_at: u64,
    /// The chunk indices it may fetch; `None`: any (a viewer that owns the movie). A cache
    /// that does not own the movie gets only the indices placement gave it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<Vec<u16>>,
}

impl TicketClaims {
    /// Whether the ticket lets its holder fetch chunk index `index`.
    pub fn allows(&self, index: u16) -> bool {
        self.indices
            .as_ref()
            .is_none_or(|list| list.contains(&index))
    }
}

/// Why a ticket was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TicketError {
    #[error("ticket is malformed")]
    Malformed,
    #[error("ticket signature is not the tracker's")]
    BadSignature,
    #[error("ticket expired")]
    Expired,
    #[error("ticket is for another server")]
    WrongServer,
    #[error("ticket belongs to another node")]
    WrongHolder,
    #[error("public key is malformed")]
    BadKey,
}

/// The tracker's signing key.
#[derive(Clone, Debug)]
pub struct TicketSigner {
    key: SigningKey,
}

impl TicketSigner {
    /// The signer whose secret is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> TicketSigner {
        TicketSigner {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The key servers verify with.
    pub fn public_key(&self) -> TicketKey {
        TicketKey(self.key.verifying_key())
    }

    /// A signed ticket carrying `claims`.
    pub fn issue(&self, claims: &TicketClaims) -> String {
        // Claims are strings and integers: serialization cannot fail.
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signature = self.key.sign(&body);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&body),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

/// The tracker's public key, as servers hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketKey(VerifyingKey);

impl TicketKey {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    pub fn from_hex(s: &str) -> Result<TicketKey, TicketError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| TicketError::BadKey)?;
        VerifyingKey::from_bytes(&bytes)
            .map(TicketKey)
            .map_err(|_| TicketError::BadKey)
    }

    /// Checks `ticket`'s signature and expiry (against `now`, seconds since the epoch) and
    /// that it names `holder` and `server`; returns its claims.
    pub fn verify(
        &self,
        ticket: &str,
        holder: &str,
        server: &str,
        now: u64,
    ) -> Result<TicketClaims, TicketError> {
        if ticket.len() > MAX_TICKET_LEN {
            return Err(TicketError::Malformed);
        }
        let (body, signature) = ticket.split_once('.').ok_or(TicketError::Malformed)?;
        let body = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|_| TicketError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .ok()
            .and_then(|s| <[u8; 64]>::try_from(s).ok())
            .ok_or(TicketError::Malformed)?;
        self.0
            .verify(&body, &Signature::from_bytes(&signature))
            .map_err(|_| TicketError::BadSignature)?;
        let claims: TicketClaims =
            serde_json::from_slice(&body).map_err(|_| TicketError::Malformed)?;
        if claims.expires_at <= now {
            return Err(TicketError::Expired);
        }
        if claims.server != server {
            return Err(TicketError::WrongServer);
        }
        if claims.holder != holder {
            return Err(TicketError::WrongHolder);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(expires_at: u64) -> TicketClaims {
        TicketClaims {
            holder: "viewer-1".into(),
            server: "origin".into(),
            video: "demo".into(),
            expires_at,
            indices: None,
        }
    }

    #[test]
    fn a_ticket_verifies_only_as_issued() {
        let signer = TicketSigner::from_seed(&[7; 32]);
        let key = TicketKey::from_hex(&signer.public_key().to_hex()).unwrap();
        let ticket = signer.issue(&claims(1_000));
        assert_eq!(
            key.verify(&ticket, "viewer-1", "origin", 999),
            Ok(claims(1_000))
        );
        assert_eq!(
            key.verify(&ticket, "viewer-1", "origin", 1_000),
            Err(TicketError::Expired)
        );
        assert_eq!(
            key.verify(&ticket, "viewer-1", "cache-9", 10),
            Err(TicketError::WrongServer)
        );
        assert_eq!(
            key.verify(&ticket, "viewer-2", "origin", 10),
            Err(TicketError::WrongHolder)
        );
        let forged = TicketSigner::from_seed(&[8; 32]).issue(&claims(1_000));
        assert_eq!(
            key.verify(&forged, "viewer-1", "origin", 10),
            Err(TicketError::BadSignature)
        );
        // Claims changed after signing.
        let (_, sig) = ticket.split_once('.').unwrap();
        let mut more = claims(1_000);
        more.video = "other".into();
        let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&more).unwrap());
        assert_eq!(
            key.verify(&format!("{body}.{sig}"), "viewer-1", "origin", 10),
            Err(TicketError::BadSignature)
        );
        for junk in ["", ".", "abc", "a.b", &"x".repeat(2000)] {
            assert_eq!(
                key.verify(junk, "viewer-1", "origin", 10),
                Err(TicketError::Malformed),
                "{junk:.20}"
            );
        }
        assert_eq!(TicketKey::from_hex("zz"), Err(TicketError::BadKey));
    }
}
