//! Errors: one type per layer, and the one place where each becomes a Kafka wire code.
//!
//! Kafka's wire error codes come from `kafka-protocol` (`ResponseError`, re-exported here as
//! [`ErrorCode`]). The broker's own error types carry what went wrong (and the message a client
//! reads in `error_message`); the mapping of each onto a Kafka code is written below, once:
//!
//! | layer | type | Kafka code |
//! |---|---|---|
//! | request frames (`protocol::request`) | `RequestError` | [`RequestError::error_code`]: UNSUPPORTED_VERSION, else the connection closes |
//! | storage (`log`) | `LogError` | [`LogError::error_code`] |
//! | config values (`config`, `metadata::configs`) | [`ConfigError`] | INVALID_CONFIG, INVALID_REQUEST for a static setting |
//! | metadata checks and files (`metadata`) | [`MetadataError`] | INVALID_TOPIC_EXCEPTION, INVALID_PARTITIONS, KAFKA_STORAGE_ERROR, or its config error's |
//! | group coordinator (`group`) | [`ErrorCode`] itself: its outcomes are Kafka's group protocol codes | — |
//! | handlers and metadata changes (`api`, `admin`) | [`ApiError`]: a Kafka code with its message | `From` each of the above |
//!
//! A handler writes `error::code(..)` or `ApiError::code.code()` into a response and never a
//! number. `docs/design-notes.md` ("Errors") says the same in prose.

use std::fmt;

use crate::log::LogError;
use crate::protocol::request::RequestError;

pub use kafka_protocol::error::ResponseError as ErrorCode;

/// The wire value of "no error".
pub const NONE: i16 = 0;

/// Kafka's wire code for an optional error.
pub fn code(err: Option<ErrorCode>) -> i16 {
    err.map_or(NONE, |e| e.code())
}

/// A refusal as a handler answers it: Kafka's code and the `error_message` that goes with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// A config value, name or edit the broker refuses. The message names the key, as Kafka's do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A value the setting does not accept, an unknown name, a malformed edit.
    Invalid(String),
    /// A broker setting that cannot change at run time.
    NotDynamic(String),
}

impl ConfigError {
    /// An [`Invalid`](ConfigError::Invalid) error with `message`.
    pub fn invalid(message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid(message.into())
    }

    /// What a client (or the operator, at start-up) reads.
    pub fn message(&self) -> &str {
        match self {
            ConfigError::Invalid(m) | ConfigError::NotDynamic(m) => m,
        }
    }

    /// The same error with its message rewritten (a topic config's name replaced by the broker
    /// setting that supplies it).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> ConfigError {
        match self {
            ConfigError::Invalid(m) => ConfigError::Invalid(f(m)),
            ConfigError::NotDynamic(m) => ConfigError::NotDynamic(f(m)),
        }
    }

    /// The Kafka code a client gets for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ConfigError::Invalid(_) => ErrorCode::InvalidConfig,
            // Kafka answers an attempt to change a static broker setting with INVALID_REQUEST.
            ConfigError::NotDynamic(_) => ErrorCode::InvalidRequest,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ConfigError {}

/// The operator-facing paths (`main`, `server`) report errors as text.
impl From<ConfigError> for String {
    fn from(e: ConfigError) -> String {
        e.to_string()
    }
}

/// A topic the metadata refuses, or the metadata files failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataError {
    /// A name outside Kafka's topic-name rule.
    InvalidTopicName(String),
    /// A partition count out of range, or lower than the current one.
    InvalidPartitions(String),
    /// A topic config the broker refuses.
    Config(ConfigError),
    /// Reading or writing the metadata or producer-id files failed; the message names the file.
    Storage(String),
    /// A cluster's metadata quorum did not take the change in time (no leader, an election):
    /// nothing of it applied, and the client may retry (Kafka's REQUEST_TIMED_OUT, what a
    /// broker answers when the controller it forwards to does not).
    Quorum(String),
}

impl MetadataError {
    /// The Kafka code a client gets for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            MetadataError::InvalidTopicName(_) => ErrorCode::InvalidTopicException,
            MetadataError::InvalidPartitions(_) => ErrorCode::InvalidPartitions,
            MetadataError::Config(e) => e.error_code(),
            MetadataError::Storage(_) => ErrorCode::KafkaStorageError,
            MetadataError::Quorum(_) => ErrorCode::RequestTimedOut,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            MetadataError::InvalidTopicName(m)
            | MetadataError::InvalidPartitions(m)
            | MetadataError::Storage(m)
            | MetadataError::Quorum(m) => m,
            MetadataError::Config(e) => e.message(),
        }
    }
}

impl fmt::Display for MetadataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for MetadataError {}

impl From<ConfigError> for MetadataError {
    fn from(e: ConfigError) -> MetadataError {
        MetadataError::Config(e)
    }
}

/// The operator-facing paths (`main`, `server`) report errors as text.
impl From<MetadataError> for String {
    fn from(e: MetadataError) -> String {
        e.to_string()
    }
}

impl LogError {
    /// The Kafka error code a client gets for this error.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            LogError::CorruptMessage(_) => ErrorCode::CorruptMessage,
            LogError::InvalidRecord(_) => ErrorCode::InvalidRecord,
            LogError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequenceNumber,
            LogError::InvalidProducerEpoch(_) => ErrorCode::InvalidProducerEpoch,
            LogError::Io(_) => ErrorCode::KafkaStorageError,
            LogError::RecordErrors(_) => ErrorCode::InvalidRecord,
            LogError::TimestampErrors(_) => ErrorCode::InvalidTimestamp,
            LogError::BatchTooLarge(_) => ErrorCode::MessageTooLarge,
            LogError::NotLeader(_) => ErrorCode::NotLeaderOrFollower,
        }
    }
}

impl RequestError {
    /// The Kafka code of the error response this frame gets, if any. Only an ApiVersions request
    /// at a version we do not serve is answered (UNSUPPORTED_VERSION, KIP-511); every other
    /// unservable frame closes the connection, as Kafka does.
    pub fn error_code(&self) -> Option<ErrorCode> {
        match self {
            RequestError::UnsupportedVersion {
                api_key: kafka_protocol::messages::ApiKey::ApiVersions,
                ..
            } => Some(ErrorCode::UnsupportedVersion),
            _ => None,
        }
    }
}

impl From<ConfigError> for ApiError {
    fn from(e: ConfigError) -> ApiError {
        ApiError::new(e.error_code(), e.message())
    }
}

impl From<MetadataError> for ApiError {
    fn from(e: MetadataError) -> ApiError {
        ApiError::new(e.error_code(), e.message())
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        ApiError::new(e.error_code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiKey;

    /// The conversion table, each error type's every variant against Kafka's code. A new
    /// variant fails to compile in the `error_code` match and must be added here too.
    #[test]
    fn config_errors_map_to_kafka_codes() {
        let table = [
            (ConfigError::invalid("x"), ErrorCode::InvalidConfig, 40),
            (
                ConfigError::NotDynamic("x".into()),
                ErrorCode::InvalidRequest,
                42,
            ),
        ];
        for (e, want, wire) in table {
            assert_eq!(e.error_code(), want, "{e:?}");
            // The wire numbers are Kafka's, pinned here once so a crate upgrade can't move them.
            assert_eq!(want.code(), wire, "{want:?}");
            assert_eq!(ApiError::from(e.clone()), ApiError::new(want, "x"));
        }
    }

    #[test]
    fn metadata_errors_map_to_kafka_codes() {
        let table = [
            (
                MetadataError::InvalidTopicName("x".into()),
                ErrorCode::InvalidTopicException,
                17,
            ),
            (
                MetadataError::InvalidPartitions("x".into()),
                ErrorCode::InvalidPartitions,
                37,
            ),
            (
                MetadataError::Config(ConfigError::invalid("x")),
                ErrorCode::InvalidConfig,
                40,
            ),
            (
                MetadataError::Config(ConfigError::NotDynamic("x".into())),
                ErrorCode::InvalidRequest,
                42,
            ),
            (
                MetadataError::Storage("x".into()),
                ErrorCode::KafkaStorageError,
                56,
            ),
        ];
        for (e, want, wire) in table {
            assert_eq!(e.error_code(), want, "{e:?}");
            assert_eq!(want.code(), wire, "{want:?}");
            assert_eq!(e.to_string(), "x", "the message is passed on as it is");
            assert_eq!(ApiError::from(e), ApiError::new(want, "x"));
        }
    }

    #[test]
    fn log_errors_map_to_kafka_codes() {
        use crate::log::Offset;
        let table = [
            (
                LogError::CorruptMessage("x".into()),
                ErrorCode::CorruptMessage,
                2,
            ),
            (
                LogError::InvalidRecord("x".into()),
                ErrorCode::InvalidRecord,
                87,
            ),
            (
                LogError::MessageTooLarge { size: 2, max: 1 },
                ErrorCode::MessageTooLarge,
                10,
            ),
            (
                LogError::OffsetOutOfRange {
                    requested: Offset(9),
                    log_start: Offset(0),
                    log_end: Offset(1),
                },
                ErrorCode::OffsetOutOfRange,
                1,
            ),
            (
                LogError::OutOfOrderSequence("x".into()),
                ErrorCode::OutOfOrderSequenceNumber,
                45,
            ),
            (
                LogError::InvalidProducerEpoch("x".into()),
                ErrorCode::InvalidProducerEpoch,
                47,
            ),
            (
                LogError::Io(std::io::Error::other("x")),
                ErrorCode::KafkaStorageError,
                56,
            ),
            (
                LogError::RecordErrors(Vec::new()),
                ErrorCode::InvalidRecord,
                87,
            ),
            (
                LogError::TimestampErrors(Vec::new()),
                ErrorCode::InvalidTimestamp,
                32,
            ),
            (
                LogError::BatchTooLarge("x".into()),
                ErrorCode::MessageTooLarge,
                10,
            ),
            (
                LogError::NotLeader("x".into()),
                ErrorCode::NotLeaderOrFollower,
                6,
            ),
        ];
        for (e, want, wire) in table {
            assert_eq!(e.error_code(), want, "{e:?}");
            assert_eq!(want.code(), wire, "{want:?}");
            let message = e.to_string();
            assert_eq!(ApiError::from(e), ApiError::new(want, message));
        }
    }

    #[test]
    fn request_errors_answer_only_api_versions_with_a_code() {
        let unsupported = |api_key| RequestError::UnsupportedVersion {
            api_key,
            version: 99,
            correlation_id: 1,
        };
        assert_eq!(
            unsupported(ApiKey::ApiVersions).error_code(),
            Some(ErrorCode::UnsupportedVersion)
        );
        assert_eq!(ErrorCode::UnsupportedVersion.code(), 35);
        for closes in [
            unsupported(ApiKey::Produce),
            RequestError::Truncated,
            RequestError::UnknownApiKey {
                api_key: 999,
                correlation_id: 1,
            },
            RequestError::Malformed {
                api_key: ApiKey::Fetch,
                version: 4,
                correlation_id: 1,
                reason: "x".into(),
            },
        ] {
            assert_eq!(closes.error_code(), None, "{closes:?}");
        }
    }

    #[test]
    fn no_error_is_zero_on_the_wire() {
        assert_eq!(code(None), NONE);
        assert_eq!(NONE, 0);
        assert_eq!(
            code(Some(ErrorCode::UnknownMemberId)),
            ErrorCode::UnknownMemberId.code()
        );
    }
}
