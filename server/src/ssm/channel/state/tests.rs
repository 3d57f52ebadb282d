//! Freeze → bytes → restore in the middle of an in-memory client ⇄ agent exchange over a
//! lossy link: every byte arrives exactly once and in order, both ways.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::VecDeque;

use base64::Engine as _;
use proptest::prelude::*;

use super::super::{AgentHandshake, Event, Transmit};
use super::*;
use crate::ssm::faults::{FaultConfig, FaultInjector};
use crate::ssm::payload;

const UNIX: u64 = 1_700_000_000_000;
const HOP: Duration = Duration::from_millis(1);

fn data_key() -> Vec<u8> {
    (0..64u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(3))
        .collect()
}

/// A client and an agent joined by a seeded lossy link, on a virtual clock.
struct Link {
    now: Instant,
    client: Channel,
    agent: Channel,
    c2a: FaultInjector<Bytes>,
    a2c: FaultInjector<Bytes>,
    to_agent: VecDeque<Bytes>,
    to_client: VecDeque<Bytes>,
    /// Whether the client's socket is up (frames it writes meanwhile are lost).
    connected: bool,
    /// Output the client delivered, in order (across the freeze).
    output: Vec<u8>,
    /// Input the agent delivered, in order.
    input: Vec<u8>,
    tokens: Vec<String>,
}

impl Link {
    fn new(kms: bool, faults: FaultConfig, seed: u64) -> Self {
        let now = Instant::now();
        let mut c = ChannelConfig::client("sess-1", "i-0123456789abcdef0");
        c.seed = Some(seed);
        let mut a = ChannelConfig::agent("sess-1", "i-0123456789abcdef0");
        a.seed = Some(seed.wrapping_add(1));
        a.handshake = kms.then(|| AgentHandshake {
            session_type: payload::session_type::STANDARD_STREAM.into(),
            properties: serde_json::Value::Null,
            kms_key_id: Some("alias/test".into()),
            random_challenge: true,
        });
        let mut link = Self {
            now,
            client: Channel::new(c, now, UNIX),
            agent: Channel::new(a, now, UNIX),
            c2a: FaultInjector::new(faults, seed.wrapping_mul(31).wrapping_add(2)),
            a2c: FaultInjector::new(faults, seed.wrapping_mul(31).wrapping_add(3)),
            to_agent: VecDeque::new(),
            to_client: VecDeque::new(),
            connected: true,
            output: Vec::new(),
            input: Vec::new(),
            tokens: Vec::new(),
        };
        link.client.socket_opened(now, Some("token-1"));
        link.agent.socket_opened(now, None);
        link
    }

    fn step(&mut self) -> bool {
        let mut moved = false;
        let mut out = Vec::new();
        while let Some(t) = self.client.poll_transmit() {
            moved = true;
            match t {
                Transmit::Text(text) => {
                    let open: payload::OpenDataChannel = serde_json::from_str(&text).unwrap();
                    self.tokens.push(open.token_value);
                }
                Transmit::Binary(frame) if self.connected => self.c2a.apply(frame, &mut out),
                Transmit::Binary(_) => {}
            }
        }
        self.to_agent.extend(out.drain(..));
        while let Some(t) = self.agent.poll_transmit() {
            moved = true;
            if let Transmit::Binary(frame) = t {
                self.a2c.apply(frame, &mut out);
            }
        }
        if self.connected {
            self.to_client.extend(out.drain(..));
        }
        self.now += HOP;
        while let Some(frame) = self.to_agent.pop_front() {
            moved = true;
            let _ = self.agent.handle_incoming(&frame, self.now);
        }
        while let Some(frame) = self.to_client.pop_front() {
            moved = true;
            let _ = self.client.handle_incoming(&frame, self.now);
        }
        moved | self.events()
    }

    fn events(&mut self) -> bool {
        let mut any = false;
        while let Some(e) = self.client.poll_event() {
            any = true;
            match e {
                Event::Output(b) => self.output.extend_from_slice(&b),
                Event::DataKeyNeeded { .. } => {
                    self.client
                        .provide_data_key(&data_key(), b"blob", self.now)
                        .unwrap();
                }
                Event::Closed(reason) => panic!("client closed: {reason}"),
                _ => {}
            }
        }
        while let Some(e) = self.agent.poll_event() {
            any = true;
            match e {
                Event::Input(b) => self.input.extend_from_slice(&b),
                Event::DecryptNeeded { .. } => {
                    self.agent
                        .provide_decrypted_key(&data_key(), self.now)
                        .unwrap();
                }
                Event::Closed(reason) => panic!("agent closed: {reason}"),
                _ => {}
            }
        }
        any
    }

    fn tick(&mut self) {
        if self.step() {
            return;
        }
        let mut out = Vec::new();
        self.c2a.flush(&mut out);
        self.to_agent.extend(out.drain(..));
        self.a2c.flush(&mut out);
        self.to_client.extend(out.drain(..));
        if !self.to_agent.is_empty() || !self.to_client.is_empty() {
            return;
        }
        let next = [self.client.poll_timeout(), self.agent.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        if let Some(t) = next {
            self.now = self.now.max(t);
        }
        self.client.handle_timeout(self.now);
        self.agent.handle_timeout(self.now);
    }

    /// The hand-over: the client's state goes through bytes into a new client; the socket is
    /// lost (frames in flight too); the agent produces `meanwhile` with no client; then the new
    /// client connects with a new token.
    fn hand_over(&mut self, meanwhile: &[u8]) -> ChannelState {
        let state = self.client.freeze().unwrap();
        let bytes = state.to_bytes();
        let read = ChannelState::from_bytes(&bytes).unwrap();
        assert!(read == state, "the state survives its bytes");
        self.connected = false;
        self.to_agent.clear();
        self.to_client.clear();
        let mut lost = Vec::new();
        self.c2a.flush(&mut lost);
        self.a2c.flush(&mut lost);
        self.agent.socket_closed();
        self.agent.send_output(meanwhile, self.now).unwrap();
        while self.agent.poll_transmit().is_some() {}
        self.now += Duration::from_millis(50);
        let mut client = Channel::restore(read, self.now, UNIX + 7).unwrap();
        assert!(client.is_ready() && client.poll_transmit().is_none());
        assert_eq!(client.poll_timeout(), None, "no socket, no timer");
        client.socket_opened(self.now, Some("token-2"));
        self.client = client;
        self.connected = true;
        self.agent.socket_opened(self.now, None);
        state
    }

    fn run_until(&mut self, max: u64, done: impl Fn(&Self) -> bool) {
        for _ in 0..max {
            if done(self) {
                return;
            }
            self.tick();
        }
        panic!(
            "not done after {max} ticks: output {} input {}",
            self.output.len(),
            self.input.len()
        );
    }
}

fn text(len: usize, salt: u8) -> Vec<u8> {
    let unit = "héllo wörld € 😀 ";
    unit.bytes()
        .cycle()
        .skip(salt as usize % unit.len())
        .take(len)
        .collect()
}

/// Sends `output` and `input` in chunks, hands the client over at the first round at or after
/// `freeze_at` where it is ready (holding incoming data back for the `hold` rounds before), then
/// checks both streams arrived exactly.
#[allow(clippy::too_many_arguments)]
fn exchange(
    kms: bool,
    faults: FaultConfig,
    seed: u64,
    input: &[u8],
    output: &[u8],
    chunk: usize,
    freeze_at: usize,
    hold: usize,
) -> (Link, ChannelState) {
    let mut link = Link::new(kms, faults, seed);
    let chunk = chunk.max(1);
    let meanwhile = b"printed while nobody was connected\r\n";
    let mut out_chunks = output.chunks(chunk);
    let mut in_chunks = input.chunks(chunk);
    let mut frozen = None;
    let mut round = 0usize;
    // Output bytes the agent had been given when the client was frozen.
    let mut before = 0usize;
    loop {
        let more_out = out_chunks.next();
        let more_in = in_chunks.next();
        if let Some(c) = more_out {
            link.agent.send_output(c, link.now).unwrap();
            before += c.len();
        }
        if let Some(c) = more_in {
            link.client.send_input(c, link.now).unwrap();
        }
        if frozen.is_none() {
            // Held back only once ready: holding refuses the start's messages too.
            if round + hold >= freeze_at && link.client.is_ready() {
                link.client.hold_incoming(true);
            }
            if round >= freeze_at {
                if link.client.is_ready() {
                    frozen = Some((link.hand_over(meanwhile), before));
                } else {
                    // Before the start completes there is nothing to carry on.
                    assert_eq!(link.client.freeze(), Err(StateError::NotReady));
                }
            }
        }
        if more_out.is_none() && more_in.is_none() && frozen.is_some() {
            break;
        }
        round += 1;
        link.tick();
    }
    let (state, before) = frozen.unwrap();
    link.agent.flush_output(link.now).unwrap();
    // The agent's output is sequenced in the order it was given: what was printed while
    // nobody was connected sits between what came before the freeze and what came after.
    let mut expected = output[..before].to_vec();
    expected.extend_from_slice(meanwhile);
    expected.extend_from_slice(&output[before..]);
    link.run_until(2_000_000, |l| {
        l.input.len() >= input.len()
            && l.output.len() >= expected.len()
            && l.client.is_drained()
            && l.agent.is_drained()
    });
    assert!(link.output == expected, "output differs");
    assert!(link.input == input, "input differs");
    assert_eq!(link.tokens, ["token-1", "token-2"]);
    (link, state)
}

#[test]
fn a_plain_session_moves_mid_stream_through_faults() {
    let output = text(60_000, 1);
    let input: Vec<u8> = (0..5_000u32).map(|i| (i % 251) as u8).collect();
    let (link, state) = exchange(
        false,
        FaultConfig::uniform(0.15),
        11,
        &input,
        &output,
        700,
        30,
        0,
    );
    assert!(state.unacked_len() + state.reorder_len() > 0, "{state:?}");
    assert!(!link.client.is_encrypted());
    assert_eq!(link.client.handshake(), None);
}

#[test]
fn a_kms_session_moves_with_its_keys_and_nonces() {
    let output = text(40_000, 2);
    let input = b"typed before and after the move\r".repeat(200);
    let (link, state) = exchange(
        true,
        FaultConfig::uniform(0.1),
        12,
        &input,
        &output,
        500,
        40,
        3,
    );
    assert!(state.is_encrypted());
    let hs = link.client.handshake().expect("a handshake ran").clone();
    assert!(hs.encrypted);
    assert_eq!(state.handshake(), Some(hs));
    assert!(link.client.is_encrypted());
}

#[test]
fn the_restored_sealing_counter_starts_far_past_the_frozen_one() {
    let mut link = Link::new(true, FaultConfig::NONE, 3);
    link.run_until(10_000, |l| l.client.is_ready());
    let state = link.client.freeze().unwrap();
    let frozen = state.cipher.as_ref().unwrap().next_nonce.clone();
    let restored = Channel::restore(state, link.now, UNIX).unwrap();
    let next = restored.cipher.as_ref().unwrap().next_nonce();
    let as_int = |n: &[u8]| {
        let mut w = [0u8; 16];
        w[..12].copy_from_slice(n);
        u128::from_le_bytes(w)
    };
    assert_eq!(
        as_int(&next),
        (as_int(&frozen) + (1u128 << 64)) & ((1u128 << 96) - 1)
    );
    assert_eq!(
        restored.cipher.as_ref().unwrap().data_key().to_vec(),
        data_key()
    );
}

#[test]
fn freeze_refuses_agents_unready_closed_and_unpolled_channels() {
    let mut link = Link::new(false, FaultConfig::NONE, 4);
    assert_eq!(
        link.agent.freeze().unwrap_err(),
        StateError::WrongRole("freeze")
    );
    assert_eq!(link.client.freeze(), Err(StateError::NotReady));
    link.agent.send_output(b"$ ", link.now).unwrap();
    // Deliver the prompt without polling the client's events.
    while let Some(t) = link.agent.poll_transmit() {
        if let Transmit::Binary(f) = t {
            link.client.handle_incoming(&f, link.now).unwrap();
        }
    }
    let err = link.client.freeze().unwrap_err();
    assert_eq!(
        err,
        StateError::EventsPending { count: 2 },
        "Ready and Output"
    );
    assert!(
        err.to_string().contains("poll them before freezing"),
        "{err}"
    );
    while link.client.poll_event().is_some() {}
    assert!(link.client.freeze().is_ok());
    link.agent.close("bye", link.now);
    while let Some(t) = link.agent.poll_transmit() {
        if let Transmit::Binary(f) = t {
            link.client.handle_incoming(&f, link.now).unwrap();
        }
    }
    assert_eq!(link.client.freeze(), Err(StateError::Closed));
}

#[test]
fn debug_shows_no_key_and_no_data() {
    let mut link = Link::new(true, FaultConfig::NONE, 5);
    link.run_until(10_000, |l| l.client.is_ready());
    link.connected = false;
    link.client.send_input(b"hunter2", link.now).unwrap();
    link.tick();
    let state = link.client.freeze().unwrap();
    let shown = format!("{state:?}");
    assert!(shown.contains("[redacted]"), "{shown}");
    let key_b64 = BASE64.encode(data_key());
    assert!(
        !shown.contains(&key_b64[..16]) && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(
        !shown.contains(&format!("{:?}", &data_key()[..8])),
        "{shown}"
    );
    // The bytes do hold the key (the caller seals them).
    let bytes = String::from_utf8(state.to_bytes()).unwrap();
    assert!(bytes.contains(&key_b64), "the key travels in the state");
}

#[test]
fn garbage_and_other_versions_are_clear_errors() {
    let mut link = Link::new(false, FaultConfig::NONE, 6);
    link.agent.send_output(b"$ ", link.now).unwrap();
    link.run_until(10_000, |l| l.client.is_ready() && l.output == b"$ ");
    link.connected = false;
    link.client.send_input(b"ls\r", link.now).unwrap();
    let good = link.client.freeze().unwrap();
    let bytes = good.to_bytes();
    assert!(ChannelState::from_bytes(&bytes).unwrap() == good);

    let malformed = |b: &[u8]| match ChannelState::from_bytes(b) {
        Err(ChannelStateError::Malformed(m)) => m,
        other => panic!("{:?}: {other:?}", String::from_utf8_lossy(b)),
    };
    malformed(b"");
    malformed(b"\x00\xff garbage");
    malformed(b"[1,2,3]");
    assert!(malformed(b"{}").contains("version"));
    assert!(malformed(br#"{"version":"one"}"#).contains("not a number"));
    assert!(malformed(br#"{"version":1}"#).contains("missing field"));

    let mut json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    json["version"] = 2.into();
    let err = ChannelState::from_bytes(&serde_json::to_vec(&json).unwrap()).unwrap_err();
    assert_eq!(
        err,
        ChannelStateError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );
    assert!(err.to_string().contains("version 2"), "{err}");

    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        f(&mut j);
        ChannelState::from_bytes(&serde_json::to_vec(&j).unwrap()).unwrap_err()
    };
    assert!(matches!(
        edit(&|j| j["role"] = "agent".into()),
        ChannelStateError::Malformed(m) if m.contains("agent")
    ));
    assert!(matches!(
        edit(&|j| j["utf8_carry"] = "not base64!".into()),
        ChannelStateError::Malformed(m) if m.contains("base64")
    ));
    assert!(matches!(
        edit(&|j| j["surprise"] = 1.into()),
        ChannelStateError::Malformed(m) if m.contains("surprise")
    ));
    assert!(matches!(
        edit(&|j| j["client_id"] = "nope".into()),
        ChannelStateError::Inconsistent(m) if m.contains("client_id")
    ));
    assert!(matches!(
        edit(&|j| j["next_seq"] = 0.into()),
        ChannelStateError::Inconsistent(m) if m.contains("next_seq")
    ));
    assert!(matches!(
        edit(&|j| j["unacked"][0]["frame"] = BASE64.encode(b"short").into()),
        ChannelStateError::Inconsistent(m) if m.contains("does not decode")
    ));
    assert!(matches!(
        edit(&|j| {
            j["cipher"] = serde_json::json!({"data_key": BASE64.encode([0u8; 32]), "next_nonce": BASE64.encode([0u8; 12])});
            j["handshake"] = serde_json::json!({"session_type": "Standard_Stream", "peer_version": "3", "customer_message": "", "encrypted": true});
        }),
        ChannelStateError::Inconsistent(m) if m.contains("data key of 32 bytes")
    ));
    assert!(matches!(
        edit(&|j| j["cipher"] = serde_json::json!({"data_key": BASE64.encode([0u8; 64]), "next_nonce": BASE64.encode([0u8; 12])})),
        ChannelStateError::Inconsistent(m) if m.contains("disagree")
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_hand_over_at_any_point_delivers_every_byte_once_and_in_order(
        kms in any::<bool>(),
        seed in any::<u64>(),
        drop in 0.0..0.2f64,
        dup in 0.0..0.2f64,
        reorder in 0.0..0.2f64,
        input in proptest::collection::vec(any::<u8>(), 0..4000),
        out_len in 1usize..20_000,
        salt in any::<u8>(),
        chunk in 1usize..2000,
        at in 0.0..1.0f64,
        hold in 0usize..4,
    ) {
        let output = text(out_len, salt);
        let rounds = input.len().max(out_len) / chunk.max(1) + 1;
        let freeze_at = (at * rounds as f64) as usize;
        let faults = FaultConfig { drop, duplicate: dup, reorder };
        exchange(kms, faults, seed, &input, &output, chunk, freeze_at, hold);
    }

    #[test]
    fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = ChannelState::from_bytes(&bytes);
    }

    #[test]
    fn from_bytes_never_panics_on_mutated_states(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut link = Link::new(true, FaultConfig::NONE, 9);
        link.run_until(10_000, |l| l.client.is_ready());
        link.connected = false;
        link.client.send_input(b"abc", link.now).unwrap();
        let mut bytes = link.client.freeze().unwrap().to_bytes();
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        if let Ok(state) = ChannelState::from_bytes(&bytes) {
            // Whatever reads back restores cleanly.
            Channel::restore(state, link.now, UNIX).unwrap();
        }
    }
}
