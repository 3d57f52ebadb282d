//! The channel state machine frame by frame, on a virtual clock: timers, acknowledgements,
//! reordering, duplicates, start flows, publication pause, closing and giving up.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::{Duration, Instant};

use bytes::Bytes;
use porthole::ssm::channel::{
    AgentHandshake, Channel, ChannelConfig, CloseReason, Event, IncomingError, Transmit,
};
use porthole::ssm::codec::{self, Message, MessageType, PayloadType};
use porthole::ssm::payload;
use uuid::Uuid;

const MS: Duration = Duration::from_millis(1);

fn client(now: Instant) -> Channel {
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.seed = Some(7);
    Channel::new(cfg, now, 1_700_000_000_000)
}

fn frame(ty: MessageType, seq: i64, pt: PayloadType, payload: &[u8]) -> Vec<u8> {
    codec::encode(&Message {
        message_type: ty,
        schema_version: 1,
        created_date: 1_700_000_000_000,
        sequence_number: seq,
        flags: 0,
        message_id: Uuid::from_u128(seq as u128 + 1000),
        payload_type: pt,
        payload: payload.to_vec(),
    })
    .unwrap()
}

fn output(seq: i64, text: &str) -> Vec<u8> {
    frame(
        MessageType::OutputStreamData,
        seq,
        PayloadType::Output,
        text.as_bytes(),
    )
}

fn ack_for(seq: i64) -> Vec<u8> {
    let mut json = String::new();
    payload::write_acknowledge(&mut json, "input_stream_data", &Uuid::nil(), seq);
    frame(
        MessageType::Acknowledge,
        0,
        PayloadType::None,
        json.as_bytes(),
    )
}

fn control(ty: MessageType, body: &[u8]) -> Vec<u8> {
    frame(ty, 0, PayloadType::None, body)
}

fn binaries(ch: &mut Channel) -> Vec<Bytes> {
    let mut out = Vec::new();
    while let Some(t) = ch.poll_transmit() {
        if let Transmit::Binary(b) = t {
            out.push(b);
        }
    }
    out
}

fn decoded(frames: &[Bytes]) -> Vec<Message> {
    frames
        .iter()
        .map(|f| codec::decode(f).unwrap().to_owned())
        .collect()
}

fn acked_seqs(frames: &[Bytes]) -> Vec<i64> {
    decoded(frames)
        .into_iter()
        .filter(|m| m.message_type == MessageType::Acknowledge)
        .map(|m| {
            serde_json::from_slice::<payload::Acknowledge>(&m.payload)
                .unwrap()
                .sequence_number
        })
        .collect()
}

fn events(ch: &mut Channel) -> Vec<Event> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

/// A client past the plain start: socket open, first output received and acknowledged.
fn ready_client(now: Instant) -> Channel {
    let mut c = client(now);
    c.socket_opened(now, Some("tok"));
    c.handle_incoming(&output(0, "$ "), now).unwrap();
    assert!(c.is_ready());
    binaries(&mut c);
    events(&mut c);
    c
}

// ----- timers -----

#[test]
fn first_resend_after_200ms_then_rto_from_the_resend() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    let sent = binaries(&mut c);
    assert_eq!(sent.len(), 1);
    assert_eq!(c.poll_timeout(), Some(t0 + 200 * MS));

    c.handle_timeout(t0 + 199 * MS);
    assert!(binaries(&mut c).is_empty(), "no resend before 200 ms");

    c.handle_timeout(t0 + 200 * MS);
    let resent = binaries(&mut c);
    assert_eq!(
        resent, sent,
        "a resend is byte-identical (same MessageId and CreatedDate)"
    );
    // The send time is updated on every resend (the official client's bug is not copied).
    assert_eq!(c.poll_timeout(), Some(t0 + 400 * MS));
    c.handle_timeout(t0 + 300 * MS);
    assert!(binaries(&mut c).is_empty(), "no resend on a 100 ms tick");
    c.handle_timeout(t0 + 400 * MS);
    assert_eq!(binaries(&mut c).len(), 1);
    assert_eq!(c.stats().resends, 2);
}

#[test]
fn only_the_oldest_unacked_message_is_resent() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    c.send_input(b"b", t0 + 10 * MS).unwrap();
    binaries(&mut c);
    c.handle_timeout(t0 + 250 * MS);
    let resent = decoded(&binaries(&mut c));
    assert_eq!(resent.len(), 1);
    assert_eq!(resent[0].sequence_number, 0);
    assert_eq!(resent[0].payload, b"a");
}

#[test]
fn rto_adapts_to_measured_rtt() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    binaries(&mut c);
    c.handle_incoming(&ack_for(0), t0 + 20 * MS).unwrap();
    // RTTVAR = ¼·80 = 20 ms, SRTT = 90 ms, RTO = 90 + 4·20 = 170 ms.
    assert_eq!(c.rto(), 170 * MS);
    let t1 = t0 + 30 * MS;
    c.send_input(b"b", t1).unwrap();
    binaries(&mut c);
    assert_eq!(c.poll_timeout(), Some(t1 + 170 * MS));
    // Many fast acks bring it down towards SRTT + 10 ms.
    let mut t = t1;
    for seq in 1..60 {
        c.handle_incoming(&ack_for(seq), t + MS).unwrap();
        t += 2 * MS;
        c.send_input(b"x", t).unwrap();
        binaries(&mut c);
    }
    assert!(c.rto() < 20 * MS, "rto {:?}", c.rto());
}

#[test]
fn rto_is_capped_at_one_second() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let mut t = t0;
    for seq in 0..5 {
        c.send_input(b"a", t).unwrap();
        binaries(&mut c);
        t += Duration::from_secs(5);
        c.handle_incoming(&ack_for(seq), t).unwrap();
    }
    assert_eq!(c.rto(), Duration::from_secs(1));
    c.send_input(b"b", t).unwrap();
    binaries(&mut c);
    assert_eq!(c.poll_timeout(), Some(t + Duration::from_secs(1)));
}

#[test]
fn no_resends_while_paused_and_pause_holds_new_input() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    binaries(&mut c);
    c.handle_incoming(&control(MessageType::PausePublication, b""), t0 + MS)
        .unwrap();
    assert!(c.is_paused());
    assert_eq!(c.poll_timeout(), None);
    c.handle_timeout(t0 + Duration::from_secs(10));
    assert!(binaries(&mut c).is_empty(), "no resend while paused");
    c.send_input(b"b", t0 + Duration::from_secs(10)).unwrap();
    assert!(binaries(&mut c).is_empty(), "new input waits while paused");
    assert_eq!(c.pending_bytes(), 1);

    let t1 = t0 + Duration::from_secs(11);
    c.handle_incoming(&control(MessageType::StartPublication, b""), t1)
        .unwrap();
    let sent = decoded(&binaries(&mut c));
    assert_eq!(sent.len(), 1, "the held input goes out");
    assert_eq!(sent[0].payload, b"b");
    assert!(c.poll_timeout().is_some());
    c.handle_timeout(t1);
    assert_eq!(
        decoded(&binaries(&mut c))[0].payload,
        b"a",
        "resends resume"
    );
    assert_eq!(
        events(&mut c),
        vec![
            Event::Publication { paused: true },
            Event::Publication { paused: false }
        ]
    );
}

#[test]
fn gives_up_after_the_time_limit() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.give_up_after = Duration::from_secs(1);
    let mut c = Channel::new(cfg, t0, 1);
    c.socket_opened(t0, None);
    c.handle_incoming(&output(0, "$ "), t0).unwrap();
    c.send_input(b"a", t0).unwrap();
    binaries(&mut c);
    events(&mut c);
    for ms in [200, 400, 600, 800] {
        assert_eq!(c.poll_timeout(), Some(t0 + ms * MS));
        c.handle_timeout(t0 + ms * MS);
        assert_eq!(binaries(&mut c).len(), 1, "resend at {ms} ms");
    }
    c.handle_timeout(t0 + 1000 * MS);
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::RetransmissionGaveUp {
            sequence_number: 0,
            attempts: 4
        })]
    );
    assert!(c.is_closed());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn without_a_socket_nothing_is_sent_and_the_give_up_clock_stops() {
    let t0 = Instant::now();
    let mut a = Channel::new(ChannelConfig::agent("s", "i"), t0, 1);
    a.socket_opened(t0, None);
    events(&mut a);
    a.send_output(b"before", t0).unwrap();
    assert_eq!(binaries(&mut a).len(), 1);
    a.socket_closed();
    assert_eq!(a.poll_timeout(), None, "no resends without a socket");
    a.send_output(b"while away", t0 + MS).unwrap();
    let later = t0 + Duration::from_secs(600);
    a.handle_timeout(later);
    assert!(
        binaries(&mut a).is_empty() && events(&mut a).is_empty(),
        "still alive, nothing sent"
    );
    a.socket_opened(later, None);
    let sent = decoded(&binaries(&mut a));
    let payloads: Vec<&[u8]> = sent.iter().map(|m| m.payload.as_slice()).collect();
    assert_eq!(payloads, vec![&b"before"[..], &b"while away"[..]]);
    assert_eq!(a.poll_timeout(), Some(later + a.rto()));
}

#[test]
fn acks_of_retransmitted_messages_give_no_rtt_sample() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    binaries(&mut c);
    c.handle_timeout(t0 + 200 * MS);
    binaries(&mut c);
    // The ack may answer either send: no sample, so the RTO stays where it was.
    c.handle_incoming(&ack_for(0), t0 + 201 * MS).unwrap();
    assert_eq!(c.rto(), 200 * MS);
}

#[test]
fn far_ahead_messages_are_not_buffered() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.reorder_capacity = 4;
    let mut c = Channel::new(cfg, t0, 1);
    c.handle_incoming(&output(0, "$"), t0).unwrap();
    binaries(&mut c);
    assert_eq!(
        c.handle_incoming(&output(1_000_000_000_000, "x"), t0),
        Err(IncomingError::ReorderBufferFull {
            sequence_number: 1_000_000_000_000,
            capacity: 4
        })
    );
    assert!(binaries(&mut c).is_empty());
    assert_eq!(c.reorder_len(), 0);
    c.handle_incoming(&output(4, "y"), t0).unwrap();
    assert_eq!(c.reorder_len(), 1, "within the window is kept");
}

// ----- receiving -----

#[test]
fn out_of_order_is_acked_at_once_and_delivered_in_order() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.handle_incoming(&output(2, "C"), t0).unwrap();
    c.handle_incoming(&output(3, "D"), t0).unwrap();
    assert_eq!(acked_seqs(&binaries(&mut c)), vec![2, 3]);
    assert!(events(&mut c).is_empty());
    assert_eq!(c.reorder_len(), 2);
    c.handle_incoming(&output(1, "B"), t0).unwrap();
    assert_eq!(acked_seqs(&binaries(&mut c)), vec![1]);
    assert_eq!(
        events(&mut c),
        vec![
            Event::Output(Bytes::from_static(b"B")),
            Event::Output(Bytes::from_static(b"C")),
            Event::Output(Bytes::from_static(b"D"))
        ]
    );
    assert_eq!(c.expected_sequence_number(), 4);
}

#[test]
fn frames_fed_as_bytes_hand_output_on_without_a_copy() {
    let t0 = Instant::now();
    let mut by_ref = ready_client(t0);
    let mut shared = ready_client(t0);
    // In order, ahead of order (buffered), then the gap filled.
    let frames: Vec<Bytes> = [(1, "B"), (3, "D"), (2, "C"), (2, "C")]
        .iter()
        .map(|&(seq, text)| Bytes::from(output(seq, text)))
        .collect();
    for frame in &frames {
        by_ref.handle_incoming(frame, t0).unwrap();
        shared.handle_incoming_bytes(frame, t0).unwrap();
    }
    // The same acks (the same seed draws the same ids) and the same events.
    assert_eq!(binaries(&mut by_ref), binaries(&mut shared));
    let got = events(&mut shared);
    assert_eq!(events(&mut by_ref), got);
    assert_eq!(
        got,
        vec![
            Event::Output(Bytes::from_static(b"B")),
            Event::Output(Bytes::from_static(b"C")),
            Event::Output(Bytes::from_static(b"D"))
        ]
    );
    // Output delivered as it arrives points into its frame; output that waited in the
    // out-of-order buffer was copied there (so it does not keep a receive buffer alive).
    let ptr = |e: &Event| match e {
        Event::Output(out) => out.as_ptr(),
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(ptr(&got[0]), frames[0][codec::PAYLOAD_OFFSET..].as_ptr());
    assert_eq!(ptr(&got[1]), frames[2][codec::PAYLOAD_OFFSET..].as_ptr());
    assert_ne!(ptr(&got[2]), frames[1][codec::PAYLOAD_OFFSET..].as_ptr());
}

#[test]
fn many_acks_in_a_row_stay_valid() {
    // Acks are carved out of shared blocks: held ones stay intact while later ones are built,
    // dropped ones give their room back.
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let mut held = Vec::new();
    for seq in 1..=100 {
        c.handle_incoming(&output(seq, "x"), t0).unwrap();
        let acks = binaries(&mut c);
        assert_eq!(acked_seqs(&acks), vec![seq]);
        if seq % 3 == 0 {
            held.extend(acks);
        }
    }
    let seqs = acked_seqs(&held);
    assert_eq!(seqs, (1..=100).filter(|s| s % 3 == 0).collect::<Vec<_>>());
}

#[test]
fn duplicates_are_acked_again_and_not_delivered_twice() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.handle_incoming(&output(0, "$ "), t0).unwrap();
    assert_eq!(
        acked_seqs(&binaries(&mut c)),
        vec![0],
        "a duplicate is re-acknowledged"
    );
    assert!(events(&mut c).is_empty());
    c.handle_incoming(&output(5, "x"), t0).unwrap();
    c.handle_incoming(&output(5, "x"), t0).unwrap();
    assert_eq!(acked_seqs(&binaries(&mut c)), vec![5, 5]);
    assert_eq!(c.reorder_len(), 1);
    assert_eq!(c.stats().duplicates, 2);
}

/// While the reader has no room the next message in order is left unacknowledged (the agent
/// keeps it and sends it again), later ones are acknowledged and kept up to the hold buffer,
/// beyond it dropped unacknowledged (and that is reported once); control messages and
/// duplicates are handled all along. Released, the resent message delivers everything kept,
/// in order.
#[test]
fn holding_back_leaves_the_next_message_unacknowledged_and_keeps_a_bounded_buffer() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.seed = Some(7);
    cfg.hold_bytes = 4;
    let mut c = Channel::new(cfg, t0, 1);
    c.socket_opened(t0, Some("tok"));
    c.handle_incoming(&output(0, "$ "), t0).unwrap();
    binaries(&mut c);
    events(&mut c);

    c.hold_incoming(true);
    c.handle_incoming(&output(1, "ab"), t0).unwrap();
    assert!(
        binaries(&mut c).is_empty(),
        "the next in order is not acknowledged"
    );
    c.handle_incoming(&output(2, "cd"), t0).unwrap();
    c.handle_incoming(&output(3, "ef"), t0).unwrap();
    assert_eq!(
        acked_seqs(&binaries(&mut c)),
        vec![2, 3],
        "later ones are kept"
    );
    c.handle_incoming(&output(4, "g"), t0).unwrap();
    assert!(binaries(&mut c).is_empty(), "beyond 4 bytes: dropped");
    c.handle_incoming(&output(0, "$ "), t0).unwrap();
    assert_eq!(
        acked_seqs(&binaries(&mut c)),
        vec![0],
        "duplicates are acknowledged"
    );
    // Control messages still work: an acknowledgement of our input frees it.
    c.send_input(b"x", t0).unwrap();
    assert_eq!(binaries(&mut c).len(), 1);
    assert_eq!(c.unacked_len(), 1);
    c.handle_incoming(&ack_for(0), t0).unwrap();
    assert_eq!(c.unacked_len(), 0);
    assert!(events(&mut c).is_empty(), "nothing delivered while holding");
    assert_eq!(c.stats().held_back, 2);
    assert!(c.take_hold_overflow());
    assert!(!c.take_hold_overflow(), "reported once");

    c.hold_incoming(false);
    c.handle_incoming(&output(1, "ab"), t0).unwrap();
    c.handle_incoming(&output(4, "g"), t0).unwrap();
    assert_eq!(acked_seqs(&binaries(&mut c)), vec![1, 4]);
    let text: Vec<u8> = events(&mut c)
        .into_iter()
        .filter_map(|e| match e {
            Event::Output(b) => Some(b.to_vec()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(text, b"abcdefg");
}

#[test]
fn a_full_reorder_buffer_drops_without_ack() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.reorder_capacity = 2;
    let mut c = Channel::new(cfg, t0, 1);
    c.handle_incoming(&output(0, "$"), t0).unwrap();
    c.handle_incoming(&output(2, "a"), t0).unwrap();
    c.handle_incoming(&output(3, "b"), t0).unwrap();
    binaries(&mut c);
    assert_eq!(
        c.handle_incoming(&output(4, "c"), t0),
        Err(IncomingError::ReorderBufferFull {
            sequence_number: 4,
            capacity: 2
        })
    );
    assert!(binaries(&mut c).is_empty(), "no ack for a dropped frame");
}

#[test]
fn unknown_types_are_ignored_with_a_typed_error() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let state = control(
        MessageType::Unknown("agent_session_state".into()),
        br#"{"SchemaVersion":1,"SessionState":"Connected","SessionId":"s"}"#,
    );
    assert_eq!(
        c.handle_incoming(&state, t0),
        Err(IncomingError::UnknownMessageType(
            "agent_session_state".into()
        ))
    );
    assert!(binaries(&mut c).is_empty());
    assert!(events(&mut c).is_empty());
    assert_eq!(c.expected_sequence_number(), 1);
}

#[test]
fn a_corrupt_frame_changes_nothing() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let mut bad = output(1, "x");
    *bad.last_mut().unwrap() ^= 1;
    assert!(matches!(
        c.handle_incoming(&bad, t0),
        Err(IncomingError::Decode(
            codec::DecodeError::DigestMismatch { .. }
        ))
    ));
    assert!(binaries(&mut c).is_empty() && events(&mut c).is_empty());
    assert_eq!(c.expected_sequence_number(), 1);
}

#[test]
fn the_ack_echoes_type_id_and_sequence() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let tv1 = output(0, "hello");
    c.handle_incoming(&tv1, t0 + 123 * MS).unwrap();
    let acks = decoded(&binaries(&mut c));
    let ack = &acks[0];
    assert_eq!(ack.message_type, MessageType::Acknowledge);
    assert_eq!(
        (ack.sequence_number, ack.flags, ack.payload_type),
        (0, 3, PayloadType::None)
    );
    assert_eq!(ack.created_date, 1_700_000_000_123);
    let body: payload::Acknowledge = serde_json::from_slice(&ack.payload).unwrap();
    assert_eq!(body.message_type, "output_stream_data");
    assert_eq!(body.message_id, Uuid::from_u128(1000).to_string());
    assert!(body.is_sequential_message);
}

// ----- start flows and sending -----

#[test]
fn plain_flow_holds_input_and_size_until_the_first_output() {
    let t0 = Instant::now();
    let mut c = client(t0);
    c.socket_opened(t0, Some("tok"));
    let mut first = Vec::new();
    while let Some(t) = c.poll_transmit() {
        first.push(t);
    }
    let [Transmit::Text(open)] = first.as_slice() else {
        panic!("{first:?}")
    };
    let open: payload::OpenDataChannel = serde_json::from_str(open).unwrap();
    assert_eq!(
        (
            open.token_value.as_str(),
            open.message_schema_version.as_str()
        ),
        ("tok", "1.0")
    );

    c.resize(100, 30, t0).unwrap();
    c.resize(120, 40, t0).unwrap(); // replaces the size still waiting
    c.send_input(b"ls\r", t0).unwrap();
    assert!(
        binaries(&mut c).is_empty(),
        "nothing is sent before the session is ready"
    );
    c.handle_incoming(&output(0, "sh-5.1$ "), t0).unwrap();
    let sent = decoded(&binaries(&mut c));
    assert_eq!(sent[0].message_type, MessageType::Acknowledge);
    assert_eq!(sent[1].payload_type, PayloadType::Size);
    assert_eq!(sent[1].payload, br#"{"cols":120,"rows":40}"#);
    assert_eq!((sent[1].sequence_number, sent[1].flags), (0, 0));
    assert_eq!(
        (sent[2].payload_type, sent[2].sequence_number),
        (PayloadType::Output, 1)
    );
    assert_eq!(sent[2].payload, b"ls\r");
    assert_eq!(
        events(&mut c),
        vec![
            Event::Ready { handshake: None },
            Event::Output(Bytes::from_static(b"sh-5.1$ "))
        ]
    );
}

#[test]
fn input_is_split_into_1024_byte_payloads() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let paste: Vec<u8> = (0..3000u32).map(|i| (i % 256) as u8).collect();
    c.send_input(&paste, t0).unwrap();
    let sent = decoded(&binaries(&mut c));
    let lens: Vec<usize> = sent.iter().map(|m| m.payload.len()).collect();
    assert_eq!(lens, vec![1024, 1024, 952]);
    assert_eq!(
        sent.iter()
            .flat_map(|m| m.payload.clone())
            .collect::<Vec<u8>>(),
        paste
    );
    let seqs: Vec<i64> = sent.iter().map(|m| m.sequence_number).collect();
    assert_eq!(seqs, vec![0, 1, 2]);
}

#[test]
fn the_send_window_holds_data_until_acks_free_it() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::client("sess-1", "i-1");
    cfg.send_window = 2;
    let mut c = Channel::new(cfg, t0, 1);
    c.handle_incoming(&output(0, "$"), t0).unwrap();
    binaries(&mut c);
    c.send_input(&[b'x'; 3000], t0).unwrap();
    assert_eq!(binaries(&mut c).len(), 2);
    assert_eq!(c.pending_bytes(), 952);
    c.handle_incoming(&ack_for(0), t0 + MS).unwrap();
    let more = decoded(&binaries(&mut c));
    assert_eq!((more.len(), more[0].sequence_number), (1, 2));
    assert_eq!(c.pending_bytes(), 0);
}

#[test]
fn agent_output_starts_with_syn_and_never_splits_utf8() {
    let t0 = Instant::now();
    let mut a = Channel::new(ChannelConfig::agent("s", "i"), t0, 1);
    a.socket_opened(t0, None);
    assert_eq!(events(&mut a), vec![Event::Ready { handshake: None }]);
    let text = "€".repeat(700); // 2100 bytes, 3 per char
    a.send_output(text.as_bytes(), t0).unwrap();
    let sent = decoded(&binaries(&mut a));
    assert_eq!(sent[0].flags, 1, "SYN on sequence 0");
    assert!(sent[1..].iter().all(|m| m.flags == 0));
    for m in &sent {
        assert!(m.payload.len() <= 1024);
        assert!(
            std::str::from_utf8(&m.payload).is_ok(),
            "a payload ends inside a sequence"
        );
    }
    // A sequence cut across two reads waits for its end.
    a.send_output(&"€".as_bytes()[..1], t0).unwrap();
    assert!(binaries(&mut a).is_empty());
    a.send_output(&"€".as_bytes()[1..], t0).unwrap();
    assert_eq!(decoded(&binaries(&mut a))[0].payload, "€".as_bytes());
}

#[test]
fn agent_handshake_discards_early_data_and_times_out() {
    let t0 = Instant::now();
    let mut cfg = ChannelConfig::agent("s", "i");
    cfg.handshake = Some(AgentHandshake {
        session_type: "Standard_Stream".into(),
        properties: serde_json::Value::Null,
        kms_key_id: None,
        random_challenge: false,
    });
    let mut a = Channel::new(cfg, t0, 1);
    a.socket_opened(t0, None);
    let sent = decoded(&binaries(&mut a));
    assert_eq!(sent[0].payload_type, PayloadType::HandshakeRequest);
    let req: payload::HandshakeRequest = serde_json::from_slice(&sent[0].payload).unwrap();
    assert_eq!(req.requested_client_actions[0].action_type, "SessionType");

    // Keystrokes before the HandshakeResponse are acknowledged and thrown away.
    let early = frame(
        MessageType::InputStreamData,
        0,
        PayloadType::Output,
        b"too early",
    );
    a.handle_incoming(&early, t0 + MS).unwrap();
    assert_eq!(
        decoded(&binaries(&mut a))[0].message_type,
        MessageType::Acknowledge
    );
    assert!(events(&mut a).is_empty());

    assert_eq!(
        a.poll_timeout(),
        Some(t0 + 200 * MS),
        "resend of the request comes first"
    );
    a.handle_incoming(&ack_for_agent(0), t0 + 2 * MS).unwrap();
    assert_eq!(a.poll_timeout(), Some(t0 + Duration::from_secs(15)));
    a.handle_timeout(t0 + Duration::from_secs(15));
    assert!(matches!(
        events(&mut a).as_slice(),
        [Event::Closed(CloseReason::HandshakeFailed { .. })]
    ));
}

fn ack_for_agent(seq: i64) -> Vec<u8> {
    let mut json = String::new();
    payload::write_acknowledge(&mut json, "output_stream_data", &Uuid::nil(), seq);
    frame(
        MessageType::Acknowledge,
        0,
        PayloadType::None,
        json.as_bytes(),
    )
}

#[test]
fn client_answers_unknown_actions_as_unsupported() {
    let t0 = Instant::now();
    let mut c = client(t0);
    let req = br#"{"AgentVersion":"3.3.0.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Standard_Stream","Properties":null}},{"ActionType":"Teleport","ActionParameters":{}}]}"#;
    c.handle_incoming(
        &frame(
            MessageType::OutputStreamData,
            0,
            PayloadType::HandshakeRequest,
            req,
        ),
        t0,
    )
    .unwrap();
    let sent = decoded(&binaries(&mut c));
    assert_eq!(
        sent[0].message_type,
        MessageType::Acknowledge,
        "ack before the response"
    );
    let resp: payload::HandshakeResponse = serde_json::from_slice(&sent[1].payload).unwrap();
    assert_eq!(resp.client_version, "1.2.814.0");
    let statuses: Vec<i32> = resp
        .processed_client_actions
        .iter()
        .map(|a| a.action_status)
        .collect();
    assert_eq!(statuses, vec![1, 3]);
}

#[test]
fn a_handshake_request_with_too_many_actions_fails_cleanly() {
    // Found by fuzzing: hundreds of unknown actions made a HandshakeResponse too large to frame.
    let t0 = Instant::now();
    let mut c = client(t0);
    let actions: Vec<String> = (0..784)
        .map(|_| r#"{"ActionType":""}"#.to_owned())
        .collect();
    let req = format!(
        r#"{{"AgentVersion":"3.3.0.0","RequestedClientActions":[{}]}}"#,
        actions.join(",")
    );
    c.handle_incoming(
        &frame(
            MessageType::OutputStreamData,
            0,
            PayloadType::HandshakeRequest,
            req.as_bytes(),
        ),
        t0,
    )
    .unwrap();
    let sent = decoded(&binaries(&mut c));
    assert_eq!(sent.len(), 1, "only the ack: no oversized response");
    assert!(matches!(
        events(&mut c).as_slice(),
        [Event::Closed(CloseReason::HandshakeFailed { reason })] if reason.contains("784 actions")
    ));
}

#[test]
fn channel_closed_ends_the_session_with_its_output() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"a", t0).unwrap();
    binaries(&mut c);
    let body = br#"{"MessageId":"x","CreatedDate":"","DestinationId":"","SessionId":"s","MessageType":"channel_closed","SchemaVersion":1,"Output":"Session terminated by admin"}"#;
    c.handle_incoming(&control(MessageType::ChannelClosed, body), t0)
        .unwrap();
    assert!(
        binaries(&mut c).is_empty(),
        "channel_closed is not acknowledged"
    );
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Remote {
            output: "Session terminated by admin".into()
        })]
    );
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(
        c.handle_incoming(&output(1, "x"), t0),
        Err(IncomingError::Closed)
    );
}

#[test]
fn agent_close_sends_channel_closed_the_client_understands() {
    let t0 = Instant::now();
    let mut a = Channel::new(ChannelConfig::agent("sess-9", "i"), t0, 1_700_000_000_000);
    a.socket_opened(t0, None);
    a.close("Shell exited", t0);
    let sent = binaries(&mut a);
    let mut c = ready_client(t0);
    c.handle_incoming(&sent[0], t0).unwrap();
    assert_eq!(
        events(&mut c),
        vec![Event::Closed(CloseReason::Remote {
            output: "Shell exited".into()
        })]
    );
    let m = &decoded(&sent)[0];
    let body: payload::ChannelClosed = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        (body.session_id.as_str(), body.message_type.as_str()),
        ("sess-9", "channel_closed")
    );
    assert_eq!(body.created_date, "2023-11-14T22:13:20Z");
}

#[test]
fn socket_replacement_keeps_counters_and_resends_unacked() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    c.send_input(b"one", t0).unwrap();
    c.send_input(b"two", t0).unwrap();
    let first = binaries(&mut c);
    c.handle_incoming(&ack_for(0), t0 + MS).unwrap();
    c.handle_incoming(&control(MessageType::PausePublication, b""), t0 + MS)
        .unwrap();
    c.send_input(b"three", t0 + 2 * MS).unwrap();

    let t1 = t0 + Duration::from_secs(3);
    c.socket_opened(t1, Some("token-2"));
    let mut sent = Vec::new();
    while let Some(t) = c.poll_transmit() {
        sent.push(t);
    }
    let Transmit::Text(open) = &sent[0] else {
        panic!("OpenDataChannel first")
    };
    assert!(open.contains("token-2"));
    assert_eq!(
        sent[1],
        Transmit::Binary(first[1].clone()),
        "unacked seq 1 resent as it was"
    );
    let Transmit::Binary(third) = &sent[2] else {
        panic!()
    };
    let third = codec::decode(third).unwrap();
    assert_eq!(
        (third.sequence_number, third.payload),
        (2, &b"three"[..]),
        "pause ended"
    );
    assert_eq!(c.expected_sequence_number(), 1);
    assert_eq!(c.poll_timeout(), Some(t1 + c.rto()));
}

/// A quiet channel lets go of its buffers' spare room (the acknowledgement block, the queues'
/// capacity after a burst) and goes on exactly as before: the next acknowledgements are
/// whole and in order, output is delivered, and nothing waiting is lost.
#[test]
fn a_shrunk_channel_lets_go_of_its_spare_room_and_goes_on_the_same() {
    let t0 = Instant::now();
    let mut c = ready_client(t0);
    let mut twin = ready_client(t0);
    // A burst: many messages acknowledged and delivered, so the queues grew.
    for seq in 1..=200 {
        let text = format!("line {seq}\r\n");
        c.handle_incoming(&output(seq, &text), t0).unwrap();
        twin.handle_incoming(&output(seq, &text), t0).unwrap();
    }
    assert_eq!(acked_seqs(&binaries(&mut c)), (1..=200).collect::<Vec<_>>());
    assert_eq!(events(&mut c).len(), 200);
    binaries(&mut twin);
    events(&mut twin);
    let before = c.spare_bytes();
    assert!(
        before >= 4096,
        "the burst left spare room ({before} bytes): the acknowledgement block at least"
    );
    c.shrink();
    assert_eq!(c.spare_bytes(), 0, "nothing spare is kept after shrinking");
    // A message waiting for its turn (out of order) survives the shrink.
    c.handle_incoming(&output(202, "later"), t0).unwrap();
    twin.handle_incoming(&output(202, "later"), t0).unwrap();
    c.shrink();
    assert_eq!(c.reorder_len(), 1);
    for seq in [201, 203] {
        let text = format!("after {seq}");
        c.handle_incoming(&output(seq, &text), t0).unwrap();
        twin.handle_incoming(&output(seq, &text), t0).unwrap();
    }
    let (shrunk, kept) = (binaries(&mut c), binaries(&mut twin));
    assert_eq!(acked_seqs(&shrunk), vec![202, 201, 203]);
    assert_eq!(acked_seqs(&shrunk), acked_seqs(&kept));
    assert_eq!(events(&mut c), events(&mut twin));
    assert_eq!(c.expected_sequence_number(), 204);
}
