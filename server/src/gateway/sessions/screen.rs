//! The server-side terminal model of a session: a vt100 parser fed with every output byte, so
//! a browser that attaches (a reload, a second tab, a new laptop) gets the screen as it is —
//! alternate-screen programs such as vim, less and top included, with colours and the cursor —
//! and the lines above it, not a blank page.
//!
//! vt100 exposes only the active grid, so when a program switches to the alternate screen the
//! main screen's history is captured at that moment (bounded by the scrollback) and replayed
//! beneath the alternate screen on attach.

use std::collections::VecDeque;
use std::num::NonZeroU16;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use vt100::Parser;
use vt100::capture::{BasicFormattedCaptureRange, BasicFormattedCaptureState};

use super::ground::{Seen, Tracker, is_plain};

/// The sequences that switch to the alternate screen (xterm's three variants).
const ENTER_ALTERNATE: [&[u8]; 3] = [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h"];

/// A session's terminal model.
pub struct Screen {
    parser: Parser,
    /// The main screen's history and rows, captured when the alternate screen was entered.
    main_capture: Option<String>,
    /// For a screen without scrollback: what lets it skip plain text that scrolls away
    /// unseen (see [`Skipping`]).
    skipping: Option<Skipping>,
}

/// Bulk output (a `cat`, a build log, a long line of base64) is mostly plain text that
/// scrolls off the screen before anyone could see it. For a screen without scrollback, such
/// text only moves the cursor; once the cursor is on the bottom row, every further line feed
/// or wrap scrolls, and after a screenful of those nothing printed before them is left on
/// the screen. So the model follows the cursor over the text without drawing it, replays the
/// scrolls it skipped (vt100 counts them) and feeds only the last screenful. This holds when
/// the parser is at rest where the text begins, on the main screen, with no scroll region; a
/// tracker follows the parser to know whether it is at rest and whether a region was set (a
/// region it cannot read is taken to be set). vt100 costs about 35 ns a byte; following the cursor about 1.
#[derive(Debug)]
struct Skipping {
    tracker: Tracker,
    region_maybe_set: bool,
    /// Bytes not fed to the parser so far.
    skipped: u64,
    /// [`plan_skip`]'s memory, kept to save allocating it for every run.
    moves: VecDeque<(usize, Cursor)>,
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (rows, cols) = self.size();
        f.debug_struct("Screen")
            .field("rows", &rows)
            .field("cols", &cols)
            .field("alternate", &self.parser.screen().alternate_screen())
            .finish()
    }
}

fn dim(n: u16, default: u16) -> NonZeroU16 {
    NonZeroU16::new(n)
        .or(NonZeroU16::new(default))
        .unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A blank screen of `rows` × `cols` keeping `scrollback` lines above it.
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        Self {
            parser: Parser::new(dim(rows, 24), dim(cols, 80), scrollback),
            main_capture: None,
            skipping: (scrollback == 0).then(|| Skipping {
                tracker: Tracker::new(),
                region_maybe_set: false,
                skipped: 0,
                moves: VecDeque::new(),
            }),
        }
    }

    /// (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// Follows a resize of the terminal.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.set_size(dim(rows, 24), dim(cols, 80));
    }

    /// Feeds output.
    pub fn process(&mut self, mut bytes: &[u8]) {
        while let Some((at, len)) = find_enter_alternate(bytes) {
            self.feed(&bytes[..at]);
            if !self.parser.screen().alternate_screen() {
                self.main_capture = Some(self.history());
            }
            self.feed(&bytes[at..at + len]);
            bytes = &bytes[at + len..];
        }
        self.feed(bytes);
        if !self.parser.screen().alternate_screen() {
            self.main_capture = None;
        }
    }

    /// Gives output to the parser, without the plain text that cannot reach the screen.
    fn feed(&mut self, bytes: &[u8]) {
        let Some(skipping) = &mut self.skipping else {
            self.parser.process(bytes);
            return;
        };
        let parser = &mut self.parser;
        let mut fed = 0;
        let mut at = 0;
        while at < bytes.len() {
            if skipping.tracker.at_rest() && is_plain(bytes[at]) {
                if skipping.region_maybe_set {
                    at = bytes[at..]
                        .iter()
                        .position(|b| !is_plain(*b))
                        .map_or(bytes.len(), |n| at + n);
                    continue;
                }
                parser.process(&bytes[fed..at]);
                fed = at;
                let screen = parser.screen();
                let (rows, cols) = screen.size();
                let (end, plan) = plan_skip(
                    &bytes[at..],
                    rows.get(),
                    cols.get(),
                    screen.cursor_position(),
                    &mut skipping.moves,
                );
                if let (false, Some(skip)) = (screen.alternate_screen(), plan) {
                    parser.process(skip_sequence(rows.get(), skip).as_bytes());
                    fed = at + skip.len;
                    skipping.skipped += skip.len as u64;
                }
                at += end;
                continue;
            }
            if let Some(seen) = skipping.tracker.step(bytes[at]) {
                // The model needs the screen as of this sequence to read it.
                parser.process(&bytes[fed..=at]);
                fed = at + 1;
                let screen = parser.screen();
                match seen {
                    Seen::Reset => skipping.region_maybe_set = false,
                    // A region set on the alternate screen leaves the main screen's alone.
                    _ if screen.alternate_screen() => {}
                    Seen::ScrollRegion(Some((top, bottom))) => {
                        let rows = u32::from(screen.size().0.get());
                        let whole = top <= 1 && (bottom == 0 || bottom >= rows);
                        skipping.region_maybe_set = !whole;
                    }
                    Seen::ScrollRegion(None) => skipping.region_maybe_set = true,
                }
            }
            at += 1;
        }
        parser.process(&bytes[fed..]);
    }

    /// The active grid's scrollback and rows as lines with colours (SGR only), CRLF-separated.
    fn history(&self) -> String {
        let mut text = String::new();
        let mut state = BasicFormattedCaptureState::new();
        // Writing into a String cannot fail.
        let _ = self.parser.screen().write_contents_formatted_basic(
            &mut text,
            BasicFormattedCaptureRange::Full(&mut state),
        );
        text.replace('\n', "\r\n")
    }

    /// Bytes that bring a freshly reset terminal of the same size to this screen: the history
    /// lines (they scroll into the browser's scrollback), then the visible screen redrawn
    /// with its attributes, the cursor and the input modes.
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_with(self)
    }

    /// [`Screen::snapshot`] with the history lines taken from `history`: a screen with
    /// scrollback that replayed the latest output. The live model keeps no scrollback of its
    /// own (2,000 rows of cells are about 5 MiB a session); its screen, cursor and modes are
    /// exact, and the lines above them come from the replay. When the replay did not see the
    /// switch to the alternate screen, the main screen is the one captured at the switch.
    pub fn snapshot_with(&self, history: &Screen) -> Vec<u8> {
        let screen = self.parser.screen();
        let mut out = String::from("\x1bc");
        if screen.alternate_screen() {
            let main = history
                .main_capture
                .as_ref()
                .filter(|_| history.alternate())
                .or(self.main_capture.as_ref());
            if let Some(main) = main {
                out.push_str(main);
                out.push_str("\x1b[m");
            }
            out.push_str("\x1b[?1049h");
        } else {
            let lines = if history.alternate() {
                self.history()
            } else {
                history.history()
            };
            out.push_str(&lines);
            out.push_str("\x1b[m");
        }
        out.push_str(&screen.state_formatted());
        out.into_bytes()
    }

    /// The screen reduced to the bytes that rebuild it, when a screen rebuilt from them
    /// cannot be told apart from this one (see [`Compacted`]); `None` otherwise: a screen
    /// with scrollback (only the live model compacts), one in the middle of a sequence, or
    /// one holding state the bytes cannot carry (a scroll region, a saved cursor, …).
    pub fn compact(&self) -> Option<Compacted> {
        let skipping = self.skipping.as_ref()?;
        if !skipping.tracker.at_rest() {
            return None;
        }
        let screen = self.parser.screen();
        let (rows, cols) = self.size();
        let alternate = screen.alternate_screen();
        // The main screen as a copy shows it (after the program on the alternate one ends).
        let mut main = copy_of(screen);
        if alternate {
            main.process(b"\x1b[?1049l");
        }
        let main_cursor = main.screen().cursor_position();
        // vt100 counts the lines scrolled off (a taller screen pulls that many back): as many
        // as a resize by COMPACT_PULL rows could pull, measured on the copy.
        main.set_size(dim(rows.saturating_add(COMPACT_PULL), 24), dim(cols, 80));
        let pulled = main
            .screen()
            .cursor_position()
            .0
            .saturating_sub(main_cursor.0);
        let mut out = String::from("\x1bc");
        out.push_str(&skip_sequence(
            rows,
            Skip {
                len: 0,
                scrolled: u64::from(pulled),
                col: 0,
            },
        ));
        if alternate {
            if let Some(main) = &self.main_capture {
                out.push_str("\x1b[H");
                out.push_str(main);
                out.push_str("\x1b[m");
            }
            let (row, col) = main_cursor;
            out.push_str(&format!("\x1b[{};{}H\x1b[?1049h", row + 1, col + 1));
        }
        out.push_str(&screen.state_formatted());
        let compacted = Compacted {
            rows,
            cols,
            bytes: compress(out.as_bytes()),
            main_capture: self.main_capture.as_deref().map(|m| compress(m.as_bytes())),
            region_maybe_set: skipping.region_maybe_set,
            skipped: skipping.skipped,
        };
        let rebuilt = Screen::rebuild(&compacted)?;
        indistinguishable(screen, rebuilt.parser.screen()).then_some(compacted)
    }

    /// The screen [`Screen::compact`] reduced; `None` if its bytes do not decompress.
    pub fn rebuild(compacted: &Compacted) -> Option<Screen> {
        let mut screen = Screen::new(compacted.rows, compacted.cols, 0);
        screen.parser.process(&decompress(&compacted.bytes)?);
        screen.main_capture = match &compacted.main_capture {
            Some(main) => Some(String::from_utf8(decompress(main)?).ok()?),
            None => None,
        };
        let skipping = screen.skipping.as_mut()?;
        skipping.region_maybe_set = compacted.region_maybe_set;
        skipping.skipped = compacted.skipped;
        Some(screen)
    }

    /// The visible screen as plain text (rows joined by newlines), for tests and logs.
    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Whether a program has the alternate screen.
    pub fn alternate(&self) -> bool {
        self.parser.screen().alternate_screen()
    }
}

/// How many rows taller a screen is made, on a copy, to count the lines scrolled off it that a
/// taller screen would pull back (see [`Screen::compact`]).
const COMPACT_PULL: u16 = 200;

/// A terminal model reduced to bytes while its session is quiet: the bytes that bring a reset
/// model of the same size to the same screen (LZ4-compressed), and the model's own state
/// beside the parser's. At 80 × 24 a model holds about 62 KiB of cells; this, some hundreds
/// of bytes. A model is only compacted when a rebuilt copy cannot be told apart from it: the
/// same screen, cursor, attributes and modes, and the same after a probe that uses hidden
/// state (the saved cursor, the character a repeat repeats, the scroll region, origin mode),
/// after a taller resize (the lines scrolled off), and after leaving the alternate screen.
#[derive(Debug, Clone)]
pub struct Compacted {
    rows: u16,
    cols: u16,
    bytes: Vec<u8>,
    main_capture: Option<Vec<u8>>,
    region_maybe_set: bool,
    skipped: u64,
}

impl Compacted {
    /// The bytes it holds.
    pub fn size(&self) -> usize {
        self.bytes.len() + self.main_capture.as_ref().map_or(0, Vec::len)
    }
}

fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut out = lz4_flex::block::compress_prepend_size(bytes);
    out.shrink_to_fit();
    out
}

fn decompress(bytes: &[u8]) -> Option<Vec<u8>> {
    lz4_flex::block::decompress_size_prepended(bytes).ok()
}

/// A parser holding a copy of `screen` (at rest: a fresh parser's state).
fn copy_of(screen: &vt100::Screen) -> Parser {
    let (rows, cols) = screen.size();
    let mut parser = Parser::new(rows, cols, 0);
    *parser.screen_mut() = screen.clone();
    parser
}

/// Whether two screens show the same now and after the probes of [`Compacted`].
fn indistinguishable(a: &vt100::Screen, b: &vt100::Screen) -> bool {
    let same = |a: &vt100::Screen, b: &vt100::Screen| {
        a.state_formatted() == b.state_formatted()
            && a.cursor_position() == b.cursor_position()
            && a.size() == b.size()
            && a.alternate_screen() == b.alternate_screen()
    };
    if !same(a, b) {
        return false;
    }
    let (rows, cols) = a.size();
    let probe = format!(
        "\x18\x1b8P\x1b[3bQ{}R\x1b[HS\x1b[?1049l\x1b[HT",
        "\r\n".repeat(usize::from(rows.get()) + 1)
    );
    let (mut x, mut y) = (copy_of(a), copy_of(b));
    x.process(probe.as_bytes());
    y.process(probe.as_bytes());
    if !same(x.screen(), y.screen()) {
        return false;
    }
    let taller = dim(rows.get().saturating_add(COMPACT_PULL), 24);
    for leave in [false, true] {
        let (mut x, mut y) = (copy_of(a), copy_of(b));
        if leave {
            x.process(b"\x1b[?1049l");
            y.process(b"\x1b[?1049l");
        }
        x.set_size(taller, cols);
        y.set_size(taller, cols);
        if !same(x.screen(), y.screen()) {
            return false;
        }
    }
    true
}

/// Output pieces (and resizes, questions) queued towards a session's model task. When the
/// model falls this far behind, the session waits for it, so a model never holds more than
/// this many unprocessed pieces.
pub const MODEL_QUEUE: usize = 256;

/// At most this much queued output is handed to the model at once.
const MODEL_BATCH: usize = 256 * 1024;

#[derive(Debug)]
enum ToModel {
    Output(Bytes),
    Resize(u16, u16),
    Snapshot {
        latest: Vec<Bytes>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    Text(oneshot::Sender<String>),
    /// Reduce the model to bytes until the next message; the answer says whether it was.
    Compact(oneshot::Sender<bool>),
}

/// A session's terminal model running in a task of its own, so that feeding it (the costliest
/// step of relaying output: about 35 ns a byte) runs beside the relay on another core instead
/// of in series with it. Messages are handled in order, so a snapshot asked for after the
/// output up to offset N is the screen at exactly N.
///
/// The model holds the screen only (about 70 KiB at 80 × 24); the history lines of a snapshot
/// come from replaying the latest output (the session's ring) into a screen with scrollback
/// when the snapshot is made, which costs a few milliseconds then instead of megabytes always.
#[derive(Debug, Clone)]
pub struct Model {
    tx: mpsc::Sender<ToModel>,
}

impl Model {
    /// Starts the task with a blank screen; snapshots restore up to `history_lines` lines
    /// above it. The task ends when the last handle is dropped.
    pub fn spawn(rows: u16, cols: u16, history_lines: usize) -> Self {
        let (tx, mut rx) = mpsc::channel(MODEL_QUEUE);
        let mut live = Some(Screen::new(rows, cols, 0));
        tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut next = None;
            let mut compacted: Option<Compacted> = None;
            loop {
                let message = match next.take() {
                    Some(message) => message,
                    None => match rx.recv().await {
                        Some(message) => message,
                        None => break,
                    },
                };
                if let ToModel::Compact(reply) = message {
                    if compacted.is_none()
                        && let Some(c) = live.as_ref().and_then(Screen::compact)
                    {
                        compacted = Some(c);
                        live = None;
                    }
                    let _ = reply.send(compacted.is_some()); // the asker may have gone
                    continue;
                }
                // Anything else needs the model: rebuilt from its bytes when compacted (a
                // rebuild that fails, which cannot happen, leaves a blank screen of the size).
                let screen = live.get_or_insert_with(|| {
                    let c = compacted.take();
                    c.as_ref()
                        .and_then(Screen::rebuild)
                        .unwrap_or_else(|| Screen::new(rows, cols, 0))
                });
                match message {
                    ToModel::Output(bytes) => {
                        // Output queued behind this piece goes in with it, so that plain
                        // text scrolling past in many small pieces can be skipped as one run
                        // (see `Skipping`).
                        batch.clear();
                        batch.extend_from_slice(&bytes);
                        while batch.len() < MODEL_BATCH {
                            match rx.try_recv() {
                                Ok(ToModel::Output(more)) => batch.extend_from_slice(&more),
                                Ok(other) => {
                                    next = Some(other);
                                    break;
                                }
                                Err(_) => break,
                            }
                        }
                        screen.process(&batch);
                        if rx.is_empty() {
                            // Idle (or keeping up): hold no buffer between bursts.
                            batch = Vec::new();
                        }
                    }
                    ToModel::Resize(rows, cols) => screen.resize(rows, cols),
                    // The asker may have gone; nothing to do then.
                    ToModel::Snapshot { latest, reply } => {
                        let (rows, cols) = screen.size();
                        let mut replay = Screen::new(rows, cols, history_lines);
                        for piece in &latest {
                            replay.process(piece);
                        }
                        drop(reply.send(screen.snapshot_with(&replay)));
                    }
                    ToModel::Text(reply) => drop(reply.send(screen.text())),
                    ToModel::Compact(_) => {} // handled above
                }
            }
        });
        Self { tx }
    }

    /// Feeds output; waits only when the model is [`MODEL_QUEUE`] pieces behind.
    pub async fn output(&self, bytes: Bytes) {
        let _ = self.tx.send(ToModel::Output(bytes)).await; // a stopped model: snapshots are empty
    }

    /// Follows a resize.
    pub async fn resize(&self, rows: u16, cols: u16) {
        let _ = self.tx.send(ToModel::Resize(rows, cols)).await; // as above
    }

    /// The snapshot after everything fed so far, its history lines replayed from `latest`
    /// (the latest output, ending where the model stands; see [`Screen::snapshot_with`]);
    /// empty if the model task has stopped.
    pub async fn snapshot(&self, latest: Vec<Bytes>) -> Vec<u8> {
        let (reply, rx) = oneshot::channel();
        let message = ToModel::Snapshot { latest, reply };
        if self.tx.send(message).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Reduces the model to the bytes that rebuild it (see [`Compacted`]) until the next
    /// output, resize or question, which rebuild it first. Says whether the model is compacted
    /// now (a model that cannot be rebuilt exactly is left as it is).
    pub async fn compact(&self) -> bool {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(ToModel::Compact(reply)).await.is_err() {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// The visible text after everything fed so far (see [`Screen::text`]).
    pub async fn text(&self) -> String {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(ToModel::Text(reply)).await.is_err() {
            return String::new();
        }
        rx.await.unwrap_or_default()
    }
}

/// How to skip the start of the plain text at the start of `bytes` (up to the first byte
/// that is not plain: the returned end), read from rest on a screen of `rows` × `cols`
/// without a scroll region with the cursor at `cursor` (row, column; the column may be
/// `cols`, a wrap pending): the length to skip, how many lines it would have scrolled off,
/// and the cursor after it. The skipped part leaves the cursor on the bottom row, in a column
/// (not a pending wrap, which a cursor move cannot restore); the rest moves down `rows` times (line feeds or wraps, each
/// scrolling, so every row it leaves on the screen was scrolled in blank during it) and
/// prints a character (the one a later `CSI b` repeats). No plan when the text is too short.
///
/// The cursor is followed exactly as vt100 moves it for these bytes: a printable character
/// advances one column, wrapping to the next row first when the column is `cols`; a line
/// feed moves down and keeps the column; tab stops are every 8 columns; backspace stops at
/// column 0; carriage return goes to column 0. One pass, keeping the last `rows` moves down
/// in `moves`: the cut is just before the `rows`-th move from the end, so exactly `rows`
/// moves follow it.
fn plan_skip(
    bytes: &[u8],
    rows: u16,
    cols: u16,
    cursor: (u16, u16),
    moves: &mut VecDeque<(usize, Cursor)>,
) -> (usize, Option<Skip>) {
    let (rows, cols) = (u64::from(rows), u64::from(cols));
    moves.clear();
    let mut at = Cursor {
        down: 0,
        col: u64::from(cursor.1),
    };
    let mut end = bytes.len();
    for (i, byte) in bytes.iter().enumerate() {
        if !is_plain(*byte) {
            end = i;
            break;
        }
        let before = at;
        at.step(*byte, cols);
        if at.down > before.down {
            if moves.len() as u64 == rows {
                moves.pop_front();
            }
            moves.push_back((i, before));
        }
    }
    let plan = || {
        // The `rows`-th move down from the end: cut just before it, or, when it is a wrap
        // (the cursor stands past the last column then), before the character that took
        // the cursor there from the last column.
        let &(first, before) = moves.front().filter(|_| moves.len() as u64 == rows)?;
        let (cut, cursor_at_cut) = if before.col < cols {
            (first, before)
        } else if cols > 1 && first > 1 && (0x20..=0x7e).contains(&bytes[first - 1]) {
            // A printable character that left the cursor past the last column came from the
            // last column of the same row (with more than one column it did not wrap
            // itself). A line feed can also stand there (it keeps the column): no plan then.
            let col = cols - 1;
            (first - 1, Cursor { col, ..before })
        } else {
            return None;
        };
        let reach = u64::from(cursor.0) + cursor_at_cut.down;
        let printable = bytes[cut..end].iter().any(|b| (0x20..=0x7e).contains(b));
        (cut > 0 && reach >= rows - 1 && printable).then(|| Skip {
            len: cut,
            scrolled: reach - (rows - 1),
            col: cursor_at_cut.col,
        })
    };
    (end, plan())
}

/// A plan from [`plan_skip`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Skip {
    len: usize,
    scrolled: u64,
    col: u64,
}

/// Where the cursor is, relative to where a run began.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    down: u64,
    col: u64,
}

impl Cursor {
    /// vt100's move for a plain byte.
    fn step(&mut self, byte: u8, cols: u64) {
        match byte {
            b'\n' => self.down += 1,
            b'\r' => self.col = 0,
            0x08 => self.col = self.col.saturating_sub(1),
            b'\t' => self.col = (self.col - self.col % 8 + 8).min(cols - 1),
            _ => {
                if self.col >= cols {
                    self.down += 1;
                    self.col = 0;
                }
                self.col += 1;
            }
        }
    }
}

/// What stands in for skipped text: the lines it scrolled off (vt100 counts them, and
/// lets a later taller screen pull that many rows back), then the cursor to where the text
/// left it on the bottom row. A scroll-up scrolls at most a screenful.
fn skip_sequence(rows: u16, skip: Skip) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (full, rest) = (
        skip.scrolled / u64::from(rows),
        skip.scrolled % u64::from(rows),
    );
    for _ in 0..full {
        let _ = write!(out, "\x1b[{rows}S"); // writing into a String cannot fail
    }
    if rest > 0 {
        let _ = write!(out, "\x1b[{rest}S");
    }
    let _ = write!(out, "\x1b[{rows};{}H", skip.col + 1);
    out
}

fn find_enter_alternate(bytes: &[u8]) -> Option<(usize, usize)> {
    // Output is mostly text without escape characters: look only where they are.
    memchr::memchr_iter(0x1b, bytes).find_map(|at| {
        ENTER_ALTERNATE
            .iter()
            .find(|seq| bytes[at..].starts_with(seq))
            .map(|seq| (at, seq.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a terminal shows after `bytes`.
    fn replay(bytes: &[u8], rows: u16, cols: u16) -> Screen {
        let mut screen = Screen::new(rows, cols, 1000);
        screen.process(bytes);
        screen
    }

    #[test]
    fn a_snapshot_reproduces_the_screen_and_its_history() {
        let mut screen = Screen::new(5, 20, 100);
        for i in 0..12 {
            screen.process(format!("line {i}\r\n").as_bytes());
        }
        screen.process(b"\x1b[31mred\x1b[m $ ");
        let copy = replay(&screen.snapshot(), 5, 20);
        assert_eq!(copy.text(), screen.text());
        assert_eq!(
            copy.parser.screen().cursor_position(),
            screen.parser.screen().cursor_position()
        );
        assert_eq!(
            copy.parser.screen().cell(4, 0).unwrap().fgcolor(),
            vt100::Color::Idx(1)
        );
        // The earlier lines are in the copy's scrollback.
        let mut copy = copy;
        copy.parser.screen_mut().set_scrollback(usize::MAX);
        assert!(copy.text().contains("line 0"), "{}", copy.text());
    }

    #[test]
    fn an_alternate_screen_program_is_restored_over_the_main_history() {
        let mut screen = Screen::new(6, 30, 100);
        screen.process(b"MARKER-BEFORE-VIM\r\n$ vim\r\n");
        // vim switches screens in the middle of a chunk, then draws.
        screen.process(b"\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n\x1b[6;1H\"notes.txt\" 0L");
        assert!(screen.alternate());
        let snapshot = screen.snapshot();
        let copy = replay(&snapshot, 6, 30);
        assert!(copy.alternate());
        assert_eq!(copy.text(), screen.text());
        assert!(copy.text().contains("notes.txt"));
        // Leaving vim shows the main screen with the marker.
        let mut copy = copy;
        copy.process(b"\x1b[?1049l");
        assert!(copy.text().contains("MARKER-BEFORE-VIM"), "{}", copy.text());
        screen.process(b"\x1b[?1049l");
        assert!(!screen.alternate());
        assert!(screen.main_capture.is_none());
    }

    #[tokio::test]
    async fn the_model_task_answers_after_the_output_before_the_question() {
        let model = Model::spawn(4, 20, 10);
        for i in 0..(MODEL_QUEUE * 3) {
            model.output(Bytes::from(format!("\rline {i}"))).await;
        }
        model.resize(4, 30).await;
        model.output(Bytes::from_static(b"\r\nlast")).await;
        let text = model.text().await;
        assert!(
            text.contains(&format!("line {}", MODEL_QUEUE * 3 - 1)),
            "{text}"
        );
        assert!(text.ends_with("last"), "{text}");
        let copy = replay(&model.snapshot(Vec::new()).await, 4, 30);
        assert_eq!(copy.text(), text);
    }

    #[tokio::test]
    async fn the_history_comes_from_the_latest_output_and_the_screen_from_the_model() {
        let model = Model::spawn(5, 20, 100);
        let mut latest = Vec::new();
        for i in 0..30 {
            let piece = Bytes::from(format!("line {i}\r\n"));
            model.output(piece.clone()).await;
            latest.push(piece);
        }
        let mut copy = replay(&model.snapshot(latest.clone()).await, 5, 20);
        assert_eq!(copy.text(), model.text().await);
        copy.parser.screen_mut().set_scrollback(usize::MAX);
        assert!(copy.text().contains("line 0"), "{}", copy.text());

        // vim started before the latest output began: the main screen is the one captured
        // at the switch (the model's own rows), under vim's screen.
        model
            .output(Bytes::from_static(b"MARK\r\n\x1b[?1049h\x1b[H\x1b[2J~ vim"))
            .await;
        let late = vec![Bytes::from_static(b"\x1b[1;1H~ vim again")];
        let mut copy = replay(&model.snapshot(late).await, 5, 20);
        assert!(copy.alternate());
        assert_eq!(copy.text(), model.text().await);
        copy.process(b"\x1b[?1049l");
        assert!(copy.text().contains("MARK"), "{}", copy.text());
    }

    /// What the terminal model must equal: vt100 fed every byte.
    fn same_screen(model: &Screen, reference: &Parser) -> Result<(), String> {
        let (a, b) = (model.parser.screen(), reference.screen());
        let pairs = [
            ("contents", a.contents_formatted(), b.contents_formatted()),
            ("state", a.state_formatted(), b.state_formatted()),
            (
                "cursor",
                format!("{:?}", a.cursor_position()),
                format!("{:?}", b.cursor_position()),
            ),
        ];
        for (what, x, y) in pairs {
            if x != y {
                return Err(format!("{what} differs:\n{x:?}\n--- vs ---\n{y:?}"));
            }
        }
        Ok(())
    }

    /// Output, then maybe a resize (rows, cols).
    type Chunk = (Vec<u8>, Option<(u16, u16)>);

    /// Feeds `chunks` (with resizes between them) to a model and to plain vt100, then a probe
    /// that shows hidden state (saved cursor, the character `CSI b` repeats, the scroll
    /// region), comparing after each.
    fn compare(rows: u16, cols: u16, chunks: &[Chunk]) -> Result<u64, String> {
        let mut model = Screen::new(rows, cols, 0);
        let mut reference = Parser::new(dim(rows, 24), dim(cols, 80), 0);
        for (chunk, resize) in chunks {
            model.process(chunk);
            reference.process(chunk);
            same_screen(&model, &reference)?;
            if let Some((r, c)) = resize {
                model.resize(*r, *c);
                reference.set_size(dim(*r, 24), dim(*c, 80));
            }
        }
        let (rows, _) = model.size();
        let probe = format!(
            "\x18\x1b8P\x1b[3bQ{}R\x1b[HS",
            "\r\n".repeat(usize::from(rows) + 1)
        );
        model.process(probe.as_bytes());
        reference.process(probe.as_bytes());
        same_screen(&model, &reference)?;
        Ok(model.skipping.as_ref().map_or(0, |s| s.skipped))
    }

    #[test]
    fn bulk_plain_text_is_skipped_and_the_screen_is_the_same() {
        let mut text = Vec::new();
        for i in 0..2000 {
            text.extend_from_slice(
                format!(
                    "\x1b[32m{i}\x1b[m line of output {}\r\n",
                    "x".repeat(i % 150)
                )
                .as_bytes(),
            );
        }
        // Colour on every line: nothing to skip.
        assert_eq!(compare(24, 80, &[(text, None)]), Ok(0));
        let plain: Vec<u8> = (0..2000)
            .flat_map(|i| format!("{i} line of output {}\r\n", "x".repeat(i % 150)).into_bytes())
            .collect();
        let chunks: Vec<_> = plain
            .chunks(64 * 1024)
            .map(|c| (c.to_vec(), None))
            .collect();
        let skipped = compare(24, 80, &chunks).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            skipped > plain.len() as u64 / 2,
            "skipped {skipped} of {}",
            plain.len()
        );
    }

    #[test]
    fn a_line_feed_at_a_pending_wrap_keeps_the_column() {
        // Found by review: a line exactly as wide as the screen, then a bare line feed (raw
        // mode). The cursor stays past the last column, one row down.
        assert!(compare(2, 2, &[(b"ab\nc\r\ne".to_vec(), None)]).is_ok());
        let grow = Some((5, 2));
        assert!(compare(1, 2, &[(b"ab\n\n\rc".to_vec(), grow), (Vec::new(), None)]).is_ok());
        let mut wide = b"\x1b[24H".to_vec();
        wide.extend_from_slice(&[b'x'; 80]);
        wide.extend_from_slice(b"\nY");
        wide.extend_from_slice(&b"\r\n".repeat(23));
        wide.extend_from_slice(b"end");
        assert!(compare(24, 80, &[(wide, None)]).is_ok());
    }

    #[test]
    fn one_long_line_wrapping_many_times_is_skipped_too() {
        // `head -c N /dev/zero | base64 -w 0`: one line, wrapped at every column limit.
        let line = "QUFB".repeat(50_000);
        let chunks: Vec<_> = line
            .as_bytes()
            .chunks(4000)
            .map(|c| (c.to_vec(), None))
            .chain([(b"\r\n$ ".to_vec(), None)])
            .collect();
        let skipped = compare(24, 80, &chunks).unwrap_or_else(|e| panic!("{e}"));
        // Each piece is fed from its last screenful (80 × 24 = 1,920 bytes) on.
        assert!(skipped > 50 * (4000 - 2 * 1920), "skipped {skipped}");
    }

    #[test]
    fn a_scroll_region_on_the_main_screen_stops_skipping_until_it_is_lifted() {
        let lines = |n: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|i| format!("line {i}\r\n").into_bytes())
                .collect()
        };
        let mut chunks = vec![(b"\x1b[3;10r".to_vec(), None), (lines(300), None)];
        assert_eq!(compare(24, 80, &chunks), Ok(0));
        // Set on the alternate screen only: the main screen's still skips.
        chunks[0].0 = b"\x1b[?1049h\x1b[3;10r\x1b[?1049l".to_vec();
        assert!(compare(24, 80, &chunks).is_ok_and(|n| n > 0));
        // Lifted the way vim and less do on exit.
        chunks[0].0 = b"\x1b[3;10rabc\x1b[1;24r".to_vec();
        assert!(compare(24, 80, &chunks).is_ok_and(|n| n > 0));
        chunks[0].0 = b"\x1b[3;10rabc\x1bc".to_vec();
        assert!(compare(24, 80, &chunks).is_ok_and(|n| n > 0));
    }

    #[test]
    fn lines_scrolled_off_while_skipping_still_count_when_the_screen_grows() {
        // vt100 pulls back as many rows as were scrolled off (up to the growth) when the
        // screen gets taller; found by the property test below.
        let grow = Some((13, 35));
        assert!(compare(1, 1, &[(b"\r\n9\n".to_vec(), grow), (Vec::new(), None)]).is_ok());
        assert!(
            compare(1, 2, &[(b"\r\n9\n8".to_vec(), grow), (Vec::new(), None)]).is_ok_and(|n| n > 0)
        );
        let long: Vec<u8> = (0..500)
            .flat_map(|i| format!("{i}: {}\t|\x08\r\n", "w".repeat(i % 300)).into_bytes())
            .collect();
        let chunks = [(long, Some((60, 100))), (b"tail".to_vec(), Some((10, 20)))];
        assert!(compare(24, 80, &chunks).is_ok_and(|n| n > 0));
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        let ending = proptest::sample::select(vec![&b"\r\n"[..], b"\r\n", b"\n", b"\r", b""]);
        let plain_line = (
            proptest::collection::vec(
                prop_oneof![8 => 0x20u8..0x7f, 1 => Just(b'\t'), 1 => Just(0x08u8)],
                0..100,
            ),
            ending,
        )
            .prop_map(|(mut line, ending)| {
                line.extend_from_slice(ending);
                line
            });
        let fixed: Vec<&'static [u8]> = vec![
            b"\n",
            b"\r",
            b"\r\n",
            b"\x1b[31m",
            b"\x1b[m",
            b"\x1b[?1049h",
            b"\x1b[?1049l",
            b"\x1b[?47h",
            b"\x1b[?47l",
            b"\x1bc",
            b"\x1b]0;ti\ntle\x07",
            b"\x1b]0;x",
            b"\x1bP1$r\r\n",
            b"\x1b\\",
            b"\x18",
            b"\x1a",
            b"\x1b[",
            b"\x1b[1;",
            b"\x1b[3b",
            b"\x1b7",
            b"\x1b8",
            b"\xc3\xa9",
            b"\xe2\x82",
            b"\xff",
            b"\x9c",
            b"\x1b[?25l",
            b"\x1b[4h",
            b"\x1b[4l",
            b"\x1b[?6h",
            b"\x1b[?6l",
            b"\x1b[?7l",
            b"\x1b[?7h",
            b"\x1b[2J",
            b"\x1bM",
            b"\x1bD",
            b"\x1bE",
            b"\x1b[r",
            b"\x1b[1:2;3r",
            b"\x1b[?1r",
            b"\x1b[1 r",
            b"\x1b_apc\n",
            b"\x1bX",
            b"\x1b(0",
            b"\x0e",
            b"\x0f",
            b"\x0b",
            b"\x0c",
            b"\x07",
        ];
        prop_oneof![
            6 => plain_line,
            3 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
            1 => (0u16..40, 0u16..40).prop_map(|(r, c)| format!("\x1b[{r};{c}H").into_bytes()),
            1 => (0u16..30, 0u16..30).prop_map(|(t, b)| format!("\x1b[{t};{b}r").into_bytes()),
            1 => proptest::collection::vec(any::<u8>(), 0..6),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Skipping never changes what the model shows, whatever the stream.
        #[test]
        fn skipping_plain_text_never_changes_the_screen(
            rows in 1u16..14,
            cols in 1u16..90,
            tokens in proptest::collection::vec(token(), 0..400),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            resizes in proptest::collection::vec(proptest::option::weighted(0.3, (1u16..14, 1u16..90)), 12),
        ) {
            let stream: Vec<u8> = tokens.concat();
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut from = 0;
            for (i, cut) in cuts.into_iter().chain([stream.len()]).enumerate() {
                chunks.push((stream[from..cut].to_vec(), resizes.get(i).copied().flatten()));
                from = cut;
            }
            if let Err(e) = compare(rows, cols, &chunks) {
                proptest::prop_assert!(false, "{}", e);
            }
        }
    }

    /// A live model (no scrollback) fed `before`, compacted and rebuilt, then fed `after`,
    /// against a twin never compacted: the same screen, snapshot and state at each step.
    fn compacted_twin(rows: u16, cols: u16, before: &[u8], after: &[u8]) -> Option<Screen> {
        let mut twin = Screen::new(rows, cols, 0);
        let mut model = Screen::new(rows, cols, 0);
        twin.process(before);
        model.process(before);
        let compacted = model.compact()?;
        assert!(compacted.size() < 4096, "{} bytes", compacted.size());
        drop(model);
        let mut model = Screen::rebuild(&compacted).unwrap();
        assert_eq!(model.snapshot(), twin.snapshot());
        assert_eq!(model.main_capture, twin.main_capture);
        model.process(after);
        twin.process(after);
        assert_eq!(model.snapshot(), twin.snapshot());
        assert!(same_screen(&model, &twin.parser).is_ok());
        Some(model)
    }

    #[test]
    fn a_compacted_model_rebuilds_to_the_same_screen() {
        let lines: Vec<u8> = (1..=3000)
            .flat_map(|i| format!("\x1b[32m{i}\x1b[m\r\n").into_bytes())
            .chain(b"\x1b[1mbash$ \x1b[m\x1b[?2004h".iter().copied())
            .collect();
        assert!(compacted_twin(24, 80, &lines, b"ls\r\nfile\r\n\x1b[7mbash$ ").is_some());
        // The lines scrolled off still count when the screen grows.
        let mut model = compacted_twin(24, 80, &lines, b"").unwrap();
        let mut twin = Screen::new(24, 80, 0);
        twin.process(&lines);
        model.resize(60, 100);
        twin.resize(60, 100);
        assert!(same_screen(&model, &twin.parser).is_ok());
        // A program on the alternate screen, and the main screen under it when it ends.
        let vim = [
            &lines[..],
            b"vim\r\n\x1b[?1049h\x1b[H\x1b[2J~\r\n~\r\n\x1b[24;1H\"notes\" 0L",
        ]
        .concat();
        let model = compacted_twin(24, 80, &vim, b"\x1b[2;1Hx\x1b[?1049l$ ").unwrap();
        assert!(model.text().contains("vim"), "{}", model.text());
        // A blank screen, and one barely used.
        assert!(compacted_twin(24, 80, b"", b"$ ").is_some());
        assert!(compacted_twin(5, 10, b"$ ", b"exit\r\n").is_some());
    }

    #[test]
    fn a_model_with_state_its_bytes_cannot_carry_is_not_compacted() {
        let mut screen = Screen::new(24, 80, 0);
        // A scroll region (a status line kept at the bottom).
        screen.process(b"\x1b[1;23rtop\r\n");
        assert!(screen.compact().is_none());
        let mut screen = Screen::new(24, 80, 0);
        // A saved cursor elsewhere than where a reset puts it.
        screen.process(b"\x1b[5;7H\x1b7\x1b[Hx");
        assert!(screen.compact().is_none());
        // In the middle of a sequence.
        let mut screen = Screen::new(24, 80, 0);
        screen.process(b"abc\x1b[3");
        assert!(screen.compact().is_none());
        // A model with scrollback (a replay) is never compacted.
        assert!(Screen::new(24, 80, 10).compact().is_none());
    }

    #[tokio::test]
    async fn the_model_task_compacts_and_answers_as_before() {
        let model = Model::spawn(5, 20, 100);
        let twin = Model::spawn(5, 20, 100);
        let mut latest = Vec::new();
        for i in 0..30 {
            let piece = Bytes::from(format!("line {i}\r\n"));
            model.output(piece.clone()).await;
            twin.output(piece.clone()).await;
            latest.push(piece);
        }
        assert!(model.compact().await);
        assert!(model.compact().await, "compacted still");
        assert_eq!(
            model.snapshot(latest.clone()).await,
            twin.snapshot(latest.clone()).await
        );
        assert!(model.compact().await);
        for m in [&model, &twin] {
            m.output(Bytes::from_static(b"after\r\n$ ")).await;
            m.resize(6, 22).await;
        }
        assert_eq!(model.text().await, twin.text().await);
        assert_eq!(
            model.snapshot(latest.clone()).await,
            twin.snapshot(latest).await
        );
    }

    #[test]
    fn sizes_follow_resizes_and_zero_is_safe() {
        let mut screen = Screen::new(0, 0, 10);
        assert_eq!(screen.size(), (24, 80));
        screen.resize(40, 120);
        assert_eq!(screen.size(), (40, 120));
    }
}
