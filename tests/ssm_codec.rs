//! The codec against the fact sheet's test vectors (§16), one test per malformed-input class,
//! and property tests: round trip, and no panic on arbitrary bytes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use porthole::ssm::codec::{
    self, DecodeError, FLAG_FIN, FLAG_SYN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, Message, MessageType,
    PayloadType,
};
use porthole::ssm::crypto;
use proptest::prelude::*;
use uuid::Uuid;

const TV1: &str = "000000746f75747075745f73747265616d5f646174612020202020202020202020202020000000010000018bcfe5680000000000000000000000000000000001a508b5f073f31b16dd01e56bff48483e2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824000000010000000568656c6c6f";
const TV2: &str = "0000007461636b6e6f776c65646765202020202020202020202020202020202020202020000000010000018bcfe5687b0000000000000000000000000000000399aabbccddeeff001122334455664788713a0a17057de630213f7292907ce38462812ea213a29366f537f68c6ab60e8500000000000000b07b2241636b6e6f776c65646765644d65737361676554797065223a226f75747075745f73747265616d5f64617461222c2241636b6e6f776c65646765644d6573736167654964223a2264643031653536622d666634382d343833652d613530382d623566303733663331623136222c2241636b6e6f776c65646765644d65737361676553657175656e63654e756d626572223a302c22497353657175656e7469616c4d657373616765223a747275657d";
const TV3: &str = "00000074696e7075745f73747265616d5f64617461202020202020202020202020202020000000010000018bcfe569c8000000000000000100000000000000008899aabbccddeeff0011223344554677d53ca1ea7dce87c11432052a8550ed2615cf715ca843c89710ed83325b691cba00000003000000157b22636f6c73223a38302c22726f7773223a32347d";
const TV2_JSON: &str = r#"{"AcknowledgedMessageType":"output_stream_data","AcknowledgedMessageId":"dd01e56b-ff48-483e-a508-b5f073f31b16","AcknowledgedMessageSequenceNumber":0,"IsSequentialMessage":true}"#;

fn msg(
    ty: MessageType,
    created: u64,
    seq: i64,
    flags: u64,
    id: &str,
    pt: PayloadType,
    payload: &[u8],
) -> Message {
    Message {
        message_type: ty,
        schema_version: 1,
        created_date: created,
        sequence_number: seq,
        flags,
        message_id: Uuid::parse_str(id).unwrap(),
        payload_type: pt,
        payload: payload.to_vec(),
    }
}

fn vectors() -> Vec<(&'static str, Message)> {
    vec![
        (
            TV1,
            msg(
                MessageType::OutputStreamData,
                1_700_000_000_000,
                0,
                FLAG_SYN,
                "dd01e56b-ff48-483e-a508-b5f073f31b16",
                PayloadType::Output,
                b"hello",
            ),
        ),
        (
            TV2,
            msg(
                MessageType::Acknowledge,
                1_700_000_000_123,
                0,
                FLAG_SYN | FLAG_FIN,
                "11223344-5566-4788-99aa-bbccddeeff00",
                PayloadType::None,
                TV2_JSON.as_bytes(),
            ),
        ),
        (
            TV3,
            msg(
                MessageType::InputStreamData,
                1_700_000_000_456,
                1,
                0,
                "00112233-4455-4677-8899-aabbccddeeff",
                PayloadType::Size,
                br#"{"cols":80,"rows":24}"#,
            ),
        ),
    ]
}

#[test]
fn vectors_encode_to_the_exact_bytes() {
    for (hex, message) in vectors() {
        assert_eq!(
            hex::encode(codec::encode(&message).unwrap()),
            hex,
            "{message:?}"
        );
    }
}

#[test]
fn vectors_decode_to_their_fields() {
    for (hex, message) in vectors() {
        let bytes = hex::decode(hex).unwrap();
        let decoded = codec::decode(&bytes).unwrap();
        assert_eq!(decoded.to_owned(), message);
        assert_eq!(codec::sha256(decoded.payload), bytes[80..112]);
    }
    // The MessageId round-trips to the canonical string, halves swapped on the wire.
    let tv1 = hex::decode(TV1).unwrap();
    assert_eq!(
        &tv1[64..80],
        hex::decode("a508b5f073f31b16dd01e56bff48483e").unwrap()
    );
    assert_eq!(
        codec::decode(&tv1).unwrap().message_id.to_string(),
        "dd01e56b-ff48-483e-a508-b5f073f31b16"
    );
}

#[test]
fn tv2_is_the_acknowledgement_our_writer_produces() {
    let mut json = String::new();
    porthole::ssm::payload::write_acknowledge(
        &mut json,
        "output_stream_data",
        &Uuid::parse_str("dd01e56b-ff48-483e-a508-b5f073f31b16").unwrap(),
        0,
    );
    assert_eq!(json, TV2_JSON);
}

#[test]
fn prefixed_sha256_equals_sha256_for_every_length_and_prefix() {
    let data: Vec<u8> = (0..400u32).map(|i| (i * 7 + 3) as u8).collect();
    for prefix_len in [0, 10, 63, 64, 65, 128, 200] {
        let hasher = codec::PrefixedSha256::new(&data[..prefix_len]);
        assert_eq!(hasher.prefix().len(), prefix_len / 64 * 64);
        for len in prefix_len..data.len() {
            assert_eq!(
                hasher.digest(&data[..len]),
                Some(codec::sha256(&data[..len])),
                "prefix {prefix_len}, length {len}"
            );
        }
    }
    let hasher = codec::PrefixedSha256::new(&data[..64]);
    let mut other = data.clone();
    other[3] ^= 1;
    assert_eq!(hasher.digest(&other), None, "a different prefix is refused");
    assert_eq!(
        hasher.digest(&data[..63]),
        None,
        "so is a message shorter than it"
    );
}

#[test]
fn write_header_is_the_start_of_the_encoded_frame() {
    for (hex, m) in vectors() {
        let frame = hex::decode(hex).unwrap();
        let mut head = [0u8; codec::PAYLOAD_OFFSET];
        let header = codec::Header {
            message_type: m.message_type.as_str(),
            schema_version: m.schema_version,
            created_date: m.created_date,
            sequence_number: m.sequence_number,
            flags: m.flags,
            message_id: m.message_id,
            payload_type: m.payload_type,
        };
        codec::write_header(
            &mut head,
            &header,
            m.payload.len(),
            &codec::sha256(&m.payload),
        )
        .unwrap();
        assert_eq!(&head[..], &frame[..codec::PAYLOAD_OFFSET]);
    }
}

#[test]
fn aes_gcm_vectors_decrypt_to_hello() {
    let key: [u8; 64] = std::array::from_fn(|i| i as u8);
    let agent_half: [u8; 32] = key[..32].try_into().unwrap();
    let client_half: [u8; 32] = key[32..].try_into().unwrap();
    let tv4 =
        hex::decode("000102030405060708090a0b2f67ba77aa2797ff353b8a046d28236dcd9d057bbb").unwrap();
    let tv5 =
        hex::decode("000102030405060708090a0b343731cb25fb6b6d50e4ed83c749b851c5fa918ab5").unwrap();
    assert_eq!(crypto::open_with_key(&agent_half, &tv4).unwrap(), b"hello");
    assert_eq!(crypto::open_with_key(&client_half, &tv5).unwrap(), b"hello");
    let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
    assert_eq!(crypto::seal_with_nonce(&agent_half, &nonce, b"hello"), tv4);
    assert_eq!(crypto::seal_with_nonce(&client_half, &nonce, b"hello"), tv5);

    // The channel ciphers use the same split: the client opens TV4 and the agent opens TV5.
    let client = crypto::PayloadCipher::new(crypto::KeySide::Client, &key, [0; 12]).unwrap();
    let agent = crypto::PayloadCipher::new(crypto::KeySide::Agent, &key, [0; 12]).unwrap();
    assert_eq!(client.open(&tv4).unwrap(), b"hello");
    assert_eq!(agent.open(&tv5).unwrap(), b"hello");
}

// ----- malformed input, one class each -----

fn tv1() -> Vec<u8> {
    hex::decode(TV1).unwrap()
}

#[test]
fn too_short() {
    let frame = tv1();
    assert_eq!(
        codec::decode(&frame[..119]),
        Err(DecodeError::TooShort { len: 119 })
    );
    assert_eq!(codec::decode(&[]), Err(DecodeError::TooShort { len: 0 }));
}

#[test]
fn wrong_header_length() {
    let mut frame = tv1();
    frame[3] = 0x70;
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::HeaderLength { found: 0x70 })
    );
    frame[..4].copy_from_slice(&[0; 4]);
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::HeaderLength { found: 0 })
    );
}

#[test]
fn digest_mismatch() {
    let mut frame = tv1();
    *frame.last_mut().unwrap() ^= 0x20; // "hellO"
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::DigestMismatch { len: 5 })
    );
}

#[test]
fn length_field_disagreeing() {
    let mut frame = tv1();
    frame[119] = 6;
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::PayloadLength {
            declared: 6,
            actual: 5
        })
    );
    let mut frame = tv1();
    frame.push(b'!');
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::PayloadLength {
            declared: 5,
            actual: 6
        })
    );
}

#[test]
fn oversized() {
    let mut frame = tv1();
    frame.resize(MAX_FRAME_LEN + 1, 0);
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::Oversized {
            len: MAX_FRAME_LEN + 1
        })
    );
    let too_big = Message {
        payload: vec![0; MAX_PAYLOAD_LEN + 1],
        ..vectors()[0].1.clone()
    };
    assert_eq!(
        codec::encode(&too_big),
        Err(codec::EncodeError::PayloadTooLarge {
            len: MAX_PAYLOAD_LEN + 1
        })
    );
    // The largest legal payload still round-trips.
    let max = Message {
        payload: vec![7; MAX_PAYLOAD_LEN],
        ..vectors()[0].1.clone()
    };
    let frame = codec::encode(&max).unwrap();
    assert_eq!(frame.len(), MAX_FRAME_LEN);
    assert_eq!(codec::decode(&frame).unwrap().to_owned(), max);
}

#[test]
fn unknown_type_is_kept_for_the_channel_to_ignore() {
    let state = Message {
        message_type: MessageType::Unknown("agent_session_state".into()),
        ..vectors()[0].1.clone()
    };
    let frame = codec::encode(&state).unwrap();
    assert_eq!(
        codec::decode(&frame).unwrap().message_type,
        MessageType::Unknown("agent_session_state".into())
    );
    // What the channel does with it is asserted in tests/ssm_channel.rs.
}

#[test]
fn empty_type_zero_date_and_non_ascii_type() {
    let mut frame = tv1();
    frame[4..36].fill(b' ');
    assert_eq!(codec::decode(&frame), Err(DecodeError::EmptyMessageType));
    let mut frame = tv1();
    frame[40..48].fill(0);
    assert_eq!(codec::decode(&frame), Err(DecodeError::ZeroCreatedDate));
    let mut frame = tv1();
    frame[4] = 0xC3;
    assert_eq!(codec::decode(&frame), Err(DecodeError::MessageTypeNotAscii));
}

#[test]
fn nul_padded_types_are_accepted_like_the_official_client() {
    let mut frame = tv1();
    frame[4 + 18..36].fill(0);
    assert_eq!(
        codec::decode(&frame).unwrap().message_type,
        MessageType::OutputStreamData
    );
}

#[test]
fn type_trimming_is_idempotent() {
    // Found by fuzzing: "\t\0a" trimmed NULs-then-whitespace gave "\0a", which re-encoded and
    // decoded as "a".
    let mut frame = tv1();
    frame[4..36].fill(b' ');
    frame[4..7].copy_from_slice(b"\t\0a");
    let first = codec::decode(&frame).unwrap().to_owned();
    assert_eq!(first.message_type, MessageType::Unknown("a".into()));
    let again = codec::decode(&codec::encode(&first).unwrap())
        .unwrap()
        .to_owned();
    assert_eq!(again, first);
    frame[4..36].fill(b' ');
    frame[4..6].copy_from_slice(b"\t\0");
    assert_eq!(codec::decode(&frame), Err(DecodeError::EmptyMessageType));
}

#[test]
fn publication_messages_skip_validation() {
    // A pause_publication with header length 0, date 0 and a wrong digest still decodes.
    let mut frame = vec![0u8; 120];
    frame[4..4 + 17].copy_from_slice(b"pause_publication");
    frame[4 + 17..36].fill(b' ');
    frame[80] = 0xAB;
    frame[116..120].copy_from_slice(&9u32.to_be_bytes());
    let decoded = codec::decode(&frame).unwrap();
    assert_eq!(decoded.message_type, MessageType::PausePublication);
    // The same mistakes in a stream message are errors.
    frame[4..36].copy_from_slice(b"output_stream_data              ");
    assert_eq!(
        codec::decode(&frame),
        Err(DecodeError::HeaderLength { found: 0 })
    );
}

#[test]
fn errors_name_the_field() {
    let text = DecodeError::PayloadLength {
        declared: 6,
        actual: 5,
    }
    .to_string();
    assert!(text.contains("PayloadLength"), "{text}");
    assert!(
        DecodeError::HeaderLength { found: 1 }
            .to_string()
            .contains("HeaderLength")
    );
    assert!(
        DecodeError::DigestMismatch { len: 1 }
            .to_string()
            .contains("PayloadDigest")
    );
}

// ----- properties -----

fn arb_type() -> impl Strategy<Value = MessageType> {
    prop_oneof![
        Just(MessageType::InputStreamData),
        Just(MessageType::OutputStreamData),
        Just(MessageType::Acknowledge),
        Just(MessageType::ChannelClosed),
        Just(MessageType::StartPublication),
        Just(MessageType::PausePublication),
        "[a-z_]{1,32}".prop_map(|s| MessageType::from_wire(&s)),
    ]
}

fn arb_message() -> impl Strategy<Value = Message> {
    (
        arb_type(),
        1u64..,
        any::<i64>(),
        any::<u64>(),
        any::<u128>(),
        any::<u32>(),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(
            |(message_type, created_date, seq, flags, id, pt, payload)| Message {
                message_type,
                schema_version: 1,
                created_date,
                sequence_number: seq,
                flags,
                message_id: Uuid::from_u128(id),
                payload_type: PayloadType::from_u32(pt),
                payload,
            },
        )
}

proptest! {
    #[test]
    fn encode_decode_round_trip(message in arb_message()) {
        let frame = codec::encode(&message).unwrap();
        prop_assert_eq!(frame.len(), 120 + message.payload.len());
        prop_assert_eq!(codec::decode(&frame).unwrap().to_owned(), message);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = codec::decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_frames(
        message in arb_message(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut frame = codec::encode(&message).unwrap();
        for (at, x) in flips {
            let i = at % frame.len();
            frame[i] ^= x;
        }
        frame.truncate(cut % (frame.len() + 1));
        let _ = codec::decode(&frame);
    }
}
