//! Session recordings: asciicast v2 (a JSON header line, then `[seconds, "o"|"r"|"i", data]`
//! event lines; `"m"` markers name who typed, see [`Recorder::marker`]), written by the gateway
//! as the session runs — the agent on the node has no
//! part in it, so root on the node cannot erase it. Output and resizes always; input only when
//! `recordings.input` is on, since input holds passwords.
//!
//! Output arrives in arbitrary chunks; a UTF-8 sequence split across two chunks is held back
//! until it is whole, so every `o` event is valid text and the concatenation of the events is
//! exactly the bytes the session printed (invalid bytes become U+FFFD).
//!
//! The file's SHA-256 and size are computed as it is written and go into the session's end
//! audit event, so an auditor can tell that the recording is the one that was made.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::indexer::Indexer;
pub use crate::gateway::store::recordings::{CONTENT_TYPE, Finished, path_of};

/// The write buffer of a recording (std's default); let go while the session is quiet.
const WRITE_BUFFER: usize = 8 * 1024;

/// A recording being written.
pub struct Recorder {
    path: PathBuf,
    /// The open file; `None` while the session is quiet ([`Recorder::compact`] closes it, so an
    /// idle session holds one descriptor, its data channel, not two), reopened to append by
    /// the next line.
    file: Option<BufWriter<File>>,
    hasher: Sha256,
    bytes: u64,
    started: Instant,
    /// How long it recorded before this gateway carried it on (added to event times).
    carried: std::time::Duration,
    /// The tail of the last output chunk that is an incomplete UTF-8 sequence.
    partial: Vec<u8>,
    record_input: bool,
    failed: Option<String>,
    /// The text index of the output, for search (`with_index`).
    index: Option<Indexer>,
}

/// A recording carried from one gateway to another in a hand-over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Carried {
    /// The file so far (header and events).
    #[serde(with = "crate::gateway::sessions::handover::base64_bytes")]
    pub written: Vec<u8>,
    /// Output held back (an incomplete UTF-8 sequence).
    #[serde(with = "crate::gateway::sessions::handover::base64_bytes")]
    pub partial: Vec<u8>,
    /// Microseconds since the recording started.
    pub elapsed_us: u64,
    /// Whether input is recorded.
    pub record_input: bool,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Recorder {
    /// Creates `dir/<session>.cast` and writes the header.
    pub fn create(
        dir: &Path,
        session_id: &str,
        cols: u16,
        rows: u16,
        title: &str,
        record_input: bool,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = path_of(dir, session_id);
        let file = BufWriter::with_capacity(WRITE_BUFFER, File::create(&path)?);
        let mut recorder = Self {
            path,
            file: Some(file),
            hasher: Sha256::new(),
            bytes: 0,
            started: Instant::now(),
            carried: std::time::Duration::ZERO,
            partial: Vec::new(),
            record_input,
            failed: None,
            index: None,
        };
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let header = json!({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": timestamp,
            "title": title,
            "env": {"TERM": "xterm-256color"},
        });
        recorder.line(&header.to_string());
        Ok(recorder)
    }

    /// Also indexes the output for search ([`super::indexer`]).
    pub fn with_index(mut self, index: Indexer) -> Self {
        self.index = Some(index);
        self
    }

    fn line(&mut self, text: &str) {
        if self.failed.is_some() {
            return;
        }
        let file = match &mut self.file {
            Some(file) => Ok(file),
            // Quiet until now: the file was closed ([`Recorder::compact`]); it is appended to.
            None => std::fs::OpenOptions::new()
                .append(true)
                .open(&self.path)
                .map(|f| self.file.insert(BufWriter::with_capacity(WRITE_BUFFER, f))),
        };
        let result = file.and_then(|file| {
            file.write_all(text.as_bytes())
                .and_then(|()| file.write_all(b"\n"))
        });
        match result {
            Ok(()) => {
                self.hasher.update(text.as_bytes());
                self.hasher.update(b"\n");
                self.bytes += text.len() as u64 + 1;
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), "recording stopped: {e}");
                self.failed = Some(e.to_string());
            }
        }
    }

    fn event(&mut self, kind: &str, data: &str) {
        let t = (self.carried + self.started.elapsed()).as_secs_f64();
        // Serialised straight from the borrowed text (no JSON value holding a copy of it).
        let event = ((t * 1e6).round() / 1e6, kind, data);
        let line = serde_json::to_string(&event).unwrap_or_default(); // a tuple of plain values cannot fail
        self.line(&line);
        if let (Some(index), "o") = (&mut self.index, kind) {
            index.output(t, data);
        }
    }

    /// Records output.
    pub fn output(&mut self, bytes: &[u8]) {
        // Usually nothing is carried over and the chunk is read in place.
        let joined;
        let all = if self.partial.is_empty() {
            bytes
        } else {
            joined = [std::mem::take(&mut self.partial).as_slice(), bytes].concat();
            joined.as_slice()
        };
        let (whole, tail) = all.split_at(all.len() - incomplete_tail(all));
        self.partial = tail.to_vec();
        if !whole.is_empty() {
            self.event("o", &String::from_utf8_lossy(whole));
        }
    }

    /// Records a resize.
    pub fn resize(&mut self, cols: u32, rows: u32) {
        self.event("r", &format!("{cols}x{rows}"));
    }

    /// Records a marker (asciicast v2's `"m"` event, a label at a moment): the gateway writes
    /// one naming the author whenever the person typing changes (`input by alice`), whether
    /// input is recorded or not (asciicast's input events have no author field).
    pub fn marker(&mut self, label: &str) {
        self.event("m", label);
    }

    /// Records input, when the configuration asks for it.
    pub fn input(&mut self, bytes: &[u8]) {
        if self.record_input {
            let text = String::from_utf8_lossy(bytes).into_owned();
            self.event("i", &text);
        }
    }

    /// Writes buffered lines to the file (called every second).
    pub fn flush(&mut self) {
        if let Some(index) = &mut self.index {
            index.flush();
        }
        if self.failed.is_none()
            && let Some(file) = &mut self.file
            && let Err(e) = file.flush()
        {
            tracing::error!(path = %self.path.display(), "recording stopped: {e}");
            self.failed = Some(e.to_string());
        }
    }

    /// For a quiet session: writes what is buffered and closes the file, letting go of its
    /// descriptor and write buffer (the next line reopens it to append), and of the partial
    /// line and queue memory of the index.
    pub fn compact(&mut self) {
        self.flush();
        if self.failed.is_none() {
            self.file = None;
        }
        self.partial.shrink_to_fit();
        if let Some(index) = &mut self.index {
            index.compact();
        }
    }

    /// Stops recording here for a hand-over to another gateway: the file's lines so far, the
    /// output held back, and how long it has been recording. The file is removed (the
    /// receiver writes it on, [`Recorder::resume`]); the search index is finished here.
    pub fn freeze(mut self) -> Result<Carried, String> {
        if let Some(index) = self.index.take() {
            index.finish();
        }
        if let Some(e) = &self.failed {
            return Err(format!("the recording had stopped: {e}"));
        }
        if let Some(file) = &mut self.file {
            file.flush().map_err(|e| e.to_string())?;
        }
        let written = std::fs::read(&self.path).map_err(|e| e.to_string())?;
        let _ = std::fs::remove_file(&self.path); // the receiver holds it now
        Ok(Carried {
            written,
            partial: std::mem::take(&mut self.partial),
            elapsed_us: u64::try_from((self.carried + self.started.elapsed()).as_micros())
                .unwrap_or(u64::MAX),
            record_input: self.record_input,
        })
    }

    /// Goes on with a recording another gateway started ([`Recorder::freeze`]), in `dir`.
    pub fn resume(dir: &Path, session_id: &str, carried: Carried) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = path_of(dir, session_id);
        let mut file = BufWriter::with_capacity(WRITE_BUFFER, File::create(&path)?);
        file.write_all(&carried.written)?;
        let mut hasher = Sha256::new();
        hasher.update(&carried.written);
        let elapsed = std::time::Duration::from_micros(carried.elapsed_us);
        Ok(Self {
            path,
            file: Some(file),
            hasher,
            bytes: carried.written.len() as u64,
            started: Instant::now(),
            carried: elapsed,
            partial: carried.partial,
            record_input: carried.record_input,
            failed: None,
            index: None,
        })
    }

    /// Writes what is held back and closes the file.
    pub fn finish(mut self) -> Finished {
        if !self.partial.is_empty() {
            let rest = std::mem::take(&mut self.partial);
            self.event("o", &String::from_utf8_lossy(&rest));
        }
        if let Some(index) = self.index.take() {
            index.finish();
        }
        self.flush();
        Finished {
            path: self.path,
            bytes: self.bytes,
            sha256: hex::encode(self.hasher.finalize()),
            error: self.failed,
        }
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 sequence that is not complete yet.
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=3.min(bytes.len()) {
        let b = bytes[bytes.len() - back];
        if b & 0b1100_0000 == 0b1000_0000 {
            continue; // a continuation byte: look further back
        }
        let need = match b {
            b if b & 0b1110_0000 == 0b1100_0000 => 2,
            b if b & 0b1111_0000 == 0b1110_0000 => 3,
            b if b & 0b1111_1000 == 0b1111_0000 => 4,
            _ => return 0,
        };
        return if need > back { back } else { 0 };
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<serde_json::Value> {
        text.lines()
            .skip(1)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn utf8_split_across_chunks_stays_whole_and_the_hash_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "0a1b-2c3d", 80, 24, "t", false).unwrap();
        let text = "héllo wörld ✓ 🦀\r\n".as_bytes();
        for chunk in text.chunks(1) {
            r.output(chunk);
        }
        r.resize(100, 30);
        r.marker("input by alice");
        r.input(b"secret password");
        let done = r.finish();
        let file = std::fs::read(&done.path).unwrap();
        assert_eq!(done.bytes, file.len() as u64);
        assert_eq!(done.sha256, hex::encode(Sha256::digest(&file)));
        let text_file = String::from_utf8(file).unwrap();
        let header: serde_json::Value =
            serde_json::from_str(text_file.lines().next().unwrap()).unwrap();
        assert_eq!(
            (header["version"].as_i64(), header["width"].as_i64()),
            (Some(2), Some(80))
        );
        let events = events(&text_file);
        let output: String = events
            .iter()
            .filter(|e| e[1] == "o")
            .map(|e| e[2].as_str().unwrap())
            .collect();
        assert_eq!(output.as_bytes(), text);
        assert!(events.iter().any(|e| e[1] == "r" && e[2] == "100x30"));
        assert!(
            events
                .iter()
                .any(|e| e[1] == "m" && e[2] == "input by alice")
        );
        assert!(
            !text_file.contains("secret"),
            "input is not recorded by default"
        );
    }

    #[test]
    fn a_compacted_recording_is_closed_and_reopened_to_append() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "5e6f-7a8b", 80, 24, "t", false).unwrap();
        r.output(b"before\r\n");
        r.compact();
        assert!(r.file.is_none(), "a quiet recording holds no descriptor");
        let on_disk = std::fs::read_to_string(&r.path).unwrap();
        assert!(
            on_disk.contains("before"),
            "written out when closed: {on_disk}"
        );
        r.output(b"after\r\n");
        r.compact();
        r.output(b"last");
        let done = r.finish();
        let file = std::fs::read(&done.path).unwrap();
        assert_eq!(done.bytes, file.len() as u64);
        assert_eq!(done.sha256, hex::encode(Sha256::digest(&file)));
        let output: String = events(&String::from_utf8(file).unwrap())
            .iter()
            .map(|e| e[2].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(output, "before\r\nafter\r\nlast");
    }

    #[test]
    fn a_recording_removed_while_closed_stops_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Recorder::create(dir.path(), "9c0d-1e2f", 80, 24, "t", false).unwrap();
        r.output(b"x");
        r.compact();
        std::fs::remove_file(&r.path).unwrap();
        r.output(b"y");
        let done = r.finish();
        assert!(done.error.is_some(), "{:?}", done.error);
        assert!(!done.path.exists(), "not created again");
    }

    #[test]
    fn incomplete_tails() {
        assert_eq!(incomplete_tail(b"abc"), 0);
        assert_eq!(incomplete_tail("é".as_bytes()), 0);
        assert_eq!(incomplete_tail(&"é".as_bytes()[..1]), 1);
        assert_eq!(incomplete_tail(&"✓".as_bytes()[..2]), 2);
        assert_eq!(incomplete_tail(&"🦀".as_bytes()[..3]), 3);
        assert_eq!(incomplete_tail(b"\xff"), 0);
        assert_eq!(
            path_of(Path::new("/r"), "../../etc/passwd"),
            Path::new("/r/ecad.cast")
        );
    }
}
