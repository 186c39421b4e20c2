//! Errors. Kafka's wire error codes come from `kafka-protocol` (`ResponseError`); the broker's
//! internal errors map onto them here and nowhere else.

pub use kafka_protocol::error::ResponseError as ErrorCode;

/// The wire value of "no error".
pub const NONE: i16 = 0;

/// Kafka's wire code for an optional error.
pub fn code(err: Option<ErrorCode>) -> i16 {
    err.map_or(NONE, |e| e.code())
}
