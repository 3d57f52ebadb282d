//! The search index of what sessions printed: the text, escape sequences removed, kept as
//! lines with the moment each began (`recording_lines`, written by `store::search`).
//!
//! - [`Lines`] turns output into lines, with no IO: a `vte` parser (the terminal model's, so no
//!   second copy is built) keeps printable text and drops control and escape sequences; `\n`
//!   ends a line, backspace removes a character, a carriage return followed by more text
//!   also ends it (readline's line wrap and progress bars print that way: each state is kept,
//!   nothing printed is lost), and a line longer than [`MAX_LINE_CHARS`] is cut into several.
//! - [`Indexer`] is what the recorder holds: it only queues the output text (bounded) to one
//!   writer task per session, which runs [`Lines`] and inserts the lines in batches: when
//!   [`BATCH_LINES`] are ready, every second, and at the end. The session task never parses
//!   for the index nor waits on the database.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::ground::{Tracker, is_plain};
use crate::gateway::store::db::Db;
pub use crate::gateway::store::search::{BATCH_LINES, Line};
use crate::gateway::store::search::{insert, next_seq};

/// Longest line indexed; a longer one continues as another line.
pub const MAX_LINE_CHARS: usize = 500;
/// Output chunks queued towards a session's writer task (a chunk is what one data-channel
/// message carried, at most a few KiB). A writer that falls this far behind (a slow
/// database) makes output wait in the indexer, up to [`MAX_WAITING_BYTES`].
const WRITER_QUEUE: usize = 256;
/// Output bytes waiting in the indexer for room in the writer's queue; beyond this the oldest
/// are dropped and counted (logged once, and in total at the end): the recording keeps them,
/// the index does not.
const MAX_WAITING_BYTES: usize = 4 * 1024 * 1024;

/// Output to lines, without IO.
pub struct Lines {
    parser: vte::Parser,
    state: LineState,
    /// Where the parser stands, so that plain text (most of any output) is split into lines
    /// here, a slice at a time, instead of a character at a time through the parser: the
    /// same lines, about five times less work.
    tracker: Option<Tracker>,
}

impl std::fmt::Debug for Lines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("current", &self.state.current)
            .finish()
    }
}

#[derive(Default)]
struct LineState {
    /// The time of the chunk being parsed, in seconds.
    now: f64,
    current: String,
    chars: usize,
    /// When the current line's first character was printed.
    began: Option<f64>,
    /// A carriage return was seen: the next character starts another line.
    returned: bool,
    done: Vec<Line>,
}

impl LineState {
    fn end_line(&mut self) {
        let text = self.current.trim_end();
        if let (false, Some(began)) = (text.trim_start().is_empty(), self.began) {
            self.done.push(Line {
                offset_ms: (began * 1000.0).ceil() as i64,
                text: text.to_owned(),
            });
        }
        self.current.clear();
        self.chars = 0;
        self.began = None;
        self.returned = false;
    }
}

impl LineState {
    /// What [`vte::Perform::print`] and [`vte::Perform::execute`] do for each byte of `run`,
    /// plain text (see [`is_plain`]) read with the parser at rest.
    fn plain(&mut self, mut run: &[u8]) {
        while !run.is_empty() {
            let text = run
                .iter()
                .position(|b| !(0x20..=0x7e).contains(b))
                .unwrap_or(run.len());
            self.print_ascii(&run[..text]);
            if let Some(control) = run.get(text) {
                vte::Perform::execute(self, *control);
            }
            run = run.get(text + 1..).unwrap_or_default();
        }
    }

    /// `print` of each character of printable ASCII `text`.
    fn print_ascii(&mut self, mut text: &[u8]) {
        while !text.is_empty() {
            if self.returned {
                self.end_line();
            }
            if self.began.is_none() {
                self.began = Some(self.now);
            }
            let take = (MAX_LINE_CHARS - self.chars).min(text.len());
            // Printable ASCII is UTF-8.
            self.current
                .push_str(std::str::from_utf8(&text[..take]).unwrap_or_default());
            self.chars += take;
            if self.chars >= MAX_LINE_CHARS {
                self.end_line();
            }
            text = &text[take..];
        }
    }
}

impl vte::Perform for LineState {
    fn print(&mut self, c: char) {
        if self.returned {
            // Text from the first column again (a wrapped line, a progress bar): the text
            // before it is a line of its own.
            self.end_line();
        }
        if self.began.is_none() {
            self.began = Some(self.now);
        }
        self.current.push(c);
        self.chars += 1;
        if self.chars >= MAX_LINE_CHARS {
            self.end_line();
        }
    }

    fn execute(&mut self, byte: u8) {
        match byte {
            b'\n' => self.end_line(),
            b'\r' => self.returned = true,
            b'\t' => self.print(' '),
            0x08 if self.current.pop().is_some() => self.chars -= 1,
            _ => {}
        }
    }
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Lines {
    /// An empty splitter.
    pub fn new() -> Self {
        Self {
            parser: vte::Parser::new(),
            state: LineState::default(),
            tracker: Some(Tracker::new()),
        }
    }

    /// Lets go of room kept from earlier output (the line being built keeps what it holds).
    pub fn shrink(&mut self) {
        self.state.current.shrink_to_fit();
        self.state.done.shrink_to_fit();
    }

    /// Feeds output printed `seconds` after the start; returns the lines it finished.
    pub fn push(&mut self, seconds: f64, bytes: &[u8]) -> Vec<Line> {
        self.state.now = seconds;
        let Some(tracker) = &mut self.tracker else {
            self.parser.advance(&mut self.state, bytes);
            return std::mem::take(&mut self.state.done);
        };
        // bytes[parsed..at] are not plain (or not at rest) and go through the parser.
        let (mut parsed, mut at) = (0, 0);
        while at < bytes.len() {
            if tracker.at_rest() && is_plain(bytes[at]) {
                let end = bytes[at..]
                    .iter()
                    .position(|b| !is_plain(*b))
                    .map_or(bytes.len(), |n| at + n);
                self.parser.advance(&mut self.state, &bytes[parsed..at]);
                self.state.plain(&bytes[at..end]);
                (parsed, at) = (end, end);
                continue;
            }
            let _ = tracker.step(bytes[at]); // only where it stands matters here
            at += 1;
        }
        self.parser.advance(&mut self.state, &bytes[parsed..]);
        std::mem::take(&mut self.state.done)
    }

    /// Ends the line in progress (the end of the session); returns it, if it has text.
    pub fn finish(&mut self) -> Vec<Line> {
        self.state.end_line();
        std::mem::take(&mut self.state.done)
    }
}

/// The text index of one session's output, held by its recorder. It only queues the text:
/// parsing, batching and writing happen in the session's writer task, off the session's
/// data path.
pub struct Indexer {
    session_id: String,
    /// Output not yet handed to the writer (its queue was full), oldest first.
    waiting: VecDeque<ToWriter>,
    waiting_bytes: usize,
    tx: mpsc::Sender<ToWriter>,
    dropped_bytes: u64,
}

/// What the indexer sends its writer.
#[derive(Debug)]
enum ToWriter {
    /// Output text printed this many seconds after the start of the recording.
    Output(f64, String),
    /// Write the finished lines now (once a second).
    Flush,
}

impl std::fmt::Debug for Indexer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Indexer")
            .field("session_id", &self.session_id)
            .field("waiting_bytes", &self.waiting_bytes)
            .finish()
    }
}

impl Indexer {
    /// Starts the session's writer task (it ends when the indexer is finished or dropped,
    /// after writing what it was sent). Needs a tokio runtime.
    pub fn spawn(db: Db, session_id: &str) -> Self {
        Self::spawn_from(db, session_id, Some(0))
    }

    /// [`Indexer::spawn`] for a session another gateway indexed until now (handed over): its
    /// lines are numbered on from the last one written.
    pub fn spawn_continuing(db: Db, session_id: &str) -> Self {
        Self::spawn_from(db, session_id, None)
    }

    fn spawn_from(db: Db, session_id: &str, first_seq: Option<i64>) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(write_lines(db, session_id.to_owned(), rx, first_seq));
        Self {
            session_id: session_id.to_owned(),
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            tx,
            dropped_bytes: 0,
        }
    }

    /// Output text, printed `seconds` after the start of the recording.
    pub fn output(&mut self, seconds: f64, text: &str) {
        self.waiting_bytes += text.len();
        self.waiting
            .push_back(ToWriter::Output(seconds, text.to_owned()));
        while self.waiting_bytes > MAX_WAITING_BYTES {
            let Some(ToWriter::Output(_, old)) = self.waiting.pop_front() else {
                break;
            };
            if self.dropped_bytes == 0 {
                tracing::warn!(session = %self.session_id, "search index: the database is behind; output not yet indexed is dropped");
            }
            self.waiting_bytes -= old.len();
            self.dropped_bytes += old.len() as u64;
        }
        self.send_waiting();
    }

    /// Hands what waits to the writer, as far as its queue has room.
    fn send_waiting(&mut self) {
        while let Some(message) = self.waiting.pop_front() {
            match self.tx.try_reserve() {
                Ok(permit) => {
                    if let ToWriter::Output(_, text) = &message {
                        self.waiting_bytes -= text.len();
                    }
                    permit.send(message);
                }
                Err(_) => {
                    // Full (the rest waits) or the writer has gone (it logged why).
                    self.waiting.push_front(message);
                    return;
                }
            }
        }
    }

    /// Asks the writer to write the lines it has (called every second).
    pub fn flush(&mut self) {
        self.send_waiting();
        if self.waiting.is_empty() {
            let _ = self.tx.try_send(ToWriter::Flush); // full: it is writing already
        }
    }

    /// For a quiet session: lets go of queue memory kept from a burst.
    pub fn compact(&mut self) {
        self.waiting.shrink_to_fit();
    }

    /// Hands everything to the writer, which ends the last line, writes and ends.
    pub fn finish(mut self) {
        self.send_waiting();
        if self.dropped_bytes > 0 {
            tracing::warn!(session = %self.session_id, bytes = self.dropped_bytes, "search index: output dropped");
        }
        if self.waiting.is_empty() {
            return;
        }
        // The queue is full: wait for room in a task of its own (the session is ending; its
        // task must not wait on the database).
        let (tx, waiting) = (self.tx.clone(), std::mem::take(&mut self.waiting));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for message in waiting {
                    if tx.send(message).await.is_err() {
                        break; // the writer has gone; it logged why
                    }
                }
            });
        }
    }
}

/// The writer task of one session: turns output into lines and inserts them in batches, with
/// their line numbers (from `first_seq`, or after the last one written when `None`); the last
/// line when the indexer is done.
async fn write_lines(
    db: Db,
    session_id: String,
    mut rx: mpsc::Receiver<ToWriter>,
    first_seq: Option<i64>,
) {
    let mut lines = Lines::new();
    let mut done: Vec<Line> = Vec::new();
    let mut next: Option<i64> = first_seq;
    loop {
        let message = rx.recv().await;
        let last = message.is_none();
        let flush = match message {
            Some(ToWriter::Output(seconds, text)) => {
                done.extend(lines.push(seconds, text.as_bytes()));
                done.len() >= BATCH_LINES
            }
            Some(ToWriter::Flush) => true,
            None => {
                done.extend(lines.finish());
                true
            }
        };
        if flush {
            for batch in done.chunks(BATCH_LINES) {
                let n = batch.len() as i64;
                let seq = match next {
                    Some(seq) => seq,
                    None => match next_seq(&db, &session_id).await {
                        Ok(seq) => seq,
                        Err(e) => {
                            tracing::warn!(session = %session_id, lines = n, "search index: {e}");
                            continue;
                        }
                    },
                };
                if let Err(e) = insert(&db, &session_id, seq, batch).await {
                    tracing::warn!(session = %session_id, lines = n, "search index: {e}");
                }
                next = Some(seq + n);
            }
            done.clear();
            if rx.is_empty() {
                // Quiet (or keeping up): hold no room for lines between bursts. Kept, the
                // largest burst's room stayed with every quiet session (14 KiB after 3,000
                // lines; docs/performance.md, "Idle memory").
                done.shrink_to_fit();
                lines.shrink();
            }
        }
        if last {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn texts(lines: &[Line]) -> Vec<&str> {
        lines.iter().map(|l| l.text.as_str()).collect()
    }

    #[test]
    fn escapes_are_removed_and_lines_keep_their_start() {
        let mut lines = Lines::new();
        let first = lines.push(
            1.5,
            b"\x1b[1;32muser@web-1\x1b[0m:~$ echo hi\r\nhi\r\n\x1b]0;title\x07par",
        );
        assert_eq!(texts(&first), ["user@web-1:~$ echo hi", "hi"]);
        assert_eq!(first[0].offset_ms, 1500);
        // A line split over chunks began when its first character came; offsets round up.
        let second = lines.push(2.0004, b"tial line\nnext\n");
        assert_eq!(
            second,
            [
                Line {
                    offset_ms: 1500,
                    text: "partial line".into()
                },
                Line {
                    offset_ms: 2001,
                    text: "next".into()
                }
            ]
        );
        assert!(lines.finish().is_empty());
    }

    #[test]
    fn backspaces_returns_tabs_and_long_lines() {
        let mut lines = Lines::new();
        let done = lines.push(0.0, b"ecoh\x08\x08ho\tx\r\n10%\r55%\r100%\n\n   \n");
        assert_eq!(texts(&done), ["echo x", "10%", "55%", "100%"]);
        let long = "a".repeat(MAX_LINE_CHARS + 10);
        let done = lines.push(3.0, long.as_bytes());
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].text.chars().count(), MAX_LINE_CHARS);
        assert_eq!(texts(&lines.finish()), ["a".repeat(10)]);
        // Multi-byte text and invalid bytes never panic.
        let done = lines.push(4.0, "héllo ✓ 🦀\n".as_bytes());
        assert_eq!(texts(&done), ["héllo ✓ 🦀"]);
        let _ = lines.push(4.0, b"\xff\xfe\x1b[\x1b]\x07\x08\x08\x08\n");
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Plain text split here gives the lines the parser gives, whatever surrounds it.
        #[test]
        fn the_plain_text_shortcut_gives_the_same_lines(
            pieces in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => "[ -~\t\x08\r\n]{0,700}",
                    1 => proptest::sample::select(vec![
                        "\x1b[31m", "\x1b]0;x\ny\x07", "\x1b]0;x", "\x1bP1$r\n", "\x1b\\", "\x18",
                        "\x1b[", "\x1b[1;", "é", "✓ 🦀", "\u{9b}", "\x0b", "\x07", "\x1b_a\n",
                    ]).prop_map(str::to_owned),
                ],
                0..40,
            ),
            times in proptest::collection::vec(0.0f64..100.0, 40),
        ) {
            let (mut fast, mut reference) = (Lines::new(), Lines::new());
            reference.tracker = None;
            for (piece, t) in pieces.iter().zip(&times) {
                proptest::prop_assert_eq!(fast.push(*t, piece.as_bytes()), reference.push(*t, piece.as_bytes()));
            }
            proptest::prop_assert_eq!(fast.finish(), reference.finish());
        }
    }
}
