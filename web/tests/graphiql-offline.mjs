// Checks /graphiql in real headless Chromium: GraphiQL renders from the binary's own
// assets (no request leaves the origin), with no console error and no CSP violation;
// the docs explorer shows the schema; with an API key a query answers and a
// subscription runs over WebSocket (graphql-transport-ws, key in connection_init).
//
// A manual check, not part of `cargo test` (tests/graphiql.rs covers the HTTP side).
// Run it against a running server, from a scratch directory outside the repository:
//
//   apt-get install -y chromium                       # /usr/bin/chromium
//   mkdir -p /tmp/pw && cd /tmp/pw && npm install playwright-core
//   DATABASE_URL=sqlite:///tmp/gq/aiops.db AIOPS_LISTEN=127.0.0.1:18080 \
//     AIOPS_BOOTSTRAP_ADMIN_PASSWORD='graphiql check 1234' cargo run -- serve &
//   cd /tmp/pw && AIOPS_PASSWORD='graphiql check 1234' \
//     node /path/to/repo/web/tests/graphiql-offline.mjs
//
// Environment: AIOPS_URL (default http://127.0.0.1:18080), AIOPS_USER (admin),
// AIOPS_PASSWORD (required), CHROMIUM (/usr/bin/chromium), SCREENSHOT
// (/tmp/graphiql-offline.png; the docs explorer goes to …-docs.png). playwright-core is
// resolved from the current directory.
// Prints every request, console message and WebSocket frame; exits 1 on a failed check.

import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const { chromium } = require("playwright-core");

const base = process.env.AIOPS_URL || "http://127.0.0.1:18080";
const user = process.env.AIOPS_USER || "admin";
const password = process.env.AIOPS_PASSWORD;
const screenshot = process.env.SCREENSHOT || "/tmp/graphiql-offline.png";
if (!password) throw new Error("set AIOPS_PASSWORD");
const origin = new URL(base).origin;
const wsOrigin = origin.replace(/^http/, "ws");

const failures = [];
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
};

async function graphql(query, variables, token) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = "Bearer " + token;
  const res = await fetch(base + "/graphql", {
    method: "POST",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  const body = await res.json();
  if (body.errors) throw new Error(JSON.stringify(body.errors));
  return body.data;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  // Playwright gives every launch a fresh, empty --user-data-dir.
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });

const requests = [];
const consoleMessages = [];
const frames = [];
page.on("request", (r) => requests.push(`${r.method()} ${r.url()}`));
page.on("requestfailed", (r) => consoleMessages.push(`requestfailed ${r.url()} ${r.failure()?.errorText}`));
page.on("console", (m) => consoleMessages.push(`${m.type()}: ${m.text()}`));
page.on("pageerror", (e) => consoleMessages.push(`pageerror: ${e.message}`));
page.on("websocket", (ws) => {
  requests.push(`WS ${ws.url()}`);
  ws.on("framesent", (f) => frames.push(`> ${f.payload}`));
  ws.on("framereceived", (f) => frames.push(`< ${f.payload}`));
});
// Injected by the browser driver, so the page's CSP does not apply to it; reported
// to this process, so violations of every load (the page is reloaded) are kept.
const csp = [];
await page.exposeBinding("__reportCsp", (_source, text) => csp.push(text));
await page.addInitScript(() => {
  document.addEventListener("securitypolicyviolation", (e) =>
    window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`)
  );
});

const editor = (selector) => `document.querySelector(${JSON.stringify(selector)}).CodeMirror`;
async function setQuery(q) {
  await page.evaluate(`${editor(".graphiql-query-editor .CodeMirror")}.setValue(${JSON.stringify(q)})`);
  // GraphiQL parses the editor's text after a short debounce; running before that
  // would use the previous document's operation type.
  await page.waitForTimeout(500);
}
const result = () => page.evaluate(`${editor(".result-window .CodeMirror")}.getValue()`);
async function waitResult(predicate, what) {
  for (let i = 0; i < 100; i++) {
    const text = await result();
    if (predicate(text)) return text;
    await page.waitForTimeout(100);
  }
  check(false, `${what}: last result ${await result()}`);
  return null;
}

// 1. Without a key: the page renders and introspection feeds the docs explorer.
const response = await page.goto(base + "/graphiql");
const headers = response.headers();
check(/script-src 'self'/.test(headers["content-security-policy"] || ""), "page sent with a CSP");
await page.waitForSelector(".graphiql-container", { timeout: 15000 });
check(true, "GraphiQL rendered");
check((await page.textContent("#state")).startsWith("no key"), "no key yet");
await page.click('button[aria-label="Show Documentation Explorer"]');
await page.waitForSelector(".graphiql-doc-explorer", { timeout: 10000 });
await page.waitForSelector(".graphiql-doc-explorer >> text=Query", { timeout: 10000 });
const docs = await page.textContent(".graphiql-doc-explorer");
check(/Root Types/.test(docs) && /Mutation/.test(docs) && /Subscription/.test(docs), "docs explorer shows the schema's root types");
await page.click('a.graphiql-doc-explorer-type-name:text-is("Subscription")');
await page.waitForSelector(".graphiql-doc-explorer >> text=runUpdates", { timeout: 5000 });
check(true, "docs explorer lists Subscription.runUpdates");
const docsShot = screenshot.replace(/(\.png)?$/, "-docs.png");
await page.screenshot({ path: docsShot });
console.log(`screenshot: ${docsShot}`);
// A dialog (Radix) that may inject styles.
await page.click('button[aria-label="Open settings dialog"]');
await page.waitForSelector(".graphiql-dialog", { timeout: 5000 });
// That <style> sets `body { overflow: hidden }`; a CSP refusal would leave it inert.
const bodyOverflow = await page.evaluate(() => getComputedStyle(document.body).overflow);
check(bodyOverflow === "hidden", `the settings dialog's inserted <style> applies (body overflow: ${bodyOverflow})`);
await page.keyboard.press("Escape");

// 2. With a key from `login`, typed into the key field as a person would.
const { login } = await graphql(
  "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
  { u: user, p: password }
);
await page.fill("#token", login.token);
await Promise.all([page.waitForEvent("load"), page.click("#auth button")]);
await page.waitForSelector(".graphiql-container", { timeout: 15000 });
check((await page.textContent("#state")) === "key set", "key stored in localStorage and in use");
check((await page.evaluate(() => localStorage.getItem("aiops_token"))) === login.token, "localStorage holds the key");

await setQuery("{ me { username role } health }");
await page.click(".graphiql-execute-button");
const me = await waitResult((t) => t.includes('"me"'), "query answers");
if (me) {
  const data = JSON.parse(me).data;
  check(data.me.username === user && data.health === "ok", `query returns data: ${JSON.stringify(data)}`);
}

// 3. A subscription over WebSocket; a run started meanwhile shows up in it.
await setQuery("subscription { runUpdates { id status } }");
await page.click(".graphiql-execute-button");
for (let i = 0; i < 50 && !frames.some((f) => f.includes('"connection_ack"')); i++) await page.waitForTimeout(100);
const init = frames.find((f) => f.startsWith("> ") && f.includes('"connection_init"'));
check(Boolean(init) && init.includes(`Bearer ${login.token}`), "connection_init carries the key");
check(frames.some((f) => f.includes('"connection_ack"')), "server acknowledged the connection");
check(frames.some((f) => f.startsWith("> ") && f.includes('"subscribe"')), "subscribe sent");
const { startRun } = await graphql(
  "mutation($input: StartRunInput!) { startRun(input: $input) { id } }",
  { input: { input: { steps: [{ kind: "work", ms: 300 }, { kind: "output", value: { ok: true } }] } } },
  login.token
);
const update = await waitResult((t) => t.includes(startRun.id), "subscription delivers the new run");
if (update) check(true, `subscription update: ${update.replace(/\s+/g, " ")}`);
await page.screenshot({ path: screenshot });
console.log(`screenshot: ${screenshot}`);
await page.click(".graphiql-execute-button"); // stop the subscription

// 4. What the page did, all of it.
console.log("\nrequests:\n  " + requests.join("\n  "));
console.log("\nconsole:\n  " + (consoleMessages.join("\n  ") || "(nothing)"));
console.log("\nwebsocket frames:\n  " + frames.map((f) => f.slice(0, 200)).join("\n  "));
console.log("\nCSP violations:\n  " + (csp.join("\n  ") || "(none)"));
const foreign = requests.filter((r) => {
  const url = r.split(" ")[1];
  return !(url.startsWith(origin + "/") || url.startsWith(wsOrigin + "/"));
});
check(foreign.length === 0, `no request to another origin ${JSON.stringify(foreign)}`);
check(!consoleMessages.some((m) => /^(error|pageerror|requestfailed)/.test(m)), "no console error");
check(csp.length === 0, "no CSP violation");

await browser.close();
console.log(failures.length ? `\n${failures.length} check(s) failed` : "\nall checks passed");
process.exit(failures.length ? 1 : 0);
