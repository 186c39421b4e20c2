//! The client's one error type. Every failure a user can meet says what the client was doing,
//! against which broker, and, for Kafka error codes, the code's Kafka name (as in Kafka's docs
//! and logs: `UNKNOWN_TOPIC_OR_PARTITION`), so that it can be looked up.

use std::fmt;

use kafka_protocol::error::ResponseError;

/// A failed client operation.
#[derive(Debug)]
pub enum ClientError {
    /// No TCP connection could be made (refused, unresolvable, connect timeout).
    Unreachable {
        /// The `HOST:PORT` that was tried.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An established connection failed or timed out mid-request.
    Io {
        /// The broker the connection went to.
        addr: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Bytes from the broker that do not parse as the expected response, or a request that
    /// could not be encoded.
    Protocol(String),
    /// The broker does not offer an API (or no version of it this client speaks).
    Unsupported(String),
    /// The broker answered with a Kafka error code.
    Kafka {
        /// What was being done, e.g. `create topic "orders"`.
        context: String,
        /// The wire error code.
        code: i16,
        /// The broker's error message, when it sent one.
        message: Option<String>,
    },
    /// A condition the client checks itself (no such partition, timeout waiting for metadata).
    Other(String),
}

/// The client's result type.
pub type Result<T> = std::result::Result<T, ClientError>;

impl ClientError {
    /// Builds the error for a non-zero Kafka error code, or `None` for code 0.
    pub fn from_code(
        context: impl FnOnce() -> String,
        code: i16,
        message: Option<&str>,
    ) -> Option<Self> {
        (code != 0).then(|| ClientError::Kafka {
            context: context(),
            code,
            message: message.filter(|m| !m.is_empty()).map(str::to_owned),
        })
    }

    /// The Kafka error code, when this is a broker-reported error.
    pub fn kafka_code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Turns a non-zero Kafka error code into an error; code 0 is success.
pub fn check(code: i16, message: Option<&str>, context: impl FnOnce() -> String) -> Result<()> {
    match ClientError::from_code(context, code, message) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Kafka's own name for an error code (`UNKNOWN_TOPIC_OR_PARTITION`), or `UNKNOWN_CODE_<n>`.
///
/// kafka-protocol names its variants in Rust style (`UnknownTopicOrPartition`); users search
/// for the name Kafka prints, so convert it.
pub fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".to_owned(),
        Some(ResponseError::Unknown(c)) => format!("UNKNOWN_CODE_{c}"),
        Some(err) => {
            let camel = format!("{err:?}");
            let mut out = String::with_capacity(camel.len() + 8);
            for (i, ch) in camel.chars().enumerate() {
                if ch.is_ascii_uppercase() && i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_uppercase());
            }
            out
        }
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable { addr, source } => {
                write!(f, "cannot connect to broker {addr}: {source}")
            }
            ClientError::Io { addr, source } => {
                write!(f, "connection to broker {addr} failed: {source}")
            }
            ClientError::Protocol(msg) => write!(f, "protocol error: {msg}"),
            ClientError::Unsupported(msg) => write!(f, "unsupported by the broker: {msg}"),
            ClientError::Kafka {
                context,
                code,
                message,
            } => {
                write!(f, "{context}: {} ({code})", error_name(*code))?;
                match message {
                    Some(m) => write!(f, ": {m}"),
                    None => Ok(()),
                }
            }
            ClientError::Other(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Unreachable { source, .. } | ClientError::Io { source, .. } => {
                Some(source)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(30000), "UNKNOWN_CODE_30000");
    }

    #[test]
    fn kafka_errors_show_name_code_and_message() {
        let e = ClientError::from_code(|| "create topic \"a\"".into(), 36, Some("exists")).unwrap();
        assert_eq!(
            e.to_string(),
            "create topic \"a\": TOPIC_ALREADY_EXISTS (36): exists"
        );
        assert_eq!(e.kafka_code(), Some(36));
        assert!(check(0, None, || unreachable!()).is_ok());
        let e = ClientError::from_code(|| "x".into(), 3, Some("")).unwrap();
        assert_eq!(e.to_string(), "x: UNKNOWN_TOPIC_OR_PARTITION (3)");
    }
}
