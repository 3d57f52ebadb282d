//! The emulator's data channel end to end: the real aws-sdk-ssm client starts sessions, the
//! core's client role speaks to the emulator's agent over a real WebSocket, and a real shell
//! runs in a PTY.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::emulator::{self, Emu, NODE, Term, WAIT};
use futures_util::{SinkExt, StreamExt};
use porthole::emulator::agent::CLOSE_INVALID_TOKEN;
use porthole::ssm::channel::CloseReason;
use porthole::ssm::client::{ClientEvent, ClientOptions};
use porthole::ssm::codec::MAX_FRAME_LEN;
use porthole::ssm::faults::FaultConfig;
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test]
async fn a_shell_runs_commands_resizes_and_exits() {
    let emu = emulator::start(|_| {}).await;
    let mut term = emu.open(NODE).await;

    // An echo marker: the shell computes it, so the typed command cannot match it.
    assert_eq!(
        term.run("echo porthole-$((6*7))").await.trim(),
        "porthole-42"
    );

    // Multi-byte UTF-8 output larger than one 1,024-byte chunk arrives intact.
    let unit = "héllo wörld € 😀 ";
    let out = term
        .run(&format!("for i in $(seq 1 300); do printf '{unit}'; done"))
        .await;
    assert_eq!(out.trim_end(), unit.repeat(300).trim_end());
    assert!(
        !term.text().contains('\u{FFFD}'),
        "a UTF-8 sequence was split"
    );

    // After a resize the shell sees the new size.
    term.handle.resize(132, 43).await.unwrap();
    assert_eq!(term.run("stty size").await.trim(), "43 132");

    // `exit` ends the session with channel_closed.
    term.send("exit\r").await;
    assert_eq!(
        term.closed().await,
        CloseReason::Remote {
            output: String::new()
        }
    );
    let info = emu
        .aws
        .ssm
        .describe_sessions()
        .state("History".into())
        .send()
        .await
        .unwrap();
    assert!(
        info.sessions()
            .iter()
            .any(|s| s.session_id() == Some(term.start.session_id.as_str()))
    );
}

#[tokio::test]
async fn interactive_command_document_runs_its_command() {
    let emu = emulator::start(|_| {}).await;
    let reply = emu
        .aws
        .ssm
        .start_session()
        .target(NODE)
        .document_name("AWS-StartInteractiveCommand")
        .parameters("command", vec!["echo interactive-$((40+2))".into()])
        .send()
        .await
        .unwrap();
    let start = porthole::ssm::client::SessionStart {
        session_id: reply.session_id().unwrap().into(),
        target: NODE.into(),
        stream_url: reply.stream_url().unwrap().into(),
        token: reply.token_value().unwrap().into(),
    };
    let mut term = Term::connect(start, emu.aws.clone()).await;
    term.expect("interactive-42").await;
    assert_eq!(
        term.closed().await,
        CloseReason::Remote {
            output: String::new()
        }
    );
}

#[tokio::test]
async fn terminate_session_kills_the_shell() {
    let emu = emulator::start(|_| {}).await;
    let mut term = emu.open(NODE).await;
    // A child process too: it must die with the shell's process group.
    let out = term.run("sleep 300 & echo PIDS $$ $!").await;
    let line = out
        .lines()
        .find_map(|l| l.strip_prefix("PIDS "))
        .expect("the PIDS line");
    let pids: Vec<u32> = line
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2, "{pids:?}");
    for pid in &pids {
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
    emu.aws
        .ssm
        .terminate_session()
        .session_id(&term.start.session_id)
        .send()
        .await
        .unwrap();
    assert!(matches!(term.closed().await, CloseReason::Remote { .. }));
    // The shell was reaped before channel_closed was sent; the orphaned child is killed with the
    // group (reaped by init, so give the kernel a moment, bounded).
    let shell = format!("/proc/{}", pids[0]);
    assert!(
        !std::path::Path::new(&shell).exists(),
        "the shell process still exists"
    );
    let child = pids[1];
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(format!("/proc/{child}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell's child survived"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Starts `base64` of random data and checks the bytes that arrive against the shell's own
/// SHA-256 of the same stream.
async fn bulk_output_is_exact(term: &mut Term, bytes: usize) {
    let start = term.output.len();
    send_bulk(term, bytes).await;
    bulk_arrived_exactly(term, start, bytes).await;
}

/// Has the shell print `bytes` random bytes in base64, after the hash of that base64.
async fn send_bulk(term: &Term, bytes: usize) {
    let command = format!(
        "head -c {bytes} /dev/urandom > data.bin; echo SU\"\"M $(base64 data.bin | sha256sum); \
         echo BE''GIN; base64 data.bin; echo EN''D"
    );
    term.send(&format!("{command}\r")).await;
}

/// Reads what [`send_bulk`] made the shell print (from byte `start` of the output) and checks
/// it against the hash the shell printed first.
async fn bulk_arrived_exactly(term: &mut Term, start: usize, bytes: usize) {
    let sum_at = term.expect_from(start, "SUM ").await;
    let sum_end = term.expect_from(sum_at, "\r\n").await;
    let expected = String::from_utf8_lossy(&term.output[sum_at..sum_end]).to_string();
    let expected = expected.split_whitespace().next().unwrap().to_owned();
    let begin = term.expect_from(sum_end, "BEGIN\r\n").await;
    let end = term.expect_from(begin, "\r\nEND\r\n").await;
    // The PTY turns each \n into \r\n; undo that to hash what base64 wrote.
    let body = &term.output[begin..end - "END\r\n".len()];
    let unix: Vec<u8> = body.iter().copied().filter(|&b| b != b'\r').collect();
    assert!(unix.len() > bytes, "only {} bytes arrived", unix.len());
    assert_eq!(
        hex::encode(Sha256::digest(&unix)),
        expected,
        "output differs from what was printed"
    );
}

/// A consumer that takes nothing for a while (the page of a background tab) does not stop the
/// client reading its socket (issue 13, item 12). For the 10 s it takes no events, more than
/// twice the client's ping timeout here (4 s without a pong), the service cuts the socket every
/// 2 s: the client sees each close at once and resumes (each `ResumeSession` issues a token;
/// without the fix it resumes twice, after a lost pong or a failed write), no socket is lost
/// for want of a pong, and megabytes of output wait, held back. Once the consumer reads again,
/// all of it arrives exactly.
#[tokio::test]
async fn a_consumer_that_takes_nothing_does_not_stop_the_socket_being_read() {
    let emu =
        emulator::start(|c| c.disconnect_every = Some(std::time::Duration::from_secs(2))).await;
    let options = ClientOptions {
        ping_interval: std::time::Duration::from_secs(1),
        pong_timeout: std::time::Duration::from_secs(3),
        ..ClientOptions::default()
    };
    let mut term = emu.open_with(NODE, options).await;
    assert_eq!(term.run("echo ready").await.trim(), "ready");
    let session = emu
        .emulator
        .state()
        .registry
        .get(&term.start.session_id)
        .unwrap();
    let start = term.output.len();
    send_bulk(&term, 2_000_000).await;
    let tokens = session.issued_tokens().len();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let resumed = session.issued_tokens().len() - tokens;
    println!("resumed {resumed} times during the pause");
    assert!(
        resumed >= 3,
        "the socket was cut every 2 s for 10 s while the consumer took nothing, and the client \
         resumed {resumed} times"
    );
    bulk_arrived_exactly(&mut term, start, 2_000_000).await;
    assert_eq!(term.run("echo still-$((6*7))").await.trim(), "still-42");
    let losses: Vec<&String> = term
        .events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Reconnecting { error, .. } => Some(error),
            _ => None,
        })
        .collect();
    // Without the fix the pings go unanswered while the consumer takes nothing: sockets are
    // lost for want of a pong, or by writing to one the service has closed.
    assert!(
        !losses.iter().any(|e| e.contains("no pong")),
        "a socket was lost for want of a pong: {losses:?}"
    );
}

#[tokio::test]
async fn bulk_output_without_faults() {
    let emu = emulator::start(|_| {}).await;
    let mut term = emu.open(NODE).await;
    bulk_output_is_exact(&mut term, 1_000_000).await;
}

#[tokio::test]
async fn ten_megabytes_arrive_exactly_through_faults_and_disconnects() {
    let emu = emulator::start(|c| {
        c.faults = FaultConfig::uniform(0.05);
        c.seed = 7;
        c.disconnect_every = Some(std::time::Duration::from_secs(3));
    })
    .await;
    let mut term = emu.open(NODE).await;
    bulk_output_is_exact(&mut term, 7_500_000).await;
    // Input typed during the faults arrives once and in order.
    let typed: String = (0..200).map(|i| format!("{i:03}")).collect();
    let echoed = term.run(&format!("echo {typed}")).await;
    assert_eq!(echoed.trim(), typed);
    let reconnects = term
        .events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Reconnected))
        .count();
    assert!(
        reconnects >= 1,
        "the 3 s disconnects forced at least one resume"
    );
}

#[tokio::test]
async fn kms_sessions_are_encrypted_both_ways() {
    let emu = emulator::start(|c| c.kms_key_id = Some("alias/porthole-test".into())).await;
    let mut term = emu.open(NODE).await;
    let ready = loop {
        match term.next().await {
            Some(ClientEvent::Ready(summary)) => break summary,
            Some(_) => {}
            None => panic!("no Ready"),
        }
    };
    let summary = ready.expect("a handshake ran");
    assert!(summary.encrypted);
    assert_eq!(
        summary.customer_message,
        "This session is encrypted using AWS KMS."
    );
    assert_eq!(term.run("echo secret-$((2*21))").await.trim(), "secret-42");
}

#[tokio::test]
async fn kms_with_a_wrong_encryption_context_fails_clearly() {
    let emu = emulator::start(|c| c.kms_key_id = Some("alias/porthole-test".into())).await;
    let mut start = emu.start_session(NODE).await;
    start.target = "i-0000000000000000f".into(); // the agent decrypts with its own id
    let mut term = Term::connect(start, emu.aws.clone()).await;
    match term.closed().await {
        CloseReason::Remote { output } => {
            assert!(output.contains("Handshake failed"), "{output}");
            assert!(output.contains("InvalidCiphertextException"), "{output}");
        }
        other => panic!("unexpected close: {other:?}"),
    }
}

async fn raw_socket(
    url: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

fn open_frame(token: &str) -> Message {
    Message::text(format!(
        r#"{{"MessageSchemaVersion":"1.0","RequestId":"9a1f6c1e-0d7b-4d7a-9d0e-2f4b8c7a6e51","TokenValue":"{token}","ClientId":"0d9ac062-ab9e-4379-a800-6a960f3299cb","ClientVersion":"1.2.814.0"}}"#
    ))
}

async fn close_code(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
) -> Option<(CloseCode, String)> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close within the bound")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return Some((frame.code, frame.reason.to_string()));
            }
            Some(Ok(Message::Close(None))) | None => return None,
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error instead of a close: {e}"),
        }
    }
}

#[tokio::test]
async fn bad_input_gets_specific_errors_and_the_emulator_keeps_serving() {
    let emu = emulator::start(|_| {}).await;
    let start = emu.start_session(NODE).await;

    // A wrong token is refused with a policy-violation close.
    let mut ws = raw_socket(&start.stream_url).await;
    ws.send(open_frame("not-the-token")).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        Some((CloseCode::from(CLOSE_INVALID_TOKEN), "invalid token".into()))
    );

    // The right token works once; a second use is refused.
    let mut term = Term::connect(start.clone(), emu.aws.clone()).await;
    assert_eq!(term.run("echo first-$((1+1))").await.trim(), "first-2");
    let mut ws = raw_socket(&start.stream_url).await;
    ws.send(open_frame(&start.token)).await.unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        Some((CloseCode::from(CLOSE_INVALID_TOKEN), "invalid token".into()))
    );

    // Not OpenDataChannel first: refused.
    let mut ws = raw_socket(&start.stream_url).await;
    ws.send(Message::Binary(vec![0u8; 10].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        Some((
            CloseCode::from(CLOSE_INVALID_TOKEN),
            "expected OpenDataChannel".into()
        ))
    );

    // A huge Size message is ignored: the terminal keeps its size.
    term.handle.resize(100, 30).await.unwrap();
    assert_eq!(term.run("stty size").await.trim(), "30 100");
    term.handle.resize(100_000, 100_000).await.unwrap();
    assert_eq!(term.run("stty size").await.trim(), "30 100");

    assert_eq!(term.run("echo still-$((3+3))").await.trim(), "still-6");
}

#[tokio::test]
async fn malformed_and_oversized_frames_do_not_end_the_session() {
    let emu = emulator::start(|_| {}).await;
    let start = emu.start_session(NODE).await;
    // The first socket sends garbage (ignored) and then an oversized frame (closed with 1009).
    let mut ws = raw_socket(&start.stream_url).await;
    ws.send(open_frame(&start.token)).await.unwrap();
    ws.send(Message::Binary(vec![0xAB; 300].into()))
        .await
        .unwrap();
    ws.send(Message::Binary(vec![0u8; MAX_FRAME_LEN + 1].into()))
        .await
        .unwrap();
    assert_eq!(
        close_code(&mut ws).await,
        Some((CloseCode::Size, "frame too large".into())),
        "an oversized frame closes the socket with 1009"
    );
    // The session survived: resume it with a proper client and run a command.
    let token = emu
        .aws
        .ssm
        .resume_session()
        .session_id(&start.session_id)
        .send()
        .await
        .unwrap()
        .token_value()
        .unwrap()
        .to_owned();
    let resumed = porthole::ssm::client::SessionStart { token, ..start };
    let mut term = Term::connect(resumed, emu.aws.clone()).await;
    assert_eq!(term.run("echo alive-$((3+3))").await.trim(), "alive-6");
    // Other sessions on the same emulator are unaffected.
    let mut other = emu.open(NODE).await;
    assert_eq!(other.run("echo other-$((4+4))").await.trim(), "other-8");
}

#[tokio::test]
async fn offline_and_unknown_targets_are_refused() {
    let emu: Emu = emulator::start(|_| {}).await;
    use aws_sdk_ssm::error::ProvideErrorMetadata as _;
    let err = emu
        .aws
        .ssm
        .start_session()
        .target("i-0a1b2c3d4e5f60004")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("TargetNotConnected"));
    let err = emu
        .aws
        .ssm
        .start_session()
        .target("i-ffffffffffffffff0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("InvalidTarget"));
}

async fn ready_summary(term: &mut Term) -> Option<porthole::ssm::channel::HandshakeSummary> {
    loop {
        match term.next().await {
            Some(ClientEvent::Ready(summary)) => return summary,
            Some(ClientEvent::Closed(reason)) => panic!("closed before ready: {reason}"),
            Some(_) => {}
            None => panic!("no Ready event"),
        }
    }
}

#[tokio::test]
async fn modes_handshake_echo_pace_and_per_node_overrides() {
    use porthole::emulator::nodes::Node;
    let emu = emulator::start(|c| {
        c.handshake = true;
        c.pace = true;
        c.nodes.push(Node {
            echo: Some(true),
            ..Node::new("i-0e0e0e0e0e0e0e0e0", "echo")
        });
        c.nodes.push(Node {
            handshake: Some(false),
            ..Node::new("i-0f0f0f0f0f0f0f0f0", "plain")
        });
    })
    .await;

    // --handshake: the agent asks for the session type first.
    let mut term = emu.open(NODE).await;
    let summary = ready_summary(&mut term).await.expect("a handshake ran");
    assert_eq!(summary.session_type, "Standard_Stream");
    assert!(!summary.encrypted);
    // --pace: output still arrives whole (its rate is measured in docs/performance.md, not here).
    let out = term.run("for i in $(seq 1 2000); do printf x; done").await;
    assert_eq!(out.trim_end(), "x".repeat(2000));

    // A node with echo = true echoes input instead of running a shell. In echo mode there is no
    // prompt, so the plain flow cannot start until output exists; this node inherits the
    // global handshake, which makes it ready at once.
    let mut echo = emu.open("i-0e0e0e0e0e0e0e0e0").await;
    ready_summary(&mut echo).await;
    echo.send("marco-polo").await;
    echo.expect("marco-polo").await;

    // A node with handshake = false overrides --handshake: the plain flow.
    let mut plain = emu.open("i-0f0f0f0f0f0f0f0f0").await;
    assert_eq!(ready_summary(&mut plain).await, None);
    assert_eq!(plain.run("echo plain-$((1+2))").await.trim(), "plain-3");
}

#[tokio::test]
async fn a_ping_before_open_data_channel_is_accepted() {
    // The official client pings as soon as the socket opens, racing its OpenDataChannel.
    let emu = emulator::start(|_| {}).await;
    let start = emu.start_session(NODE).await;
    let mut ws = raw_socket(&start.stream_url).await;
    ws.send(Message::Ping(b"keepalive".to_vec().into()))
        .await
        .unwrap();
    ws.send(open_frame(&start.token)).await.unwrap();
    // Accepted: the shell's first output arrives as a binary frame.
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within the bound")
        {
            Some(Ok(Message::Binary(frame))) => {
                let m = porthole::ssm::codec::decode(&frame).unwrap();
                assert_eq!(m.message_type.as_str(), "output_stream_data");
                break;
            }
            Some(Ok(Message::Close(frame))) => panic!("refused: {frame:?}"),
            Some(Ok(_)) => {}
            other => panic!("socket ended: {other:?}"),
        }
    }
}

#[tokio::test]
async fn exit_with_a_background_job_ends_the_session_and_the_job() {
    let emu = emulator::start(|_| {}).await;
    let mut term = emu.open(NODE).await;
    let out = term.run("sleep 300 & echo JOB $!").await;
    let job: u32 = out
        .lines()
        .find_map(|l| l.strip_prefix("JOB "))
        .expect("the JOB line")
        .trim()
        .parse()
        .unwrap();
    term.send("exit\r").await;
    assert_eq!(
        term.closed().await,
        CloseReason::Remote {
            output: String::new()
        }
    );
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(format!("/proc/{job}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the background job survived the session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
