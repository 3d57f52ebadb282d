//! `codec::decode` on arbitrary bytes.
//!
//! Checks: decode never panics; a frame that decodes re-encodes (`to_owned` then `encode`,
//! which must succeed: the type came from a 32-byte ASCII field and the payload is within the
//! frame limit); the re-encoded frame decodes to the same fields (type, schema version, date,
//! sequence number, flags, message id, payload type, payload); and encoding is canonical
//! (encoding the second decode gives the same bytes again).

#![no_main]

use libfuzzer_sys::fuzz_target;
use porthole::ssm::codec;

fuzz_target!(|data: &[u8]| {
    let Ok(first) = codec::decode(data) else {
        return;
    };
    let owned = first.to_owned();
    assert_eq!(owned.payload, first.payload, "to_owned copies the payload");

    let frame = match codec::encode(&owned) {
        Ok(frame) => frame,
        Err(error) => panic!("a decoded message failed to re-encode: {error}; message {owned:?}"),
    };
    let second = match codec::decode(&frame) {
        Ok(second) => second,
        Err(error) => panic!("a re-encoded frame failed to decode: {error}; message {owned:?}"),
    };
    assert_eq!(
        second.message_type, first.message_type,
        "MessageType changed across decode → encode → decode"
    );
    assert_eq!(
        second.schema_version, first.schema_version,
        "SchemaVersion changed"
    );
    assert_eq!(
        second.created_date, first.created_date,
        "CreatedDate changed"
    );
    assert_eq!(
        second.sequence_number, first.sequence_number,
        "SequenceNumber changed"
    );
    assert_eq!(second.flags, first.flags, "Flags changed");
    assert_eq!(second.message_id, first.message_id, "MessageId changed");
    assert_eq!(
        second.payload_type, first.payload_type,
        "PayloadType changed"
    );
    assert_eq!(second.payload, first.payload, "Payload changed");

    let again = match codec::encode(&second.to_owned()) {
        Ok(again) => again,
        Err(error) => panic!("second re-encode failed: {error}"),
    };
    assert_eq!(again, frame, "encode is not canonical");
});
