//! The server-side terminal model of a session: a vt100 parser fed with every output byte, so
//! a browser that attaches (a reload, a second tab, a new laptop) gets the screen as it is —
//! alternate-screen programs such as vim, less and top included, with colours and the cursor —
//! and the lines above it, not a blank page.
//!
//! vt100 exposes only the active grid, so when a program switches to the alternate screen the
//! main screen's history is captured at that moment (bounded by the scrollback) and replayed
//! beneath the alternate screen on attach.

use std::num::NonZeroU16;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use vt100::Parser;
use vt100::capture::{BasicFormattedCaptureRange, BasicFormattedCaptureState};

/// The sequences that switch to the alternate screen (xterm's three variants).
const ENTER_ALTERNATE: [&[u8]; 3] = [b"\x1b[?1049h", b"\x1b[?1047h", b"\x1b[?47h"];

/// A session's terminal model.
pub struct Screen {
    parser: Parser,
    /// The main screen's history and rows, captured when the alternate screen was entered.
    main_capture: Option<String>,
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
            self.parser.process(&bytes[..at]);
            if !self.parser.screen().alternate_screen() {
                self.main_capture = Some(self.history());
            }
            self.parser.process(&bytes[at..at + len]);
            bytes = &bytes[at + len..];
        }
        self.parser.process(bytes);
        if !self.parser.screen().alternate_screen() {
            self.main_capture = None;
        }
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

    /// The visible screen as plain text (rows joined by newlines), for tests and logs.
    pub fn text(&self) -> String {
        self.parser.screen().contents()
    }

    /// Whether a program has the alternate screen.
    pub fn alternate(&self) -> bool {
        self.parser.screen().alternate_screen()
    }
}

/// Output pieces (and resizes, questions) queued towards a session's model task. When the
/// model falls this far behind, the session waits for it, so a model never holds more than
/// this many unprocessed pieces.
pub const MODEL_QUEUE: usize = 256;

#[derive(Debug)]
enum ToModel {
    Output(Bytes),
    Resize(u16, u16),
    Snapshot {
        latest: Vec<Bytes>,
        reply: oneshot::Sender<Vec<u8>>,
    },
    Text(oneshot::Sender<String>),
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
        let mut screen = Screen::new(rows, cols, 0);
        tokio::spawn(async move {
            while let Some(message) = rx.recv().await {
                match message {
                    ToModel::Output(bytes) => screen.process(&bytes),
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

    /// The visible text after everything fed so far (see [`Screen::text`]).
    pub async fn text(&self) -> String {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(ToModel::Text(reply)).await.is_err() {
            return String::new();
        }
        rx.await.unwrap_or_default()
    }
}

fn find_enter_alternate(bytes: &[u8]) -> Option<(usize, usize)> {
    // One pass over the escape characters (output is mostly text without them).
    bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == 0x1b)
        .find_map(|(at, _)| {
            ENTER_ALTERNATE
                .iter()
                .find(|seq| bytes[at..].starts_with(seq))
                .map(|seq| (at, seq.len()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sizes_follow_resizes_and_zero_is_safe() {
        let mut screen = Screen::new(0, 0, 10);
        assert_eq!(screen.size(), (24, 80));
        screen.resize(40, 120);
        assert_eq!(screen.size(), (40, 120));
    }
}
