//! Where the escape-sequence parser inside the terminal model stands, followed byte by byte
//! without running it, so the model can tell where plain text begins and what a sequence
//! that matters to it (a scroll region, a reset) said.
//!
//! The states and transitions are those of the DEC ANSI parser as vte 0.15 (the parser in
//! vt100) implements it, collapsed to what decides "is the parser at rest": a byte is plain
//! text only when the parser is in its ground state with no UTF-8 sequence half read. Getting
//! this wrong in the unsafe direction would let the model skip bytes that were part of a
//! sequence; `screen.rs`'s property test feeds random streams (sequences cut anywhere,
//! strings, cancels, stray bytes) through both paths and compares the screens.

/// The parser's state, as far as it matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    Escape,
    EscapeIntermediate,
    CsiEntry,
    CsiParam,
    CsiIntermediate,
    CsiIgnore,
    DcsEntry,
    DcsParam,
    DcsIntermediate,
    DcsIgnore,
    DcsPassthrough,
    Osc,
    SosPmApc,
}

/// A sequence the terminal model needs to know about, completed by the byte just stepped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// `CSI Pt ; Pb r` (DECSTBM) without intermediates; `None` when its parameters are of a
    /// shape this tracker does not read (sub-parameters, more than two), which callers treat
    /// as "a region may be set".
    ScrollRegion(Option<(u32, u32)>),
    /// `ESC c` (RIS): everything reset, both screens' scroll regions included.
    Reset,
}

/// The tracker. Starts, like the parser, at rest.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    state: State,
    /// The last byte was handled in the ground state and was ASCII: no UTF-8 sequence is
    /// pending, so the next byte is read on its own. Starts true.
    settled: bool,
    /// CSI parameters so far: up to two values, or `None` once their shape is not plain
    /// `digits ; digits`.
    params: Option<([u32; 2], usize)>,
    /// The CSI sequence has intermediates or a private marker: not DECSTBM, whatever its end.
    collected: bool,
}

/// Bytes that are plain text for the model: printable ASCII and the controls that only move
/// the cursor within the screen (tab, backspace, carriage return, line feed).
pub fn is_plain(byte: u8) -> bool {
    matches!(byte, 0x20..=0x7e | b'\t' | 0x08 | b'\r' | b'\n')
}

impl Tracker {
    /// A tracker at rest.
    pub fn new() -> Self {
        Self {
            settled: true,
            ..Self::default()
        }
    }

    /// Whether the next byte, if [`is_plain`], is read as plain text.
    pub fn at_rest(&self) -> bool {
        self.state == State::Ground && self.settled
    }

    /// Steps over one byte; says whether it completed a sequence of interest.
    pub fn step(&mut self, byte: u8) -> Option<Seen> {
        use State::*;
        // Bytes that act the same in every state but ground and escape ("anywhere"):
        // CAN and SUB cancel, ESC starts over.
        let anywhere = |state: &mut State| match byte {
            0x18 | 0x1a => *state = Ground,
            0x1b => *state = Escape,
            _ => {}
        };
        let c0 = matches!(byte, 0x00..=0x17 | 0x19 | 0x1c..=0x1f);
        match self.state {
            Ground => {
                if byte == 0x1b {
                    self.state = Escape;
                }
                self.settled = byte < 0x80;
                return None;
            }
            Escape => match byte {
                0x18 | 0x1a => self.state = Ground,
                _ if c0 => {}
                0x20..=0x2f => self.state = EscapeIntermediate,
                0x50 => self.state = DcsEntry,
                0x58 | 0x5e | 0x5f => self.state = SosPmApc,
                0x5b => {
                    self.state = CsiEntry;
                    self.params = Some(([0, 0], 0));
                    self.collected = false;
                }
                0x5d => self.state = Osc,
                0x63 => {
                    self.state = Ground;
                    self.settled = true;
                    return Some(Seen::Reset);
                }
                0x30..=0x7e => self.state = Ground,
                _ => {} // ESC again, DEL, bytes above ASCII: no change
            },
            EscapeIntermediate => match byte {
                _ if c0 => {}
                0x20..=0x2f | 0x7f => {}
                0x30..=0x7e => self.state = Ground,
                _ => anywhere(&mut self.state),
            },
            CsiEntry | CsiParam | CsiIntermediate => match byte {
                _ if c0 => {}
                0x20..=0x2f => {
                    self.state = CsiIntermediate;
                    self.collected = true;
                }
                0x30..=0x3b if self.state == CsiIntermediate => self.state = CsiIgnore,
                0x30..=0x39 => {
                    self.state = CsiParam;
                    if let Some((values, at)) = &mut self.params {
                        let digit = u32::from(byte - b'0');
                        values[*at] = values[*at].saturating_mul(10).saturating_add(digit);
                    }
                }
                0x3a => {
                    self.state = CsiParam;
                    self.params = None;
                }
                0x3b => {
                    self.state = CsiParam;
                    self.params = match self.params {
                        Some((values, 0)) => Some((values, 1)),
                        _ => None,
                    };
                }
                0x3c..=0x3f if self.state == CsiEntry => {
                    self.state = CsiParam;
                    self.collected = true; // a private marker
                }
                0x3c..=0x3f => self.state = CsiIgnore,
                0x40..=0x7e => {
                    self.state = Ground;
                    self.settled = true;
                    if byte == b'r' && !self.collected {
                        let region = self.params.map(|(values, _)| (values[0], values[1]));
                        return Some(Seen::ScrollRegion(region));
                    }
                }
                0x7f => {}
                _ => anywhere(&mut self.state),
            },
            CsiIgnore => match byte {
                _ if c0 => {}
                0x20..=0x3f | 0x7f => {}
                0x40..=0x7e => {
                    self.state = Ground;
                    self.settled = true;
                }
                _ => anywhere(&mut self.state),
            },
            DcsEntry | DcsParam | DcsIntermediate => match byte {
                _ if c0 => {}
                0x20..=0x2f => self.state = DcsIntermediate,
                0x30..=0x3b if self.state == DcsIntermediate => self.state = DcsIgnore,
                0x30..=0x3b => self.state = DcsParam,
                0x3c..=0x3f if self.state == DcsEntry => self.state = DcsParam,
                0x3c..=0x3f => self.state = DcsIgnore,
                0x40..=0x7e => self.state = DcsPassthrough,
                0x7f => {}
                _ => anywhere(&mut self.state),
            },
            DcsPassthrough => match byte {
                0x18 | 0x1a | 0x9c => self.state = Ground,
                0x1b => self.state = Escape,
                _ => {}
            },
            Osc => match byte {
                0x07 | 0x18 | 0x1a => self.state = Ground,
                0x1b => self.state = Escape,
                _ => {}
            },
            DcsIgnore | SosPmApc => anywhere(&mut self.state),
        }
        if self.state == Ground {
            // Left a sequence on an ASCII byte: nothing is pending.
            self.settled = true;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8]) -> (Tracker, Vec<Seen>) {
        let mut tracker = Tracker::new();
        let seen = bytes.iter().filter_map(|b| tracker.step(*b)).collect();
        (tracker, seen)
    }

    #[test]
    fn sequences_end_where_the_parser_returns_to_rest() {
        for bytes in [
            &b"\x1b[31m"[..],
            b"\x1b[?1049h",
            b"\x1b]0;title\x07",
            b"\x1b]0;title\x1b\\",
            b"\x1bP1$r\x1b\\",
            b"\x1b(B",
            b"\x1b[1;2\x18",
            b"\x1b_apc\x1b\\",
        ] {
            let (tracker, _) = run(bytes);
            assert!(tracker.at_rest(), "{bytes:?}");
        }
        for bytes in [
            &b"\x1b["[..],
            b"\x1b[1;2",
            b"\x1b]0;title",
            b"\x1bPq#0",
            b"\x1b[?",
            b"\x1b[1\n", // a line feed inside CSI is executed, the sequence goes on
            b"\xe2\x82",
        ] {
            let (tracker, _) = run(bytes);
            assert!(!tracker.at_rest(), "{bytes:?}");
        }
    }

    #[test]
    fn scroll_regions_and_resets_are_reported() {
        assert_eq!(run(b"\x1b[2;20r").1, [Seen::ScrollRegion(Some((2, 20)))]);
        assert_eq!(run(b"\x1b[r").1, [Seen::ScrollRegion(Some((0, 0)))]);
        assert_eq!(run(b"\x1b[;9r").1, [Seen::ScrollRegion(Some((0, 9)))]);
        assert_eq!(run(b"\x1b[1:2;5r").1, [Seen::ScrollRegion(None)]);
        assert_eq!(run(b"\x1b[1;2;3r").1, [Seen::ScrollRegion(None)]);
        assert!(
            run(b"\x1b[?1r").1.is_empty(),
            "a private marker: not DECSTBM"
        );
        assert!(run(b"\x1b[1 r").1.is_empty(), "intermediates: not DECSTBM");
        assert_eq!(run(b"\x1bc").1, [Seen::Reset]);
        assert!(run(b"\x1b(c").1.is_empty());
    }
}
