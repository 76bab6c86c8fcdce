// The console's entry point: the shell (navigation, who is logged in, the live
// connection's state) and the route table.

import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { token, socketState, gql, subscribe, reconnects } from "./api.js";
import { me, loadMe, logout, can } from "./session.js";
import { location, navigate, match } from "./router.js";
import { html } from "./ui.js";
import { Login } from "./views/login.js";
import { Runs } from "./views/runs.js";
import { RunDetail } from "./views/run.js";
import { Approvals } from "./views/approvals.js";
import { Questions } from "./views/questions.js";
import { Teams, TeamDetail, NewTeam } from "./views/teams.js";
import { Sources, Models } from "./views/settings.js";
import { Schedules } from "./views/schedules.js";
import { Access } from "./views/access.js";

/** Navigation: `role` is the least role that sees the entry. */
const NAV = [
  { href: "/runs", text: "Runs" },
  { href: "/approvals", text: "Approvals" },
  { href: "/questions", text: "Questions" },
  { href: "/teams", text: "Teams" },
  { href: "/schedules", text: "Schedules" },
  { href: "/sources", text: "Alert sources" },
  { href: "/models", text: "Models" },
  { href: "/access", text: "Users & keys" },
];

const ROUTES = [
  ["/runs", () => html`<${Runs} />`],
  ["/runs/:id", (p) => html`<${RunDetail} id=${p.id} />`],
  ["/approvals", () => html`<${Approvals} />`],
  ["/questions", () => html`<${Questions} />`],
  ["/teams", () => html`<${Teams} />`],
  ["/teams/new", () => (can("ADMIN") ? html`<${NewTeam} />` : html`<p>Only admins create teams.</p>`)],
  ["/teams/:name", (p) => html`<${TeamDetail} name=${p.name} />`],
  ["/schedules", () => html`<${Schedules} />`],
  ["/sources", () => html`<${Sources} />`],
  ["/models", () => html`<${Models} />`],
  ["/access", () => html`<${Access} />`],
];

function Page({ path }) {
  for (const [pattern, view] of ROUTES) {
    const params = match(pattern, path);
    if (params) return view(params);
  }
  return html`<section><h1>Not found</h1><p>No page at <code>${path}</code>. <a href="/runs">Runs</a></p></section>`;
}

/**
 * How many approvals wait, next to "Approvals" in the navigation: read when the page
 * loads, again when one is requested (live), after a reconnect, and every 30 s (a
 * decision made elsewhere sends nothing).
 */
function PendingApprovals() {
  const [count, setCount] = useState(0);
  useEffect(() => {
    let timer = null;
    const read = () => {
      clearTimeout(timer);
      timer = setTimeout(read, 30000);
      gql("{ pendingApprovals(first: 1) { totalCount } }")
        .then((d) => setCount(d.pendingApprovals.totalCount))
        .catch(() => {});
    };
    read();
    const stop = subscribe("subscription { approvalRequested { id } }", {}, { onData: read });
    return () => {
      clearTimeout(timer);
      stop();
    };
  }, [reconnects.value]);
  if (!count) return null;
  return html`<span class="pending" data-testid="pending-approvals" aria-label=${`${count} waiting`}>${count}</span>`;
}

function Connection() {
  const state = socketState.value;
  const text = { idle: "live updates idle", connecting: "connecting…", connected: "live", reconnecting: "reconnecting…" }[state];
  return html`<span class=${`conn conn-${state}`} data-testid="connection" data-state=${state} role="status" title="Live updates (WebSocket)">${text}</span>`;
}

function App() {
  const path = location.value.path;
  const loggedIn = token.value != null;
  useEffect(() => {
    if (!loggedIn) {
      me.value = null;
      if (path !== "/login") navigate(`/login${path !== "/" ? `?next=${encodeURIComponent(path)}` : ""}`, { replace: true });
    } else if (!me.value) {
      loadMe().catch(() => {});
    }
  }, [loggedIn]);
  useEffect(() => {
    if (loggedIn && (path === "/" || path === "/login")) navigate("/runs", { replace: true });
  }, [path, loggedIn]);
  if (!loggedIn || path === "/login") return html`<${Login} />`;
  if (!me.value) return html`<p class="boot">Loading…</p>`;
  return html`<div class="shell">
    <a class="skip" href="#main">Skip to content</a>
    <header class="top">
      <a class="brand" href="/runs">AIOps</a>
      <nav aria-label="Main">
        <ul>
          ${NAV.map((n) => html`<li key=${n.href}><a href=${n.href} aria-current=${path === n.href || path.startsWith(`${n.href}/`) ? "page" : undefined}>${n.text}${n.href === "/approvals" ? html`<${PendingApprovals} />` : null}</a></li>`)}
        </ul>
      </nav>
      <div class="who">
        <${Connection} />
        <span class="user" data-testid="me" data-role=${me.value.role}>${me.value.username} · ${me.value.role.toLowerCase()}</span>
        <button type="button" class="small" data-testid="logout" onClick=${() => logout().then(() => navigate("/login"))}>Log out</button>
        <a class="small muted" href="/graphiql" target="_blank" rel="noopener">GraphiQL</a>
      </div>
    </header>
    <main id="main" tabindex="-1"><${Page} path=${path} /></main>
  </div>`;
}

window.addEventListener("unhandledrejection", (event) => {
  // Errors are shown where they happen; a stray one must not go unnoticed either.
  console.warn("unhandled", event.reason);
});

const root = document.getElementById("app");
root.textContent = ""; // the "Loading…" shown until the modules arrive
render(html`<${App} />`, root);
