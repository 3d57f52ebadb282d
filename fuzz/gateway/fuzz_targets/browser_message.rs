//! A browser's text message on the terminal's WebSocket (`http::attach::parse_control`):
//! arbitrary bytes, as the socket would hand over any UTF-8 text.
//!
//! Checks: nothing panics; what is accepted is in bounds (a size of 1 to `MAX_DIMENSION` each);
//! an accepted message written back as JSON reads back the same; a refusal has words (it is
//! the close reason the page shows) and stays short enough for a close frame's reason once
//! cut (the relay cuts it to 123 bytes).

#![no_main]

use libfuzzer_sys::fuzz_target;
use porthole::gateway::http::attach::{Control, MAX_DIMENSION, parse_control};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_control(text) {
        Ok(control) => {
            if let Control::Resize { cols, rows } = control {
                assert!((1..=MAX_DIMENSION).contains(&cols), "{cols}");
                assert!((1..=MAX_DIMENSION).contains(&rows), "{rows}");
            }
            let again = serde_json::to_string(&control).unwrap();
            assert_eq!(parse_control(&again), Ok(control), "{again}");
        }
        Err(reason) => {
            assert!(!reason.trim().is_empty());
            assert!(reason.starts_with("bad "), "{reason}");
        }
    }
});
