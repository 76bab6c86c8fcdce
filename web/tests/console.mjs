// The console's browser scenarios, run by `cargo test --test console` (tests/console.rs)
// against a server it starts with a live incident; see that file for the set-up.
// Drives the system Chromium through playwright-core (no browser download).
//
// Environment: AIOPS_URL, AIOPS_ADMIN_PASSWORD, AIOPS_VIEWER_PASSWORD, AIOPS_TEAM_FILE
// (the team document to type into the editor), AIOPS_CHROMIUM, AIOPS_PLAYWRIGHT_DIR
// (where `node_modules/playwright-core` is), AIOPS_CONSOLE_SCREENSHOTS (a directory).
//
// Prints `ok`/`FAIL` per check and, last, `SUMMARY {json}` for the Rust side; exits 1
// when a check failed.

import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.AIOPS_PLAYWRIGHT_DIR || "/var/tmp/aiops-npm", "noop.js"));
const { chromium } = require("playwright-core");

const base = process.env.AIOPS_URL;
const adminPassword = process.env.AIOPS_ADMIN_PASSWORD;
const viewerPassword = process.env.AIOPS_VIEWER_PASSWORD;
const team = readFileSync(process.env.AIOPS_TEAM_FILE, "utf8");
const shots = process.env.AIOPS_CONSOLE_SCREENSHOTS || "/tmp/console-screenshots";
const origin = new URL(base).origin;
const wsOrigin = origin.replace(/^http/, "ws");

const failures = [];
const summary = {};
function check(ok, what) {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures.push(what);
  return ok;
}
const t0 = Date.now();
const step = (what) => console.log(`\n== ${what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);

/** GraphQL from the test itself (not the page), as `user`. */
async function api(query, variables = {}, token = null) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(`${base}/graphql`, { method: "POST", headers, body: JSON.stringify({ query, variables }) });
  return res.json();
}
async function tokenOf(username, password) {
  const r = await api("mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }", { u: username, p: password });
  if (!r.data) throw new Error(JSON.stringify(r));
  return r.data.login.token;
}

const browser = await chromium.launch({
  executablePath: process.env.AIOPS_CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

// Everything every page asks for, says, or is refused (CSP), across all pages.
const requests = [];
const problems = [];
async function watch(page, name) {
  page.on("request", (r) => requests.push(`${name} ${r.method()} ${r.url()}`));
  page.on("websocket", (ws) => requests.push(`${name} WS ${ws.url()}`));
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") problems.push(`${name} console.${m.type()}: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`${name} pageerror: ${e.message}`));
  page.on("requestfailed", (r) => {
    // A page that navigates away cancels its pending requests: not a failure.
    if (r.failure()?.errorText !== "net::ERR_ABORTED") problems.push(`${name} requestfailed ${r.url()} ${r.failure()?.errorText}`);
  });
  await page.exposeBinding("__reportCsp", (_source, text) => problems.push(`${name} CSP: ${text}`));
  await page.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => window.__reportCsp(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
    // Every data-state a topology node ever shows, in order (per node).
    window.__nodeStates = {};
    const record = (el) => {
      const id = el.getAttribute("data-node-id");
      const state = el.getAttribute("data-state");
      const seen = (window.__nodeStates[id] ??= []);
      if (seen[seen.length - 1] !== state) seen.push(state);
    };
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === "attributes" && r.target.hasAttribute?.("data-node-id")) record(r.target);
        for (const n of r.addedNodes ?? []) {
          if (n.nodeType !== 1) continue;
          if (n.hasAttribute("data-node-id")) record(n);
          n.querySelectorAll?.("[data-node-id]").forEach(record);
        }
      }
    }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-state"] });
  });
}

const shot = async (page, name) => {
  await page.screenshot({ path: path.join(shots, `${name}.png`) });
  console.log(`   screenshot ${name}.png`);
};

// ---------------------------------------------------------------------------------
// The admin's page, whose WebSocket the test can cut: each socket goes through a
// route that forwards both ways and records what the page sends.
const adminContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const page = await adminContext.newPage();
await watch(page, "admin");
const sent = [];
const sockets = [];
let blocked = false;
await page.routeWebSocket(/\/graphql\/ws$/, (ws) => {
  if (blocked) {
    ws.close({ code: 1012, reason: "test: server restarting" });
    return;
  }
  const server = ws.connectToServer();
  ws.onMessage((m) => {
    sent.push({ at: Date.now(), m });
    server.send(m);
  });
  server.onMessage((m) => ws.send(m));
  ws.onClose((code, reason) => server.close({ code, reason }));
  server.onClose((code, reason) => ws.close({ code, reason }));
  sockets.push({ ws, server });
});
const cut = async () => {
  blocked = true;
  for (const { ws, server } of sockets.splice(0)) {
    await ws.close({ code: 1012, reason: "test: cut" }).catch(() => {});
    await server.close({ code: 1000, reason: "cut" }).catch(() => {});
  }
};

try {
step("log in with the keyboard");
await page.goto(`${base}/`);
await page.waitForSelector("#username");
check(new URL(page.url()).pathname === "/login", "an anonymous visitor is sent to /login");
await page.focus("#username");
await page.keyboard.type("admin");
await page.keyboard.press("Tab");
await page.keyboard.type(adminPassword);
await page.keyboard.press("Enter");
await page.waitForSelector('[data-testid=me][data-role=ADMIN]');
check(new URL(page.url()).pathname === "/runs", "logged in: the runs list");
const adminToken = await page.evaluate(() => localStorage.getItem("aiops_console_token"));
const me = await api("{ me { username apiKeyId } }", {}, adminToken);
check(me.data?.me?.username === "admin" && Boolean(me.data.me.apiKeyId), "the session is an API key of admin");

step("the team editor: a cycle is shown at its path, then the team is applied");
await page.click('a[href="/teams"]');
await page.click('a[href="/teams/new"]');
await page.waitForSelector("#team-doc");
const cyclic = "name: loop\nsupervisor: { model: builtin:rules }\nnodes:\n  - id: a\n    kind: service\n    depends_on: [b]\n    agents: [{ id: x }]\n  - id: b\n    kind: service\n    depends_on: [a]\n    agents: [{ id: x }]\n";
await page.fill("#team-doc", cyclic);
const cycle = await page.waitForSelector('[data-violation-path^="nodes["][data-violation-path$="].depends_on"]:has-text("cycle")', { timeout: 10000 }).catch(() => null);
check(Boolean(cycle), "the cycle is reported at nodes[…].depends_on");
if (cycle) {
  const text = await cycle.textContent();
  check(/a -> b -> a|b -> a -> b/.test(text) && /line (6|10)/.test(text), `…naming the cycle and its line: ${text.trim()}`);
  check((await page.locator(".gutter li.bad").count()) >= 1, "…and marking the line in the gutter");
  check(await page.locator("[data-testid=apply]").isDisabled(), "…and Apply is disabled");
}
await shot(page, "team-editor");
await page.fill("#team-doc", team);
await page.waitForSelector('[data-testid=validation][data-valid="true"]', { timeout: 10000 });
await page.click("[data-testid=apply]");
await page.waitForURL(/\/teams\/shop$/, { timeout: 10000 });
await page.waitForSelector('[data-node-id="web"]');
check((await page.locator("[data-node-id]").count()) === 3, "the applied team's topology shows its 3 nodes");

step("the approvals inbox, open in a second tab");
const inbox = await adminContext.newPage();
await watch(inbox, "inbox");
let inboxLoads = 0;
inbox.on("load", () => inboxLoads++);
await inbox.goto(`${base}/approvals`);
await inbox.waitForSelector("[data-testid=approvals]", { state: "attached" });
await inbox.waitForSelector('[data-testid=connection][data-state=connected]', { timeout: 10000 });
check((await inbox.locator("[data-approval-id]").count()) === 0, "the inbox starts empty");

step("start the team's investigation and watch it");
await page.bringToFront();
await page.click("[data-testid=start-run]");
await page.waitForURL(/\/runs\/[0-9a-f-]{36}$/, { timeout: 10000 });
const teamRun = page.url().split("/").pop();
summary.teamRun = teamRun;
await page.waitForSelector('[data-node-id="db"][data-state="running"], [data-node-id="db"][data-state="failing"]', { timeout: 20000 });
check(true, "a node is being investigated (data-state)");

step("cut the WebSocket mid-run; the log resumes after its last seq");
const seqAtCut = Number(await page.getAttribute("[data-testid=events]", "data-last-seq"));
const subscribesBefore = sent.filter(({ m }) => m.includes('"subscribe"') && m.includes("runEvents")).length;
await cut();
await page.waitForSelector('[data-testid=connection][data-state=reconnecting]', { timeout: 5000 }).catch(() => null);
check((await page.getAttribute("[data-testid=connection]", "data-state")) === "reconnecting", "the page says it is reconnecting");
await page.waitForTimeout(2500); // the run goes on meanwhile
const storedDuringCut = (await api("query($id: UUID!) { run(id: $id) { lastSeq } }", { id: teamRun }, adminToken)).data.run.lastSeq;
check(storedDuringCut > seqAtCut, `events were stored while the page was cut off (${seqAtCut} -> ${storedDuringCut})`);
blocked = false;
await page.waitForSelector('[data-testid=connection][data-state=connected]', { timeout: 15000 });
const resubscribe = sent.filter(({ m }) => m.includes('"subscribe"') && m.includes("runEvents")).slice(subscribesBefore)[0];
const resumedFrom = resubscribe ? JSON.parse(resubscribe.m).payload.variables.afterSeq : null;
check(resumedFrom !== null && resumedFrom >= seqAtCut && resumedFrom > 0, `re-subscribed with afterSeq ${resumedFrom} (the last seq seen; ${seqAtCut} at the cut)`);

step("the approval appears in the inbox without a reload and is approved there");
const card = await inbox.waitForSelector('[data-approval-id][data-status="PENDING"]', { timeout: 30000 });
await inbox.bringToFront();
const badge = await page.waitForSelector('[data-testid=pending-approvals]', { timeout: 10000 }).catch(() => null);
check(Boolean(badge) && (await badge.textContent()) === "1", "the navigation shows 1 approval waiting, on every page");
check(inboxLoads === 1, "the inbox was not reloaded");
const cardText = await card.textContent();
check(/alertmanager_silence/.test(cardText) && /HighErrorRate/.test(cardText) && /expires in/.test(cardText), "it shows the tool, the exact arguments and the expiry");
await shot(inbox, "approvals");
await inbox.fill('[data-approval-id] input[type="text"]', "approved from the console inbox");
await inbox.click("[data-approval-id] [data-testid=approve]");
await inbox.waitForSelector('text=Decided here', { timeout: 10000 });
check((await inbox.locator('[data-approval-id][data-status="PENDING"]').count()) === 0, "the decided approval leaves the inbox");

step("the run finishes; the graph, the log and the report are right");
await page.bringToFront();
await page.waitForSelector('section.run[data-status="SUCCEEDED"]', { timeout: 60000 });
await page.waitForSelector("[data-testid=report] [data-section]", { timeout: 10000 });
const states = await page.evaluate(() => window.__nodeStates);
// db was watched live before the cut; api and web may have been investigated while
// the page was cut off, in which case the replay takes them straight to their finding.
const db = states.db ?? [];
check(db.includes("running") && db[db.length - 1] === "failing", `db went ${db.join(" -> ")}`);
for (const node of ["api", "web"]) {
  const seen = states[node] ?? [];
  check(seen[0] === "idle" && seen[seen.length - 1] === "failing", `${node} went ${seen.join(" -> ")}`);
}
const sections = await page.$$eval("[data-testid=report] [data-section]", (els) => els.map((e) => e.getAttribute("data-section")));
check(["Active alerts", "Root cause analysis", "Remediation", "Conclusion"].every((s) => sections.includes(s)), `the report's sections: ${sections.join(", ")}`);
const reportText = await page.textContent("[data-testid=report]");
check(/Silence the downstream symptom alerts of db \(api, web\)[^\n]*approved/.test(reportText), "the report tells the silence was approved");
const evidence = await page.$$eval("[data-testid=evidence] a", (as) => as.map((a) => [a.getAttribute("href"), a.getAttribute("rel")]));
check(evidence.length > 0 && evidence.every(([href, rel]) => /^http:\/\/127\.0\.0\.1:\d+\/graph\?/.test(href) && rel.includes("noopener")), `evidence links to Prometheus graphs (${evidence.length})`);
// Rendered as elements, never as HTML: no script or handler from the report.
check((await page.locator("[data-testid=report] script, [data-testid=report] [onerror]").count()) === 0, "nothing executable in the report");
const stored = (await api("query($id: UUID!) { run(id: $id) { lastSeq } }", { id: teamRun }, adminToken)).data.run.lastSeq;
await page.waitForFunction((n) => Number(document.querySelector("[data-testid=events]")?.dataset.lastSeq) >= n, stored, { timeout: 5000 }).catch(() => {});
const log = await page.$eval("[data-testid=events]", (el) => ({
  count: Number(el.dataset.count), last: Number(el.dataset.lastSeq), dup: Number(el.dataset.duplicates), gaps: Number(el.dataset.gaps),
}));
check(log.count === stored && log.last === stored && log.gaps === 0, `the log holds seq 1..${stored} once each (${JSON.stringify(log)})`);
summary.teamRunEventsSeen = log.count;
await page.$eval("[data-testid=events]", (el) => {
  el.scrollTop = el.scrollHeight;
});
await page.waitForTimeout(200);
const tail = await page.$$eval("[data-testid=events] [data-seq]", (els) => els.map((e) => Number(e.dataset.seq)));
check(tail.length > 5 && tail.every((s, i) => i === 0 || s === tail[i - 1] + 1) && tail[tail.length - 1] === stored, `the rows at the end are consecutive up to ${stored}`);
check((await page.locator("[data-testid=steps] li").count()) > 5, "the step timeline lists the steps");
// The topology is reachable with the keyboard: Tab to a node, Enter selects it.
let onNode = false;
await page.focus("[data-testid=pause], [data-testid=retry], h1").catch(() => {});
for (let i = 0; i < 40 && !onNode; i++) {
  await page.keyboard.press("Tab");
  onNode = await page.evaluate(() => document.activeElement?.hasAttribute("data-node-id"));
}
if (check(onNode, "a topology node takes the keyboard focus")) {
  await page.keyboard.press("Enter");
  check((await page.locator('[data-node-id][aria-pressed="true"]').count()) === 1, "Enter selects it (filters steps and events)");
  await page.keyboard.press("Enter");
}
await page.evaluate(() => window.scrollTo(0, 0));
await shot(page, "run-detail");
await page.locator("[data-testid=report]").scrollIntoViewIfNeeded();
await shot(page, "report");

step("a script run: the list updates live, model output streams, a stale decision is a CONFLICT");
await page.click('a[href="/runs"]');
await page.waitForSelector(`[data-run-id="${teamRun}"][data-status="SUCCEEDED"]`);
const runsLoads = [];
page.on("load", () => runsLoads.push(1));
const started = await api(
  `mutation($input: StartRunInput!) { startRun(input: $input) { id } }`,
  {
    input: {
      workflow: "script",
      input: {
        steps: [
          { kind: "sleep", ms: 2500 },
          { kind: "work", ms: 4000, stream: ["Checking ", "the ", "payments ", "database…"] },
          { kind: "approval", tool: "webhook_action", args: { action: "restart", target: "payments-db" }, risk_note: "restarts the database" },
          { kind: "output", value: { done: true } },
        ],
      },
    },
  },
  adminToken,
);
const scriptRun = started.data.startRun.id;
summary.scriptRun = scriptRun;
const row = await page.waitForSelector(`[data-run-id="${scriptRun}"]`, { timeout: 10000 }).catch(() => null);
check(Boolean(row), "a new run appears in the list without a reload");
await shot(page, "runs");
await page.click(`[data-run-id="${scriptRun}"] a`);
await page.waitForSelector(".stream pre", { timeout: 15000 });
await page.waitForFunction(() => document.querySelector(".stream pre")?.textContent.includes("payments database"), null, { timeout: 10000 });
check(true, "model output streams into the run page while its step runs");
await shot(page, "streaming");
// The inbox got it live; someone decides it elsewhere; the inbox's card is stale.
const staleCard = await inbox.waitForSelector('[data-approval-id][data-status="PENDING"]', { timeout: 20000 });
const staleId = await staleCard.getAttribute("data-approval-id");
await page.waitForSelector('section.run[data-status="WAITING_APPROVAL"]', { timeout: 20000 });
const decided = await api(`mutation($id: UUID!) { reject(id: $id, comment: "decided elsewhere") { status runId } }`, { id: staleId }, adminToken);
check(decided.data?.reject?.status === "REJECTED" && decided.data.reject.runId === scriptRun, "someone else rejects it meanwhile");
await inbox.fill(`[data-approval-id="${staleId}"] input[type="text"]`, "too late");
await inbox.click(`[data-approval-id="${staleId}"] [data-testid=approve]`);
const conflict = await inbox.waitForSelector(`[data-approval-id="${staleId}"] .error[data-code=CONFLICT]`, { timeout: 10000 }).catch(() => null);
check(Boolean(conflict) && /CONFLICT/.test(await conflict.textContent()), `the stale decision shows the server's CONFLICT: ${conflict ? (await conflict.textContent()).trim() : "none"}`);
await inbox.waitForSelector(`[data-approval-id="${staleId}"][data-status="REJECTED"]`, { timeout: 5000 }).catch(() => null);
check((await inbox.locator(`[data-approval-id="${staleId}"][data-status="REJECTED"]`).count()) === 1, "…and the approval as it now is (rejected, by whom)");
await shot(inbox, "conflict");
await page.waitForSelector('section.run[data-status="SUCCEEDED"]', { timeout: 20000 });
check(true, "the script run goes on with the rejection and succeeds");


step("pause, resume, retry, cancel");
const script = async (steps) =>
  (await api(`mutation($input: StartRunInput!) { startRun(input: $input) { id } }`, { input: { workflow: "script", input: { steps } } }, adminToken)).data.startRun.id;
const statusIs = (status, timeout = 20000) => page.waitForSelector(`section.run[data-status="${status}"]`, { timeout });
const paused = await script([{ kind: "work", ms: 1500 }, { kind: "work", ms: 1500 }, { kind: "output", value: { ok: true } }]);
await page.goto(`${base}/runs/${paused}`);
await page.click("[data-testid=pause]");
await statusIs("PAUSED");
check(true, "Pause: the run pauses at the next step boundary");
await page.click("[data-testid=resume]");
await statusIs("SUCCEEDED");
check(true, "Resume: it goes on and succeeds");
const failing = await script([{ kind: "fail", times: 1, permanent: true }, { kind: "output", value: { ok: true } }]);
await page.goto(`${base}/runs/${failing}`);
await statusIs("FAILED");
// The log has caught up with the failure (RUN_FAILED is its 5th event).
await page.waitForFunction(() => Number(document.querySelector("[data-testid=events]")?.dataset.lastSeq) >= 5, null, { timeout: 10000 });
const failedSeq = Number(await page.getAttribute("[data-testid=events]", "data-last-seq"));
await page.click("[data-testid=retry]");
// The script's step fails on every first attempt, so the retried run fails again.
await page.waitForFunction((n) => Number(document.querySelector("[data-testid=events]").dataset.lastSeq) >= n + 5, failedSeq, { timeout: 20000 });
await statusIs("FAILED");
const retried = await page.$$eval("[data-testid=events] [data-seq] .kind", (els) => els.map((e) => e.textContent));
check(retried.filter((k) => k === "STEP_FAILED").length === 2 && retried.includes("RUN_QUEUED"), `Retry: the failed step runs again and the log goes on (${retried.join(", ")})`);
const long = await script([{ kind: "sleep", ms: 600000 }]);
await page.goto(`${base}/runs/${long}`);
await page.waitForSelector("[data-testid=cancel]");
await page.click("[data-testid=cancel]");
await statusIs("CANCELLED");
check((await page.locator("[data-testid=pause], [data-testid=cancel], [data-testid=resume]").count()) === 0, "Cancel: the run is cancelled and offers no more controls");

step("a viewer sees no action and is refused a forged mutation");
const viewerContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
const viewer = await viewerContext.newPage();
await watch(viewer, "viewer");
await viewer.goto(`${base}/login`);
await viewer.fill("#username", "viewer");
await viewer.fill("#password", viewerPassword);
await viewer.click("form button[type=submit]");
await viewer.waitForSelector('[data-testid=me][data-role=VIEWER]');
const actions = "[data-testid=pause], [data-testid=resume], [data-testid=cancel], [data-testid=retry], [data-testid=approve], [data-testid=reject], [data-testid=start-run], [data-testid=apply]";
await viewer.goto(`${base}/runs/${scriptRun}`);
await viewer.waitForSelector("section.run");
check((await viewer.locator(actions).count()) === 0, "no action button on a run");
await viewer.goto(`${base}/teams/shop`);
await viewer.waitForSelector("#team-doc");
check((await viewer.locator(actions).count()) === 0 && (await viewer.getAttribute("#team-doc", "readonly")) !== null, "no start, no apply, a read-only document on a team");
await viewer.goto(`${base}/runs`);
await viewer.waitForSelector("[data-testid=runs]");
check((await viewer.locator(actions).count()) === 0, "no start form on the runs list");
const forged = await viewer.evaluate(async (id) => {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${localStorage.getItem("aiops_console_token")}` },
    body: JSON.stringify({ query: "mutation($id: UUID!) { cancelRun(id: $id) { id status } }", variables: { id } }),
  });
  return res.json();
}, scriptRun);
check(forged.errors?.[0]?.extensions?.code === "FORBIDDEN", `the forged cancelRun is refused: ${JSON.stringify(forged.errors?.[0])}`);

step("phone width");
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${base}/runs/${teamRun}`);
await page.waitForSelector('[data-node-id="web"][data-state="failing"]');
const replayedStates = await page.evaluate(() => window.__nodeStates);
check(Object.values(replayedStates).every((seen) => !seen.includes("skipped")), `a reload replays the nodes' states without showing them skipped meanwhile ${JSON.stringify(replayedStates)}`);
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
check(overflow <= 0, `nothing wider than the phone's screen (overflow ${overflow}px)`);
await shot(page, "phone-run-detail");
await page.setViewportSize({ width: 1280, height: 800 });

step("filters, questions, a second team version");
await page.click('nav a[href="/runs"]');
await page.waitForSelector(`[data-run-id="${scriptRun}"]`);
await page.click('label.chip:has-text("succeeded")');
await page.waitForFunction(() => new URLSearchParams(location.search).get("status") === "SUCCEEDED");
await page.waitForFunction(() => [...document.querySelectorAll("[data-testid=runs] [data-run-id]")].every((r) => r.dataset.status === "SUCCEEDED"));
const filtered = await page.$$eval("[data-testid=runs] [data-run-id]", (rows) => rows.map((r) => r.dataset.status));
check(filtered.length >= 2 && filtered.every((x) => x === "SUCCEEDED"), `the status filter keeps only succeeded runs (${filtered.length}) and lives in the URL`);
await page.click('button:has-text("Clear filters")');

const asked = await api(
  `mutation($input: StartRunInput!) { startRun(input: $input) { id } }`,
  { input: { workflow: "script", input: { steps: [{ kind: "question", text: "Which replica is the primary?" }, { kind: "output", value: { ok: true } }] } } },
  adminToken,
);
await page.click('nav a[href="/questions"]');
const question = await page.waitForSelector('[data-question-id]:has-text("Which replica is the primary?")', { timeout: 15000 });
const questionId = await question.getAttribute("data-question-id");
await page.fill(`[data-question-id="${questionId}"] textarea`, "db-2, since the failover");
await page.click(`[data-question-id="${questionId}"] button[type=submit]`);
await page.waitForSelector("text=Answered here", { timeout: 10000 });
const answered = await api(`query($id: UUID!) { question(id: $id) { status answer answeredBy } }`, { id: questionId }, adminToken);
check(answered.data.question.status === "ANSWERED" && answered.data.question.answeredBy === "admin", `the question is answered from the console (${JSON.stringify(answered.data.question)})`);
summary.questionRun = asked.data.startRun.id;

await page.click('nav a[href="/teams"]');
await page.click('a[href="/teams/shop"]');
await page.waitForSelector("#team-doc");
const doc = await page.inputValue("#team-doc");
await page.fill("#team-doc", doc.replace("The shop's checkout stack", "The shop's checkout stack (payments on db-2)"));
await page.waitForSelector('[data-testid=validation][data-valid="true"]', { timeout: 10000 });
await page.click("[data-testid=apply]");
await page.waitForSelector("text=Stored as version 2", { timeout: 10000 });
await page.waitForSelector("[data-testid=diff] .add", { timeout: 10000 });
const diff = await page.$eval("[data-testid=diff]", (el) => ({ add: el.querySelectorAll(".add").length, del: el.querySelectorAll(".del").length, text: el.textContent }));
check(diff.add === 1 && diff.del === 1 && diff.text.includes("payments on db-2"), `version 2 is stored and its diff against version 1 is the changed line (${diff.add}+ ${diff.del}-)`);
await page.locator("[data-testid=diff]").scrollIntoViewIfNeeded();
await shot(page, "team-versions");

step("every view loads without an error");
for (const [path, ready, name] of [
  ["/runs", "[data-testid=runs]", null],
  ["/approvals", "[data-testid=approvals]", null],
  ["/questions", "h1", null],
  ["/teams", "[data-team=shop]", null],
  ["/teams/shop", "[data-testid=diff], [data-node-id]", null],
  ["/sources", "h1", null],
  ["/models", "h1", null],
  ["/access", "[data-testid=keys]", null],
]) {
  await page.click(`nav a[href="${path.split("/").slice(0, 2).join("/")}"]`);
  if (path === "/teams/shop") await page.click('a[href="/teams/shop"]');
  await page.waitForSelector(ready, { state: "attached", timeout: 10000 });
  await page.waitForLoadState("networkidle");
  const errors = await page.locator(".error").allTextContents();
  check(errors.length === 0, `${path} shows no error ${JSON.stringify(errors)}`);
  if (name) await shot(page, name);
}

step("log out revokes the session's key");
await page.click("[data-testid=logout]");
await page.waitForSelector("#username");
const after = await api("{ me { username } }", {}, adminToken);
check(after.errors?.[0]?.extensions?.code === "UNAUTHENTICATED", "the old key is refused after logging out");
check((await page.evaluate(() => localStorage.getItem("aiops_console_token"))) === null, "and forgotten by the browser");

step("what the pages did");
const foreign = requests.filter((r) => {
  const url = r.split(" ").pop();
  return !(url.startsWith(`${origin}/`) || url.startsWith(`${wsOrigin}/`));
});
check(requests.length > 20, `requests seen: ${requests.length}`);
check(foreign.length === 0, `no request to another origin ${JSON.stringify(foreign)}`);
check(problems.length === 0, `no console error, failed request or CSP violation ${JSON.stringify(problems, null, 1)}`);

} catch (e) {
  check(false, `the scenario stopped: ${e.stack ?? e}`);
  for (const p of [page, ...adminContext.pages()]) await p.screenshot({ path: path.join(shots, `failure-${adminContext.pages().indexOf(p)}.png`) }).catch(() => {});
  console.log(`problems so far: ${JSON.stringify(problems, null, 1)}`);
}
await browser.close();
console.log(failures.length ? `\n${failures.length} check(s) failed:\n  ${failures.join("\n  ")}` : "\nall console checks passed");
console.log(`SUMMARY ${JSON.stringify(summary)}`);
process.exit(failures.length ? 1 : 0);
