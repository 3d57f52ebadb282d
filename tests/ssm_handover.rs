//! Moving a live session to another client (the hand-over primitive), end to end: the emulator
//! runs a real shell in a PTY, the real aws-sdk-ssm client calls StartSession and
//! ResumeSession, client A is frozen mid-stream, its state goes through bytes, and a new client
//! B carries on. Across A (its events, then what it had not delivered) and B, every line the
//! shell printed arrives once and in order, and the shell is the same process.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::emulator::{self, Emu, NODE, Term, WAIT};
use porthole::ssm::channel::{ChannelState, ChannelStateError, StateError};
use porthole::ssm::client::{
    self, ClientEvent, ClientOptions, EVENT_QUEUE, FreezeError, Frozen, ResumeTarget, SessionStart,
};
use porthole::ssm::faults::FaultConfig;
use sha2::{Digest, Sha256};

/// Prints `n=0` … `n=399`, one line every 10 ms, then a marker assembled by the shell.
const COUNT: u32 = 400;
const LOOP: &str = "i=0; while [ $i -lt 400 ]; do echo \"n=$i\"; i=$((i+1)); sleep 0.01; done; \
                    echo LO''OP-DONE\r";

/// The numbers of the `n=<digits>` lines in `output`, in order (the echo of the typed command,
/// `n=$i`, is not one). A line is what follows its last carriage return, as on a terminal (the
/// shell ends bracketed-paste mode with `ESC[?2004l` and a `\r` before the first line).
fn numbers(output: &[u8]) -> Vec<u32> {
    String::from_utf8_lossy(output)
        .split("\r\n")
        .filter_map(|line| line.rsplit('\r').next()?.strip_prefix("n="))
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .map(|n| n.parse().unwrap())
        .collect()
}

/// Reads A's events until the queue ends, then takes the undelivered ones: the consumer's side
/// of the contract. Returns how many were undelivered.
async fn drain(a: &mut Term, frozen_undelivered: Vec<ClientEvent>) -> usize {
    while tokio::time::timeout(WAIT, a.next())
        .await
        .expect("the frozen client's queue ends")
        .is_some()
    {}
    let n = frozen_undelivered.len();
    for event in frozen_undelivered {
        if let ClientEvent::Output(bytes) = &event {
            a.output.extend_from_slice(bytes);
        }
        a.events.push(event);
    }
    n
}

/// Turns the state into bytes and back, and starts client B from them.
async fn resume_from_bytes(emu: &Emu, start: &SessionStart, frozen_state: ChannelState) -> Term {
    let bytes = frozen_state.to_bytes();
    drop(frozen_state);
    let state = ChannelState::from_bytes(&bytes).unwrap();
    let target = ResumeTarget {
        session_id: start.session_id.clone(),
        target: start.target.clone(),
    };
    let handle = client::resume_frozen(state, target, emu.aws.clone(), ClientOptions::default())
        .await
        .unwrap();
    let mut b = Term {
        start: start.clone(),
        handle,
        output: Vec::new(),
        events: Vec::new(),
    };
    assert_eq!(b.next().await, Some(ClientEvent::Reconnected));
    b
}

async fn shell_pid(term: &mut Term) -> u32 {
    let out = term.run("echo PID=$$").await;
    out.trim().strip_prefix("PID=").unwrap().parse().unwrap()
}

/// The whole move on `emu`: A counts, is frozen after `n=50`, B carries on. Returns A's frozen
/// state's facts for the caller's own checks.
async fn move_mid_stream(emu: &Emu) -> (Frozen, Term) {
    let mut a = emu.open(NODE).await;
    let pid = shell_pid(&mut a).await;
    let from = a.output.len();
    a.send(LOOP).await;
    a.expect_from(from, "n=50\r\n").await;

    let frozen = tokio::time::timeout(WAIT, a.handle.freeze())
        .await
        .expect("freeze answers")
        .unwrap();
    assert_eq!(
        a.handle.freeze().await.unwrap_err(),
        FreezeError::AlreadyFrozen
    );
    assert!(
        a.handle.input(b"lost?\r".to_vec()).await.is_err(),
        "a frozen client takes no input"
    );
    let Frozen { state, undelivered } = frozen;
    let facts = Frozen {
        state: state.clone(),
        undelivered: undelivered.clone(),
    };
    drain(&mut a, undelivered).await;
    assert!(
        !a.events.iter().any(|e| matches!(e, ClientEvent::Closed(_))),
        "freezing does not close the session: {:?}",
        a.events.last()
    );

    let mut b = resume_from_bytes(emu, &a.start, state).await;
    b.expect("LOOP-DONE\r\n").await;
    let mut all = a.output[from..].to_vec();
    all.extend_from_slice(&b.output);
    let seen = numbers(&all);
    assert_eq!(
        seen,
        (0..COUNT).collect::<Vec<_>>(),
        "numbers across A ({} bytes) then B ({} bytes)",
        a.output.len() - from,
        b.output.len()
    );
    assert!(
        numbers(&a.output[from..]).len() > 50,
        "A saw the first part"
    );
    assert!(!numbers(&b.output).is_empty(), "B saw the rest");

    // The same shell, and input typed after the move reaches it.
    assert_eq!(shell_pid(&mut b).await, pid, "the same shell process");
    assert_eq!(b.run("echo moved-$((6*7))").await.trim(), "moved-42");
    (facts, b)
}

#[tokio::test]
async fn a_frozen_session_continues_in_a_new_client_without_gap_or_repeat() {
    let emu = emulator::start(|_| {}).await;
    let (frozen, mut b) = move_mid_stream(&emu).await;
    assert!(!frozen.state.is_encrypted());
    assert_eq!(
        frozen.state.handshake(),
        None,
        "a plain shell has no handshake"
    );
    // The session ends normally from the new client.
    b.send("exit\r").await;
    assert_eq!(
        b.closed().await,
        porthole::ssm::channel::CloseReason::Remote {
            output: String::new()
        }
    );
}

#[tokio::test]
async fn a_session_moves_exactly_through_drops_duplicates_and_reordering() {
    let emu = emulator::start(|c| {
        c.faults = FaultConfig::uniform(0.05);
        c.seed = 11;
    })
    .await;
    move_mid_stream(&emu).await;
}

#[tokio::test]
async fn a_kms_session_moves_with_its_keys() {
    let emu = emulator::start(|c| c.kms_key_id = Some("alias/porthole-test".into())).await;
    let (frozen, mut b) = move_mid_stream(&emu).await;
    assert!(frozen.state.is_encrypted());
    let summary = frozen.state.handshake().expect("a handshake ran");
    assert!(summary.encrypted);
    assert_eq!(
        summary.customer_message,
        "This session is encrypted using AWS KMS."
    );
    // Debug of the state shows no key material.
    let shown = format!("{:?}", frozen.state);
    assert!(shown.contains("[redacted]"), "{shown}");
    // Input sealed with the carried key, output opened with it.
    assert_eq!(b.run("echo secret-$((2*21))").await.trim(), "secret-42");
}

/// Has the shell print `bytes` random bytes in base64, after the SHA-256 of that base64.
async fn send_bulk(term: &Term, bytes: usize) {
    let command = format!(
        "head -c {bytes} /dev/urandom > data.bin; echo SU\"\"M $(base64 data.bin | sha256sum); \
         echo BE''GIN; base64 data.bin; echo EN''D"
    );
    term.send(&format!("{command}\r")).await;
}

/// Checks what [`send_bulk`] printed (from byte `start`) against the hash printed first.
async fn bulk_arrived_exactly(term: &mut Term, start: usize, bytes: usize) {
    let sum_at = term.expect_from(start, "SUM ").await;
    let sum_end = term.expect_from(sum_at, "\r\n").await;
    let expected = String::from_utf8_lossy(&term.output[sum_at..sum_end]).to_string();
    let expected = expected.split_whitespace().next().unwrap().to_owned();
    let begin = term.expect_from(sum_end, "BEGIN\r\n").await;
    let end = term.expect_from(begin, "\r\nEND\r\n").await;
    let body = &term.output[begin..end - "END\r\n".len()];
    let unix: Vec<u8> = body.iter().copied().filter(|&b| b != b'\r').collect();
    assert!(unix.len() > bytes, "only {} bytes arrived", unix.len());
    assert_eq!(
        hex::encode(Sha256::digest(&unix)),
        expected,
        "output differs from what was printed"
    );
}

/// A consumer that reads nothing while megabytes are printed: A's queue fills, its task holds
/// output back, and the freeze still answers at once, with what did not fit the queue in
/// `undelivered`. A's queue, then `undelivered`, then B carry the bytes exactly.
#[tokio::test]
async fn a_client_holding_output_back_for_an_idle_consumer_freezes_exactly() {
    let emu = emulator::start(|_| {}).await;
    let mut a = emu.open(NODE).await;
    assert_eq!(a.run("echo ready").await.trim(), "ready");
    let start = a.output.len();
    send_bulk(&a, 2_000_000).await;
    // Wait (bounded) until the consumer's queue is full: the task is holding output back.
    let deadline = tokio::time::Instant::now() + WAIT;
    while a.handle.events.len() < EVENT_QUEUE {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the queue never filled"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let Frozen { state, undelivered } = tokio::time::timeout(WAIT, a.handle.freeze())
        .await
        .expect("freeze answers without the consumer reading")
        .unwrap();
    assert!(
        !undelivered.is_empty(),
        "events waited beyond the full queue"
    );
    drain(&mut a, undelivered).await;
    let mut b = resume_from_bytes(&emu, &a.start, state).await;
    // Check the bytes across both clients: B's output appended to A's.
    let b_events = std::mem::take(&mut b.events);
    b.output = std::mem::take(&mut a.output);
    b.events = b_events;
    bulk_arrived_exactly(&mut b, start, 2_000_000).await;
    assert_eq!(b.run("echo still-$((6*7))").await.trim(), "still-42");
}

/// A data-channel endpoint that accepts sockets and never says anything: a session that never
/// becomes ready.
async fn silent_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/v1/data-channel/s-silent",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use futures_util::StreamExt;
                if let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await {
                    while let Some(Ok(_)) = ws.next().await {}
                }
            });
        }
    });
    url
}

#[tokio::test]
async fn freezing_before_ready_is_refused_and_the_client_carries_on() {
    let emu = emulator::start(|_| {}).await;
    let start = SessionStart {
        session_id: "s-silent".into(),
        target: NODE.into(),
        stream_url: silent_endpoint().await,
        token: "token".into(),
    };
    let handle = client::start(start, emu.aws.clone()).await.unwrap();
    let err = handle.freeze().await.unwrap_err();
    assert_eq!(err, FreezeError::Refused(StateError::NotReady));
    assert!(err.to_string().contains("not ready"), "{err}");
    // Refused, not ended: the client still runs and still refuses for the same reason.
    assert_eq!(
        handle.freeze().await.unwrap_err(),
        FreezeError::Refused(StateError::NotReady)
    );
    handle.input(b"still taken".to_vec()).await.unwrap();
}

#[tokio::test]
async fn resuming_names_what_is_wrong() {
    let emu = emulator::start(|_| {}).await;
    let mut a = emu.open(NODE).await;
    assert_eq!(a.run("echo ready").await.trim(), "ready");
    let Frozen { state, .. } = a.handle.freeze().await.unwrap();
    let resume = |target: ResumeTarget| {
        client::resume_frozen(
            state.clone(),
            target,
            emu.aws.clone(),
            ClientOptions::default(),
        )
    };

    let err = resume(ResumeTarget {
        session_id: "someone-else".into(),
        target: NODE.into(),
    })
    .await
    .unwrap_err();
    assert!(
        err.contains("not of session someone-else"),
        "a state of another session: {err}"
    );

    // Once the session is over, ResumeSession refuses, and the error carries AWS's code.
    emu.aws
        .ssm
        .terminate_session()
        .session_id(&a.start.session_id)
        .send()
        .await
        .unwrap();
    let target = ResumeTarget {
        session_id: a.start.session_id.clone(),
        target: NODE.into(),
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    let err = loop {
        // TerminateSession returns before the session's task has ended it.
        match resume(target.clone()).await {
            Err(e) => break e,
            Ok(handle) => {
                drop(handle);
                assert!(tokio::time::Instant::now() < deadline, "never refused");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    };
    assert!(
        err.contains("ResumeSession refused") && err.contains("DoesNotExistException"),
        "{err}"
    );

    // Bytes that are not a state say so.
    assert!(matches!(
        ChannelState::from_bytes(b"not a state"),
        Err(ChannelStateError::Malformed(_))
    ));
}
