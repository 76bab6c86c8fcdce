//! The files the GraphiQL page loads, compiled into the binary. Vendored files
//! (`api/assets/graphiql/`, described in its MANIFEST.md) are served under the path
//! they have there, which names the package version; our own files under a hash of
//! their content. Either way a path never changes meaning, so it can be cached forever.

use std::sync::LazyLock;

/// Where the assets are served; [`get`] takes the rest of the path.
const PREFIX: &str = "/graphiql/assets/";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

pub(super) struct Asset {
    /// The name the page's template refers to, as `{{key}}`.
    key: &'static str,
    /// The path under [`PREFIX`].
    name: String,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

/// A file of `api/assets/graphiql/`, served under its path there.
macro_rules! vendored {
    ($key:literal, $path:literal, $content_type:expr) => {
        Asset {
            key: $key,
            name: $path.to_owned(),
            content_type: $content_type,
            body: include_bytes!(concat!("../../assets/graphiql/", $path)),
        }
    };
}

/// A file of ours next to this one, served as `<stem>-<hash>.<ext>`.
macro_rules! hashed {
    ($key:literal, $stem:literal, $ext:literal, $content_type:expr) => {{
        let body: &'static [u8] = include_bytes!(concat!($stem, ".", $ext));
        Asset {
            key: $key,
            name: format!("{}-{:016x}.{}", $stem, fnv1a(body), $ext),
            content_type: $content_type,
            body,
        }
    }};
}

struct Assets {
    all: Vec<Asset>,
    page: String,
}

static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let all = vec![
        vendored!("react.js", "react-18.3.1/react.production.min.js", JS),
        vendored!(
            "react-dom.js",
            "react-dom-18.3.1/react-dom.production.min.js",
            JS
        ),
        vendored!("graphiql.js", "graphiql-3.9.0/graphiql.min.js", JS),
        vendored!("graphiql.css", "graphiql-3.9.0/graphiql.min.css", CSS),
        hashed!("app.js", "app", "js", JS),
        hashed!("app.css", "app", "css", CSS),
        hashed!("favicon.svg", "favicon", "svg", SVG),
    ];
    let page = all
        .iter()
        .fold(include_str!("index.html").to_owned(), |page, asset| {
            page.replace(
                &format!("{{{{{}}}}}", asset.key),
                &format!("{PREFIX}{}", asset.name),
            )
        });
    Assets { all, page }
});

/// The GraphiQL page, referring to every asset by its served path, with `nonce` for
/// the styles GraphiQL inserts (it must be the one in the response's CSP).
pub(super) fn page(nonce: &str) -> String {
    ASSETS.page.replace(NONCE, nonce)
}

const NONCE: &str = "{{nonce}}";

/// The asset served at `/graphiql/assets/<name>`.
pub(super) fn get(name: &str) -> Option<&'static Asset> {
    ASSETS.all.iter().find(|asset| asset.name == name)
}

/// 64-bit FNV-1a: a stable content hash for cache-busting names (not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_refers_to_every_asset_and_nothing_else() {
        assert_eq!(ASSETS.page.matches(NONCE).count(), 1);
        let page = page("n0nce");
        assert!(!page.contains("{{"), "unresolved reference in {page}");
        assert!(page.contains(r#"nonce="n0nce""#));
        for asset in &ASSETS.all {
            let path = format!("{PREFIX}{}", asset.name);
            assert!(
                page.contains(&format!("\"{path}\"")),
                "{path} not on the page"
            );
            assert!(get(&asset.name).is_some());
        }
        assert_eq!(page.matches(PREFIX).count(), ASSETS.all.len());
    }

    #[test]
    fn vendored_files_match_their_manifest() {
        let manifest = crate::vendored::rows(include_str!("../../assets/graphiql/MANIFEST.md"));
        assert_eq!(manifest.len(), 4, "{manifest:?}");
        for (path, want) in &manifest {
            let asset = get(path).unwrap_or_else(|| panic!("{path} is listed but not served"));
            assert_eq!(
                &crate::vendored::sha256_hex(asset.body),
                want,
                "sha256 of {path}"
            );
        }
        // Vendored files are served under their directory; ours have no directory.
        for asset in ASSETS.all.iter().filter(|a| a.name.contains('/')) {
            assert!(
                manifest.iter().any(|(p, _)| *p == asset.name),
                "{} is not in MANIFEST.md",
                asset.name
            );
        }
    }

    #[test]
    fn own_files_are_named_by_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let app = get_by_key("app.js");
        assert_eq!(app.name, format!("app-{:016x}.js", fnv1a(app.body)));
    }

    fn get_by_key(key: &str) -> &'static Asset {
        ASSETS.all.iter().find(|a| a.key == key).unwrap()
    }
}
