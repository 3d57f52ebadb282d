//! Session benchmarks (issue 5), all on 127.0.0.1, bounded in count and time:
//!
//! 1. `memory`: the process's resident memory with N sessions, each having printed 3,000
//!    lines (so the terminal model's 2,000-line history and the ring are in use), or a line
//!    only (`-little`), then idle. Each configuration runs in a fresh child process of this
//!    binary:
//!    - `bare`: N data-channel clients ([`client::start`]) on the emulator, no gateway — the
//!      emulator's agents, their PTY readers and the clients;
//!    - `attached`: N gateway sessions, each with a WebSocket client attached;
//!    - `detached`: the same, the WebSocket clients gone (the sessions wait for a reattach),
//!      never compacted (`sessions.compact_after_seconds` a day);
//!    - `compacted`: as `detached` with `compact_after_seconds = 1`: each session compacts
//!      itself a second after it went quiet, as the next ones are opened (the steady state of
//!      a gateway whose sessions go quiet one after another); RSS is read once all are.
//!
//!    RSS is read from /proc after a warm-up session and again with the N sessions idle; per
//!    session = growth / N. The gateway's own share is a configuration minus `bare` (of the
//!    same output). The shells are processes of their own and not counted. Then the time from
//!    an attach (a new page: the screen snapshot) to its `sync` is measured on up to 20 of the
//!    sessions: for `compacted` that includes thawing the ring and rebuilding the model.
//! 2. `resume`: a gateway session prints a numbered line every 10 ms; the emulator closes the
//!    data channel's socket (1000 "Bye", as the service does every hour) K times, 1.5 s apart.
//!    For each cut: the time until the gateway reports `reconnecting`, `connected`, and the
//!    first output after that; and whether every numbered line arrived exactly once, in order.
//! 3. `faults`: bulk output (`head -c BYTES /dev/zero | base64 -w 0`) through the gateway from
//!    an emulator with `--drop 0.05 --dup 0.05 --reorder 0.05 --disconnect-every 3` and from
//!    a clean one, rounds alternating; the ratio of the medians.
//!
//! ```sh
//! CARGO_TARGET_DIR=/tmp/relay-target cargo bench --bench sessions -- \
//!     [--phase all|memory|resume|faults] [--sessions N] [--cuts N] [--bytes N] [--rounds N]
//! ```
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it is a smoke run in seconds. See
//! docs/performance.md, "Sessions (issue 5)".
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark fails loudly by design

#[path = "support/args.rs"]
mod args;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/stack.rs"]
mod stack;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use porthole::emulator::sessions::SessionCommand;
use porthole::ssm::client::{self, ClientEvent, ClientHandle};
use porthole::ssm::faults::FaultConfig;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use common::api::{Api, Attach};
use common::emulator::NODE;
use stack::{Stack, StackOptions, loadavg};

/// The allocator of the `porthole` binary (feature `mimalloc`), so that memory is measured as
/// the gateway runs; `--no-default-features --features server` measures the system's.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The whole run ends after this long, finished or not.
const RUN_LIMIT: Duration = Duration::from_secs(30 * 60);
/// Waiting for one piece of expected output may take this long.
const STEP_LIMIT: Duration = Duration::from_secs(180);
/// Acknowledge at least every this many output bytes, as the page does.
const ACK_EVERY: u64 = 32 * 1024;
const REASON: &str = "INC-5 sessions benchmark";

const USAGE: &str = "usage: sessions [--phase all|memory|resume|faults] [--sessions N] \
                     [--cuts N] [--bytes N] [--rounds N]";

#[derive(Debug, Clone)]
struct Args {
    memory: bool,
    resume: bool,
    faults: bool,
    sessions: usize,
    cuts: usize,
    bytes: usize,
    rounds: usize,
    /// Set in a child process: measure one memory configuration and print it.
    child: Option<String>,
}

fn parse_args() -> Args {
    let mut args = Args {
        memory: true,
        resume: true,
        faults: true,
        sessions: 200,
        cuts: 20,
        bytes: 5_000_000,
        rounds: 3,
        child: None,
    };
    if !args::is_bench_run() {
        (args.sessions, args.cuts, args.bytes, args.rounds) = (4, 2, 200_000, 1);
    }
    let mut cli = args::Cli::new(USAGE);
    while let Some(arg) = cli.next_flag() {
        match arg.as_str() {
            "--sessions" => args.sessions = cli.number("--sessions").clamp(1, 1000),
            "--cuts" => args.cuts = cli.number("--cuts").clamp(1, 200),
            "--bytes" => args.bytes = cli.number("--bytes").clamp(1, 500_000_000),
            "--rounds" => args.rounds = cli.number("--rounds").clamp(1, 50),
            "--phase" => {
                let phase = cli.value().unwrap_or_default();
                (args.memory, args.resume, args.faults) = match phase.as_str() {
                    "all" => (true, true, true),
                    "memory" => (true, false, false),
                    "resume" => (false, true, false),
                    "faults" => (false, false, true),
                    _ => cli.bad_value(),
                };
            }
            "--child" => args.child = cli.value(),
            other => cli.unknown(other),
        }
    }
    args
}

fn main() {
    let args = parse_args();
    stack::run_bounded(RUN_LIMIT, run(args));
}

async fn run(args: Args) {
    if let Some(mode) = args.child.clone() {
        memory_child(&mode, args.sessions).await;
        return;
    }
    println!(
        "sessions benchmark: {} CPUs, load average {} at start; {args:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    if args.memory {
        memory(&args).await;
    }
    if args.resume {
        resume(&args).await;
    }
    if args.faults {
        faults(&args).await;
    }
    println!("load average {} at the end", loadavg());
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

// ---------------------------------------------------------------------------------------------
// Terminals.

/// Finds `needle` in a stream of pieces (it may straddle two).
struct Scan {
    needle: &'static [u8],
    tail: Vec<u8>,
}

impl Scan {
    fn new(needle: &'static [u8]) -> Self {
        Self {
            needle,
            tail: Vec::new(),
        }
    }

    fn feed(&mut self, piece: &[u8]) -> bool {
        self.tail.extend_from_slice(piece);
        let found = self
            .tail
            .windows(self.needle.len())
            .any(|w| w == self.needle);
        let keep = self.needle.len().saturating_sub(1);
        if self.tail.len() > keep {
            self.tail.drain(..self.tail.len() - keep);
        }
        found
    }
}

/// A gateway attach, read like the page reads it: offsets from `sync`, acknowledgements.
struct Page {
    attach: Attach,
    offset: u64,
    acked: u64,
    synced: bool,
}

/// What the page read.
enum Read {
    Output(Bytes),
    Text(Value),
}

impl Page {
    async fn open(api: &mut Api) -> (String, Self) {
        let id = api.open(NODE, REASON).await;
        let attach = match api.attach(&id).await {
            Ok(attach) => attach,
            Err((status, body)) => panic!("attach refused: {status} {body}"),
        };
        (
            id,
            Self {
                attach,
                offset: 0,
                acked: 0,
                synced: false,
            },
        )
    }

    async fn type_text(&mut self, text: &str) {
        self.attach
            .socket
            .send(Message::Binary(text.as_bytes().to_vec().into()))
            .await
            .unwrap();
    }

    async fn ack(&mut self) {
        self.acked = self.offset;
        let text = serde_json::json!({"type": "ack", "bytes": self.offset}).to_string();
        self.attach
            .socket
            .send(Message::Text(text.into()))
            .await
            .unwrap();
    }

    async fn read(&mut self) -> Read {
        loop {
            let message = tokio::time::timeout(STEP_LIMIT, self.attach.socket.next())
                .await
                .expect("the gateway went quiet")
                .expect("the socket closed")
                .unwrap();
            match message {
                Message::Binary(bytes) => {
                    if self.synced {
                        self.offset += bytes.len() as u64;
                        if self.offset - self.acked >= ACK_EVERY {
                            self.ack().await;
                        }
                    }
                    return Read::Output(bytes);
                }
                Message::Text(text) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap();
                    match value["type"].as_str() {
                        Some("sync") => {
                            self.offset = value["offset"].as_u64().unwrap();
                            self.synced = true;
                            self.ack().await;
                        }
                        Some("resync") => self.synced = false,
                        Some("closed") => panic!("the session ended: {value}"),
                        _ => {}
                    }
                    return Read::Text(value);
                }
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    async fn read_until(&mut self, needle: &'static [u8]) {
        let mut scan = Scan::new(needle);
        loop {
            if let Read::Output(bytes) = self.read().await
                && scan.feed(&bytes)
            {
                return;
            }
        }
    }
}

async fn client_until(handle: &mut ClientHandle, needle: &'static [u8]) {
    let mut scan = Scan::new(needle);
    loop {
        let event = tokio::time::timeout(STEP_LIMIT, handle.events.recv())
            .await
            .expect("the data channel went quiet")
            .expect("the data channel closed");
        if let ClientEvent::Output(bytes) = event
            && scan.feed(&bytes)
        {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Memory.

/// Fills the terminal model's history; the marker is typed split so its echo does not match.
const FILL: &str = "seq 1 3000; echo FILL''-DONE\n";
const FILL_DONE: &[u8] = b"FILL-DONE";

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Prints a line only: a session that never printed much.
const LITTLE: &str = "echo FILL''-DONE\n";

async fn memory_child(mode: &str, n: usize) {
    let (kind, little) = match mode.strip_suffix("-little") {
        Some(kind) => (kind, true),
        None => (mode, false),
    };
    let stack = Stack::start(StackOptions {
        max_per_user: u32::try_from(n).unwrap() + 1,
        compact_after_seconds: if kind == "compacted" { 1 } else { 86_400 },
        ..StackOptions::default()
    })
    .await;
    let mut api = stack.signed_in("bench").await;
    // A warm-up session of the same kind, so one-time allocations are in the baseline.
    let (mut pages, mut clients, mut ids) = (Vec::new(), Vec::new(), Vec::new());
    open_kind(
        kind,
        little,
        &stack,
        &mut api,
        &mut pages,
        &mut clients,
        &mut ids,
    )
    .await;
    if kind != "attached" {
        pages.clear();
    }
    if kind == "compacted" {
        all_compacted(&stack).await; // the first compaction's one-time allocations too
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib();
    let started = Instant::now();
    for _ in 0..n {
        open_kind(
            kind,
            little,
            &stack,
            &mut api,
            &mut pages,
            &mut clients,
            &mut ids,
        )
        .await;
        if kind != "attached" {
            pages.clear(); // the sockets close; the sessions wait for a reattach
        }
    }
    if kind == "compacted" {
        all_compacted(&stack).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = rss_kib();
    let live = stack.state.engine.live.len();
    let setup = started.elapsed().as_secs_f64();
    // From an attach (a new page) to its sync: the snapshot, after thawing when compacted.
    let mut attach_ms = Vec::new();
    if kind != "bare" && kind != "attached" {
        for id in ids.iter().skip(1).take(20) {
            let asked = Instant::now();
            let mut tab = api.attach(id).await.unwrap();
            tab.until_synced().await;
            attach_ms.push(ms(asked.elapsed()));
        }
    }
    let attach = if attach_ms.is_empty() {
        "- -".to_owned()
    } else {
        let max = attach_ms.iter().copied().fold(0.0, f64::max);
        format!("{:.1} {max:.1}", median(&mut attach_ms))
    };
    println!("MEMORY {mode} {n} {baseline} {after} {live} {setup:.1} {attach}");
    drop(pages);
    drop(clients);
    stack.stop().await;
}

async fn all_compacted(stack: &Stack) {
    let all = stack.state.engine.live.all();
    while !all.iter().all(|live| live.is_compacted()) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[allow(clippy::too_many_arguments)] // the bench's own bookkeeping
async fn open_kind(
    kind: &str,
    little: bool,
    stack: &Stack,
    api: &mut Api,
    pages: &mut Vec<Page>,
    clients: &mut Vec<ClientHandle>,
    ids: &mut Vec<String>,
) {
    let fill = if little { LITTLE } else { FILL };
    if kind == "bare" {
        let start = stack.start_session(NODE).await;
        let mut handle = client::start(start, stack.aws.clone()).await.unwrap();
        handle
            .input(Bytes::from_static(fill.as_bytes()))
            .await
            .unwrap();
        client_until(&mut handle, FILL_DONE).await;
        clients.push(handle);
    } else {
        let (id, mut page) = Page::open(api).await;
        page.type_text(fill).await;
        page.read_until(FILL_DONE).await;
        pages.push(page);
        ids.push(id);
    }
}

async fn memory(args: &Args) {
    let exe = std::env::current_exe().unwrap();
    println!(
        "\n## memory: {} sessions, each after printing 3,000 lines (or one: -little), idle",
        args.sessions
    );
    println!(
        "| configuration | RSS before (MiB) | RSS with N (MiB) | per session (KiB) | gateway's own (KiB) | setup (s) | attach to sync, median / max (ms) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut per = std::collections::HashMap::new();
    for mode in [
        "bare",
        "detached",
        "attached",
        "compacted",
        "bare-little",
        "detached-little",
        "compacted-little",
    ] {
        let output = tokio::process::Command::new(&exe)
            .args(["--child", mode, "--sessions", &args.sessions.to_string()])
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|l| l.starts_with("MEMORY "))
            .unwrap_or_else(|| {
                panic!(
                    "the {mode} child printed no result: {stdout}\n{}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (n, before, after): (f64, f64, f64) = (
            fields[2].parse().unwrap(),
            fields[3].parse().unwrap(),
            fields[4].parse().unwrap(),
        );
        let each = (after - before) / n;
        per.insert(mode, each);
        let bare = if mode.ends_with("-little") {
            per.get("bare-little")
        } else {
            per.get("bare")
        };
        let own = match bare {
            Some(bare) if !mode.starts_with("bare") => format!("{:.0}", each - bare),
            _ => "-".to_owned(),
        };
        println!(
            "| {mode} | {:.1} | {:.1} | {each:.0} | {own} | {} | {} / {} |",
            before / 1024.0,
            after / 1024.0,
            fields[6],
            fields[7],
            fields[8]
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Resume after a socket cut.

const TICKER: &str =
    "i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); echo \"TI\"\"CK $i\"; sleep 0.01; done\n";

async fn resume(args: &Args) {
    let stack = Stack::start(StackOptions::default()).await;
    let mut api = stack.signed_in("bench").await;
    let (_, mut page) = Page::open(&mut api).await;
    page.type_text(TICKER).await;
    page.read_until(b"TICK 5\r\n").await;
    let agent = stack.emulator.registry.active().pop().unwrap();

    // A reader task keeps the timeline; this one cuts.
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let reader = tokio::spawn(async move {
        let mut timeline: Vec<(Instant, Read)> = Vec::new();
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                read = page.read() => timeline.push((Instant::now(), read)),
            }
        }
        timeline
    });
    let mut cuts = Vec::new();
    for _ in 0..args.cuts {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        cuts.push(Instant::now());
        assert!(agent.command(SessionCommand::Disconnect));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = stop.send(());
    let timeline = reader.await.unwrap();

    // Every numbered line exactly once, in order.
    let mut text = Vec::new();
    for (_, read) in &timeline {
        if let Read::Output(bytes) = read {
            text.extend_from_slice(bytes);
        }
    }
    let numbers: Vec<u64> = String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TICK ")?.parse().ok())
        .collect();
    let in_order = numbers.windows(2).all(|w| w[1] == w[0] + 1);

    let (mut reconnecting, mut connected, mut flowing) = (Vec::new(), Vec::new(), Vec::new());
    for &cut in &cuts {
        let after = |pred: &dyn Fn(&Read) -> bool, from: Instant| {
            timeline
                .iter()
                .find(|(t, r)| *t >= from && pred(r))
                .map(|(t, _)| *t)
        };
        let status = |s: &'static str| move |r: &Read| matches!(r, Read::Text(v) if v["type"] == "status" && v["state"] == s);
        let Some(t_rec) = after(&status("reconnecting"), cut) else {
            continue;
        };
        let Some(t_conn) = after(&status("connected"), t_rec) else {
            continue;
        };
        let Some(t_out) = after(&|r: &Read| matches!(r, Read::Output(_)), t_conn) else {
            continue;
        };
        reconnecting.push(ms(t_rec - cut));
        connected.push(ms(t_conn - cut));
        flowing.push(ms(t_out - cut));
    }
    println!(
        "\n## resume: {} cuts (1000 \"Bye\" from the emulator), a line every 10 ms",
        cuts.len()
    );
    println!("| from the cut to | median (ms) | max (ms) |");
    println!("|---|---|---|");
    for (name, values) in [
        ("`reconnecting` at the page", &mut reconnecting),
        ("`connected` at the page", &mut connected),
        ("the first output after it", &mut flowing),
    ] {
        let max = values.iter().copied().fold(0.0, f64::max);
        println!("| {name} | {:.1} | {max:.1} |", median(values));
    }
    println!(
        "cuts seen through: {} of {}; lines {}..{} ({}), each once and in order: {in_order}",
        flowing.len(),
        cuts.len(),
        numbers.first().unwrap_or(&0),
        numbers.last().unwrap_or(&0),
        numbers.len()
    );
    assert!(in_order, "a line was lost or repeated across the cuts");
    assert_eq!(flowing.len(), cuts.len(), "every cut was resumed");
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Throughput with faults.

async fn bulk_round(page: &mut Page, bytes: usize) -> f64 {
    page.type_text(&format!(
        "head -c {bytes} /dev/zero | base64 -w 0; echo; echo END''-MARK\n"
    ))
    .await;
    let started = Instant::now();
    page.read_until(b"END-MARK").await;
    (bytes as f64 * 4.0 / 3.0) / started.elapsed().as_secs_f64() / 1e6
}

async fn faults(args: &Args) {
    let clean = Stack::start(StackOptions::default()).await;
    let faulty = Stack::start(StackOptions {
        faults: FaultConfig::uniform(0.05),
        disconnect_every: Some(Duration::from_secs(3)),
        ..StackOptions::default()
    })
    .await;
    let mut pages = Vec::new();
    for stack in [&clean, &faulty] {
        let mut api = stack.signed_in("bench").await;
        let (_, mut page) = Page::open(&mut api).await;
        page.type_text("echo READY''-1\n").await;
        page.read_until(b"READY-1").await;
        pages.push(page);
    }
    let (mut clean_rates, mut faulty_rates) = (Vec::new(), Vec::new());
    println!(
        "\n## faults: {} bytes of base64 per round, through the gateway",
        args.bytes * 4 / 3
    );
    println!("| round | clean (MB/s) | drop/dup/reorder 0.05, cut every 3 s (MB/s) | ratio |");
    println!("|---|---|---|---|");
    for round in 1..=args.rounds {
        let c = bulk_round(&mut pages[0], args.bytes).await;
        let f = bulk_round(&mut pages[1], args.bytes).await;
        println!("| {round} | {c:.2} | {f:.2} | {:.2} |", f / c);
        clean_rates.push(c);
        faulty_rates.push(f);
    }
    let (c, f) = (median(&mut clean_rates), median(&mut faulty_rates));
    println!(
        "median: clean {c:.2} MB/s, with faults {f:.2} MB/s: ratio {:.2}",
        f / c
    );
    drop(pages);
    faulty.stop().await;
    clean.stop().await;
}
