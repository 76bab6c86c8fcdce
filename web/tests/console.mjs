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

step("schedules: a bad cron and zone are refused at the form, then a schedule is created");
await page.click('nav a[href="/schedules"]');
await page.waitForSelector("[data-testid=schedules]", { state: "attached" });
const scheduleName = "shop-weekdays";
const zone = "America/New_York";
const badInput = { name: scheduleName, team: "shop", cron: "61 9 * * 1-5", timezone: zone };
await page.click("[data-testid=new-schedule]");
await page.fill("#schedule-name", scheduleName);
await page.selectOption("#schedule-team", "shop");
await page.fill("#schedule-cron", badInput.cron);
await page.fill("#schedule-timezone", zone);
await page.fill("#schedule-task", "weekday morning check of the shop");
await page.click("[data-testid=save-schedule]");
const cronError = await page.waitForSelector("[data-testid=schedule-form] [data-field-error=cron]", { timeout: 10000 }).catch(() => null);
// What the server answers the same input, asked directly.
const refusedCron = await api("mutation($input: CreateScheduleInput!) { createSchedule(input: $input) { id } }", { input: badInput }, adminToken);
const cronMessage = refusedCron.errors?.[0]?.message ?? "";
check(refusedCron.errors?.[0]?.extensions?.code === "VALIDATION_FAILED" && cronMessage.startsWith("cron: "), `the server refuses the cron naming the field: ${cronMessage}`);
const cronErrorText = cronError ? (await cronError.textContent()).trim() : "";
check(cronMessage !== "" && cronErrorText.includes(cronMessage) && cronErrorText.includes("VALIDATION_FAILED"), `…and the form shows that message at the cron field: ${cronErrorText}`);
check((await page.getAttribute("#schedule-cron", "aria-invalid")) === "true" && (await page.getAttribute("#schedule-cron", "aria-describedby")) === "schedule-cron-error", "…the cron input is marked invalid and described by it");
await shot(page, "schedule-form-error");
await page.fill("#schedule-cron", "0 9 * * 1-5");
await page.fill("#schedule-timezone", "Mars/Olympus_Mons");
await page.click("[data-testid=save-schedule]");
const zoneError = await page.waitForSelector("[data-testid=schedule-form] [data-field-error=timezone]", { timeout: 10000 }).catch(() => null);
const zoneErrorText = zoneError ? (await zoneError.textContent()).trim() : "";
check(/timezone: unknown IANA time zone "Mars\/Olympus_Mons"/.test(zoneErrorText) && (await page.locator("[data-field-error=cron]").count()) === 0, `an unknown zone is shown at the time zone field instead: ${zoneErrorText}`);
const noneYet = await api("{ schedules { totalCount } }", {}, adminToken);
check(noneYet.data?.schedules?.totalCount === 0, "nothing was stored by the refused attempts");
await page.fill("#schedule-timezone", zone);
await page.click("[data-testid=save-schedule]");
const scheduleCard = `[data-schedule="${scheduleName}"]`;
await page.waitForSelector(`${scheduleCard} [data-testid=next-fires] li`, { timeout: 10000 });
check((await page.locator("[data-testid=schedule-form]").count()) === 0, "saved: the form closes");
const storedSchedules = await api(
  "{ schedules { totalCount nodes { id name team cron timezone enabled overlapPolicy catchUpPolicy input nextFireAt nextFireTimes(n: 3) { at local } } } }",
  {},
  adminToken,
);
const schedule = storedSchedules.data.schedules.nodes[0];
check(
  storedSchedules.data.schedules.totalCount === 1 && schedule.name === scheduleName && schedule.team === "shop" && schedule.cron === "0 9 * * 1-5" &&
    schedule.timezone === zone && schedule.enabled && schedule.overlapPolicy === "SKIP" && schedule.catchUpPolicy === "SKIP" &&
    schedule.input.task === "weekday morning check of the shop",
  `the server holds the schedule as entered ${JSON.stringify(schedule)}`,
);
summary.scheduleId = schedule.id;

step("schedules: the next fire times, in the schedule's zone");
const fires = await page.$$eval(`${scheduleCard} [data-testid=next-fires] li`, (lis) => lis.map((li) => ({ at: li.dataset.at, local: li.dataset.local, text: li.textContent.replace(/\s+/g, " ").trim() })));
check(JSON.stringify(fires.map(({ at, local }) => ({ at, local }))) === JSON.stringify(schedule.nextFireTimes), `the page shows the server's next 3 fire times (${fires.length})`);
// Independently of the server: each instant is 09:00 on a weekday in New York (node's ICU).
const inZone = new Intl.DateTimeFormat("en-US", { timeZone: zone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
const zoneOk = fires.length === 3 && fires.every(({ at, local, text }) => {
  const parts = Object.fromEntries(inZone.formatToParts(new Date(at)).map((p) => [p.type, p.value]));
  const offset = local.slice(-6); // -05:00 in winter, -04:00 in summer
  const utcHour = String(new Date(at).getUTCHours()).padStart(2, "0");
  return parts.hour === "09" && parts.minute === "00" && !["Sat", "Sun"].includes(parts.weekday) && /^-0[45]:00$/.test(offset) &&
    local.includes("T09:00:00") && ["13", "14"].includes(utcHour) &&
    text === `${parts.weekday} ${local.slice(0, 10)} 09:00 (UTC−${offset.slice(1)}) = ${new Date(at).toISOString().slice(0, 10)} ${utcHour}:00 UTC`;
});
check(zoneOk, `each is 09:00 on a weekday in ${zone}, shown as that wall clock and as the instant in UTC: ${JSON.stringify(fires.map((f) => f.text))}`);
check(fires.length > 1 && fires.every((f, i) => i === 0 || new Date(f.at) > new Date(fires[i - 1].at)), "…in order");
const scheduleText = await page.textContent(scheduleCard);
check(/Cron\s*0 9 \* \* 1-5/.test(scheduleText) && scheduleText.includes(`Time zone${zone}`) && scheduleText.includes(`Next fire times, ${zone} · UTC`) && /Overlap\s*skip/.test(scheduleText) && /Catch-up\s*skip/.test(scheduleText) && /Last fire\s*never/.test(scheduleText), "the card shows the cron, zone, policies and that it never fired");

step("schedules: Trigger now (with the keyboard) starts a run, listed by trigger");
await page.focus("h1");
let onTrigger = false;
for (let i = 0; i < 60 && !onTrigger; i++) {
  await page.keyboard.press("Tab");
  onTrigger = await page.evaluate((sel) => document.activeElement?.matches(`${sel} [data-testid=trigger]`), scheduleCard);
}
check(onTrigger, "Trigger now takes the keyboard focus");
await page.keyboard.press("Enter");
const startedLink = await page.waitForSelector(`${scheduleCard} [data-testid=started-run]`, { timeout: 10000 }).catch(() => null);
const scheduleRun = startedLink ? (await startedLink.getAttribute("href")).split("/").pop() : null;
summary.scheduleRun = scheduleRun;
const triggered = scheduleRun ? await api("query($id: UUID!) { run(id: $id) { trigger triggerId team { name } input } }", { id: scheduleRun }, adminToken) : {};
check(
  triggered.data?.run?.trigger === "SCHEDULE" && triggered.data.run.triggerId === schedule.id && triggered.data.run.team?.name === "shop" &&
    triggered.data.run.input?.task === "weekday morning check of the shop",
  `the run it links to was started by the schedule (${JSON.stringify(triggered.data?.run ?? triggered)})`,
);
await shot(page, "schedules");
await page.setViewportSize({ width: 390, height: 844 });
const scheduleOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
check(scheduleOverflow <= 0, `the schedules page fits a phone (overflow ${scheduleOverflow}px)`);
await page.setViewportSize({ width: 1280, height: 800 });
await page.click(`${scheduleCard} a:has-text("runs it started")`);
await page.waitForSelector(`[data-run-id="${scheduleRun}"]`, { timeout: 10000 });
const bySchedule = await page.$$eval("[data-testid=runs] [data-run-id]", (rows) => rows.map((r) => r.dataset.runId));
check(bySchedule.length === 1 && bySchedule[0] === scheduleRun && new URL(page.url()).searchParams.get("triggerId") === schedule.id, `"runs it started" lists that run alone (${bySchedule.length})`);
await page.click('button:has-text("Clear filters")');
await page.waitForFunction(() => location.search === "");
await page.selectOption('form[aria-label="Filter runs"] label:has-text("Trigger") select', "SCHEDULE");
await page.waitForFunction(() => new URLSearchParams(location.search).get("trigger") === "SCHEDULE");
await page.waitForFunction((id) => {
  const rows = [...document.querySelectorAll("[data-testid=runs] [data-run-id]")];
  return rows.length === 1 && rows[0].dataset.runId === id;
}, scheduleRun, { timeout: 10000 }).catch(() => {});
const scheduleRows = await page.$$eval("[data-testid=runs] [data-run-id]", (rows) => rows.map((r) => [r.dataset.runId, r.children[3].textContent.trim()]));
check(scheduleRows.length === 1 && scheduleRows[0][0] === scheduleRun && scheduleRows[0][1] === "schedule", `the trigger filter "schedule" lists it, and only it (${JSON.stringify(scheduleRows)})`);
// It is an investigation like any other: stop it here (its approvals would wait).
await page.click(`[data-run-id="${scheduleRun}"] a`);
await page.waitForSelector("[data-testid=cancel]", { timeout: 10000 });
await page.click("[data-testid=cancel]");
await page.waitForSelector('section.run[data-status="CANCELLED"]', { timeout: 20000 });
check(true, "the schedule's run is cancelled from its page");

step("schedules: a viewer reads them and gets no button");
await viewer.click('nav a[href="/schedules"]');
await viewer.waitForSelector(`${scheduleCard} [data-testid=next-fires] li`, { timeout: 10000 });
const viewerFires = await viewer.$$eval(`${scheduleCard} [data-testid=next-fires] li`, (lis) => lis.map((li) => li.dataset.at));
check(JSON.stringify(viewerFires) === JSON.stringify(fires.map((f) => f.at)), "the viewer sees the schedule and its next fire times");
const scheduleButtons = await viewer.locator("[data-testid=new-schedule], [data-testid=trigger], [data-testid=toggle], [data-testid=delete], [data-testid=schedule-form]").count();
check(scheduleButtons === 0 && (await viewer.locator(`${scheduleCard} button`).count()) === 0, `no create, trigger, enable/disable or delete button (${scheduleButtons})`);
const viewerTrigger = await viewer.evaluate(async (id) => {
  const res = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${localStorage.getItem("aiops_console_token")}` },
    body: JSON.stringify({ query: "mutation($id: UUID!) { triggerSchedule(id: $id) { id } }", variables: { id } }),
  });
  return res.json();
}, schedule.id);
check(viewerTrigger.errors?.[0]?.extensions?.code === "FORBIDDEN", "a forged triggerSchedule from the viewer is FORBIDDEN");

step("schedules: disable, enable, delete");
await page.click('nav a[href="/schedules"]');
await page.waitForSelector(`${scheduleCard}[data-enabled="true"] [data-testid=toggle]`);
await page.click(`${scheduleCard} [data-testid=toggle]`);
await page.waitForSelector(`${scheduleCard}[data-enabled="false"]`, { timeout: 10000 });
const disabled = (await api("query($id: UUID!) { schedule(id: $id) { enabled nextFireAt } }", { id: schedule.id }, adminToken)).data.schedule;
check(!disabled.enabled && disabled.nextFireAt === null && /Would fire at \(disabled\)/.test(await page.textContent(scheduleCard)), `Disable: stored disabled, no next fire (${JSON.stringify(disabled)})`);
await page.click(`${scheduleCard} [data-testid=toggle]`);
await page.waitForSelector(`${scheduleCard}[data-enabled="true"]`, { timeout: 10000 });
const enabled = (await api("query($id: UUID!) { schedule(id: $id) { enabled nextFireAt } }", { id: schedule.id }, adminToken)).data.schedule;
check(enabled.enabled && enabled.nextFireAt === schedule.nextFireTimes[0].at, `Enable: stored enabled, next fire ${enabled.nextFireAt}`);
page.once("dialog", (d) => d.accept());
await page.click(`${scheduleCard} [data-testid=delete]`);
await page.waitForSelector(scheduleCard, { state: "detached", timeout: 10000 });
const afterDelete = await api("query($id: UUID!) { schedules { totalCount } run(id: $id) { id status } }", { id: scheduleRun }, adminToken);
check(afterDelete.data.schedules.totalCount === 0 && afterDelete.data.run?.status === "CANCELLED", "Delete: the schedule is gone, the run it started stays");

step("Alertmanager receivers: the token once, with the URL and the configuration");
await page.click('nav a[href="/sources"]');
const webhookUrl = `${origin}/api/alertmanager/webhook`;
await page.waitForSelector("[data-testid=webhook-url]");
check((await page.textContent("[data-testid=webhook-url]")) === webhookUrl, `the page names the webhook URL ${webhookUrl}`);
await page.click('button:has-text("Add a receiver")');
await page.fill('form[aria-label="Add a receiver"] input', "prod-am");
await page.selectOption('form[aria-label="Add a receiver"] select', "REJECT");
await page.click('form[aria-label="Add a receiver"] button[type=submit]');
const tokenEl = await page.waitForSelector("[data-testid=receiver-token]", { timeout: 10000 });
const receiverToken = (await tokenEl.textContent()).trim();
const receivers = (await api("{ alertmanagerReceivers { id name tokenPrefix approvalMode } }", {}, adminToken)).data.alertmanagerReceivers;
check(receivers.length === 1 && receivers[0].name === "prod-am" && receivers[0].approvalMode === "REJECT" && receiverToken.startsWith(`aiopsam_${receivers[0].tokenPrefix}`) && receiverToken.length > 24,
  `the new receiver's token is shown (aiopsam_${receivers[0]?.tokenPrefix}…)`);
const snippet = await page.textContent("[data-testid=receiver-snippet]");
check(snippet.includes(`- url: ${webhookUrl}`) && snippet.includes(`credentials: ${receiverToken}`) && /webhook_configs:/.test(snippet) && /http_config:\s+authorization:/.test(snippet),
  "…with a webhook_configs snippet holding the URL and the token");
await shot(page, "receiver-token");
// The token shown is the one the intake accepts (an unrouted notification: no team matches).
const notify = (tokenValue) =>
  fetch(webhookUrl, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${tokenValue}` },
    body: JSON.stringify({
      version: "4", groupKey: '{}:{alertname="ConsoleTest"}', status: "firing", receiver: "aiops",
      groupLabels: { alertname: "ConsoleTest" }, commonLabels: { alertname: "ConsoleTest" }, commonAnnotations: {}, externalURL: "http://alertmanager.invalid",
      alerts: [{ status: "firing", labels: { alertname: "ConsoleTest" }, annotations: {}, startsAt: new Date().toISOString(), endsAt: "0001-01-01T00:00:00Z", generatorURL: "", fingerprint: "0123456789abcdef" }],
    }),
  });
const accepted = await notify(receiverToken);
const acceptedBody = await accepted.json().catch(() => ({}));
check(accepted.status === 200 && acceptedBody.outcome === "UNROUTED", `the intake accepts a notification with that token (${accepted.status} ${acceptedBody.outcome})`);
await page.reload();
await page.waitForSelector('[data-testid=receivers] [data-receiver="prod-am"]');
const everywhere = await page.evaluate(() => document.documentElement.outerHTML + JSON.stringify(localStorage) + JSON.stringify(sessionStorage));
check(!everywhere.includes(receiverToken) && !everywhere.includes(receiverToken.slice(-16)) && (await page.locator("[data-testid=receiver-token]").count()) === 0,
  "after a reload the token is nowhere in the page or the browser's storage");
const listed = await page.textContent('[data-receiver="prod-am"]');
check(listed.includes(`aiopsam_${receivers[0].tokenPrefix}…`) && listed.includes("rejected at once"), `the list shows only its prefix and approval mode: ${listed.trim()}`);
const listedJson = JSON.stringify(await api("{ alertmanagerReceivers { id name tokenPrefix approvalMode createdAt updatedAt lastUsedAt } }", {}, adminToken));
check(!listedJson.includes(receiverToken.slice(-16)), "the server's list holds no token");

step("Alertmanager receivers: a viewer reads them; an admin deletes one");
await viewer.click('nav a[href="/sources"]');
await viewer.waitForSelector('[data-testid=receivers] [data-receiver="prod-am"]');
check((await viewer.locator('button:has-text("Add a receiver"), [data-testid=receivers] button').count()) === 0, "the viewer sees the receiver and no add or delete button");
page.once("dialog", (d) => d.accept());
await page.click('[data-receiver="prod-am"] button:has-text("Delete")');
await page.waitForSelector('[data-receiver="prod-am"]', { state: "detached", timeout: 10000 });
const refused = await notify(receiverToken);
const remaining = (await api("{ alertmanagerReceivers { id } }", {}, adminToken)).data.alertmanagerReceivers;
check(remaining.length === 0 && refused.status === 401, `deleted: none listed, and its token is refused at once (${refused.status})`);

step("every view loads without an error");
for (const [path, ready, name] of [
  ["/runs", "[data-testid=runs]", null],
  ["/approvals", "[data-testid=approvals]", null],
  ["/questions", "h1", null],
  ["/teams", "[data-team=shop]", null],
  ["/teams/shop", "[data-testid=diff], [data-node-id]", null],
  ["/schedules", "[data-testid=schedules]", null],
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
