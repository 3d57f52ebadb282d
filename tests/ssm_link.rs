//! Client ⇄ agent in memory over a seeded lossy link: every input and output byte arrives
//! exactly once and in order, for the plain, handshake and KMS flows, with and without a socket
//! replacement in the middle.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::sim::{Flow, Sim};
use porthole::ssm::channel::Event;
use porthole::ssm::faults::FaultConfig;
use proptest::prelude::*;

/// Feeds `input` and `output` in chunks while the link runs, optionally cutting the socket
/// once, and checks both streams arrive intact.
fn exchange(
    flow: Flow,
    faults: FaultConfig,
    seed: u64,
    input: &[u8],
    output: &[u8],
    chunk: usize,
    cut_at: Option<usize>,
) -> Sim {
    let mut sim = Sim::new(flow, faults, seed);
    let chunk = chunk.max(1);
    // The agent prints a prompt first, as a shell does; in the plain flow that is what makes
    // the client ready.
    let mut out_chunks = output.chunks(chunk);
    let mut in_chunks = input.chunks(chunk);
    let mut round = 0usize;
    loop {
        let more_out = out_chunks.next();
        let more_in = in_chunks.next();
        if more_out.is_none() && more_in.is_none() {
            break;
        }
        if let Some(c) = more_out {
            sim.agent.send_output(c, sim.now).unwrap();
        }
        if let Some(c) = more_in {
            sim.client.send_input(c, sim.now).unwrap();
        }
        if cut_at == Some(round) {
            sim.replace_socket("token-2");
        }
        round += 1;
        sim.tick();
        assert!(
            sim.closed_reason().is_none(),
            "closed: {:?}",
            sim.closed_reason()
        );
    }
    sim.agent.flush_output(sim.now).unwrap();
    let (want_in, want_out) = (input.len(), output.len());
    sim.run_until(2_000_000, |s| {
        s.input.len() >= want_in
            && s.output.len() >= want_out
            && s.client.is_drained()
            && s.agent.is_drained()
    });
    assert_eq!(sim.output, output, "output differs");
    assert_eq!(sim.input, input, "input differs");
    sim
}

fn ready_handshake(sim: &Sim) -> Option<porthole::ssm::channel::HandshakeSummary> {
    sim.client_events.iter().find_map(|e| match e {
        Event::Ready { handshake } => Some(handshake.clone()),
        _ => None,
    })?
}

fn text(len: usize, salt: u8) -> Vec<u8> {
    // Mixed ASCII and multi-byte UTF-8, so chunk boundaries fall inside sequences.
    let unit = "héllo wörld € 😀 ";
    unit.bytes()
        .cycle()
        .skip(salt as usize % unit.len())
        .take(len)
        .collect()
}

#[test]
fn plain_flow_without_faults() {
    let sim = exchange(
        Flow::Plain,
        FaultConfig::NONE,
        1,
        b"ls -la\r",
        &text(5000, 0),
        700,
        None,
    );
    assert_eq!(ready_handshake(&sim), None);
    assert!(!sim.client.is_encrypted());
    assert_eq!(sim.opens.len(), 1);
    assert_eq!(sim.opens[0].token_value, "token-1");
}

#[test]
fn handshake_flow_reports_the_session_type() {
    let sim = exchange(
        Flow::Handshake,
        FaultConfig::NONE,
        2,
        b"id\r",
        b"$ ",
        64,
        None,
    );
    let hs = ready_handshake(&sim).expect("a handshake ran");
    assert_eq!(hs.session_type, "Standard_Stream");
    assert!(!hs.encrypted);
}

#[test]
fn kms_flow_encrypts_and_checks_the_challenge() {
    let sim = exchange(
        Flow::Kms,
        FaultConfig::NONE,
        3,
        b"secret\r",
        &text(3000, 1),
        512,
        None,
    );
    let hs = ready_handshake(&sim).expect("a handshake ran");
    assert!(hs.encrypted);
    assert_eq!(
        hs.customer_message,
        "This session is encrypted using AWS KMS."
    );
    assert!(sim.client.is_encrypted() && sim.agent.is_encrypted());
    // The data key was asked for with the session, the target and the agent's challenge.
    let ctx = sim
        .client_events
        .iter()
        .find_map(|e| match e {
            Event::DataKeyNeeded {
                encryption_context,
                key_id,
            } => {
                assert_eq!(key_id, "alias/porthole-test");
                Some(encryption_context.clone())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(ctx["aws:ssm:SessionId"], "sess-1");
    assert_eq!(ctx["aws:ssm:TargetId"], "i-0123456789abcdef0");
    assert!(!ctx["aws:ssm:RandomChallenge"].is_empty());
}

#[test]
fn kms_encrypts_exactly_the_keystrokes_on_the_wire() {
    use porthole::ssm::codec::{self, MessageType, PayloadType};
    let mut sim = Sim::new(Flow::Kms, FaultConfig::NONE, 5);
    sim.run_until(10_000, |s| s.client.is_ready());
    sim.client.resize(120, 40, sim.now).unwrap();
    sim.client.send_input(b"top secret\r", sim.now).unwrap();
    sim.run_until(10_000, |s| s.input.len() == 11 && s.client.is_drained());
    assert_eq!(sim.input, b"top secret\r");
    assert!(sim.agent_events.iter().any(|e| matches!(
        e,
        Event::Resize(size) if (size.cols, size.rows) == (120, 40)
    )));
    let frames: Vec<_> = sim
        .client_wire
        .iter()
        .map(|f| codec::decode(f).unwrap().to_owned())
        .collect();
    let stream: Vec<_> = frames
        .iter()
        .filter(|m| m.message_type == MessageType::InputStreamData)
        .collect();
    let of = |pt| stream.iter().filter(move |m| m.payload_type == pt);
    // In clear: the HandshakeResponse, the challenge response (its JSON carries the sealed
    // challenge) and Size.
    for pt in [
        PayloadType::HandshakeResponse,
        PayloadType::EncChallengeResponse,
        PayloadType::Size,
    ] {
        let m = of(pt).next().unwrap_or_else(|| panic!("no {pt:?} frame"));
        assert!(
            serde_json::from_slice::<serde_json::Value>(&m.payload).is_ok(),
            "{pt:?} is not clear JSON"
        );
    }
    assert_eq!(
        of(PayloadType::Size).next().unwrap().payload,
        br#"{"cols":120,"rows":40}"#
    );
    // Encrypted: keystrokes, nonce ‖ ciphertext ‖ tag.
    let keys = of(PayloadType::Output).next().expect("a keystroke frame");
    assert_eq!(keys.payload.len(), b"top secret\r".len() + 28);
    assert!(codec::sha256(&keys.payload) != codec::sha256(b"top secret\r"));
    assert!(
        !keys.payload.windows(6).any(|w| w == b"secret"),
        "plaintext on the wire"
    );
}

#[test]
fn twenty_percent_faults_and_a_socket_cut_lose_nothing() {
    for flow in [Flow::Plain, Flow::Handshake, Flow::Kms] {
        let output = text(200_000, 3);
        let input: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let sim = exchange(
            flow,
            FaultConfig::uniform(0.2),
            42,
            &input,
            &output,
            900,
            Some(40),
        );
        let (c, a) = (sim.client.stats(), sim.agent.stats());
        assert!(c.duplicates > 0 && c.out_of_order > 0, "{c:?}");
        assert!(a.duplicates > 0 && a.out_of_order > 0, "{a:?}");
        assert!(c.resends + a.resends > 0, "{c:?} {a:?}");
        assert_eq!(sim.opens.len(), 2, "one OpenDataChannel per socket");
        assert_eq!(sim.opens[1].token_value, "token-2");
        assert_eq!(
            sim.opens[0].client_id, sim.opens[1].client_id,
            "same ClientId on reconnect"
        );
        assert_ne!(sim.opens[0].request_id, sim.opens[1].request_id);
    }
}

fn arb_flow() -> impl Strategy<Value = Flow> {
    prop_oneof![Just(Flow::Plain), Just(Flow::Handshake), Just(Flow::Kms)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_byte_arrives_once_and_in_order(
        flow in arb_flow(),
        seed in any::<u64>(),
        drop in 0.0..0.2f64,
        dup in 0.0..0.2f64,
        reorder in 0.0..0.2f64,
        input in proptest::collection::vec(any::<u8>(), 0..6000),
        out_len in 1usize..30_000,
        salt in any::<u8>(),
        chunk in 1usize..3000,
                cut in proptest::option::of(0.0..1.0f64),
    ) {
        let output = text(out_len, salt);
        // Cut somewhere within the rounds the exchange actually has.
        let rounds = input.len().max(out_len) / chunk.max(1) + 1;
        let cut = cut.map(|f| (f * rounds as f64) as usize);
        let faults = FaultConfig { drop, duplicate: dup, reorder };
        exchange(flow, faults, seed, &input, &output, chunk, cut);
    }
}
