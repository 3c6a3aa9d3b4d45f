//! The layering rules of ARCHITECTURE.md ("Architecture invariant:" lines), checked on the
//! source text so that a forbidden import fails the test command instead of a later review.
//!
//! Dependencies point one way: http → flows (`src/auth`) → actors and storage ports ← stores.
//! The checks read `use` lines and paths in code (comments are skipped); they are deliberately
//! simple string rules, so a failure names the file and line to fix.

use std::fs;
use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Every `.rs` file under `dir`, recursively, sorted for stable messages.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// Code lines of a file with their numbers: comment lines (`//`, `///`, `//!`) left out.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_owned()))
        .collect()
}

fn rel(path: &Path) -> String {
    path.strip_prefix(ROOT)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Lines of `files` containing any of `needles`, as "file:line: text".
fn offending(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut hits = Vec::new();
    for file in files {
        for (n, line) in code_lines(file) {
            if needles.iter().any(|needle| line.contains(needle)) {
                hits.push(format!("{}:{n}: {}", rel(file), line.trim()));
            }
        }
    }
    hits
}

fn src(path: &str) -> PathBuf {
    Path::new(ROOT).join(path)
}

/// Architecture invariant: the actors crate knows nothing of HTTP, SQL or Prometheus.
#[test]
fn actors_crate_depends_on_no_web_sql_or_metrics_crate() {
    let manifest = fs::read_to_string(src("actors/Cargo.toml")).unwrap();
    let forbidden = [
        "axum",
        "sqlx",
        "prometheus",
        "tower",
        "hyper",
        "redis",
        "reqwest",
    ];
    let deps: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| {
            forbidden
                .iter()
                .any(|f| l.starts_with(&format!("{f} ")) || l.starts_with(&format!("{f}=")))
        })
        .collect();
    assert!(deps.is_empty(), "actors/Cargo.toml depends on {deps:?}");

    let files = rust_files(&src("actors/src"));
    assert!(!files.is_empty());
    let hits = offending(&files, &["axum::", "sqlx::", "prometheus::", "redis::"]);
    assert!(
        hits.is_empty(),
        "actors/src uses forbidden crates:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: the `sessiond-verify` crate (`verify/`) depends on no other sessiond
/// crate, so a service protected by it pulls in nothing of the server; and its jsonwebtoken has
/// exactly one crypto backend, the root's `aws_lc_rs` (with none or two it panics at run time).
#[test]
fn verify_crate_depends_on_no_sessiond_crate() {
    let manifest = fs::read_to_string(src("verify/Cargo.toml")).unwrap();
    let deps: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("sessiond") || l.contains("path ="))
        .collect();
    assert!(deps.is_empty(), "verify/Cargo.toml depends on {deps:?}");
    let jwt = manifest
        .lines()
        .find(|l| l.starts_with("jsonwebtoken"))
        .expect("verify uses jsonwebtoken");
    assert!(
        jwt.contains("default-features = false")
            && jwt.contains("\"aws_lc_rs\"")
            && !jwt.contains("rust_crypto"),
        "{jwt}"
    );

    let mut files = rust_files(&src("verify/src"));
    files.extend(rust_files(&src("verify/examples")));
    assert!(!files.is_empty());
    let hits = offending(&files, &["sessiond::", "sessiond_actors::"]);
    assert!(
        hits.is_empty(),
        "verify uses sessiond's own crates:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: nothing outside `src/http` imports `http`, except the composition
/// root (`app.rs`, `lib.rs`, `main.rs`).
#[test]
fn only_the_composition_root_imports_http() {
    let roots = [src("src/app.rs"), src("src/lib.rs"), src("src/main.rs")];
    let http_dir = src("src/http");
    let files: Vec<PathBuf> = rust_files(&src("src"))
        .into_iter()
        .filter(|f| !f.starts_with(&http_dir) && *f != src("src/http.rs"))
        .filter(|f| !roots.contains(f))
        .collect();
    let hits = offending(&files, &["crate::http", "sessiond::http"]);
    assert!(
        hits.is_empty(),
        "only src/http and the composition root may import `http`:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: the flows layer (`src/auth`) and the stores speak no HTTP: no axum
/// type appears in them, so a flow can be called (and tested) without a request.
#[test]
fn flows_and_stores_use_no_axum() {
    let mut files = rust_files(&src("src/auth"));
    files.extend(rust_files(&src("src/store")));
    for file in ["src/auth.rs", "src/store.rs"] {
        if src(file).exists() {
            files.push(src(file));
        }
    }
    let hits = offending(&files, &["axum::", "crate::http"]);
    assert!(
        hits.is_empty(),
        "src/auth and src/store must not use axum or http:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: the media component (`src/media`: upload rules, decoding,
/// re-encoding) speaks neither HTTP nor SQL: it talks to its port (`media/port.rs`), which
/// `store/media.rs` implements, and takes only the audit trail's value types from
/// `crate::store`.
#[test]
fn media_rules_use_their_port_not_http_or_sql() {
    let mut files = rust_files(&src("src/media"));
    files.push(src("src/media.rs"));
    let hits: Vec<String> = offending(&files, &["axum::", "crate::http", "sqlx::", "crate::store"])
        .into_iter()
        .filter(|hit| !hit.contains("use crate::store::audit::"))
        .collect();
    assert!(
        hits.is_empty(),
        "src/media must use its port, not http or the sqlx store:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: no type from `ractor` or `sqlx` appears in `src/http`; handlers use
/// the `Sessions` handle, the flows and the `Store` facade.
#[test]
fn http_uses_no_ractor_or_sqlx() {
    let mut files = rust_files(&src("src/http"));
    files.push(src("src/http.rs"));
    let hits = offending(&files, &["ractor::", "sqlx::"]);
    assert!(
        hits.is_empty(),
        "src/http uses ractor/sqlx:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: route modules do not import each other; what two routes share is a
/// flow (`src/auth`), a view (`http/views.rs`) or an extractor (`http/extract.rs`).
#[test]
fn route_modules_do_not_import_each_other() {
    let routes_dir = src("src/http/routes");
    let files = rust_files(&routes_dir);
    let siblings: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    let mut needles: Vec<String> = vec!["http::routes::".to_owned()];
    needles.extend(siblings.iter().map(|s| format!("super::{s}::")));
    needles.extend(siblings.iter().map(|s| format!("super::{s}::{{")));
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    let hits = offending(&files, &needles);
    assert!(
        hits.is_empty(),
        "route modules import each other:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: inside the actors crate, dependencies point one way: the `Sessions`
/// handle (`sessions.rs`) uses the actor, registry and supervisors, never the reverse. What they
/// share lives below them: the message protocol (`protocol.rs`), the error (`error.rs`), the
/// counters (`stats.rs`) and the settings (`config.rs`).
#[test]
fn actor_internals_do_not_import_the_sessions_handle() {
    let files: Vec<PathBuf> = ["session_actor.rs", "registry.rs", "supervisor.rs"]
        .iter()
        .map(|f| src(&format!("actors/src/{f}")))
        .collect();
    let shared: Vec<PathBuf> = ["protocol.rs", "error.rs", "stats.rs", "config.rs"]
        .iter()
        .map(|f| src(&format!("actors/src/{f}")))
        .collect();
    let mut hits = offending(&files, &["crate::sessions"]);
    // The shared modules sit below everything that runs actors.
    hits.extend(offending(
        &shared,
        &[
            "crate::sessions",
            "crate::session_actor",
            "crate::registry",
            "crate::supervisor",
        ],
    ));
    assert!(
        hits.is_empty(),
        "the actors crate's internals import the handle or each other upwards:\n{}",
        hits.join("\n")
    );
}

/// Architecture invariant: the rules of mailed codes (`src/codes`) and of API keys
/// (`src/api_keys`) talk to their ports (`codes/port.rs`, `api_keys/port.rs`), not to the sqlx
/// store or HTTP, so they are testable against their in-memory twins alone. (They may name the
/// shared value types `StoreError` and `UserStatus`.)
#[test]
fn code_and_api_key_rules_use_their_ports_not_the_store() {
    let mut files = rust_files(&src("src/codes"));
    files.push(src("src/codes.rs"));
    files.extend(rust_files(&src("src/api_keys")));
    files.push(src("src/api_keys.rs"));
    let shared_types_only = |hit: &String| {
        let Some((_, rest)) = hit.split_once("use crate::store::") else {
            return false;
        };
        rest.trim_end_matches(';')
            .trim_matches(|c| c == '{' || c == '}' || c == ';')
            .split(',')
            .map(str::trim)
            .all(|name| matches!(name, "StoreError" | "UserStatus"))
    };
    let hits: Vec<String> = offending(&files, &["crate::store", "crate::http", "sqlx::"])
        .into_iter()
        .filter(|hit| !shared_types_only(hit))
        .collect();
    assert!(
        hits.is_empty(),
        "code and API-key rules must use their ports:\n{}",
        hits.join("\n")
    );
}
