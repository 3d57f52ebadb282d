//! The framing's pure functions, and the node programs run for real with this machine's `sh`,
//! `awk`, `base64` and `sha256sum` (stdin a pipe here; a terminal on a node).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// Runs `script` with `sh -c` in `dir`, `input` on its stdin; its stdout.
fn run(script: &str, dir: &Path, input: &[u8]) -> String {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // The program may exit before reading everything (a refusal): a broken pipe is fine.
    let _ = stdin.write_all(input);
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every entry of `dir`, recursively, as paths relative to it.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if p.is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

fn data(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 13) as u8).collect()
}

/// The last marker the node printed.
fn last_marker(out: &str) -> Marker {
    out.lines()
        .filter_map(|l| marker(l.trim_end_matches('\r')))
        .next_back()
        .unwrap_or_else(|| panic!("no marker in {out:?}"))
}

const NASTY: &[&str] = &[
    "plain.txt",
    "with space.txt",
    "it's.txt",
    "'; touch pwned; echo '",
    "$(touch pwned)",
    "`touch pwned`",
    "a\"b\\c",
    "semi;colon&and|pipe>gt<lt",
    "*",
    "~",
    "-rf",
    "ünïcödé 日本.txt",
    "$HOME",
    "'",
    "''",
];

#[test]
fn quoted_text_reaches_sh_unchanged_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for text in NASTY {
        let out = run(&format!("printf %s {}", quote(text)), dir.path(), b"");
        assert_eq!(out, *text);
    }
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn paths_are_checked() {
    for good in [
        "/a",
        "/home/ssm-user/notes.txt",
        "/tmp/it's $(x)",
        "/a/b c/d",
    ] {
        check_path(good).unwrap();
    }
    let long = format!("/{}", "a".repeat(MAX_PATH));
    for (bad, why) in [
        ("", "absolute path"),
        ("notes.txt", "must be absolute"),
        ("./x", "must be absolute"),
        ("/tmp/", "names a folder"),
        ("/", "names a folder"),
        ("/tmp/../etc/passwd", ". or .."),
        ("/tmp/./x", ". or .."),
        ("/tmp/a\nb", "control characters"),
        ("/tmp/a\0b", "control characters"),
        ("/tmp/a\rb", "control characters"),
        (long.as_str(), "bytes long"),
    ] {
        match check_path(bad) {
            Err(TransferError::InvalidPath(m)) => assert!(m.contains(why), "{bad:?}: {m}"),
            other => panic!("{bad:?}: {other:?}"),
        }
    }
}

#[test]
fn upload_lines_are_short_base64_then_the_end_and_the_hash() {
    let file = data(1000);
    let sha = sha256_hex(&file);
    let lines = encode_upload(&file, &sha);
    let text = String::from_utf8(lines).unwrap();
    let all: Vec<&str> = text.lines().collect();
    assert_eq!(all[all.len() - 2], ".");
    assert_eq!(all[all.len() - 1], sha);
    let mut back = Vec::new();
    for l in &all[..all.len() - 2] {
        assert!(l.len() <= 76);
        back.extend(STANDARD.decode(l).unwrap());
    }
    assert_eq!(back, file);
    // An empty file: no data line.
    assert_eq!(
        encode_upload(b"", &sha256_hex(b"")),
        format!(".\n{}\n", sha256_hex(b"")).into_bytes()
    );
}

#[test]
fn markers() {
    let h = "ab".repeat(32);
    assert_eq!(marker("PORTHOLE-READY"), Some(Marker::Ready));
    assert_eq!(
        marker(&format!("PORTHOLE-OK 12 {h}")),
        Some(Marker::Ok {
            size: 12,
            sha256: h.clone()
        })
    );
    assert_eq!(
        marker("PORTHOLE-ERR toolarge 99"),
        Some(Marker::Err {
            code: "toolarge".into(),
            n: Some(99)
        })
    );
    assert_eq!(marker("PORTHOLE-FILE 7"), Some(Marker::File(7)));
    assert_eq!(marker(&format!("PORTHOLE-END {h}")), Some(Marker::End(h)));
    for not in [
        "",
        "hello",
        "PORTHOLE-READY now",
        "PORTHOLE-OK x y",
        "PORTHOLE-END short",
        "PORTHOLE-FILE -1",
    ] {
        assert_eq!(marker(not), None, "{not:?}");
    }
}

#[test]
fn lines_strip_terminal_line_ends_and_refuse_endless_lines() {
    let mut lines = Lines::default();
    assert_eq!(lines.feed(b"a\r\nb").unwrap(), ["a"]);
    assert_eq!(lines.feed(b"c\nd\r").unwrap(), ["bc"]);
    assert_eq!(lines.feed(b"\n").unwrap(), ["d"]);
    let long = vec![b'x'; MAX_LINE + 1];
    assert!(matches!(lines.feed(&long), Err(TransferError::Broken(_))));
}

fn upload(dir: &Path, name: &str, max: u64, input: &[u8]) -> (String, Marker) {
    let path = dir.join(name).display().to_string();
    let out = run(&receiver(&path, max), dir, input);
    let m = last_marker(&out);
    (path, m)
}

#[test]
fn an_upload_lands_whole_with_its_hash() {
    for size in [0, 1, 56, 57, 58, 4096, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let file = data(size);
        let sha = sha256_hex(&file);
        let (path, m) = upload(dir.path(), "f.bin", 1 << 20, &encode_upload(&file, &sha));
        upload_outcome(&m, &path, size as u64, &sha, 1 << 20).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), file, "size {size}");
        // Nothing else left beside it.
        assert_eq!(entries(dir.path()), ["f.bin"]);
    }
}

#[test]
fn an_upload_replaces_a_file_only_when_whole() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("f.txt");
    std::fs::write(&old, b"old contents").unwrap();
    let file = data(500);
    let sha = sha256_hex(&file);
    // A bad hash: the old file stays as it was.
    let wrong = sha256_hex(b"something else");
    let (path, m) = upload(dir.path(), "f.txt", 1 << 20, &encode_upload(&file, &wrong));
    let e = upload_outcome(&m, &path, 500, &wrong, 1 << 20).unwrap_err();
    assert!(
        matches!(&e, TransferError::Broken(m) if m.contains("does not match its SHA-256")),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&old).unwrap(), b"old contents");
    assert_eq!(entries(dir.path()), ["f.txt"]);
    // A good one replaces it.
    let (path, m) = upload(dir.path(), "f.txt", 1 << 20, &encode_upload(&file, &sha));
    upload_outcome(&m, &path, 500, &sha, 1 << 20).unwrap();
    assert_eq!(std::fs::read(&old).unwrap(), file);
}

#[test]
fn a_truncated_upload_writes_nothing() {
    let file = data(5000);
    let sha = sha256_hex(&file);
    let full = encode_upload(&file, &sha);
    // Cut in the data, just before the end line, and between the end line and the hash.
    let end = full.len() - 66;
    for cut in [0, 100, full.len() / 2, end - 1, end, end + 1] {
        let dir = tempfile::tempdir().unwrap();
        let (path, m) = upload(dir.path(), "f.bin", 1 << 20, &full[..cut]);
        let e = upload_outcome(&m, &path, 5000, &sha, 1 << 20).unwrap_err();
        assert!(
            matches!(&e, TransferError::Broken(m) if m.contains("ended before the whole file")),
            "cut at {cut}: {e:?}"
        );
        assert!(entries(dir.path()).is_empty(), "cut at {cut}");
    }
    // The hash line cut short: not the hash.
    let dir = tempfile::tempdir().unwrap();
    let (path, m) = upload(dir.path(), "f.bin", 1 << 20, &full[..full.len() - 10]);
    assert!(upload_outcome(&m, &path, 5000, &sha, 1 << 20).is_err());
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_too_large_upload_is_refused_on_the_node_too() {
    let dir = tempfile::tempdir().unwrap();
    let file = data(2000);
    let sha = sha256_hex(&file);
    let (path, m) = upload(dir.path(), "f.bin", 1000, &encode_upload(&file, &sha));
    assert_eq!(
        m,
        Marker::Err {
            code: "toolarge".into(),
            n: Some(1001)
        }
    );
    let e = upload_outcome(&m, &path, 2000, &sha, 1000).unwrap_err();
    assert!(
        matches!(&e, TransferError::TooLarge(m) if m.contains("at most 1000 bytes") && m.contains("files.max_bytes")),
        "{e:?}"
    );
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn odd_names_are_written_as_they_are_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = b"odd\n".to_vec();
    let sha = sha256_hex(&file);
    for name in NASTY.iter().filter(|n| !["~", "'", "''"].contains(n)) {
        let (path, m) = upload(dir.path(), name, 100, &encode_upload(&file, &sha));
        upload_outcome(&m, &path, 4, &sha, 100).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(std::fs::read(&path).unwrap(), file, "{name:?}");
    }
    let found = entries(dir.path());
    assert!(!found.iter().any(|e| e == "pwned"), "{found:?}");
    // The download of each reads it back.
    for name in NASTY.iter().filter(|n| !["~", "'", "''"].contains(n)) {
        let path = dir.path().join(name).display().to_string();
        let (bytes, _) = download(dir.path(), &path, 100).unwrap();
        assert_eq!(bytes, file);
    }
    assert!(!entries(dir.path()).iter().any(|e| e == "pwned"));
}

#[test]
fn the_receiver_refuses_folders_and_missing_folders() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let file = b"x".to_vec();
    let lines = encode_upload(&file, &sha256_hex(&file));
    let (path, m) = upload(dir.path(), "sub", 10, &lines);
    let e = upload_outcome(&m, &path, 1, "", 10).unwrap_err();
    assert!(
        matches!(&e, TransferError::Refused(m) if m.contains("is a folder")),
        "{e:?}"
    );
    let (path, m) = upload(dir.path(), "missing/f", 10, &lines);
    let e = upload_outcome(&m, &path, 1, "", 10).unwrap_err();
    assert!(
        matches!(&e, TransferError::Refused(m) if m.contains("does not exist")),
        "{e:?}"
    );
    assert_eq!(entries(dir.path()), ["sub"]);
}

/// Runs the sender for `path` and parses its output.
fn download(dir: &Path, path: &str, max: u64) -> Result<(Vec<u8>, String), TransferError> {
    let out = run(&sender(path, max), dir, b"");
    let mut d = Download::new(path, max);
    d.feed(out.as_bytes());
    d.finish()
}

/// The sender's output for `file`, as a terminal shows it (`\r\n`).
fn sent(file: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, file).unwrap();
    run(
        &sender(&path.display().to_string(), 1 << 20),
        dir.path(),
        b"",
    )
    .replace('\n', "\r\n")
}

#[test]
fn a_download_arrives_whole_with_its_hash() {
    for size in [0, 1, 57, 76, 100_000] {
        let file = data(size);
        let out = format!("Welcome to the node\r\n{}", sent(&file));
        // Fed in small pieces, as the data channel brings it.
        let mut d = Download::new("/f", 1 << 20);
        for piece in out.as_bytes().chunks(37) {
            d.feed(piece);
        }
        assert!(d.is_done());
        let (bytes, sha) = d.finish().unwrap();
        assert_eq!(bytes, file);
        assert_eq!(sha, sha256_hex(&file));
    }
}

#[test]
fn a_download_with_a_bad_hash_or_cut_short_fails() {
    let file = data(3000);
    let out = sent(&file);
    // A byte of the data changed on the way.
    let mut bad = out.clone().into_bytes();
    let at = out.find("PORTHOLE-FILE").unwrap() + 30;
    bad[at] = if bad[at] == b'A' { b'B' } else { b'A' };
    let mut d = Download::new("/f", 1 << 20);
    d.feed(&bad);
    let e = d.finish().unwrap_err();
    assert!(
        matches!(&e, TransferError::Broken(m) if m.contains("SHA-256")),
        "{e:?}"
    );
    // Cut anywhere before the trailer: never a file.
    let end = out.find("PORTHOLE-END").unwrap();
    for cut in [0, 10, out.len() / 2, end, out.len() - 3] {
        let mut d = Download::new("/f", 1 << 20);
        d.feed(&out.as_bytes()[..cut]);
        let e = d.finish().unwrap_err();
        assert!(
            matches!(&e, TransferError::Broken(m) if m.contains("ended before")),
            "cut at {cut}: {e:?}"
        );
    }
    // A line missing in the middle: fewer bytes than announced.
    let lines: Vec<&str> = out.split("\r\n").collect();
    let mut short = lines.clone();
    short.remove(3);
    let mut d = Download::new("/f", 1 << 20);
    d.feed(short.join("\r\n").as_bytes());
    assert!(d.finish().is_err());
    // A line twice: more than announced.
    let mut long = lines.clone();
    long.insert(3, lines[3]);
    let mut d = Download::new("/f", 1 << 20);
    d.feed(long.join("\r\n").as_bytes());
    let e = d.finish().unwrap_err();
    assert!(
        matches!(&e, TransferError::Broken(m) if m.contains("more bytes")),
        "{e:?}"
    );
}

#[test]
fn the_sender_refuses_what_is_not_a_file_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big"), data(2000)).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    let at = |n: &str| dir.path().join(n).display().to_string();
    let e = download(dir.path(), &at("big"), 1000).unwrap_err();
    assert!(
        matches!(&e, TransferError::TooLarge(m) if m.contains("2000 bytes") && m.contains("at most 1000")),
        "{e:?}"
    );
    let e = download(dir.path(), &at("missing"), 1000).unwrap_err();
    assert!(matches!(&e, TransferError::NotFound(_)), "{e:?}");
    let e = download(dir.path(), &at("sub"), 1000).unwrap_err();
    assert!(
        matches!(&e, TransferError::Refused(m) if m.contains("folder")),
        "{e:?}"
    );
    let e = download(dir.path(), "/dev/null", 1000).unwrap_err();
    assert!(
        matches!(&e, TransferError::Refused(m) if m.contains("regular file")),
        "{e:?}"
    );
    // A header that claims more than the limit is refused before any data.
    let mut d = Download::new("/f", 10);
    d.feed(b"PORTHOLE-FILE 11\r\n");
    assert!(matches!(d.finish(), Err(TransferError::TooLarge(_))));
}
