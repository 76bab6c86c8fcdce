//! The web console (`web/`, SPEC §12) at `/`: plain ES modules and the vendored
//! libraries they import (`web/vendor/MANIFEST.md`), compiled into the binary with
//! `rust-embed`. Debug builds read the files from disk at each request, so an edit of
//! the console needs only a browser reload; release builds embed what is in git. No
//! build step, and `cargo run` never needs npm.
//!
//! The page is sent with a Content-Security-Policy that admits same-origin files only:
//! the one inline `<script>` is the import map, admitted by its sha256; nothing can be
//! loaded from, or sent to, another origin.
//!
//! Paths: `/` and every client route (`/runs/…`, `/teams/…`: a path whose last segment
//! has no dot, outside the API's prefixes) answer `index.html`; `/src/…`, `/styles/…`,
//! `/vendor/…` and the icon answer their file or 404.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

#[derive(rust_embed::Embed)]
#[folder = "../web/"]
#[include = "index.html"]
#[include = "favicon.svg"]
#[include = "src/**/*.js"]
#[include = "styles/*.css"]
#[include = "vendor/*/*.js"]
#[include = "vendor/*/*.mjs"]
struct Files;

/// Vendored paths name their package version: a browser may keep them forever.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Our own files keep their names across releases (they are imported by relative
/// path): the browser revalidates them (ETag = sha256) on each load.
const REVALIDATE: &str = "no-cache";

/// Paths that belong to the API, never to the console's client routes.
const API_PREFIXES: [&str; 6] = ["graphql", "graphiql", "api", "metrics", "healthz", "readyz"];

/// What the console page may load and where it may connect: its own origin only.
/// `connect-src 'self'` covers `ws:`/`wss:` to the same host and port (CSP Level 3,
/// as Chromium and Firefox implement it). `import_map` is the sha256 of the page's
/// import map, the only inline script.
fn content_security_policy(import_map: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self' 'sha256-{import_map}'; style-src 'self'; \
         img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; \
         frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// The console: every GET/HEAD the API's own routes do not answer (the router's
/// fallback), gzip-compressed for clients that accept it.
pub(crate) fn service() -> axum::routing::MethodRouter {
    axum::routing::get(serve).layer(tower_http::compression::CompressionLayer::new())
}

async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let path = uri.path().trim_start_matches('/');
    // Never a way out of web/ (rust-embed checks too, when it reads from disk).
    if path
        .split('/')
        .any(|segment| segment == ".." || segment.contains('\\'))
    {
        return not_found();
    }
    if path.is_empty() || path == "index.html" {
        return page();
    }
    if let Some(file) = Files::get(path) {
        return asset(path, file, &headers);
    }
    let first = path.split('/').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let is_client_route = !last.contains('.')
        && !API_PREFIXES.contains(&first)
        && !["src", "styles", "vendor"].contains(&first);
    if is_client_route { page() } else { not_found() }
}

fn page() -> Response {
    let Some(file) = Files::get("index.html") else {
        return not_found();
    };
    let html = String::from_utf8_lossy(&file.data);
    let csp = content_security_policy(&import_map_hash(&html).unwrap_or_default());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // Revalidated on every load, so a new binary's files are picked up.
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, csp.as_str()),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        html.into_owned(),
    )
        .into_response()
}

fn asset(path: &str, file: rust_embed::EmbeddedFile, headers: &HeaderMap) -> Response {
    let etag = format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(file.metadata.sha256_hash())
    );
    let cache = if path.starts_with("vendor/") {
        IMMUTABLE
    } else {
        REVALIDATE
    };
    let common = [
        (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        ),
    ];
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    if unchanged {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(header::CONTENT_TYPE, content_type(path))],
        file.data.into_owned(),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::X_CONTENT_TYPE_OPTIONS, "nosniff")],
        "not found",
    )
        .into_response()
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        _ => "application/octet-stream",
    }
}

const IMPORT_MAP_OPEN: &str = r#"<script type="importmap">"#;

/// The base64 sha256 of the page's import map (the text between its tags), as a CSP
/// hash source names it.
fn import_map_hash(html: &str) -> Option<String> {
    let start = html.find(IMPORT_MAP_OPEN)? + IMPORT_MAP_OPEN.len();
    let end = start + html[start..].find("</script>")?;
    let digest = Sha256::digest(&html.as_bytes()[start..end]);
    Some(base64::engine::general_purpose::STANDARD.encode(digest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn text(path: &str) -> String {
        let file = Files::get(path).unwrap_or_else(|| panic!("{path} not embedded"));
        String::from_utf8(file.data.into_owned()).expect("utf-8")
    }

    /// `(path under web/vendor/, sha256)` of every row of the manifest's table.
    fn manifest() -> Vec<(String, String)> {
        crate::vendored::rows(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../web/vendor/MANIFEST.md"
            ))
            .expect("web/vendor/MANIFEST.md"),
        )
    }

    #[test]
    fn vendored_files_match_their_manifest() {
        let listed = manifest();
        assert!(listed.len() >= 8, "manifest rows: {listed:?}");
        for (path, want) in &listed {
            let file = Files::get(&format!("vendor/{path}"))
                .unwrap_or_else(|| panic!("vendor/{path} is listed but not served"));
            assert_eq!(
                &crate::vendored::sha256_hex(&file.data),
                want,
                "sha256 of {path}"
            );
        }
        let listed: BTreeSet<String> = listed.into_iter().map(|(p, _)| p).collect();
        for served in Files::iter().filter_map(|p| p.strip_prefix("vendor/").map(str::to_owned)) {
            assert!(
                listed.contains(&served),
                "vendor/{served} is not in MANIFEST.md"
            );
        }
    }

    /// The import map's entries, `specifier -> path`.
    fn import_map() -> BTreeMap<String, String> {
        let html = text("index.html");
        let start = html.find(IMPORT_MAP_OPEN).expect("an import map") + IMPORT_MAP_OPEN.len();
        let end = start + html[start..].find("</script>").expect("its end");
        let map: serde_json::Value = serde_json::from_str(&html[start..end]).expect("JSON");
        map["imports"]
            .as_object()
            .expect("imports")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a path").to_owned()))
            .collect()
    }

    /// The module specifiers of a file's `import`/`export … from` statements (up to
    /// their `;`): those that begin a line or follow a `;` (minified code), so that the words in a
    /// string (graphql-ws's error message quotes `import WebSocket from 'ws'`) are
    /// not taken for a statement.
    fn specifiers(source: &str) -> Vec<String> {
        let mut found = Vec::new();
        for keyword in ["import", "export"] {
            for (at, _) in source.match_indices(keyword) {
                let before = source[..at].trim_end_matches([' ', '\t']);
                if !(before.is_empty() || before.ends_with('\n') || before.ends_with(';')) {
                    continue;
                }
                let statement = &source[at..];
                let end = statement.find(';').unwrap_or(statement.len());
                let statement = &statement[..end];
                let Some(from) = statement
                    .rfind("from")
                    .map(|i| &statement[i + 4..])
                    .or_else(|| statement.strip_prefix("import"))
                else {
                    continue;
                };
                let from = from.trim_start();
                let Some(quote) = from.chars().next().filter(|c| *c == '"' || *c == '\'') else {
                    continue;
                };
                if let Some(close) = from[1..].find(quote) {
                    found.push(from[1..1 + close].to_owned());
                }
            }
        }
        found
    }

    #[test]
    fn specifiers_of_statements_only() {
        let source = "import{a as b}from\"preact\";var x=\"import y from 'ws'\";\n\
                      import {\n  h,\n  g,\n} from './ui.js';\nexport { c } from \"./c.js\";\nimport \"./side.js\";";
        assert_eq!(
            specifiers(source),
            ["preact", "./ui.js", "./side.js", "./c.js"]
        );
    }

    fn resolve(from: &str, spec: &str) -> String {
        let mut parts: Vec<&str> = from.split('/').collect();
        parts.pop();
        for segment in spec.split('/') {
            match segment {
                "." => {}
                ".." => {
                    parts.pop();
                }
                s => parts.push(s),
            }
        }
        parts.join("/")
    }

    #[test]
    fn every_import_resolves_to_a_served_file() {
        let map = import_map();
        for (spec, path) in &map {
            let path = path.strip_prefix('/').expect("absolute path");
            assert!(Files::get(path).is_some(), "{spec} -> {path}: not served");
        }
        let modules: Vec<String> = Files::iter()
            .map(|p| p.into_owned())
            .filter(|p| p.ends_with(".js") || p.ends_with(".mjs"))
            .collect();
        assert!(modules.iter().any(|p| p == "src/main.js"));
        for module in &modules {
            for spec in specifiers(&text(module)) {
                let target = if spec.starts_with("./") || spec.starts_with("../") {
                    resolve(module, &spec)
                } else if let Some(absolute) = spec.strip_prefix('/') {
                    absolute.to_owned()
                } else if let Some(path) = map.get(&spec) {
                    path.trim_start_matches('/').to_owned()
                } else {
                    panic!("{module} imports {spec:?}, which the import map does not name");
                };
                assert!(
                    Files::get(&target).is_some(),
                    "{module} imports {spec:?} = {target}: not served"
                );
            }
        }
    }

    #[test]
    fn the_page_preloads_every_module() {
        let html = text("index.html");
        let marker = r#"<link rel="modulepreload" href=""#;
        let preloaded: BTreeSet<String> = html
            .match_indices(marker)
            .map(|(at, _)| {
                let rest = &html[at + marker.len()..];
                rest[..rest.find('"').expect("closing quote")].to_owned()
            })
            .collect();
        let modules: BTreeSet<String> = Files::iter()
            .filter(|p| p.ends_with(".js") || p.ends_with(".mjs"))
            .map(|p| format!("/{p}"))
            .collect();
        assert_eq!(
            preloaded, modules,
            "index.html's modulepreload links must name every module served"
        );
    }

    #[test]
    fn the_page_has_no_inline_script_but_its_import_map() {
        let html = text("index.html");
        let scripts: Vec<&str> = html.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        for script in scripts {
            let (tag, rest) = script.split_once('>').expect("tag end");
            if tag.trim() == r#"type="importmap""# {
                continue;
            }
            assert!(tag.contains(" src=\"/"), "inline script: <script{tag}>");
            assert!(rest.starts_with("</script>"), "script with a body: {rest}");
        }
        // No inline event handler attribute (` onclick=` and the like).
        for (at, _) in html.match_indices(" on") {
            let name: String = html[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            assert!(
                !html[at + 1 + name.len()..].starts_with('='),
                "inline handler {name}"
            );
        }
        let hash = import_map_hash(&html).expect("an import map");
        assert!(content_security_policy(&hash).contains(&format!("'sha256-{hash}'")));
    }

    #[test]
    fn content_types() {
        assert_eq!(
            content_type("src/main.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type("vendor/preact-11.2.0/preact.mjs"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("styles/app.css"), "text/css; charset=utf-8");
    }
}
