//! Why the server ends a socket: a close code and a reason for each cause.
//!
//! The 44xx codes are graphql-transport-ws's; the legacy protocol has none of its own,
//! so it uses the same ones after a `connection_error`.

use axum::extract::ws::{CloseFrame, Message};

/// RFC 6455 caps a close reason at 123 bytes.
const MAX_REASON_BYTES: usize = 123;

#[derive(Debug, thiserror::Error)]
pub(super) enum Close {
    /// The client closed the socket or sent `connection_terminate`.
    #[error("Normal closure")]
    Normal,
    /// The server is shutting down.
    #[error("Server shutting down")]
    GoingAway,
    /// A message or frame above the size limit.
    #[error("Message larger than {0} bytes")]
    TooBig(usize),
    /// A frame that breaks RFC 6455 (unmasked, bad opcode, text not UTF-8, …).
    #[error("WebSocket protocol error: {0}")]
    Protocol(String),
    /// Something on our side failed; `0` is client-safe (an id, never SQL).
    #[error("{0}")]
    Internal(String),
    /// Not JSON, an unknown type, a missing or malformed id or payload.
    #[error("{0}")]
    Invalid(String),
    /// An operation before the connection was acknowledged.
    #[error("Unauthorized")]
    Unauthorized,
    /// No token, an invalid one, or the key was revoked, expired or its user disabled.
    #[error("Forbidden")]
    Forbidden,
    #[error("Connection initialisation timeout")]
    InitTimeout,
    /// A `subscribe` reusing the id of an active operation.
    #[error("Subscriber for {0} already exists")]
    DuplicateId(String),
    #[error("Too many initialisation requests")]
    TooManyInits,
}

impl Close {
    pub(super) fn code(&self) -> u16 {
        match self {
            Close::Normal => 1000,
            Close::GoingAway => 1001,
            Close::Protocol(_) => 1002,
            Close::TooBig(_) => 1009,
            Close::Internal(_) => 1011,
            Close::Invalid(_) => 4400,
            Close::Unauthorized => 4401,
            Close::Forbidden => 4403,
            Close::InitTimeout => 4408,
            Close::DuplicateId(_) => 4409,
            Close::TooManyInits => 4429,
        }
    }

    /// The reason, cut to what a close frame can carry.
    pub(super) fn reason(&self) -> String {
        let mut reason = self.to_string();
        if reason.len() > MAX_REASON_BYTES {
            let mut end = MAX_REASON_BYTES - '…'.len_utf8();
            while !reason.is_char_boundary(end) {
                end -= 1;
            }
            reason.truncate(end);
            reason.push('…');
        }
        reason
    }

    pub(super) fn frame(&self) -> Message {
        Message::Close(Some(CloseFrame {
            code: self.code(),
            reason: self.reason().into(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_reasons_fit_a_close_frame() {
        let close = Close::DuplicateId("é".repeat(100));
        let reason = close.reason();
        assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
        assert!(reason.starts_with("Subscriber for éé") && reason.ends_with('…'));
        assert_eq!(Close::Forbidden.reason(), "Forbidden");
        assert_eq!(Close::DuplicateId("7".into()).code(), 4409);
    }
}
