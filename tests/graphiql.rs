//! GraphiQL works offline: every file its page refers to is served by the binary itself,
//! and the page is sent with a strict Content-Security-Policy. (What the browser makes
//! of it is checked by hand: web/tests/graphiql-offline.mjs.)

mod common;

use common::{Backend, Harness, serve_api};
use reqwest::header::{HeaderMap, HeaderName};
use reqwest::{Response, StatusCode};

/// The values of every `src=`/`href=` attribute in `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=", "href="] {
        for (at, _) in html.match_indices(attribute) {
            let rest = &html[at + attribute.len()..];
            let quote = rest.chars().next().expect("attribute value");
            assert!(
                quote == '"' || quote == '\'',
                "unquoted {attribute} at {at}"
            );
            let value = &rest[1..];
            let end = value.find(quote).expect("closing quote");
            found.push(value[..end].to_owned());
        }
    }
    found
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(HeaderName::from_bytes(name.as_bytes()).unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// The `'nonce-…'` of the policy's `style-src`.
fn style_nonce(csp: &str) -> &str {
    let style_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("style-src "))
        .expect("style-src");
    let start = style_src.find("'nonce-").expect("style nonce") + "'nonce-".len();
    let rest = &style_src[start..];
    &rest[..rest.find('\'').expect("nonce end")]
}

async fn get(base: &str, path: &str) -> Response {
    reqwest::get(format!("{base}{path}")).await.unwrap()
}

// The page touches no database: one backend is enough.
#[tokio::test]
async fn graphiql_is_self_contained() {
    let h = Harness::new(Backend::Sqlite).await.expect("sqlite");
    let base = format!(
        "http://{}",
        serve_api(&h.engine, h.shutdown.child_token()).await
    );

    let page = get(&base, "/graphiql").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    let html = page.text().await.unwrap();

    // Security headers of the HTML page.
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "x-frame-options"), "DENY");
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert_eq!(header(&headers, "referrer-policy"), "no-referrer");
    let csp = header(&headers, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "connect-src 'self' ws: wss:",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{directive} missing from {csp}"
        );
    }
    assert!(!csp.contains("unsafe-"), "{csp}");
    // GraphiQL's one inserted <style> gets the nonce, which is new on every load.
    let nonce = style_nonce(csp);
    assert!(nonce.len() >= 22, "{nonce}");
    assert!(html.contains(&format!("nonce=\"{nonce}\"")));
    let again = get(&base, "/graphiql").await;
    assert_ne!(
        style_nonce(header(again.headers(), "content-security-policy")),
        nonce
    );

    // No inline script: every <script> loads a file and has no body.
    let scripts: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(scripts.len(), 4, "React, ReactDOM, GraphiQL, ours");
    for script in &scripts {
        let (tag, rest) = script.split_once('>').unwrap();
        assert!(tag.contains(" src=\"/"), "inline script: <script{tag}>");
        assert!(rest.starts_with("</script>"), "script with a body: {rest}");
    }

    // Every reference is a same-origin path, served with the right type, forever.
    let refs = references(&html);
    for name in [
        "/react.production.min.js",
        "/react-dom.production.min.js",
        "/graphiql.min.js",
        "/graphiql.min.css",
    ] {
        assert!(
            refs.iter().any(|r| r.ends_with(name)),
            "{name} not in {refs:?}"
        );
    }
    let mut app_js = None;
    for path in &refs {
        assert!(
            path.starts_with("/graphiql/assets/") && !path.contains("//"),
            "not a same-origin asset path: {path}"
        );
        let response = get(&base, path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let want = match path.rsplit_once('.').map(|(_, ext)| ext) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            _ => panic!("unexpected asset {path}"),
        };
        assert_eq!(header(response.headers(), "content-type"), want, "{path}");
        assert_eq!(
            header(response.headers(), "cache-control"),
            "public, max-age=31536000, immutable",
            "{path}"
        );
        assert_eq!(
            header(response.headers(), "x-content-type-options"),
            "nosniff"
        );
        let body = response.text().await.unwrap();
        assert!(!body.is_empty(), "{path}");
        if path.contains("/app-") && path.ends_with(".js") {
            app_js = Some(body);
        }
    }

    // Our script wires GraphiQL to both endpoints with the key.
    let app_js = app_js.expect("the page loads app-<hash>.js");
    assert!(app_js.contains("url: endpoint(\"/graphql\")"));
    assert!(app_js.contains("subscriptionUrl: endpoint(\"/graphql/ws\", true)"));
    assert!(app_js.contains("headers: auth") && app_js.contains("wsConnectionParams: auth"));

    // Anything else under /graphiql/assets/ is 404: unknown names, other versions, the
    // source map graphiql.min.js mentions (not shipped).
    for path in [
        "/graphiql/assets/nope.js",
        "/graphiql/assets/react-18.2.0/react.production.min.js",
        "/graphiql/assets/graphiql-3.9.0/index.umd.js.map",
        "/graphiql/assets/graphiql-3.9.0/LICENSE",
        "/graphiql/assets/app.js",
    ] {
        let response = get(&base, path).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            header(response.headers(), "x-content-type-options"),
            "nosniff"
        );
    }
}
