//! Cost of one 1 KiB SSM frame (issue 2), side by side in one criterion group `ssm_frame`:
//!
//! - `sha256_1kib`: SHA-256 over 1 KiB with the codec's own [`codec::sha256`] (the floor: every
//!   incoming frame's digest must be checked).
//! - `client_incoming_1kib_output`: everything a ready client [`Channel`] does for one incoming
//!   1 KiB `output_stream_data` frame: `handle_incoming_bytes` (decode, digest check, sequencing,
//!   encoding the ack), then draining `poll_transmit` (the ack) and `poll_event` (the output),
//!   including dropping both. The frames are encoded before timing and held as `Bytes` split
//!   off one buffer, the way the WebSocket library (tungstenite) hands them to the client.
//! - `client_incoming_1kib_output_from_slice`: the same through `handle_incoming(&[u8])`,
//!   which copies the output out of the frame.
//! - `codec_decode_1kib`: `codec::decode` of the same frame alone (includes its digest check).
//! - `agent_send_output_1kib`: an agent's `send_output` of 1 KiB and draining the transmit.
//!
//! Goal: `client_incoming_1kib_output` ≤ 1.5 × `sha256_1kib`. Run with
//! `cargo bench --bench frame`; see docs/performance.md.
//!
//! After the criterion group, a paired measurement prints the same ratio measured in
//! alternation (see [`paired_ratio`]), which a loaded machine disturbs far less than the ratio
//! of two criterion estimates taken seconds apart.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group};
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

/// The frames as a WebSocket library hands them over: `Bytes` split off one read buffer
/// (tungstenite's `Message::Binary`), so slicing a payload out of one costs no allocation.
fn as_received(frames: &[Vec<u8>]) -> Vec<Bytes> {
    let mut buf = BytesMut::with_capacity(frames.iter().map(Vec::len).sum());
    for frame in frames {
        buf.extend_from_slice(frame);
    }
    frames
        .iter()
        .map(|frame| buf.split_to(frame.len()).freeze())
        .collect()
}

/// What (b) times: feeds `frames` to a ready client, draining and dropping the ack and the
/// output of each.
fn feed(ch: &mut Channel, frames: &[Bytes], now: Instant) {
    for frame in frames {
        let r = ch.handle_incoming_bytes(black_box(frame), now);
        black_box(&r);
        while let Some(t) = ch.poll_transmit() {
            black_box(&t);
        }
        while let Some(e) = ch.poll_event() {
            black_box(&e);
        }
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
    let received = as_received(&frames);

    // Sanity check outside timing: one frame yields exactly one ack and one output, the same
    // through both entry points.
    {
        let mut ch = ready_client(&client, &first, now);
        if let Err(e) = ch.handle_incoming_bytes(&received[0], now) {
            panic!("client rejected frame 1: {e}");
        }
        let Some(Transmit::Binary(ack)) = ch.poll_transmit() else {
            panic!("no ack for frame 1");
        };
        assert!(ch.poll_transmit().is_none());
        assert!(matches!(ch.poll_event(), Some(Event::Output(o)) if o == body));
        assert!(ch.poll_event().is_none());
        let mut copy = ready_client(&client, &first, now);
        copy.handle_incoming(&frames[0], now).unwrap();
        assert_eq!(copy.poll_transmit(), Some(Transmit::Binary(ack)));
        assert!(matches!(copy.poll_event(), Some(Event::Output(o)) if o == body));
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
                feed(&mut ch, &received[..n], now);
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

    group.bench_function("client_incoming_1kib_output_from_slice", |b| {
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

    group.finish();
}

/// Rounds of the paired measurement, and frames (and hashes) timed per round.
const PAIRED_ROUNDS: usize = 4000;
const PAIRED_N: usize = 64;

/// (b)/(a) measured in alternation: each round times `PAIRED_N` hashes and `PAIRED_N` frames
/// (a fresh ready client each round) back to back, in alternating order, so that both see the
/// same load. A round disturbed by another process shows up as an outlier among the per-round
/// ratios, which the median ignores.
fn paired_ratio() {
    let body = payload();
    let now = Instant::now();
    let client = client_config();
    let first = output_frame(0, &body);
    let frames: Vec<Vec<u8>> = (1..=PAIRED_N as i64)
        .map(|s| output_frame(s, &body))
        .collect();
    let received = as_received(&frames);
    let time_a = || {
        let start = Instant::now();
        for _ in 0..PAIRED_N {
            black_box(codec::sha256(black_box(&body)));
        }
        start.elapsed()
    };
    let time_b = |mut ch: Channel| {
        let start = Instant::now();
        feed(&mut ch, &received, now);
        let took = start.elapsed();
        drop(ch);
        took
    };
    let (mut ratios, mut a_ns, mut b_ns) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..PAIRED_ROUNDS / 10 + PAIRED_ROUNDS {
        let ch = ready_client(&client, &first, now);
        let (a, b) = if round % 2 == 0 {
            let a = time_a();
            (a, time_b(ch))
        } else {
            let b = time_b(ch);
            (time_a(), b)
        };
        if round < PAIRED_ROUNDS / 10 {
            continue; // warm-up
        }
        let per_frame = |d: Duration| d.as_nanos() as f64 / PAIRED_N as f64;
        ratios.push(per_frame(b) / per_frame(a));
        a_ns.push(per_frame(a));
        b_ns.push(per_frame(b));
    }
    for v in [&mut ratios, &mut a_ns, &mut b_ns] {
        v.sort_by(f64::total_cmp);
    }
    let at = |v: &[f64], q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    println!(
        "ssm_frame paired, {PAIRED_ROUNDS} rounds of {PAIRED_N}: (b)/(a) median {:.3} \
         [p10 {:.3}, p90 {:.3}]; per frame median (a) {:.1} ns, (b) {:.1} ns",
        at(&ratios, 0.5),
        at(&ratios, 0.1),
        at(&ratios, 0.9),
        at(&a_ns, 0.5),
        at(&b_ns, 0.5),
    );
}

criterion_group!(benches, frame_cost);

fn main() {
    benches();
    // `cargo bench` passes --bench; without it (`cargo test --benches`) this is a smoke run.
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bench") && !args.iter().any(|a| a == "--list") {
        paired_ratio();
    }
    Criterion::default().configure_from_args().final_summary();
}
