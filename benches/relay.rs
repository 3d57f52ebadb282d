//! Gateway relay benchmarks (issue 4), side by side in one run, all on 127.0.0.1:
//!
//! 1. Bulk output: a shell in the emulator prints `head -c BYTES /dev/zero | base64 -w 0`
//!    followed by an end marker; a WebSocket client counts the bytes until the marker.
//!    - `gateway`: signed in through the API, `POST /api/v1/sessions`, attached to
//!      `/api/v1/sessions/{id}/attach` (data-channel client → session task → attach relay).
//!    - `bare`: the same emulator reached through aws-sdk-ssm `StartSession` and the core's
//!      data-channel client ([`client::start`]), whose output a minimal tokio-tungstenite
//!      server forwards (one `send` per output piece) to a WebSocket client.
//!    - `client`: the data-channel client alone, no WebSocket hop after it (for context).
//!
//!    Rounds alternate the paths (gateway, bare, client, gateway, bare, client, …).
//! 2. Keystroke round trip: one byte in, its echo out, through the gateway's attach socket,
//!    through the data-channel client directly (`direct`) and through the bare relay
//!    (`bare`), interleaved trip by trip with the order rotating. The shell runs
//!    `stty raw; cat > /dev/null`, so the terminal driver echoes each byte at once. With single
//!    echo, `echo-node` is the data-channel client on a node in the emulator's echo mode (no
//!    shell), for the difference between an echo node and a PTY node. `--echo double` runs `cat` to the terminal instead and
//!    waits for both copies (usually two output pieces, two WebSocket messages).
//!
//! Everything (emulator, gateway on SQLite and its recordings in a temporary folder, clients)
//! runs in this process on one multi-threaded tokio runtime. The emulator and the gateway are
//! served with `axum::serve` as `porthole demo` serves them; `--nodelay` chooses which of them set
//! TCP_NODELAY on the sockets they accept: the default, `emulator`, sets it for the emulator
//! only, whose agent otherwise writes its ack and its output frame as two small segments and
//! waits out the client's delayed ACK (≈ 40–50 ms on every echo, on every path); the gateway
//! (and the bare relay, which stands in for it) keep Nagle as shipped. `none`, `gateway` and
//! `both` are the other combinations. Bounded in count and time; stops by itself.
//!
//! ```sh
//! CARGO_TARGET_DIR=/tmp/relay-target cargo bench --bench relay -- \
//!     [--bytes N] [--rounds N] [--trips N] [--warmup N] [--phase all|bulk|latency] \
//!     [--paths gateway,bare,client] [--nodelay none|emulator|gateway|both] \
//!     [--echo single|double]
//! ```
//!
//! See docs/performance.md, "Gateway relay (issue 4)".
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
use porthole::ssm::client::{self, ClientEvent, ClientHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use common::api::Api;
use common::emulator::NODE;
use stack::{Stack, StackOptions, loadavg, set_nodelay};

/// The marker the shell prints after the bulk output (typed as `END''-MARK`, so the echo of
/// the typed command does not contain it).
const END_MARK: &[u8] = b"END-MARK";
/// The whole run ends after this long, finished or not.
const RUN_LIMIT: Duration = Duration::from_secs(20 * 60);
/// One bulk round may take this long.
const ROUND_LIMIT: Duration = Duration::from_secs(180);
/// One keystroke round trip may take this long.
const TRIP_LIMIT: Duration = Duration::from_secs(5);
/// A gateway that sends `sync` gets an acknowledgement after this many output bytes (its
/// flow-control window in the reattach work is 256 KiB; a browser acknowledges what it drew).
const ACK_EVERY: u64 = 32 * 1024;
/// Output is "over" after this long without a message.
const QUIET: Duration = Duration::from_millis(300);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug, Clone)]
struct Args {
    /// Bytes given to `head -c` (the output is base64: 4/3 of it).
    bytes: usize,
    /// Bulk rounds per path.
    rounds: usize,
    /// Recorded round trips per path.
    trips: usize,
    /// Unrecorded round trips per path first.
    warmup: usize,
    bulk: bool,
    latency: bool,
    paths: Vec<Path>,
    /// TCP_NODELAY on the sockets the emulator accepts.
    nodelay_emulator: bool,
    /// TCP_NODELAY on the sockets the gateway (and the bare relay) accepts.
    nodelay_gateway: bool,
    /// Each keystroke comes back twice (terminal echo, then `cat`'s copy).
    double_echo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Gateway,
    Bare,
    Client,
}

impl Path {
    fn name(self) -> &'static str {
        match self {
            Path::Gateway => "gateway",
            Path::Bare => "bare",
            Path::Client => "client",
        }
    }
}

const USAGE: &str = "usage: relay [--bytes N] [--rounds N] [--trips N] [--warmup N] \
                     [--phase all|bulk|latency] [--paths gateway,bare,client] \
                     [--nodelay none|emulator|gateway|both] [--echo single|double]";

fn parse_args() -> Args {
    let mut args = Args {
        bytes: 30_000_000,
        rounds: 5,
        trips: 2000,
        warmup: 200,
        bulk: true,
        latency: true,
        paths: vec![Path::Gateway, Path::Bare, Path::Client],
        nodelay_emulator: true,
        nodelay_gateway: false,
        double_echo: false,
    };
    // `cargo bench` passes --bench; `cargo test --all-targets` runs the binary without it:
    // then a smoke run (small sizes) checks that every path still works, in seconds.
    if !args::is_bench_run() {
        (args.bytes, args.rounds, args.trips, args.warmup) = (1_000_000, 1, 50, 10);
    }
    let mut cli = args::Cli::new(USAGE);
    while let Some(arg) = cli.next_flag() {
        match arg.as_str() {
            "--bytes" => args.bytes = cli.number("--bytes"),
            "--rounds" => args.rounds = cli.number("--rounds").clamp(1, 50),
            "--trips" => args.trips = cli.number("--trips").clamp(1, 100_000),
            "--warmup" => args.warmup = cli.number("--warmup").min(10_000),
            "--phase" => match cli.value().as_deref() {
                Some("all") => (args.bulk, args.latency) = (true, true),
                Some("bulk") => (args.bulk, args.latency) = (true, false),
                Some("latency") => (args.bulk, args.latency) = (false, true),
                _ => cli.bad_value(),
            },
            "--paths" => {
                let list = cli.value().unwrap_or_default();
                args.paths = list
                    .split(',')
                    .map(|p| match p {
                        "gateway" => Path::Gateway,
                        "bare" => Path::Bare,
                        "client" => Path::Client,
                        _ => cli.fail(&format!("unknown path {p:?}")),
                    })
                    .collect();
            }
            "--nodelay" => {
                (args.nodelay_emulator, args.nodelay_gateway) = match cli.value().as_deref() {
                    Some("none") => (false, false),
                    Some("emulator") => (true, false),
                    Some("gateway") => (false, true),
                    Some("both") => (true, true),
                    _ => cli.bad_value(),
                }
            }
            "--echo" => {
                args.double_echo = match cli.value().as_deref() {
                    Some("single") => false,
                    Some("double") => true,
                    _ => cli.bad_value(),
                }
            }
            other => cli.unknown(other),
        }
    }
    assert!(
        (1..=2_000_000_000).contains(&args.bytes),
        "--bytes must be 1 to 2e9"
    );
    args
}

fn main() {
    let args = parse_args();
    stack::run_bounded(RUN_LIMIT, run(args));
}

async fn run(args: Args) {
    println!(
        "relay benchmark: {} CPUs, load average {} at start; {args:?}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    let stack = Stack::start(StackOptions {
        nodelay_emulator: args.nodelay_emulator,
        nodelay_gateway: args.nodelay_gateway,
        ..StackOptions::default()
    })
    .await;
    let mut api = stack.signed_in("bench").await;

    if args.bulk {
        bulk(&args, &stack, &mut api).await;
    }
    if args.latency {
        latency(&args, &stack, &mut api).await;
    }
    println!("load average {} at the end", loadavg());
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Opening the three kinds of terminal.

/// A gateway session on `target`, attached like a browser.
async fn gateway_socket(api: &mut Api, target: &str) -> Ws {
    let id = api.open(target, "relay benchmark (issue 4)").await;
    match api.attach(&id).await {
        Ok(attach) => attach.socket,
        Err((status, body)) => panic!("attach refused: {status} {body}"),
    }
}

/// A data-channel client on `target`, started the way the gateway starts one.
async fn direct_client(stack: &Stack, target: &str) -> ClientHandle {
    let start = stack.start_session(target).await;
    client::start(start, stack.aws.clone()).await.unwrap()
}

/// A data-channel client on `target` behind a minimal WebSocket relay; returns the relay's
/// client socket.
async fn bare_socket(stack: &Stack, target: &str, nodelay: bool) -> Ws {
    let handle = direct_client(stack, target).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    tokio::spawn(bare_relay(listener, handle, nodelay));
    let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws
}

/// The bare relay: one connection; output pieces out as binary messages, binary messages in
/// as input. Ends when either side ends.
async fn bare_relay(listener: TcpListener, mut handle: ClientHandle, nodelay: bool) {
    let Ok((mut tcp, _)) = listener.accept().await else {
        return;
    };
    if nodelay {
        set_nodelay(&mut tcp);
    }
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    loop {
        tokio::select! {
            event = handle.events.recv() => match event {
                Some(ClientEvent::Output(bytes)) => {
                    if ws.send(Message::Binary(bytes)).await.is_err() {
                        break;
                    }
                }
                Some(ClientEvent::Closed(_)) | None => break,
                Some(_) => {}
            },
            message = ws.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if handle.input(bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = ws.close(None).await; // best effort
}

/// A terminal as the benchmark drives it: a WebSocket (gateway, bare relay) or the client.
enum Term {
    Ws(Box<WsTerm>),
    Client(ClientHandle),
}

/// A WebSocket terminal, acknowledging output the way a browser does once the gateway has
/// told it the output offset (`{"type":"sync"}`; the bare relay never does).
struct WsTerm {
    ws: Ws,
    /// The output offset reached, once synced.
    offset: Option<u64>,
    /// The offset last acknowledged.
    acked: u64,
    /// Acknowledgements sent.
    acks: u64,
}

impl WsTerm {
    fn term(ws: Ws) -> Term {
        Term::Ws(Box::new(Self {
            ws,
            offset: None,
            acked: 0,
            acks: 0,
        }))
    }

    async fn text(&mut self, text: &str) {
        let value: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
        if value["type"] == "sync"
            && let Some(offset) = value["offset"].as_u64()
        {
            self.offset = Some(offset);
            self.acked = offset;
        }
    }

    async fn binary(&mut self, len: usize) {
        if let Some(offset) = &mut self.offset {
            *offset += len as u64;
            if *offset - self.acked >= ACK_EVERY {
                self.acked = *offset;
                self.acks += 1;
                let ack = format!("{{\"type\":\"ack\",\"bytes\":{offset}}}");
                self.ws.send(Message::Text(ack.into())).await.unwrap();
            }
        }
    }
}

impl Term {
    async fn send(&mut self, bytes: Bytes) {
        match self {
            Term::Ws(t) => t.ws.send(Message::Binary(bytes)).await.unwrap(),
            Term::Client(handle) => handle.input(bytes).await.unwrap(),
        }
    }

    /// The next output piece; `None` after `wait` without one.
    async fn next_output(&mut self, wait: Duration) -> Option<Bytes> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self {
                Term::Ws(t) => match tokio::time::timeout_at(deadline, t.ws.next()).await {
                    Err(_) => return None,
                    Ok(Some(Ok(Message::Binary(bytes)))) => {
                        t.binary(bytes.len()).await;
                        return Some(bytes);
                    }
                    Ok(Some(Ok(Message::Text(text)))) => t.text(text.as_str()).await,
                    Ok(Some(Ok(Message::Close(frame)))) => panic!("socket closed: {frame:?}"),
                    Ok(Some(Ok(_))) => {} // status messages, pings
                    Ok(Some(Err(e))) => panic!("socket error: {e}"),
                    Ok(None) => panic!("socket ended"),
                },
                Term::Client(handle) => {
                    match tokio::time::timeout_at(deadline, handle.events.recv()).await {
                        Err(_) => return None,
                        Ok(Some(ClientEvent::Output(bytes))) => return Some(bytes),
                        Ok(Some(ClientEvent::Closed(reason))) => panic!("session closed: {reason}"),
                        Ok(Some(_)) => {}
                        Ok(None) => panic!("client task ended"),
                    }
                }
            }
        }
    }

    /// Reads until `needle` has been seen; returns the bytes read, `needle` included (and
    /// whatever arrived in the same piece after it).
    async fn read_until(&mut self, needle: &[u8], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut scan = Scan::new(needle);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(piece) = self.next_output(left).await else {
                panic!(
                    "no {:?} within {limit:?} ({} bytes read)",
                    String::from_utf8_lossy(needle),
                    scan.total
                );
            };
            if scan.feed(&piece) {
                return scan.total;
            }
        }
    }

    /// Reads until nothing arrives for [`QUIET`] (at most 10 s).
    async fn drain(&mut self) {
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && self.next_output(QUIET).await.is_some() {}
    }

    /// Waits for a shell prompt to be usable.
    async fn shell_ready(&mut self) {
        self.send(Bytes::from_static(b"echo RE''ADY\r")).await;
        self.read_until(b"READY", Duration::from_secs(30)).await;
        self.drain().await;
    }
}

/// Finds a needle in a stream of pieces without keeping the stream.
struct Scan<'a> {
    needle: &'a [u8],
    /// The last `needle.len() - 1` bytes seen.
    carry: Vec<u8>,
    total: usize,
}

impl<'a> Scan<'a> {
    fn new(needle: &'a [u8]) -> Self {
        Self {
            needle,
            carry: Vec::new(),
            total: 0,
        }
    }

    fn feed(&mut self, piece: &[u8]) -> bool {
        self.total += piece.len();
        let keep = self.needle.len() - 1;
        // Across the boundary: the carry and the start of this piece.
        let mut edge = std::mem::take(&mut self.carry);
        edge.extend_from_slice(&piece[..piece.len().min(keep)]);
        if contains(&edge, self.needle) || contains(piece, self.needle) {
            return true;
        }
        let from = edge.len().saturating_sub(keep);
        self.carry = edge.split_off(from);
        if piece.len() >= keep {
            self.carry.clear();
            self.carry.extend_from_slice(&piece[piece.len() - keep..]);
        }
        false
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let first = needle[0];
    let mut at = 0;
    while let Some(i) = haystack[at..].iter().position(|&b| b == first) {
        let start = at + i;
        if haystack[start..].starts_with(needle) {
            return true;
        }
        at = start + 1;
    }
    false
}

// ---------------------------------------------------------------------------------------------
// 1. Bulk output.

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// CPU time this process has used (all threads, user + system), from `/proc/self/stat`, in
/// seconds (clock ticks of 10 ms). The shell, `head` and `base64` are other processes.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0 // utime, stime (fields 14, 15); USER_HZ = 100
}

/// One bulk round.
struct Round {
    bytes: usize,
    seconds: f64,
    /// This process's CPU seconds during the round.
    cpu: f64,
}

impl Round {
    fn rate(&self) -> f64 {
        self.bytes as f64 / self.seconds / 1e6
    }

    /// CPU milliseconds per MB.
    fn cpu_per_mb(&self) -> f64 {
        self.cpu * 1e3 / (self.bytes as f64 / 1e6)
    }
}

async fn bulk_round(term: &mut Term, bytes: usize) -> Round {
    let command = format!("head -c {bytes} /dev/zero | base64 -w 0; echo END''-MARK\r");
    let cpu = cpu_seconds();
    let started = Instant::now();
    term.send(Bytes::from(command)).await;
    let read = term.read_until(END_MARK, ROUND_LIMIT).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let expected = bytes.div_ceil(3) * 4;
    assert!(
        read >= expected,
        "read {read} bytes, expected at least {expected}"
    );
    term.drain().await;
    Round {
        bytes: read,
        seconds,
        cpu,
    }
}

async fn bulk(args: &Args, stack: &Stack, api: &mut Api) {
    let mut terms: Vec<(Path, Term)> = Vec::new();
    for &path in &args.paths {
        let term = match path {
            Path::Gateway => WsTerm::term(gateway_socket(api, NODE).await),
            Path::Bare => WsTerm::term(bare_socket(stack, NODE, args.nodelay_gateway).await),
            Path::Client => Term::Client(direct_client(stack, NODE).await),
        };
        terms.push((path, term));
    }
    for (_, term) in &mut terms {
        term.shell_ready().await;
        bulk_round(term, (args.bytes / 10).max(1)).await; // warm-up, not recorded
    }
    println!(
        "\n## bulk output: head -c {} /dev/zero | base64 -w 0 ({} bytes of output), MB = 10^6 bytes",
        args.bytes,
        args.bytes.div_ceil(3) * 4
    );
    let mut rounds: Vec<Vec<Round>> = terms.iter().map(|_| Vec::new()).collect();
    for round in 1..=args.rounds {
        for (i, (path, term)) in terms.iter_mut().enumerate() {
            let load = loadavg();
            let r = bulk_round(term, args.bytes).await;
            println!(
                "round {round} {:<8} {} bytes in {:.3} s = {:.1} MB/s, {:.2} CPU s = {:.1} CPU ms/MB (load {load})",
                path.name(),
                r.bytes,
                r.seconds,
                r.rate(),
                r.cpu,
                r.cpu_per_mb()
            );
            rounds[i].push(r);
        }
    }
    for (path, term) in &terms {
        if let Term::Ws(t) = term {
            println!("{}: {} acknowledgements sent", path.name(), t.acks);
        }
    }
    let at = |p: Path| terms.iter().position(|(q, _)| *q == p);
    let table = |title: &str, value: &dyn Fn(&Round) -> f64, digits: usize| {
        println!("\n| {title} | {} | median |", round_headers(args.rounds));
        println!("|---|{}---|", "---|".repeat(args.rounds));
        for (i, (path, _)) in terms.iter().enumerate() {
            let values: Vec<f64> = rounds[i].iter().map(value).collect();
            let cells: Vec<String> = values.iter().map(|v| format!("{v:.digits$}")).collect();
            println!(
                "| {} | {} | **{:.digits$}** |",
                path.name(),
                cells.join(" | "),
                median(&values)
            );
        }
        for (a, b) in [(Path::Gateway, Path::Bare), (Path::Bare, Path::Client)] {
            let (Some(x), Some(y)) = (at(a), at(b)) else {
                continue;
            };
            let ratios: Vec<f64> = (0..args.rounds)
                .map(|r| value(&rounds[x][r]) / value(&rounds[y][r]))
                .collect();
            let cells: Vec<String> = ratios.iter().map(|v| format!("{v:.2}")).collect();
            println!(
                "| {} / {} | {} | **{:.2}** |",
                a.name(),
                b.name(),
                cells.join(" | "),
                median(&ratios)
            );
        }
    };
    table("MB/s", &Round::rate, 1);
    table("CPU ms per MB (whole process)", &Round::cpu_per_mb, 1);
}

fn round_headers(rounds: usize) -> String {
    (1..=rounds)
        .map(|r| format!("round {r}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

// ---------------------------------------------------------------------------------------------
// 2. Keystroke round trips.

/// One keystroke out, `copies` echoes of it back.
async fn trip(term: &mut Term, byte: u8, copies: usize) -> Duration {
    let started = Instant::now();
    term.send(Bytes::copy_from_slice(&[byte])).await;
    let mut seen = 0;
    loop {
        let Some(piece) = term.next_output(TRIP_LIMIT).await else {
            panic!("{seen} of {copies} echoes of {byte} within {TRIP_LIMIT:?}");
        };
        seen += piece.iter().filter(|&&b| b == byte).count();
        if seen >= copies {
            return started.elapsed();
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn latency(args: &Args, stack: &Stack, api: &mut Api) {
    let mut terms: Vec<(&'static str, Term)> = vec![
        ("gateway", WsTerm::term(gateway_socket(api, NODE).await)),
        ("direct", Term::Client(direct_client(stack, NODE).await)),
        (
            "bare",
            WsTerm::term(bare_socket(stack, NODE, args.nodelay_gateway).await),
        ),
    ];
    // The data-channel client on a node in echo mode (no shell; one copy of each byte only).
    if !args.double_echo {
        let mut echo = Term::Client(direct_client(stack, stack::ECHO_NODE).await);
        echo.read_until(b"porthole echo agent", Duration::from_secs(30))
            .await;
        echo.drain().await;
        terms.push(("echo-node", echo));
    }
    for (name, term) in &mut terms {
        if *name == "echo-node" {
            continue;
        }
        term.shell_ready().await;
        // The terminal itself echoes each byte (raw mode keeps ECHO); cat swallows the input,
        // or with `--echo double` writes it back as a second, separate piece of output.
        let command: &'static [u8] = if args.double_echo {
            b"stty raw; echo RA''W-READY; cat\r"
        } else {
            b"stty raw; echo RA''W-READY; cat > /dev/null\r"
        };
        term.send(Bytes::from_static(command)).await;
        term.read_until(b"RAW-READY", Duration::from_secs(30)).await;
        term.drain().await;
    }
    let load = loadavg();
    let copies = if args.double_echo { 2 } else { 1 };
    let n = terms.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(args.trips); n];
    for i in 0..args.warmup + args.trips {
        let byte = b'a' + (i % 26) as u8;
        // Rotate which path goes first, so none always follows the same one.
        for k in 0..n {
            let which = (i + k) % n;
            let took = trip(&mut terms[which].1, byte, copies).await;
            if i >= args.warmup {
                samples[which].push(took);
            }
        }
    }
    println!(
        "\n## keystroke round trip ({} echo): {} trips per path ({} warm-up), interleaved; load {load} before, {} after",
        if args.double_echo { "double" } else { "single" },
        args.trips,
        args.warmup,
        loadavg()
    );
    println!("\n| path | p50 µs | p90 µs | p99 µs | max µs | mean µs |");
    println!("|---|---|---|---|---|---|");
    let mut stats = Vec::new();
    for (k, (name, _)) in terms.iter().enumerate() {
        let mut s = samples[k].clone();
        s.sort();
        let mean = s.iter().map(|d| micros(*d)).sum::<f64>() / s.len() as f64;
        let (p50, p90, p99) = (
            percentile(&s, 50.0),
            percentile(&s, 90.0),
            percentile(&s, 99.0),
        );
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {mean:.1} |",
            micros(p50),
            micros(p90),
            micros(p99),
            micros(s[s.len() - 1])
        );
        stats.push((p50, p99));
    }
    let added = |a: usize, b: usize| {
        (
            micros(stats[a].0) - micros(stats[b].0),
            micros(stats[a].1) - micros(stats[b].1),
        )
    };
    let (g50, g99) = added(0, 1);
    let (b50, b99) = added(2, 1);
    println!("| added by the gateway (gateway − direct) | {g50:.1} | | {g99:.1} | | |");
    println!("| added by the bare relay (bare − direct) | {b50:.1} | | {b99:.1} | | |");
    if stats.len() > 3 {
        let (e50, e99) = added(3, 1);
        println!("| echo node − PTY node (direct) | {e50:.1} | | {e99:.1} | | |");
    }
}
