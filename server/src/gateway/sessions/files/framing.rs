//! The framing of a file transfer, as pure functions: the POSIX `sh` programs the node runs
//! (a receiver for uploads, a sender for downloads, passed as `AWS-StartInteractiveCommand`'s
//! `command`), the lines the gateway types into the receiver, and the parsing of what the
//! node prints back. No IO: [`super`] opens the SSM session and moves the bytes.
//!
//! # Upload
//!
//! The node runs [`receiver`]: it turns terminal echo off, creates a private folder beside the
//! destination (`DIR/.porthole-upload.PID`, `mkdir` fails if it exists) and prints
//! `PORTHOLE-READY`. The gateway then types [`encode_upload`]'s lines: the file in base64,
//! [`LINE_BYTES`] bytes a line, a line holding `.`, and a line with the expected SHA-256 (hex).
//! One `awk` reads them all, passing the data to `base64 -d` (capped at the limit plus one
//! byte) into a file in the private folder and the hash to another. Only when the hash line
//! arrived, the size is within the limit and `sha256sum` of the written file matches, the file
//! is renamed onto the destination (the same folder: atomic); then the private folder is
//! removed and the node prints `PORTHOLE-OK SIZE SHA256` (an answer means nothing is left). Anything else (a bad hash, a transfer cut short, too many bytes,
//! a hang-up of the session) removes the private folder and prints `PORTHOLE-ERR CODE [N]`, or
//! nothing when the session went away: the destination is never half-written.
//!
//! # Download
//!
//! The node runs [`sender`]: it checks the path is a readable regular file within the limit
//! and prints `PORTHOLE-FILE SIZE`, the file in base64 (`base64`'s own lines), then
//! `PORTHOLE-END SHA256`. [`Download`] decodes as lines arrive and fails on more bytes than
//! announced or than the limit, on a size or hash that does not match, and on an end without
//! `PORTHOLE-END`.
//!
//! Both programs run in the node's terminal, so output lines may end in `\r\n` and the lines
//! before the first marker may hold noise (a banner): the parser skips lines that are not
//! markers before the first one.
//!
//! # Paths
//!
//! A path is absolute, at most [`MAX_PATH`] bytes, without control characters, `.` or `..`
//! components or a trailing `/` ([`check_path`]). It reaches the node only inside single
//! quotes ([`quote`]), where `sh` interprets nothing: no `$(…)`, backquote, `;` or quote in a
//! name can run anything.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest as _, Sha256};

/// Bytes of the file per base64 line typed into the receiver (76 characters: well under the
/// terminal's 4,095-character line limit, and a multiple of 3, so no line but the last is
/// padded).
pub const LINE_BYTES: usize = 57;
/// The longest path accepted, in bytes (Linux's `PATH_MAX` less the room the receiver's
/// temporary names need).
pub const MAX_PATH: usize = 3900;
/// The longest line the parser keeps while looking for the end of it: a node that prints a
/// longer one is not running the sender.
pub const MAX_LINE: usize = 8 * 1024;

/// The receiver is ready for data.
pub const READY: &str = "PORTHOLE-READY";
/// The receiver renamed the file into place: `PORTHOLE-OK SIZE SHA256`.
pub const OK: &str = "PORTHOLE-OK";
/// The node refused or failed: `PORTHOLE-ERR CODE [N]`.
pub const ERR: &str = "PORTHOLE-ERR";
/// The sender's header: `PORTHOLE-FILE SIZE`.
pub const FILE: &str = "PORTHOLE-FILE";
/// The sender's trailer: `PORTHOLE-END SHA256`.
pub const END: &str = "PORTHOLE-END";

/// Which way a transfer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the person to the node.
    Upload,
    /// From the node to the person.
    Download,
}

impl Direction {
    /// `upload` or `download`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upload => "upload",
            Self::Download => "download",
        }
    }
}

/// Why a transfer did not happen, with the words for the person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// The path is not one the gateway sends to a node.
    #[error("{0}")]
    InvalidPath(String),
    /// The file is larger than `files.max_bytes`.
    #[error("{0}")]
    TooLarge(String),
    /// The path names nothing on the node.
    #[error("{0}")]
    NotFound(String),
    /// The node refused: a directory, a missing folder, no permission.
    #[error("{0}")]
    Refused(String),
    /// The bytes did not arrive whole: a hash or size that does not match, a transfer cut
    /// short, output that is not the sender's.
    #[error("{0}")]
    Broken(String),
}

/// Checks a path the person gave for the node: absolute, no control characters, no `.` or
/// `..` components, not ending in `/`, at most [`MAX_PATH`] bytes.
pub fn check_path(path: &str) -> Result<(), TransferError> {
    let bad = |why: &str| TransferError::InvalidPath(format!("path {path:?}: {why}"));
    if path.is_empty() {
        return Err(TransferError::InvalidPath(
            "give the file's absolute path on the node (path=/home/ssm-user/notes.txt)".into(),
        ));
    }
    if !path.starts_with('/') {
        return Err(bad("must be absolute (start with /)"));
    }
    if path.len() > MAX_PATH {
        return Err(TransferError::InvalidPath(format!(
            "the path is {} bytes long; at most {MAX_PATH}",
            path.len()
        )));
    }
    if path.chars().any(char::is_control) {
        return Err(bad(
            "must not hold control characters (newlines, tabs, NUL)",
        ));
    }
    if path.ends_with('/') {
        return Err(bad("names a folder (ends with /); name the file"));
    }
    if path.split('/').any(|part| part == "." || part == "..") {
        return Err(bad("must not hold . or .. components"));
    }
    Ok(())
}

/// `text` in single quotes for `sh`, each `'` written as `'\''`: `sh` interprets nothing
/// inside, so the value arrives as it is.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// The node's receiver for an upload to `path` (checked with [`check_path`]) of at most
/// `max_bytes` bytes.
pub fn receiver(path: &str, max_bytes: u64) -> String {
    format!(
        "d={path}; m={max_bytes}; w=; \
         stty -echo 2>/dev/null; \
         clean() {{ [ -n \"$w\" ] && rm -rf \"$w\"; w=; }}; \
         fail() {{ clean; printf '{ERR} %s\\n' \"$*\"; exit 1; }}; \
         trap clean EXIT; trap 'exit 1' HUP INT TERM; \
         p=${{d%/*}}; [ -n \"$p\" ] || p=/; \
         [ -d \"$d\" ] && fail isdir; \
         [ -d \"$p\" ] || fail nodir; \
         [ -w \"$p\" ] || fail denied; \
         v=\"${{p%/}}/.porthole-upload.$$\"; mkdir -m 700 \"$v\" 2>/dev/null || fail create; w=$v; \
         printf '{READY}\\n'; \
         W=$w awk '$0 == \".\" {{ if ((getline h) > 0) print h > (ENVIRON[\"W\"] \"/sum\"); exit }} {{ print }}' \
         | base64 -d 2>/dev/null | head -c $((m + 1)) > \"$w/file\"; \
         n=$(wc -c < \"$w/file\"); n=${{n##* }}; \
         [ \"$n\" -le \"$m\" ] || fail toolarge \"$n\"; \
         IFS= read -r h < \"$w/sum\" 2>/dev/null || fail truncated; \
         s=$(sha256sum < \"$w/file\"); s=${{s%% *}}; \
         [ \"$s\" = \"$h\" ] || fail hash; \
         mv -f \"$w/file\" \"$d\" 2>/dev/null || fail rename; \
         clean; printf '{OK} %s %s\\n' \"$n\" \"$s\"",
        path = quote(path),
    )
}

/// The node's sender for a download of `path` (checked with [`check_path`]), refused when
/// larger than `max_bytes`.
pub fn sender(path: &str, max_bytes: u64) -> String {
    format!(
        "f={path}; m={max_bytes}; \
         stty -echo 2>/dev/null; \
         fail() {{ printf '{ERR} %s\\n' \"$*\"; exit 1; }}; \
         [ -e \"$f\" ] || fail notfound; \
         [ -d \"$f\" ] && fail isdir; \
         [ -f \"$f\" ] || fail notfile; \
         [ -r \"$f\" ] || fail denied; \
         n=$(wc -c < \"$f\") || fail denied; n=${{n##* }}; \
         [ \"$n\" -le \"$m\" ] || fail toolarge \"$n\"; \
         printf '{FILE} %s\\n' \"$n\"; \
         base64 < \"$f\" || fail read; \
         s=$(sha256sum < \"$f\") || fail read; \
         printf '{END} %s\\n' \"${{s%% *}}\"",
        path = quote(path),
    )
}

/// The hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What the gateway types into the receiver for `data`: base64 lines of [`LINE_BYTES`] bytes,
/// a line `.`, and the line of `sha256` (hex).
pub fn encode_upload(data: &[u8], sha256: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() / 3 * 4 + data.len() / LINE_BYTES + 80);
    for chunk in data.chunks(LINE_BYTES) {
        out.extend_from_slice(STANDARD.encode(chunk).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b".\n");
    out.extend_from_slice(sha256.as_bytes());
    out.push(b'\n');
    out
}

/// The message for a node's `PORTHOLE-ERR CODE [N]` about `path`.
pub fn node_error(
    direction: Direction,
    path: &str,
    code: &str,
    n: Option<u64>,
    max: u64,
) -> TransferError {
    let size = n
        .map(|n| format!("{n} bytes"))
        .unwrap_or_else(|| "larger".into());
    match code {
        "notfound" => TransferError::NotFound(format!("no file {path} on the node")),
        "isdir" => TransferError::Refused(format!("{path} is a folder on the node; name a file")),
        "notfile" => TransferError::Refused(format!(
            "{path} is not a regular file on the node (a device, a pipe or a socket)"
        )),
        "nodir" => {
            TransferError::Refused(format!("the folder of {path} does not exist on the node"))
        }
        "denied" => TransferError::Refused(match direction {
            Direction::Upload => format!("the node's user may not write in the folder of {path}"),
            Direction::Download => format!("the node's user may not read {path}"),
        }),
        "create" => TransferError::Refused(format!(
            "the node could not create a temporary folder beside {path}"
        )),
        "rename" => TransferError::Refused(format!(
            "the node could not move the received file onto {path}; nothing was written"
        )),
        "toolarge" => TransferError::TooLarge(format!(
            "{path} is {size}; files of at most {max} bytes are transferred (files.max_bytes)"
        )),
        "truncated" => TransferError::Broken(format!(
            "the upload to {path} ended before the whole file arrived; nothing was written"
        )),
        "hash" => TransferError::Broken(format!(
            "the file received for {path} does not match its SHA-256; nothing was written"
        )),
        "read" => TransferError::Broken(format!("reading {path} on the node failed")),
        other => TransferError::Broken(format!(
            "the node failed the {} of {path} ({other:?})",
            direction.as_str()
        )),
    }
}

/// A line of the node's output that means something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// `PORTHOLE-READY`.
    Ready,
    /// `PORTHOLE-OK SIZE SHA256`.
    Ok {
        /// Bytes written.
        size: u64,
        /// Their SHA-256.
        sha256: String,
    },
    /// `PORTHOLE-ERR CODE [N]`.
    Err {
        /// What failed.
        code: String,
        /// A number that goes with it (a size).
        n: Option<u64>,
    },
    /// `PORTHOLE-FILE SIZE`.
    File(u64),
    /// `PORTHOLE-END SHA256`.
    End(String),
}

/// `line` (without its line end) as a marker, or `None`.
pub fn marker(line: &str) -> Option<Marker> {
    let mut words = line.split(' ');
    let first = words.next()?;
    let rest: Vec<&str> = words.collect();
    let hash = |s: &str| -> Option<String> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
    };
    match (first, rest.as_slice()) {
        (READY, []) => Some(Marker::Ready),
        (OK, [size, sha]) => Some(Marker::Ok {
            size: size.parse().ok()?,
            sha256: hash(sha)?,
        }),
        (ERR, [code]) => Some(Marker::Err {
            code: (*code).to_owned(),
            n: None,
        }),
        (ERR, [code, n]) => Some(Marker::Err {
            code: (*code).to_owned(),
            n: n.parse().ok(),
        }),
        (FILE, [size]) => Some(Marker::File(size.parse().ok()?)),
        (END, [sha]) => Some(Marker::End(hash(sha)?)),
        _ => None,
    }
}

/// Splits the node's output into lines (without `\r\n` or `\n`), bounded by [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Takes `bytes` and returns the lines they complete; `Err` when a line grows past
    /// [`MAX_LINE`].
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, TransferError> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let mut line = std::mem::take(&mut self.partial);
                while line.last() == Some(&b'\r') {
                    line.pop();
                }
                out.push(String::from_utf8_lossy(&line).into_owned());
            } else {
                if self.partial.len() >= MAX_LINE {
                    return Err(TransferError::Broken(
                        "the node printed something that is not a file transfer (a line too \
                         long)"
                            .into(),
                    ));
                }
                self.partial.push(b);
            }
        }
        Ok(out)
    }
}

/// What the receiver said at the end of an upload.
pub fn upload_outcome(
    marker: &Marker,
    path: &str,
    expected_size: u64,
    expected_sha256: &str,
    max: u64,
) -> Result<(), TransferError> {
    match marker {
        Marker::Ok { size, sha256 } if *size == expected_size && sha256 == expected_sha256 => {
            Ok(())
        }
        Marker::Ok { size, sha256 } => Err(TransferError::Broken(format!(
            "the node wrote {size} bytes with SHA-256 {sha256} to {path}, not the {expected_size} \
             bytes sent"
        ))),
        Marker::Err { code, n } => Err(node_error(Direction::Upload, path, code, *n, max)),
        other => Err(TransferError::Broken(format!(
            "the node answered the upload to {path} with {other:?}"
        ))),
    }
}

/// A download being received: feed it the node's output ([`Download::feed`]) until it says it
/// is done; then [`Download::finish`].
#[derive(Debug)]
pub struct Download {
    path: String,
    max: u64,
    lines: Lines,
    size: Option<u64>,
    carry: String,
    data: Vec<u8>,
    done: Option<Result<String, TransferError>>,
}

impl Download {
    /// A download of `path` of at most `max` bytes.
    pub fn new(path: &str, max: u64) -> Self {
        Self {
            path: path.to_owned(),
            max,
            lines: Lines::default(),
            size: None,
            carry: String::new(),
            data: Vec::new(),
            done: None,
        }
    }

    /// Whether the sender has finished (well or not): nothing more is needed.
    pub fn is_done(&self) -> bool {
        self.done.is_some()
    }

    /// Takes the node's output; later output is ignored once done.
    pub fn feed(&mut self, bytes: &[u8]) {
        if self.done.is_some() {
            return;
        }
        let lines = match self.lines.feed(bytes) {
            Ok(lines) => lines,
            Err(e) => {
                self.done = Some(Err(e));
                return;
            }
        };
        for line in lines {
            if let Err(e) = self.line(&line) {
                self.done = Some(Err(e));
            }
            if self.done.is_some() {
                return;
            }
        }
    }

    fn broken(&self, why: &str) -> TransferError {
        TransferError::Broken(format!("the download of {} failed: {why}", self.path))
    }

    fn line(&mut self, line: &str) -> Result<(), TransferError> {
        let Some(size) = self.size else {
            match marker(line) {
                Some(Marker::File(size)) if size > self.max => {
                    return Err(node_error(
                        Direction::Download,
                        &self.path,
                        "toolarge",
                        Some(size),
                        self.max,
                    ));
                }
                Some(Marker::File(size)) => {
                    self.size = Some(size);
                    self.data.reserve(usize::try_from(size).unwrap_or(0));
                }
                Some(Marker::Err { code, n }) => {
                    return Err(node_error(
                        Direction::Download,
                        &self.path,
                        &code,
                        n,
                        self.max,
                    ));
                }
                Some(other) => return Err(self.broken(&format!("unexpected {other:?}"))),
                // Noise before the header (a banner).
                None => {}
            }
            return Ok(());
        };
        match marker(line) {
            Some(Marker::End(sha)) => {
                if !self.carry.is_empty() {
                    return Err(self.broken("the base64 ended in the middle of a group"));
                }
                if self.data.len() as u64 != size {
                    return Err(self.broken(&format!(
                        "{} bytes arrived of the {size} announced",
                        self.data.len()
                    )));
                }
                let ours = sha256_hex(&self.data);
                if ours != sha {
                    return Err(self.broken(&format!(
                        "the bytes received have SHA-256 {ours}, the node's file {sha}"
                    )));
                }
                self.done = Some(Ok(sha));
                Ok(())
            }
            Some(Marker::Err { code, n }) => Err(node_error(
                Direction::Download,
                &self.path,
                &code,
                n,
                self.max,
            )),
            Some(other) => Err(self.broken(&format!("unexpected {other:?}"))),
            None => {
                if !line
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                {
                    return Err(self.broken("the node's output is not base64"));
                }
                self.carry.push_str(line);
                let whole = self.carry.len() / 4 * 4;
                let decoded = STANDARD
                    .decode(&self.carry[..whole])
                    .map_err(|e| self.broken(&format!("bad base64 ({e})")))?;
                self.carry.drain(..whole);
                if self.data.len() as u64 + decoded.len() as u64 > size {
                    return Err(
                        self.broken(&format!("more bytes arrived than the {size} announced"))
                    );
                }
                self.data.extend_from_slice(&decoded);
                Ok(())
            }
        }
    }

    /// The file and its SHA-256, once the sender said `PORTHOLE-END` and everything matched;
    /// the error otherwise (an end before that is a transfer cut short).
    pub fn finish(self) -> Result<(Vec<u8>, String), TransferError> {
        match self.done {
            Some(Ok(sha)) => Ok((self.data, sha)),
            Some(Err(e)) => Err(e),
            None => Err(TransferError::Broken(format!(
                "the download of {} ended before the whole file arrived ({} bytes{})",
                self.path,
                self.data.len(),
                self.size.map(|s| format!(" of {s}")).unwrap_or_default()
            ))),
        }
    }
}

#[cfg(test)]
mod tests;
