//! The gateway's layers import one way. This test reads the source tree, resolves every
//! `crate::…`, `super::…` and `self::…` path in each file's code (comments and strings left
//! out) to the module it names, and fails when a file imports a layer above its own, or when
//! the files of the gateway import each other in a circle.
//!
//! The layers, lowest first (a file may import its own layer and the ones below):
//!
//! | layer | may import |
//! |---|---|
//! | `ssm`, `clock` | nothing of the crate but themselves (`ssm` also `clock`) |
//! | `emulator` | `ssm`, `clock` |
//! | `gateway::facts` | nothing |
//! | `gateway::telemetry` | nothing (metric names and counting functions) |
//! | `gateway::policy` | `facts` (pure: not even `telemetry`) |
//! | `gateway::config` | `policy`, `facts`, `telemetry` |
//! | `gateway::aws` | `config`, `facts`, `telemetry`, `ssm` |
//! | `gateway::store` | `aws`, `config`, `facts`, `telemetry` |
//! | `gateway::cluster` | `store`, `config`, `facts`, `telemetry`, `ssm` |
//! | `gateway::identity` | `store`, `policy`, `config`, `facts`, `telemetry` |
//! | `gateway::notify` | `store`, `config`, `facts`, `telemetry` |
//! | `gateway::sessions` | `notify`, `cluster`, `store`, `policy`, `aws`, `config`, `facts`, `telemetry`, `ssm`, `clock` |
//! | `gateway::http` | everything below it |
//! | `gateway` (`mod.rs`, `reload.rs`, `listen.rs`) and `cli` | everything |

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Which top-level parts (for the gateway, which of its layers) each part may import.
fn allowed(layer: &str) -> Option<&'static [&'static str]> {
    const GATEWAY_BELOW_HTTP: &[&str] = &[
        "gateway::facts",
        "gateway::telemetry",
        "gateway::policy",
        "gateway::config",
        "gateway::aws",
        "gateway::store",
        "gateway::cluster",
        "gateway::identity",
        "gateway::notify",
        "gateway::sessions",
        "ssm",
        "clock",
    ];
    Some(match layer {
        "ssm" => &["clock"],
        "clock" => &[],
        "emulator" => &["ssm", "clock"],
        "gateway::facts" => &[],
        // The leaf every layer counts with; the policy stays pure and does not.
        "gateway::telemetry" => &[],
        "gateway::policy" => &["gateway::facts"],
        "gateway::config" => &["gateway::policy", "gateway::facts", "gateway::telemetry"],
        "gateway::aws" => &[
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
            "ssm",
        ],
        "gateway::store" => &[
            "gateway::aws",
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
        ],
        "gateway::cluster" => &[
            "gateway::store",
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
            "ssm",
        ],
        "gateway::identity" => &[
            "gateway::store",
            "gateway::policy",
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
        ],
        "gateway::notify" => &[
            "gateway::store",
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
        ],
        "gateway::sessions" => &[
            "gateway::notify",
            "gateway::cluster",
            "gateway::store",
            "gateway::policy",
            "gateway::aws",
            "gateway::config",
            "gateway::facts",
            "gateway::telemetry",
            "ssm",
            "clock",
        ],
        "gateway::http" => GATEWAY_BELOW_HTTP,
        // The wiring: builds everything from the layers.
        "gateway" | "cli" => return None,
        _ => return None,
    })
}

/// The layer a module path (`["gateway", "store", "db"]`) belongs to.
fn layer_of(module: &[String]) -> String {
    match module {
        [first, second, ..] if first == "gateway" => {
            let candidate = format!("gateway::{second}");
            if allowed(&candidate).is_some() {
                candidate
            } else {
                // `gateway::reload` and the like: the wiring.
                "gateway".to_owned()
            }
        }
        [first, ..] => first.clone(),
        [] => "crate".to_owned(),
    }
}

/// The module path of a source file below `server/src`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).unwrap_or(file);
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" && stem != "main" {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// The code of a file with comments, string and char literals blanked out.
fn code_only(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            let end = rest.find('\n').map_or(text.len(), |n| i + n);
            i = end;
        } else if rest.starts_with("/*") {
            let end = rest.find("*/").map_or(text.len(), |n| i + n + 2);
            i = end;
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            let end = rest[body..]
                .find(&close)
                .map_or(text.len(), |n| i + body + n + close.len());
            out.push_str("\"\"");
            i = end;
        } else if bytes[i] == b'"' {
            let mut j = i + 1;
            while j < bytes.len() && bytes[j] != b'"' {
                j += if bytes[j] == b'\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i = j + 1;
        } else if bytes[i] == b'\'' && rest.len() >= 3 {
            // A char literal ('x', '\n', '\''), not a lifetime ('a).
            let lit = rest
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == '\'')
                .map(|(n, _)| n);
            match lit {
                Some(n)
                    if n <= 11
                        && (rest[1..n].starts_with('\\') || rest[1..n].chars().count() == 1) =>
                {
                    out.push_str("' '");
                    i += n + 1;
                }
                _ => {
                    out.push('\'');
                    i += 1;
                }
            }
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `code` without its `#[cfg(test)]` items (a `mod tests { … }` block, up to its closing
/// brace, or a `mod tests;` line); the code before and after them stays.
fn without_test_modules(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(n) = rest.find("#[cfg(test)]") {
        out.push_str(&rest[..n]);
        let after = &rest[n + "#[cfg(test)]".len()..];
        let brace = after.find('{');
        let semi = after.find(';');
        rest = match (brace, semi) {
            (Some(b), Some(s)) if s < b => &after[s + 1..],
            (Some(b), _) => {
                let mut depth = 0;
                let mut end = after.len();
                for (i, c) in after[b..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = b + i + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                &after[end..]
            }
            (None, Some(s)) => &after[s + 1..],
            (None, None) => "",
        };
    }
    out.push_str(rest);
    out
}

/// Every module path a file's code names through `crate::`, `super::` or `self::`, resolved
/// from the file's own module; groups (`use crate::gateway::{a, b::c}`) give each member.
fn imports(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(n) = code[from..].find(start) {
            let at = from + n;
            from = at + start.len();
            // Only a path's first segment: not `foo::super::`, not `my_crate::`.
            if at > 0 {
                let before = bytes[at - 1];
                if before.is_ascii_alphanumeric() || before == b'_' || before == b':' {
                    continue;
                }
            }
            // The module the path starts from: `super` of `a/b.rs` (module `a::b`) and of
            // `a/b/mod.rs` (also module `a::b`) is `a`.
            let mut base: Vec<String> = match start {
                "crate::" => Vec::new(),
                _ => {
                    let mut base = module.to_vec();
                    if start == "super::" {
                        base.pop();
                    }
                    base
                }
            };
            let mut rest = &code[at + start.len()..];
            while let Some(r) = rest.strip_prefix("super::") {
                base.pop();
                rest = r;
            }
            for path in expand(rest) {
                let mut full = base.clone();
                full.extend(path);
                found.push(full);
            }
        }
    }
    found
}

/// The paths of a `use` tail or an expression path: `a::b::{c, d::e}` → `a::b::c`, `a::b::d::e`.
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = text;
    loop {
        let ident: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if let Some(group) = rest.strip_prefix('{') {
                let mut depth = 1;
                let mut end = 0;
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                let inner = &group[..end];
                let mut out = Vec::new();
                let mut depth = 0;
                let mut piece_start = 0;
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            push_member(&mut out, &segments, inner[piece_start..i].trim());
                            piece_start = i + 1;
                        }
                        _ => {}
                    }
                }
                push_member(&mut out, &segments, inner[piece_start..].trim());
                return out;
            }
            break;
        }
        rest = &rest[ident.len()..];
        let is_module_like = ident.chars().next().is_some_and(|c| c.is_ascii_lowercase());
        if ident != "self" {
            segments.push(ident);
        }
        match rest.strip_prefix("::") {
            Some(r) if is_module_like => rest = r,
            _ => break,
        }
    }
    vec![segments]
}

fn push_member(out: &mut Vec<Vec<String>>, prefix: &[String], member: &str) {
    if member.is_empty() {
        return;
    }
    for tail in expand(member) {
        let mut path = prefix.to_vec();
        path.extend(tail);
        out.push(path);
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every rule broken in the tree below `root`, in words, and the file-level import graph of
/// the gateway.
fn check(root: &Path) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(root, f)).collect();
    let mut broken = Vec::new();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(root, file);
        if module.is_empty() {
            continue; // lib.rs, main.rs: the crate's roots
        }
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // Unit tests inside a file may reach anything; the rules are for the code itself.
        let code = without_test_modules(&code_only(&text));
        let code = code.as_str();
        let own = layer_of(&module);
        let rel = file
            .strip_prefix(root)
            .unwrap_or(file)
            .display()
            .to_string();
        for target in imports(&module, code) {
            // The longest prefix that is a module file of the crate.
            let Some(target_module) = (1..=target.len())
                .rev()
                .map(|n| target[..n].to_vec())
                .find(|m| modules.contains(m))
            else {
                continue;
            };
            let theirs = layer_of(&target_module);
            if theirs != own
                && let Some(rules) = allowed(&own)
                && !rules.contains(&theirs.as_str())
            {
                broken.push(format!(
                    "{rel}: layer {own} imports {} (layer {theirs}), which it may not",
                    target_module.join("::")
                ));
            }
            // The gateway's file graph: a file using its own submodules (a folder's mod.rs
            // declaring them) is not an import.
            if module.first().is_some_and(|m| m == "gateway")
                && target_module.first().is_some_and(|m| m == "gateway")
                && target_module != module
                && !target_module.starts_with(&module)
            {
                graph
                    .entry(module.join("::"))
                    .or_default()
                    .insert(target_module.join("::"));
            }
        }
    }
    (broken, graph)
}

/// One circle in `graph`, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|n| n == next).unwrap_or(0);
                    let mut circle = stack[from..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(next, graph, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str())
            && let Some(c) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

fn source_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server/src")
}

#[test]
fn every_layer_imports_only_downward() {
    let (broken, _) = check(&source_root());
    assert!(
        broken.is_empty(),
        "imports against the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_gateways_files_import_no_circle() {
    let (_, graph) = check(&source_root());
    assert!(
        graph.len() > 20,
        "the import graph was read ({} files)",
        graph.len()
    );
    if let Some(circle) = find_circle(&graph) {
        panic!("an import circle: {}", circle.join(" -> "));
    }
}

#[test]
fn the_policy_is_pure() {
    let root = source_root();
    let mut files = Vec::new();
    rust_files(&root.join("gateway/policy"), &mut files);
    assert!(files.len() >= 4, "the policy's files were found");
    for file in files {
        let code = code_only(&std::fs::read_to_string(&file).unwrap_or_default());
        for banned in [
            "sqlx",
            "aws_sdk",
            "aws_config",
            "axum",
            "tokio",
            "AppState",
            "Engine",
        ] {
            assert!(
                !code.contains(banned),
                "{} names {banned}: the policy decides on facts and does no IO",
                file.display()
            );
        }
    }
}

/// The checker itself: a tree with a wrong import, a circle and a right import, written to a
/// temporary folder.
#[test]
fn the_checker_catches_a_wrong_import_and_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod gateway;\npub mod ssm;\n");
    write("ssm/mod.rs", "use crate::gateway::http::AppState;\n");
    write(
        "gateway/mod.rs",
        "pub mod facts;\npub mod http;\npub mod policy;\npub mod store;\n",
    );
    write(
        "gateway/facts.rs",
        "// crate::gateway::http in a comment is fine\n",
    );
    write(
        "gateway/policy/mod.rs",
        "mod rules;\nuse crate::gateway::{facts::User, store::db::Db};\nconst S: &str = \"crate::gateway::http\";\n",
    );
    write(
        "gateway/policy/rules.rs",
        "use super::super::facts::Target;\n",
    );
    write("gateway/store/mod.rs", "pub mod db;\npub mod audit;\n");
    write("gateway/store/db.rs", "use super::audit::Event;\n");
    write(
        "gateway/store/audit.rs",
        "use super::db::Db;\n#[cfg(test)]\nmod tests {\n    use crate::gateway::http::X;\n}\n\
         fn f() { crate::gateway::facts::x(); }\nuse crate::gateway::http::Y;\n",
    );
    write(
        "gateway/http/mod.rs",
        "use crate::gateway::store::db::Db;\n",
    );
    let (broken, graph) = check(root);
    assert_eq!(
        broken,
        vec![
            "gateway/policy/mod.rs: layer gateway::policy imports gateway::store::db (layer gateway::store), which it may not".to_owned(),
            "gateway/store/audit.rs: layer gateway::store imports gateway::http (layer gateway::http), which it may not".to_owned(),
            "ssm/mod.rs: layer ssm imports gateway::http (layer gateway::http), which it may not".to_owned(),
        ]
    );
    let circle = find_circle(&graph).expect("the circle between db and audit");
    assert!(
        circle.contains(&"gateway::store::db".to_owned()),
        "{circle:?}"
    );
    assert!(
        circle.contains(&"gateway::store::audit".to_owned()),
        "{circle:?}"
    );
}
