//! Request decoding as a connection does it: size-prefixed frames off a byte stream, the request
//! header against the API registry, then the body as its handler decodes it
//! (`protocol::bodies::decode_any`, the same `kafka-protocol` types). Produce bodies go on to
//! the broker's batch validation, as the produce handler does.
//!
//! Properties: no input panics, and none makes a decoder allocate for a count or length the
//! input does not hold (AddressSanitizer reports any allocation above libFuzzer's
//! `-malloc_limit_mb`, 2 GiB by default, as a crash).
#![no_main]

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ProduceRequest};
use libfuzzer_sys::fuzz_target;
use tidelog::api::decode_request;
use tidelog::config::{MAX_MESSAGE_BYTES_DEFAULT, SOCKET_REQUEST_MAX_BYTES_DEFAULT};
use tidelog::log::batch::validate_produce;
use tidelog::protocol::bodies::decode_any;
use tidelog::protocol::frame::take_frame;

fuzz_target!(|data: &[u8]| {
    // One input is one connection's bytes: it may hold several pipelined frames.
    let mut stream = BytesMut::from(data);
    while let Ok(Some(frame)) = take_frame(&mut stream, SOCKET_REQUEST_MAX_BYTES_DEFAULT) {
        let Ok(req) = decode_request(frame) else {
            continue;
        };
        if req.api_key == ApiKey::Produce {
            let Ok(body) = req.decode_body::<ProduceRequest>() else {
                continue;
            };
            for topic in &body.topic_data {
                for p in &topic.partition_data {
                    if let Some(records) = &p.records {
                        let _ = validate_produce(records, MAX_MESSAGE_BYTES_DEFAULT);
                    }
                }
            }
        } else {
            let decoded = decode_any(&req);
            assert!(decoded.is_some(), "{:?} has no body type", req.api_key);
        }
    }
});
