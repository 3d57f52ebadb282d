//! Cost of one 1 KiB SSM frame (issue 2), side by side in one criterion group `ssm_frame`:
//!
//! - `sha256_1kib`: SHA-256 over 1 KiB with the codec's own [`codec::sha256`] (the floor: every
//!   incoming frame's digest must be checked).
//! - `client_incoming_1kib_output`: everything a ready client [`Channel`] does for one incoming
//!   1 KiB `output_stream_data` frame: `handle_incoming` (decode, digest check, sequencing,
//!   encoding the ack), then draining `poll_transmit` (the ack) and `poll_event` (the output),
//!   including dropping both. The frames are encoded before timing.
//! - `codec_decode_1kib`: `codec::decode` of the same frame alone (includes its digest check).
//! - `agent_send_output_1kib`: an agent's `send_output` of 1 KiB and draining the transmit.
//!
//! Goal: `client_incoming_1kib_output` ≤ 1.5 × `sha256_1kib`. Run with
//! `cargo bench --bench frame`; see docs/performance.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use porthole::ssm::codec::{self, Message, MessageType, PayloadType};
use porthole::ssm::{Channel, ChannelConfig, Event, Transmit};
use uuid::Uuid;

/// Payload size under test: one full stream payload.
const PAYLOAD_LEN: usize = 1024;
/// Frames encoded ahead of timing (consecutive sequence numbers); each batch is fed to a fresh,
/// ready client channel. 256 frames are about 290 KiB, small enough to stay in a 512 KiB L2 like
/// a frame the socket layer has just written; a larger batch measures cache misses as well.
const BATCH: usize = 256;
/// Fixed wall-clock anchor for the channels (2023-11-14), so frames have a non-zero date.
const UNIX_MS: u64 = 1_700_000_000_000;

/// Printable ASCII, so the agent's UTF-8 chunker emits it as one payload.
fn payload() -> Vec<u8> {
    (0..PAYLOAD_LEN).map(|i| b' ' + (i % 95) as u8).collect()
}

/// An agent-side `output_stream_data` frame with Output payload and sequence number `seq`.
fn output_frame(seq: i64, body: &[u8]) -> Vec<u8> {
    let msg = Message {
        message_type: MessageType::OutputStreamData,
        schema_version: codec::SCHEMA_VERSION,
        created_date: UNIX_MS,
        sequence_number: seq,
        flags: if seq == 0 { codec::FLAG_SYN } else { 0 },
        message_id: Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_0000_0000_0000 + seq as u128),
        payload_type: PayloadType::Output,
        payload: body.to_vec(),
    };
    match codec::encode(&msg) {
        Ok(frame) => frame,
        Err(e) => panic!("encoding the benchmark frame failed: {e}"),
    }
}

/// Client settings with a fixed seed. Built once: `ChannelConfig::client` draws a client id from
/// the operating system, which should not run between timed batches.
fn client_config() -> ChannelConfig {
    let mut config = ChannelConfig::client("bench-session", "i-0123456789abcdef0");
    config.seed = Some(2);
    config
}

/// Agent settings with a fixed seed (plain flow: no handshake).
fn agent_config() -> ChannelConfig {
    let mut config = ChannelConfig::agent("bench-session", "i-0123456789abcdef0");
    config.seed = Some(3);
    config
}

/// A client channel made ready by a first output frame at sequence 0, with its queues drained.
fn ready_client(config: &ChannelConfig, first: &[u8], now: Instant) -> Channel {
    let mut channel = Channel::new(config.clone(), now, UNIX_MS);
    if let Err(e) = channel.handle_incoming(first, now) {
        panic!("priming the client failed: {e}");
    }
    assert!(
        channel.is_ready(),
        "client not ready after its first output"
    );
    while channel.poll_transmit().is_some() {}
    while channel.poll_event().is_some() {}
    channel
}

/// An agent channel in the plain flow, ready after its socket opened.
fn ready_agent(config: &ChannelConfig, now: Instant) -> Channel {
    let mut channel = Channel::new(config.clone(), now, UNIX_MS);
    channel.socket_opened(now, None);
    assert!(
        channel.is_ready(),
        "agent not ready after its socket opened"
    );
    while channel.poll_transmit().is_some() {}
    while channel.poll_event().is_some() {}
    channel
}

fn frame_cost(c: &mut Criterion) {
    let body = payload();
    let now = Instant::now();
    let client = client_config();
    let agent = agent_config();
    let first = output_frame(0, &body);
    // Sequence numbers 1..=BATCH: what a channel primed with frame 0 expects next, in order.
    let frames: Vec<Vec<u8>> = (1..=BATCH as i64).map(|s| output_frame(s, &body)).collect();

    // Sanity check outside timing: one frame yields exactly one ack and one output.
    {
        let mut ch = ready_client(&client, &first, now);
        if let Err(e) = ch.handle_incoming(&frames[0], now) {
            panic!("client rejected frame 1: {e}");
        }
        assert!(matches!(ch.poll_transmit(), Some(Transmit::Binary(_))));
        assert!(ch.poll_transmit().is_none());
        assert!(matches!(ch.poll_event(), Some(Event::Output(o)) if o == body));
        assert!(ch.poll_event().is_none());
    }

    let mut group = c.benchmark_group("ssm_frame");
    group.throughput(Throughput::Bytes(PAYLOAD_LEN as u64));

    group.bench_function("sha256_1kib", |b| {
        b.iter(|| codec::sha256(black_box(&body)))
    });

    group.bench_function("client_incoming_1kib_output", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(BATCH as u64) as usize;
                // Untimed: a fresh channel expecting sequence 1.
                let mut ch = ready_client(&client, &first, now);
                let start = Instant::now();
                for frame in &frames[..n] {
                    let r = ch.handle_incoming(black_box(frame), now);
                    black_box(&r);
                    while let Some(t) = ch.poll_transmit() {
                        black_box(&t);
                    }
                    while let Some(e) = ch.poll_event() {
                        black_box(&e);
                    }
                }
                total += start.elapsed();
                black_box(&ch);
                drop(ch);
                left -= n as u64;
            }
            total
        })
    });

    group.bench_function("codec_decode_1kib", |b| {
        b.iter(|| {
            let m = codec::decode(black_box(&frames[0]));
            black_box(m.is_ok())
        })
    });

    group.bench_function("agent_send_output_1kib", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                // Below the send window (10,000), so every send goes out at once. The frames
                // stay in the unacknowledged buffer until the untimed drop of the channel.
                let n = left.min(BATCH as u64);
                let mut ch = ready_agent(&agent, now);
                let start = Instant::now();
                for _ in 0..n {
                    let r = ch.send_output(black_box(&body), now);
                    black_box(&r);
                    while let Some(t) = ch.poll_transmit() {
                        black_box(&t);
                    }
                }
                total += start.elapsed();
                black_box(&ch);
                drop(ch);
                left -= n;
            }
            total
        })
    });

    group.finish();
}

criterion_group!(benches, frame_cost);
criterion_main!(benches);
