// Console numbers for BENCHMARKS.md, in headless Chromium against a running server:
//
// 1. first load, cold (a new browser profile each time: no cache): bytes transferred
//    until the login form is interactive — response bodies as encoded on the wire
//    (gzip), and the total with the response headers — and requests, and the time from
//    navigation to that point; then the runs list after logging in, cold and warm (a
//    second visit: vendored files are immutable);
// 2. a run of 5,000+ events: time until its detail page holds the whole log, the
//    longest main-thread task meanwhile, and how long a click (filtering the log),
//    a jump to the middle of the log and a keystroke in the page take to be painted.
//
// Not part of `cargo test` (timing belongs in benchmarks). Run against a server with
// the script workflow enabled and a fresh database, from the repository's root:
//
//   rm -rf /tmp/bench
//   AIOPS_ENABLE_SCRIPT_WORKFLOW=1 AIOPS_BOOTSTRAP_ADMIN_PASSWORD='bench password 1234' \
//     DATABASE_URL=sqlite:///tmp/bench/aiops.db AIOPS_LISTEN=127.0.0.1:18081 target/release/aiops serve &
//   AIOPS_URL=http://127.0.0.1:18081 AIOPS_PASSWORD='bench password 1234' node web/tests/console-bench.mjs
//
// Environment: AIOPS_URL, AIOPS_USER (admin), AIOPS_PASSWORD, AIOPS_CHROMIUM
// (/usr/bin/chromium), AIOPS_PLAYWRIGHT_DIR (/var/tmp/aiops-npm), EVENTS_STEPS (650:
// script steps failing 3 times each, 8 events per step), LIST_RUNS (60: short script
// runs started first, so the runs list shows a full page of 50).

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.env.AIOPS_PLAYWRIGHT_DIR || "/var/tmp/aiops-npm", "noop.js"));
const { chromium } = require("playwright-core");

const base = process.env.AIOPS_URL || "http://127.0.0.1:18081";
const user = process.env.AIOPS_USER || "admin";
const password = process.env.AIOPS_PASSWORD;
const steps = Number(process.env.EVENTS_STEPS || 650);
const listRuns = Number(process.env.LIST_RUNS || 60);
if (!password) throw new Error("set AIOPS_PASSWORD");

async function api(query, variables = {}, token = null) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const body = await (await fetch(`${base}/graphql`, { method: "POST", headers, body: JSON.stringify({ query, variables }) })).json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const kb = (n) => `${(n / 1024).toFixed(1)} KiB`;

const browser = await chromium.launch({
  executablePath: process.env.AIOPS_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
console.log(`Chromium ${browser.version()}, server ${base}`);

/**
 * What `page` loads meanwhile: `bytes`, the response bodies as encoded on the wire (the
 * sum of `dataReceived.encodedDataLength`); `wire`, everything received, response
 * headers included (`loadingFinished.encodedDataLength`, DevTools' "transferred");
 * requests, and how many of them the cache answered (from cache, or 304).
 */
async function meter(page) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Network.enable");
  const cached = new Set();
  const m = { bytes: 0, wire: 0, requests: 0, get cached() { return cached.size; } };
  cdp.on("Network.responseReceived", (e) => {
    m.requests++;
    if (e.response.fromDiskCache || e.response.fromMemoryCache || e.response.status === 304) cached.add(e.requestId);
  });
  cdp.on("Network.dataReceived", (e) => {
    m.bytes += e.encodedDataLength;
  });
  cdp.on("Network.loadingFinished", (e) => {
    m.wire += e.encodedDataLength;
  });
  cdp.on("Network.requestServedFromCache", (e) => cached.add(e.requestId));
  return m;
}

// The runs the list shows (a full first page of 50), and a run of many events (part 2),
// all finished before anything is timed.
const token = (await api("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: user, p: password })).login.token;
const script = {
  retry: { initial_ms: 1, factor: 1, max_ms: 1, max_retries: 5 },
  steps: Array.from({ length: steps }, () => ({ kind: "fail", times: 3 })),
};
for (let i = 0; i < listRuns; i++) {
  await api("mutation($i: JSON!) { startRun(input: { input: $i }) { id } }", { i: { steps: [{ kind: "noop" }, { kind: "output", value: { n: i } }] } }, token);
}
const { startRun } = await api("mutation($i: JSON!) { startRun(input: { input: $i, timeoutSeconds: 1800 }) { id } }", { i: script }, token);
let run;
for (;;) {
  const data = await api("query($id: UUID!) { run(id: $id) { status lastSeq } active: runs(first: 1, filter: { statuses: [QUEUED, RUNNING, RETRY_WAIT] }) { edges { node { id } } } }", { id: startRun.id }, token);
  run = data.run;
  if (["SUCCEEDED", "FAILED", "TIMED_OUT", "CANCELLED"].includes(run.status) && data.active.edges.length === 0) break;
  await new Promise((r) => setTimeout(r, 500));
}

// 1. First load, cold. The runs list counts as shown when its first page's rows are
// (they arrive together, from one query).
const rowsShown = "[data-testid=runs] tbody tr[data-run-id]";
const cold = [];
for (let i = 0; i < 5; i++) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const m = await meter(page);
  const t0 = performance.now();
  await page.goto(`${base}/`);
  await page.waitForSelector("#username:not([disabled])");
  const tti = performance.now() - t0;
  cold.push({ tti, bytes: m.bytes, wire: m.wire, requests: m.requests });
  // Log in and see the runs list: cold, then again (warm cache).
  await page.fill("#username", user);
  await page.fill("#password", password);
  const t1 = performance.now();
  await page.click("form button[type=submit]");
  await page.waitForSelector(rowsShown);
  const runsCold = performance.now() - t1;
  const warm = await meter(page);
  const t2 = performance.now();
  await page.reload();
  await page.waitForSelector(rowsShown);
  Object.assign(cold[i], { runsCold, warm: performance.now() - t2, warmBytes: warm.bytes, warmWire: warm.wire, warmCached: warm.cached, warmRequests: warm.requests });
  await context.close();
}
console.log("\nfirst load, cold (5 fresh profiles):");
console.log(`  login form interactive: median ${median(cold.map((c) => c.tti)).toFixed(0)} ms (all: ${cold.map((c) => c.tti.toFixed(0)).join(", ")})`);
console.log(`  transferred: ${kb(median(cold.map((c) => c.bytes)))} of response bodies (${kb(median(cold.map((c) => c.wire)))} with headers) in ${median(cold.map((c) => c.requests))} requests`);
console.log(`  log in -> runs list shown: median ${median(cold.map((c) => c.runsCold)).toFixed(0)} ms`);
console.log(`  reload of the runs list (warm): median ${median(cold.map((c) => c.warm)).toFixed(0)} ms, ${kb(median(cold.map((c) => c.warmBytes)))} of bodies (${kb(median(cold.map((c) => c.warmWire)))} with headers) in ${median(cold.map((c) => c.warmRequests))} requests (${median(cold.map((c) => c.warmCached))} from cache or 304)`);


// 2. The run of many events.
console.log(`\nrun ${startRun.id}: ${run.status}, ${run.lastSeq} events`);

const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await context.newPage();
await page.goto(`${base}/login`);
await page.fill("#username", user);
await page.fill("#password", password);
await page.click("form button[type=submit]");
await page.waitForSelector("[data-testid=runs]");
await page.evaluate(() => {
  window.__longest = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
  }).observe({ type: "longtask", buffered: false });
});
const t0 = performance.now();
await page.evaluate((id) => {
  history.pushState(null, "", `/runs/${id}`);
  dispatchEvent(new PopStateEvent("popstate"));
}, startRun.id);
await page.waitForFunction((n) => Number(document.querySelector("[data-testid=events]")?.dataset.count) === n, run.lastSeq, { timeout: 120000, polling: 50 });
const loaded = performance.now() - t0;
const longest = await page.evaluate(() => window.__longest);
const rows = await page.locator("[data-testid=events] [data-seq]").count();

/** Milliseconds from `act` (in the page) to the next paint after it. */
const painted = (act) =>
  page.evaluate(async (source) => {
    const f = new Function(`return (${source})`)();
    const t = performance.now();
    f();
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
    return performance.now() - t;
  }, act.toString());
const clicks = [];
for (let i = 0; i < 6; i++) {
  const group = i % 2 ? "all" : "steps";
  clicks.push(await painted(`() => [...document.querySelectorAll("button")].find((b) => b.textContent.trim() === "${group}").click()`));
}
const jumps = [];
for (let i = 0; i < 6; i++) {
  jumps.push(await painted(`() => { const el = document.querySelector("[data-testid=events]"); el.scrollTop = ${i % 2 ? "0" : "el.scrollHeight / 2"}; el.dispatchEvent(new Event("scroll")); }`));
}
await page.click("[data-testid=events]");
const keys = [];
for (let i = 0; i < 6; i++) {
  const t = performance.now();
  await page.keyboard.press(i % 2 ? "Home" : "End");
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
  keys.push(performance.now() - t);
}
console.log(`run detail with ${run.lastSeq} events:`);
console.log(`  whole log in the page: ${loaded.toFixed(0)} ms; longest main-thread task meanwhile: ${longest ? `${longest.toFixed(0)} ms` : "none over 50 ms (all the Long Tasks API reports)"}; rows in the DOM: ${rows}`);
console.log(`  click (filter the log) to paint: median ${median(clicks).toFixed(1)} ms, max ${Math.max(...clicks).toFixed(1)} ms`);
console.log(`  jump to the middle / top of the log to paint: median ${median(jumps).toFixed(1)} ms, max ${Math.max(...jumps).toFixed(1)} ms`);
console.log(`  key (End/Home in the log) to paint, through Playwright: median ${median(keys).toFixed(1)} ms, max ${Math.max(...keys).toFixed(1)} ms`);
await browser.close();
