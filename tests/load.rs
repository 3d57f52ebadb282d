#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `porthole load` as an operator runs it: the real binary, self-contained (it starts its own
//! emulator and gateway as children), a smoke run of tens of sessions for a few seconds; and
//! the errors of bad flags. Numbers are not asserted (no timed assertions): only that each
//! is there, and that every session asked for started with no error.

use std::process::{Command, Output};

use serde_json::Value;

fn porthole(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_porthole"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTHOLE_") {
            command.env_remove(key);
        }
    }
    command.args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_percentiles(report: &Value, path: &str) {
    let rtt = &report[path]["round_trip"];
    for key in ["p50_ms", "p99_ms", "p999_ms", "max_ms"] {
        let v = rtt[key]
            .as_f64()
            .unwrap_or_else(|| panic!("{path}.{key} missing: {report:#}"));
        assert!(v > 0.0, "{path}.{key} = {v}");
    }
    assert!(rtt["p50_ms"].as_f64() <= rtt["p99_ms"].as_f64());
    assert!(rtt["p99_ms"].as_f64() <= rtt["p999_ms"].as_f64());
    assert!(rtt["count"].as_u64().unwrap() > 0);
    assert_eq!(
        report[path]["sent"], report[path]["echoed"],
        "{path}: every keystroke echoed"
    );
}

#[test]
fn a_smoke_run_starts_every_session_and_reports_both_paths() {
    let out = porthole(&[
        "load",
        "--active",
        "20",
        "--idle",
        "10",
        "--direct",
        "20",
        "--rate",
        "5",
        "--duration",
        "2",
        "--warmup",
        "0.5",
        "--users",
        "3",
        "--start-rate",
        "50",
        // The idle ones print 200 lines (each echoed back in full, or the run counts an
        // error), are left, and compact a second later, before the sample.
        "--idle-output",
        "200",
        "--compact-after",
        "1",
        "--settle",
        "1.5",
        "--json",
    ]);
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "{:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    let s = &report["sessions"];
    assert_eq!(s["gateway_asked"], 30);
    assert_eq!(s["gateway_started"], 30);
    assert_eq!(s["gateway_attached"], 20);
    assert_eq!(s["direct_asked"], 20);
    assert_eq!(s["direct_started"], 20);
    assert_eq!(report["errors_total"], 0, "{report:#}");
    assert_eq!(report["errors"], serde_json::json!({}));
    assert_eq!(report["mode"], "self-contained");
    assert_eq!(report["database"], "sqlite");
    assert_eq!(report["profile"]["idle_output"], 200);
    // Checked while the gateway still runs: every start and sign-in in the chain, intact.
    let chain = report["audit_chain"].as_str().unwrap_or_default();
    assert!(chain.starts_with("audit log intact"), "{chain}");
    assert_eq!(report["profile"]["settle_seconds"], 1.5);

    assert_percentiles(&report, "gateway");
    assert_percentiles(&report, "direct");
    for key in ["p50_ms", "p99_ms", "p999_ms"] {
        assert!(
            report["gateway_adds"][key].is_f64(),
            "gateway_adds.{key}: {report:#}"
        );
    }
    assert!(report["gateway_starts_per_second"].as_f64().unwrap() > 0.0);
    for process in ["gateway_process", "emulator_process"] {
        let p = &report[process];
        assert!(
            p["baseline"]["rss_kib"].as_u64().unwrap() > 0,
            "{process}: {p:#}"
        );
        assert!(
            p["sessions_up"]["rss_kib"].as_u64().unwrap() > 0,
            "{process}: {p:#}"
        );
        assert!(p["rss_per_session_kib"].is_f64(), "{process}: {p:#}");
        assert!(p["end"]["cpu_seconds"].as_f64() >= p["baseline"]["cpu_seconds"].as_f64());
    }
    let files = &report["open_files"];
    assert!(
        files["limit"].as_u64() >= files["needed"].as_u64(),
        "{files}"
    );
    assert!(stderr.contains("open files: this run needs"), "{stderr}");
}

#[test]
fn bad_flags_are_refused_naming_the_problem() {
    let dir = std::env::temp_dir().join(format!("porthole-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let users = dir.join("users.txt");
    std::fs::write(&users, "alice\n").unwrap();
    let users = users.to_str().unwrap();
    for (args, needle) in [
        (&["--active", "0"][..], "nothing to load"),
        (
            &["--active", "1000000"],
            "--active 1000000 is more than the most a run opens (20000)",
        ),
        (
            &["--rate", "1000"],
            "--rate must be more than 0 and at most 100",
        ),
        (&["--duration", "100000"], "--duration must be between"),
        (&["--start-rate", "0"], "--start-rate must be between 1"),
        (&["--users", "0"], "--users must be at least 1"),
        (&["--target", "i-1"], "--target goes with --gateway URL"),
        (
            &["--gateway", "http://127.0.0.1:9"],
            "--gateway needs --users-file",
        ),
        (
            &[
                "--gateway",
                "http://127.0.0.1:9",
                "--users-file",
                users,
                "--target",
                "i-1",
            ],
            "line 1: expected \"name password\"",
        ),
        (
            &[
                "--gateway",
                "http://127.0.0.1:9",
                "--users-file",
                "/nonexistent/users",
            ],
            "--users-file /nonexistent/users",
        ),
    ] {
        let mut all = vec!["load"];
        all.extend_from_slice(args);
        let out = porthole(&all);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
