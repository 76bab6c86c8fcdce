// Teams: the list; one team's topology, its document in an editor that validates as
// you type (`validateTeam`: every violation, marked at its path's line), its version
// history with a diff between any two versions, and `applyTeam` (admins) to store
// the next version. Operators start an investigation by the team from here.

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { gql } from "../api.js";
import { can } from "../session.js";
import { navigate } from "../router.js";
import { html, ErrorBox, fmtTime, useQuery, Empty } from "../ui.js";
import { Topology } from "../topology.js";
import { toYaml, lineOf, lineInMessage, diffLines } from "../yaml.js";
import { useTeams, StartRun } from "./runs.js";

const TEMPLATE = `name: my-team
description: Investigates alerts of my stack
supervisor: { model: builtin:rules }
nodes:
  - id: database
    kind: postgres
    match: { service: database }
    agents: [{ id: metrics, tools: [prometheus_query, prometheus_query_range] }]
  - id: api
    kind: service
    depends_on: [database]
    match: { service: api }
    agents: [{ id: metrics, tools: [prometheus_query_range] }]
`;

export function Teams() {
  const teams = useTeams();
  return html`<section>
    <h1>Teams</h1>
    ${can("ADMIN") ? html`<p><a class="button primary" href="/teams/new">New team</a></p>` : null}
    <${ErrorBox} error=${teams.error} />
    ${teams.data && !teams.data.length ? html`<${Empty}>No team yet.</${Empty}>` : null}
    <div class="cards">
      ${(teams.data ?? []).map((t) => html`<article key=${t.id} class="card team" data-team=${t.name}>
        <header><h3><a href=${`/teams/${encodeURIComponent(t.name)}`}>${t.name}</a></h3><span class="muted">v${t.version}</span></header>
        <p>${t.description ?? ""}</p>
        <p class="meta">${(t.spec?.nodes ?? []).length} nodes · ${t.spec?.pattern ?? "hierarchical"}</p>
      </article>`)}
    </div>
  </section>`;
}

const TEAM_QUERY = `query Team($name: String!) { team(name: $name) { id name description version spec createdAt updatedAt
  versions(first: 100) { totalCount edges { node { id version spec createdAt } } } } }`;

export function TeamDetail({ name }) {
  const team = useQuery(async () => (await gql(TEAM_QUERY, { name })).team, [name]);
  if (team.error) return html`<section><h1>${name}</h1><${ErrorBox} error=${team.error} /></section>`;
  if (!team.data) return html`<section><h1>${name}</h1><p>${team.loading ? "Loading…" : "No such team."}</p></section>`;
  const t = team.data;
  const versions = t.versions.edges.map((e) => e.node);
  return html`<section>
    <h1>${t.name} <span class="muted">v${t.version}</span></h1>
    ${t.description ? html`<p>${t.description}</p>` : null}
    ${can("OPERATOR") ? html`<${StartRun} team=${t.name} teams=${[]} />` : null}
    <section class="panel" aria-label="Topology">
      <h2>Topology</h2>
      <${Topology} spec=${t.spec} />
    </section>
    <${Editor} initial=${toYaml(t.spec)} onApplied=${() => team.reload()} />
    <${Versions} versions=${versions} />
  </section>`;
}

export function NewTeam() {
  return html`<section>
    <h1>New team</h1>
    <${Editor} initial=${TEMPLATE} onApplied=${(applied) => navigate(`/teams/${encodeURIComponent(applied.team.name)}`)} />
  </section>`;
}

/** The team document's editor: validates on a pause in typing, applies (admins). */
function Editor({ initial, onApplied }) {
  const [text, setText] = useState(initial);
  const [validation, setValidation] = useState(null);
  const [error, setError] = useState(null);
  const [result, setResult] = useState(null);
  const [busy, setBusy] = useState(false);
  const gutter = useRef(null);
  useEffect(() => setText(initial), [initial]);
  useEffect(() => {
    let stale = false;
    const t = setTimeout(async () => {
      try {
        const data = await gql("query Validate($spec: String!) { validateTeam(spec: $spec) { valid violations { path message } } }", { spec: text });
        if (!stale) {
          setValidation(data.validateTeam);
          setError(null);
        }
      } catch (e) {
        if (!stale) setError(e);
      }
    }, 350);
    return () => {
      stale = true;
      clearTimeout(t);
    };
  }, [text]);
  const violations = useMemo(
    () => (validation?.violations ?? []).map((v) => ({ ...v, line: lineOf(text, v.path) ?? lineInMessage(v.message) })),
    [validation, text],
  );
  const bad = new Set(violations.map((v) => v.line).filter(Boolean));
  const lines = text.split("\n").length;
  const admin = can("ADMIN");
  const apply = async () => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const data = await gql("mutation Apply($spec: String!) { applyTeam(spec: $spec) { changed team { name version } } }", { spec: text });
      setResult(data.applyTeam);
      onApplied?.(data.applyTeam);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };
  const jump = (line) => {
    const area = document.getElementById("team-doc");
    if (!area || !line) return;
    const offset = text.split("\n").slice(0, line - 1).join("\n").length + (line > 1 ? 1 : 0);
    area.focus();
    area.setSelectionRange(offset, offset);
  };
  return html`<section class="panel" aria-label="Team document">
    <h2>${admin ? "Edit" : "Document"}</h2>
    <p class="hint">YAML or JSON (§3 of the spec). Checked as you type; nothing is stored until ${admin ? "you apply it" : "an admin applies it"}.</p>
    <div class="editor">
      <ol class="gutter" ref=${gutter} aria-hidden="true">
        ${Array.from({ length: lines }, (_, i) => html`<li key=${i} class=${bad.has(i + 1) ? "bad" : ""}>${i + 1}</li>`)}
      </ol>
      <label for="team-doc" class="sr-only">Team document</label>
      <textarea id="team-doc" spellcheck="false" wrap="off" value=${text} readonly=${!admin}
        onInput=${(e) => setText(e.currentTarget.value)}
        onScroll=${(e) => {
          if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
        }}></textarea>
    </div>
    <div class="validation" data-testid="validation" data-valid=${validation ? String(validation.valid) : ""} aria-live="polite">
      ${validation?.valid ? html`<p class="ok">Valid.</p>` : null}
      ${violations.length
        ? html`<ul class="violations">
            ${violations.map((v, i) => html`<li key=${i} data-violation-path=${v.path}>
              <button type="button" class="link" onClick=${() => jump(v.line)} title="Go to the line">
                <code>${v.path || "(document)"}</code>${v.line ? html` <span class="muted">line ${v.line}</span>` : null}
              </button> ${v.message}
            </li>`)}
          </ul>`
        : null}
    </div>
    <${ErrorBox} error=${error} />
    ${result ? html`<p class="ok" role="status">${result.changed ? `Stored as version ${result.team.version}.` : "Unchanged: equal to the latest version."}</p>` : null}
    ${admin ? html`<div class="buttons"><button type="button" class="primary" data-testid="apply" disabled=${busy || !validation?.valid} onClick=${apply}>Apply</button></div>` : null}
  </section>`;
}

function Versions({ versions }) {
  const newest = versions.length ? versions[versions.length - 1].version : 0;
  const [to, setTo] = useState(newest);
  const [from, setFrom] = useState(Math.max(1, newest - 1));
  useEffect(() => {
    setTo(newest);
    setFrom(Math.max(1, newest - 1));
  }, [newest]);
  const byVersion = Object.fromEntries(versions.map((v) => [v.version, v]));
  const diff = useMemo(() => {
    if (!byVersion[from] || !byVersion[to]) return [];
    return diffLines(toYaml(byVersion[from].spec), toYaml(byVersion[to].spec));
  }, [from, to, versions]);
  const changed = diff.filter((d) => d.op !== " ").length;
  return html`<section class="panel" aria-label="Versions">
    <h2>Versions <span class="count">${versions.length}</span></h2>
    <ol class="plain versions">
      ${[...versions].reverse().map((v) => html`<li key=${v.id}>v${v.version} · ${fmtTime(v.createdAt)}</li>`)}
    </ol>
    ${versions.length > 1
      ? html`<div class="filters">
            <label>From <select value=${from} onChange=${(e) => setFrom(Number(e.currentTarget.value))}>
              ${versions.map((v) => html`<option key=${v.id} value=${v.version}>v${v.version}</option>`)}</select></label>
            <label>To <select value=${to} onChange=${(e) => setTo(Number(e.currentTarget.value))}>
              ${versions.map((v) => html`<option key=${v.id} value=${v.version}>v${v.version}</option>`)}</select></label>
            <span class="muted">${changed} changed lines</span>
          </div>
          <pre class="diff" data-testid="diff">${diff.map((d, i) => html`<span key=${i} class=${d.op === "+" ? "add" : d.op === "-" ? "del" : ""}>${`${d.op} ${d.line}`}</span>`)}</pre>`
      : null}
  </section>`;
}
