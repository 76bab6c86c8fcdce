//! The architecture invariants that the compiler alone does not keep (ARCHITECTURE.md,
//! ../shared/LAYOUT.md), checked on the source text: only the store speaks to the
//! database library, the store is reachable from nowhere outside the engine, only
//! `api` knows HTTP and GraphQL, the durable core imports no agent domain, and the
//! import circles that were broken stay broken.

use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(Path::new(dir), &mut out);
    assert!(!out.is_empty(), "no sources under {dir}");
    out
}

/// The code of a file without its comments (doc comments mention what code must not).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Files of `dir` (not under `except`) whose code mentions any of `words`.
fn offenders(dir: &str, except: &[&str], words: &[&str]) -> Vec<String> {
    sources(dir)
        .into_iter()
        .filter(|p| !except.iter().any(|e| p.starts_with(e)))
        .filter_map(|p| {
            let text = code(&p);
            let found: Vec<&str> = words.iter().copied().filter(|w| text.contains(w)).collect();
            (!found.is_empty()).then(|| format!("{} mentions {found:?}", p.display()))
        })
        .collect()
}

#[test]
fn only_the_store_speaks_to_the_database_library() {
    let words = ["sea_orm", "sqlx"];
    let mut found = offenders("engine/src", &["engine/src/store"], &words);
    found.extend(offenders("api/src", &[], &words));
    // The one exception: `aiops bench --history` writes its million-run fixture with
    // set-based SQL of its own (no product path goes through it).
    found.extend(offenders("src", &["src/bench_history.rs"], &words));
    assert!(found.is_empty(), "SQL outside engine/src/store: {found:#?}");
}

#[test]
fn the_store_is_private_to_the_engine() {
    let lib = code(Path::new("engine/src/lib.rs"));
    assert!(
        lib.lines().any(|l| l.trim() == "mod store;"),
        "engine/src/lib.rs declares `mod store;` (not pub)"
    );
    let words = ["aiops_engine::store", "engine::store"];
    let mut found = offenders("api/src", &[], &words);
    found.extend(offenders("src", &[], &words));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_api_knows_http_and_graphql() {
    let words = ["axum", "async_graphql", "hyper"];
    let mut found = offenders("engine/src", &[], &words);
    // The one exception: `aiops bench --llm` plays a model server on loopback (test
    // fixture, not product surface; it serves no API).
    found.extend(offenders("src", &["src/bench_llm.rs"], &words));
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_durable_core_imports_no_agent_domain() {
    // The domain (LAYOUT.md) lives in these modules; nothing else in the engine
    // may import them: the core knows nothing of LLMs, Prometheus or teams' meaning.
    let domain = ["llm", "tools", "agents", "report", "triggers"];
    let except: Vec<String> = domain.iter().map(|d| format!("engine/src/{d}")).collect();
    let except: Vec<&str> = except.iter().map(String::as_str).collect();
    let words: Vec<String> = domain
        .iter()
        .flat_map(|d| [format!("crate::{d}::"), format!("crate::{d};")])
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let found = offenders("engine/src", &except, &words);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn broken_import_circles_stay_broken() {
    // engine -> worker (the worker drives the engine, not the other way round)
    let found = offenders("engine/src/engine", &[], &["crate::worker"]);
    assert!(found.is_empty(), "{found:#?}");
    // workflow -> script (the binary registers the script workflow)
    assert!(!code(Path::new("engine/src/workflow.rs")).contains("crate::script"));
    // bench -> cli (both use `open`)
    assert!(!code(Path::new("src/bench.rs")).contains("crate::cli"));
}
