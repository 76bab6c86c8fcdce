//! The web console in a real browser: the server runs in-process on a free port in
//! front of a real Prometheus and Alertmanager with a live incident (the rule-based
//! analyst investigates it and proposes a silence that needs approval, so no LLM is
//! needed), and `web/tests/console.mjs` drives Debian's Chromium through
//! `playwright-core` over it: logging in, the team editor's violations, a team run
//! watched live in the topology and the event log (with its WebSocket cut mid-run),
//! the approval arriving in the inbox and approved there, the report, streamed model
//! output, a stale decision's CONFLICT, a viewer's read-only console and refused
//! mutation, a phone-width layout, a schedule created in the console (a bad cron and
//! zone refused at their fields first; its next fire times in its zone; triggered now,
//! its run found by trigger; disabled, enabled, deleted), an Alertmanager receiver
//! whose token is shown once and works, logging out, and that the page never talks to
//! another origin or logs an error. No schedule ticker runs here: the schedule's only
//! run is the one "Trigger now" starts.
//!
//! Needs `node`, a Chromium (`AIOPS_CHROMIUM`, default `/usr/bin/chromium`) and the
//! npm package `playwright-core` installed in `AIOPS_PLAYWRIGHT_DIR` (default
//! `/var/tmp/aiops-npm`; `.ci/run` installs both). Without them the test prints a
//! loud SKIP and passes, except under `CI=true`, where it fails.
//!
//! Screenshots go to `AIOPS_CONSOLE_SCREENSHOTS` (default: `console-screenshots` in
//! the system's temporary directory); `web/screenshots/` holds the committed ones.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use aiops_engine::auth::Role;
use aiops_engine::model::{NotificationFilter, NotificationOutcome};
use aiops_engine::page::PageRequest;
use aiops_engine::{DefaultAlertSource, Engine, RunStatus, Worker};
use common::incident::{RULES, options};
use common::prometheus::{Alertmanager, MetricsEndpoint, Prometheus};
use common::{Backend, TestDb, assert_gap_free, serve_api};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Passwords of the console's users in this test.
const ADMIN_PASSWORD: &str = "console admin password 1";
const VIEWER_PASSWORD: &str = "console viewer password 1";

/// db ← api ← web; the agents of api and web may silence alerts (an approval).
const TEAM: &str = "name: shop
description: The shop's checkout stack
supervisor: { model: builtin:rules }
nodes:
  - id: db
    kind: postgres
    match: { service: db }
    agents: [{ id: metrics, tools: [prometheus_query_range, prometheus_query] }]
  - id: api
    kind: service
    depends_on: [db]
    match: { service: api }
    agents: [{ id: metrics, tools: [prometheus_query_range, alertmanager_silence] }]
  - id: web
    kind: service
    depends_on: [api]
    match: { service: web }
    agents: [{ id: metrics, tools: [prometheus_query_range, alertmanager_silence] }]
";

/// What the browser test needs, found on this machine.
struct Browser {
    chromium: PathBuf,
    playwright_dir: PathBuf,
}

impl Browser {
    /// `None` (after a loud SKIP) when something is missing, unless `CI=true`.
    fn find() -> Option<Browser> {
        let chromium = PathBuf::from(
            std::env::var("AIOPS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned()),
        );
        let playwright_dir = PathBuf::from(
            std::env::var("AIOPS_PLAYWRIGHT_DIR")
                .unwrap_or_else(|_| "/var/tmp/aiops-npm".to_owned()),
        );
        let node = std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        let mut missing = Vec::new();
        if !node {
            missing.push("`node` on the PATH".to_owned());
        }
        if !chromium.is_file() {
            missing.push(format!(
                "Chromium at {} (apt-get install chromium, or set AIOPS_CHROMIUM)",
                chromium.display()
            ));
        }
        if !playwright_dir
            .join("node_modules/playwright-core/package.json")
            .is_file()
        {
            missing.push(format!(
                "playwright-core in {} (npm install --prefix {0} playwright-core, or set \
                 AIOPS_PLAYWRIGHT_DIR)",
                playwright_dir.display()
            ));
        }
        if missing.is_empty() {
            return Some(Browser {
                chromium,
                playwright_dir,
            });
        }
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true but the console's browser test cannot run; missing: {}",
                missing.join("; ")
            );
        }
        eprintln!(
            "\n==================== SKIPPED: the web console's browser test ====================\n\
             missing: {}\n\
             ================================================================================\n",
            missing.join("; ")
        );
        None
    }
}

/// A loopback TCP proxy that holds every chunk a client sends for `delay` before
/// passing it on: Prometheus answers each query that much later, so a run lasts
/// long enough for a person (and the test) to watch its nodes change state.
async fn slow_proxy(target: String, delay: Duration) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let target = target.clone();
            tokio::spawn(async move {
                let Ok(outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                let (mut client_read, mut client_write) = inbound.into_split();
                let (mut server_read, mut server_write) = outbound.into_split();
                let up = async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match client_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                tokio::time::sleep(delay).await;
                                if server_write.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    format!("http://{addr}")
}

fn screenshots_dir() -> PathBuf {
    std::env::var("AIOPS_CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join("console-screenshots"))
}

/// The values of the `href="…"`/`src="…"` attributes of `html`.
fn references(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in [" href=\"", " src=\""] {
        for (at, _) in html.match_indices(attribute) {
            let value = &html[at + attribute.len()..];
            found.push(value[..value.find('"').expect("closing quote")].to_owned());
        }
    }
    found
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header on {}", response.url()))
}

// What the binary serves at `/`, over HTTP (no browser needed; one backend is enough:
// the console touches no database).
#[tokio::test]
async fn the_console_is_served_by_the_binary_with_a_strict_policy() {
    let h = common::Harness::new(Backend::Sqlite).await.expect("sqlite");
    let base = format!(
        "http://{}",
        serve_api(&h.engine, h.shutdown.child_token()).await
    );
    let client = reqwest::Client::new();
    let get = |path: &str| client.get(format!("{base}{path}")).send();

    // The page, at / and at every client route, with its policy.
    let page = get("/").await.expect("GET /");
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    assert_eq!(header(&page, "x-content-type-options"), "nosniff");
    let csp = header(&page, "content-security-policy").to_owned();
    for directive in [
        "default-src 'self'",
        "connect-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim() == directive),
            "{directive} missing from {csp}"
        );
    }
    let script_src = csp
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src "))
        .expect("script-src");
    assert!(
        script_src.starts_with("script-src 'self' 'sha256-") && !csp.contains("unsafe"),
        "{csp}"
    );
    let html = page.text().await.expect("page");
    for route in [
        "/runs",
        "/runs/01a2315f-30b5-71ad-b9a9-de2a2116a191",
        "/teams/shop",
    ] {
        let r = get(route).await.expect("client route");
        assert_eq!(r.status(), 200, "{route}");
        assert_eq!(header(&r, "content-security-policy"), csp);
        assert_eq!(r.text().await.expect("body"), html, "{route} is the page");
    }

    // Everything the page refers to is served from here, vendored files forever.
    let refs = references(&html);
    assert!(refs.len() > 20, "{refs:?}");
    for path in &refs {
        assert!(path.starts_with('/') && !path.starts_with("//"), "{path}");
        let r = get(path).await.expect("asset");
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        let want = match path.rsplit('.').next() {
            Some("js" | "mjs") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset kind {other:?}"),
        };
        assert_eq!(header(&r, "content-type"), want, "{path}");
        let cache = header(&r, "cache-control");
        if path.starts_with("/vendor/") {
            assert_eq!(cache, "public, max-age=31536000, immutable", "{path}");
        } else {
            assert_eq!(cache, "no-cache", "{path}");
            // Revalidated by its ETag: unchanged costs a 304 and no body.
            let etag = header(&r, "etag").to_owned();
            let again = client
                .get(format!("{base}{path}"))
                .header("if-none-match", &etag)
                .send()
                .await
                .expect("revalidate");
            assert_eq!(again.status(), 304, "{path}");
        }
    }
    // Compressed for browsers.
    let gz = client
        .get(format!("{base}/vendor/dagrejs-dagre-3.1.3/dagre.esm.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("gzip");
    assert_eq!(header(&gz, "content-encoding"), "gzip");
    assert!(gz.bytes().await.expect("body").len() < 48929 / 2);

    // Unknown files are 404 (never the page), the API keeps its paths.
    for path in [
        "/src/nope.js",
        "/vendor/preact-11.2.0/nope.mjs",
        "/styles/nope.css",
        "/favicon.ico",
        "/graphql/nope",
        "/graphiql/nope",
        "/README.md",
        "/tests/console.mjs",
        "/vendor/MANIFEST.md",
        "/src/../../Cargo.toml",
        "/%2e%2e/Cargo.toml",
    ] {
        let r = get(path).await.expect("GET");
        assert_eq!(r.status(), 404, "{path}");
    }
    assert_eq!(
        client
            .post(format!("{base}/runs"))
            .send()
            .await
            .expect("POST")
            .status(),
        405
    );
    assert_eq!(get("/healthz").await.expect("healthz").status(), 200);
    assert_eq!(get("/graphiql").await.expect("graphiql").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_in_a_real_browser() {
    let Some(browser) = Browser::find() else {
        return;
    };

    // The incident: db is down, api and web fail because of it.
    let metrics = MetricsEndpoint::start().await;
    metrics.set("svc_up", &[("service", "db")], 0.0);
    metrics.set("svc_errors", &[("service", "api")], 40.0);
    metrics.set("svc_errors", &[("service", "web")], 12.0);
    let Some(alertmanager) = Alertmanager::start().await else {
        return;
    };
    let Some(prometheus) = Prometheus::start(RULES, &[metrics.addr()], Some(&alertmanager)).await
    else {
        return;
    };
    prometheus.wait_for_alert("ServiceDown", "firing").await;
    prometheus.wait_for_alert("HighErrorRate", "firing").await;
    for service in ["db", "api", "web"] {
        prometheus
            .wait_for_samples(&format!(
                "ALERTS{{alertstate=\"firing\",service=\"{service}\"}}"
            ))
            .await;
    }

    // The server: investigations and the script workflow (for streamed output and a
    // stale approval), reading Prometheus through the slow proxy.
    let db = TestDb::migrated(Backend::Sqlite).await.expect("sqlite");
    let prometheus_addr = prometheus.url().trim_start_matches("http://").to_owned();
    let slow = slow_proxy(prometheus_addr, Duration::from_millis(250)).await;
    let mut opts = options(&prometheus, Some(&alertmanager));
    opts.default_source = DefaultAlertSource::new(Some(slow), Some(alertmanager.url().to_owned()))
        .expect("valid URLs");
    opts.workflows = opts.workflows.with(
        aiops_engine::script::NAME,
        aiops_engine::script::ScriptWorkflow::new(None),
    );
    let engine = Engine::connect(&db.url, opts).await.expect("engine");
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(engine.clone().listen(shutdown.clone()));
    tokio::spawn(Worker::new(engine.clone()).run(shutdown.child_token()));
    engine
        .create_user("admin", ADMIN_PASSWORD, Role::Admin)
        .await
        .expect("admin");
    engine
        .create_user("viewer", VIEWER_PASSWORD, Role::Viewer)
        .await
        .expect("viewer");
    let addr = serve_api(&engine, shutdown.child_token()).await;

    // The browser.
    let screenshots = screenshots_dir();
    std::fs::create_dir_all(&screenshots).expect("screenshot dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("web/tests/console.mjs");
    let team_file = tempfile::NamedTempFile::new().expect("team file");
    std::fs::write(team_file.path(), TEAM).expect("write team");
    let mut node = tokio::process::Command::new("node");
    node.arg(&script)
        .env("AIOPS_URL", format!("http://{addr}"))
        .env("AIOPS_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("AIOPS_VIEWER_PASSWORD", VIEWER_PASSWORD)
        .env("AIOPS_TEAM_FILE", team_file.path())
        .env("AIOPS_CHROMIUM", &browser.chromium)
        .env("AIOPS_PLAYWRIGHT_DIR", &browser.playwright_dir)
        .env("AIOPS_CONSOLE_SCREENSHOTS", &screenshots)
        .kill_on_drop(true);
    let outcome = tokio::time::timeout(Duration::from_secs(240), node.output())
        .await
        .expect("the browser scenarios finish within 4 minutes")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&outcome.stdout);
    println!("{stdout}");
    eprintln!("{}", String::from_utf8_lossy(&outcome.stderr));
    assert!(
        outcome.status.success(),
        "web/tests/console.mjs failed ({}); its output is above",
        outcome.status
    );
    println!("screenshots: {}", screenshots.display());

    // What the browser did, as the server saw it.
    let summary: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("SUMMARY "))
        .map(|s| serde_json::from_str(s).expect("summary JSON"))
        .expect("the script prints its SUMMARY");
    let team_run: aiops_engine::RunId = summary["teamRun"]
        .as_str()
        .expect("teamRun")
        .parse()
        .expect("run id");
    let run = engine.run(team_run).await.expect("team run");
    assert_eq!(run.status, RunStatus::Succeeded, "{:?}", run.error);
    assert_eq!(run.trigger, aiops_engine::Trigger::Api);
    let events = assert_gap_free(&engine, team_run).await;
    assert_eq!(
        summary["teamRunEventsSeen"].as_i64(),
        Some(events.len() as i64),
        "the page's log holds every stored event once"
    );
    let approvals = engine.approvals_of_run(team_run).await.expect("approvals");
    let silence = approvals
        .iter()
        .find(|a| a.tool == "alertmanager_silence")
        .expect("the silence approval");
    assert_eq!(silence.decided_by.as_deref(), Some("admin"));
    assert_eq!(
        silence.comment.as_deref(),
        Some("approved from the console inbox")
    );
    let silences: Value = reqwest::get(format!("{}/api/v2/silences", alertmanager.url()))
        .await
        .expect("silences")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        silences.as_array().map(Vec::len),
        Some(1),
        "the approved silence was posted once: {silences:#}"
    );
    // The viewer's forged cancel changed nothing; logging out revoked the session key.
    let script_run: aiops_engine::RunId = summary["scriptRun"]
        .as_str()
        .expect("scriptRun")
        .parse()
        .expect("run id");
    assert_ne!(
        engine.run(script_run).await.expect("run").status,
        RunStatus::Cancelled
    );
    // "Trigger now" started a team run of the schedule, which the page cancelled; the
    // schedule was deleted, its run stays.
    let schedule_run: aiops_engine::RunId = summary["scheduleRun"]
        .as_str()
        .expect("scheduleRun")
        .parse()
        .expect("run id");
    let run = engine.run(schedule_run).await.expect("schedule's run");
    assert_eq!(run.trigger, aiops_engine::Trigger::Schedule);
    assert_eq!(
        run.trigger_id.as_deref(),
        summary["scheduleId"].as_str(),
        "triggered by the schedule created in the console"
    );
    assert_eq!(run.status, RunStatus::Cancelled);
    assert!(
        engine
            .schedules(&PageRequest::first(10))
            .await
            .expect("schedules")
            .items
            .is_empty(),
        "the schedule was deleted from the console"
    );
    // The receiver's token (shown once) was accepted once, then the receiver deleted.
    assert!(
        engine
            .alertmanager_receivers()
            .await
            .expect("receivers")
            .is_empty()
    );
    let notifications = engine
        .alert_notifications(&NotificationFilter::default(), &PageRequest::first(10))
        .await
        .expect("notifications")
        .items;
    assert_eq!(notifications.len(), 1, "{notifications:?}");
    assert_eq!(notifications[0].receiver, "prod-am");
    assert_eq!(notifications[0].outcome, NotificationOutcome::Unrouted);
    shutdown.cancel();
}
