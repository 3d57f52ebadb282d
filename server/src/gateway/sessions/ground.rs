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
    /// No UTF-8 sequence is pending: the last byte was ASCII, handled in the ground state or
    /// ending a sequence. In the ground state this makes the next byte read on its own.
    /// Starts true.
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
        // What vte does with CAN, SUB and ESC where a state has no rule of its own for them
        // ("anywhere"): CAN and SUB cancel, ESC starts over.
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
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

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

    /// What vte itself did for one byte, as far as the tracker claims to know.
    #[derive(Debug, Default)]
    struct Oracle {
        events: Vec<Event>,
    }

    #[derive(Debug, PartialEq)]
    enum Event {
        Print(char),
        Other,
        /// DECSTBM: the first value of each parameter, as vt100 reads them.
        Region(Vec<u16>),
        Reset,
    }

    impl vte::Perform for Oracle {
        fn print(&mut self, c: char) {
            self.events.push(Event::Print(c));
        }
        fn execute(&mut self, _byte: u8) {
            self.events.push(Event::Other);
        }
        fn hook(&mut self, _: &vte::Params, _: &[u8], _: bool, _: char) {
            self.events.push(Event::Other);
        }
        fn put(&mut self, _byte: u8) {
            self.events.push(Event::Other);
        }
        fn unhook(&mut self) {
            self.events.push(Event::Other);
        }
        fn osc_dispatch(&mut self, _: &[&[u8]], _: bool) {
            self.events.push(Event::Other);
        }
        fn csi_dispatch(
            &mut self,
            params: &vte::Params,
            intermediates: &[u8],
            _: bool,
            action: char,
        ) {
            self.events
                .push(if action == 'r' && intermediates.is_empty() {
                    Event::Region(
                        params
                            .iter()
                            .map(|p| p.first().copied().unwrap_or(0))
                            .collect(),
                    )
                } else {
                    Event::Other
                });
        }
        fn esc_dispatch(&mut self, intermediates: &[u8], _: bool, byte: u8) {
            self.events
                .push(if byte == b'c' && intermediates.is_empty() {
                    Event::Reset
                } else {
                    Event::Other
                });
        }
    }

    /// Whether vte, after `prefix`, reads a plain character as just that character.
    fn vte_at_rest(prefix: &[u8]) -> bool {
        let (mut parser, mut oracle) = (vte::Parser::new(), Oracle::default());
        parser.advance(&mut oracle, prefix);
        oracle.events.clear();
        parser.advance(&mut oracle, b"X");
        oracle.events == [Event::Print('X')]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// The tracker against vte itself, byte by byte: "at rest" only where vte is (and,
        /// after an ASCII byte, wherever vte is), and scroll regions and resets exactly
        /// where vte dispatches them, with the values vt100 reads.
        #[test]
        fn the_tracker_agrees_with_vte(
            bytes in proptest::collection::vec(proptest::sample::select(vec![
                0x1bu8, 0x1b, 0x1b, b'[', b'[', b']', b'P', b'X', b'^', b'_', b'c', b'r', b'r',
                b'0', b'1', b'2', b'9', b';', b';', b':', b'?', b' ', b'$', b'm', b'H', b'\\',
                b'\n', b'a', 0x18, 0x1a, 0x07, 0x9c, 0xc3, 0xa9, 0xe2, 0x82, 0xff, 0x7f,
                0x90, 0x9b, 0x00,
            ]), 0..200),
        ) {
            let mut tracker = Tracker::new();
            let (mut parser, mut oracle) = (vte::Parser::new(), Oracle::default());
            for (i, byte) in bytes.iter().enumerate() {
                let seen = tracker.step(*byte);
                oracle.events.clear();
                parser.advance(&mut oracle, &[*byte]);
                let region = oracle.events.iter().find_map(|e| match e {
                    Event::Region(values) => Some(values.clone()),
                    _ => None,
                });
                let reset = oracle.events.contains(&Event::Reset);
                match seen {
                    Some(Seen::ScrollRegion(read)) => {
                        let Some(values) = region else {
                            return Err(TestCaseError::fail(format!("no DECSTBM at {i}: {bytes:?}")));
                        };
                        if let Some((top, bottom)) = read {
                            let at = |n: usize| u32::from(values.get(n).copied().unwrap_or(0));
                            prop_assert_eq!((top.min(65535), bottom.min(65535)), (at(0), at(1)), "{:?}", bytes);
                        }
                    }
                    Some(Seen::Reset) => prop_assert!(reset, "no RIS at {}: {:?}", i, bytes),
                    None => prop_assert!(region.is_none() && !reset, "missed at {}: {:?}", i, bytes),
                }
                let rest = vte_at_rest(&bytes[..=i]);
                if tracker.at_rest() {
                    prop_assert!(rest, "tracker at rest, vte not, after {:?}", &bytes[..=i]);
                } else if *byte < 0x80 {
                    prop_assert!(!rest, "vte at rest, tracker not, after {:?}", &bytes[..=i]);
                }
            }
        }
    }
}
