// The runs list, newest first and live: `runUpdates` moves rows as their status
// changes and adds new runs at the top; after the socket reconnects, the first page
// is read again (`runs`), so nothing missed while away stays wrong. Filters (status,
// team, trigger, time, and what started a run: `triggerId`, a schedule's or a
// notification's id) live in the URL.

import { useEffect, useState } from "preact/hooks";
import { gql, subscribe, reconnects } from "../api.js";
import { can } from "../session.js";
import { location, navigate, setQuery } from "../router.js";
import { html, Status, ErrorBox, fmtTime, fmtDuration, between, fmtCost, useQuery, Empty, label } from "../ui.js";

export const STATUSES = ["QUEUED", "RUNNING", "PAUSED", "WAITING_APPROVAL", "WAITING_INPUT", "RETRY_WAIT", "SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];
const TRIGGERS = ["MANUAL", "API", "SCHEDULE", "ALERTMANAGER"];
const RUN_FIELDS = "id workflow status trigger triggerId createdAt startedAt finishedAt teamId teamVersion team { name } usage { costUsd } error";
const PAGE = 50;

function filterFromQuery(query) {
  return {
    statuses: query.getAll("status"),
    teamId: query.get("team") || "",
    trigger: query.get("trigger") || "",
    triggerId: query.get("triggerId") || "",
    from: query.get("from") || "",
    to: query.get("to") || "",
  };
}

function apiFilter(f) {
  const filter = {};
  if (f.statuses.length) filter.statuses = f.statuses;
  if (f.teamId) filter.teamId = f.teamId;
  if (f.trigger) filter.trigger = f.trigger;
  if (f.triggerId) filter.triggerId = f.triggerId;
  if (f.from) filter.createdAfter = new Date(f.from).toISOString();
  if (f.to) filter.createdBefore = new Date(f.to).toISOString();
  return filter;
}

/** Whether `run` belongs in the list under filter `f` (live updates are checked here). */
function matches(run, f) {
  if (f.statuses.length && !f.statuses.includes(run.status)) return false;
  if (f.teamId && run.teamId !== f.teamId) return false;
  if (f.trigger && run.trigger !== f.trigger) return false;
  if (f.triggerId && run.triggerId !== f.triggerId) return false;
  if (f.from && new Date(run.createdAt) < new Date(f.from)) return false;
  if (f.to && new Date(run.createdAt) >= new Date(f.to)) return false;
  return true;
}

function upsert(list, run) {
  const rest = list.filter((r) => r.id !== run.id);
  rest.push(run);
  rest.sort((a, b) => (a.createdAt < b.createdAt ? 1 : a.createdAt > b.createdAt ? -1 : a.id < b.id ? 1 : -1));
  return rest;
}

export function useTeams() {
  return useQuery(async () => (await gql("{ teams(first: 100) { edges { node { id name version description spec } } } }")).teams.edges.map((e) => e.node), []);
}

export function Runs() {
  const f = filterFromQuery(location.value.query);
  const key = JSON.stringify(f);
  const teams = useTeams();
  const [page, setPage] = useState({ runs: [], end: null, more: false });
  const [error, setError] = useState(null);
  const [loading, setLoading] = useState(true);

  const load = async (after) => {
    setLoading(true);
    try {
      const data = await gql(
        `query Runs($first: Int!, $after: String, $filter: RunFilterInput) {
          runs(first: $first, after: $after, filter: $filter) { edges { node { ${RUN_FIELDS} } } pageInfo { hasNextPage endCursor } } }`,
        { first: PAGE, after, filter: apiFilter(f) },
      );
      const runs = data.runs.edges.map((e) => e.node);
      setPage((p) => ({
        runs: after ? [...p.runs, ...runs.filter((r) => !p.runs.some((x) => x.id === r.id))] : runs,
        end: data.runs.pageInfo.endCursor,
        more: data.runs.pageInfo.hasNextPage,
      }));
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setLoading(false);
    }
  };

  useEffect(() => {
    load(null);
  }, [key, reconnects.value]);

  useEffect(() => {
    // Status and time are checked here, so a run leaving the filter leaves the list.
    const filter = {};
    if (f.teamId) filter.teamId = f.teamId;
    if (f.trigger) filter.trigger = f.trigger;
    if (f.triggerId) filter.triggerId = f.triggerId;
    return subscribe(`subscription Updates($filter: RunFilterInput) { runUpdates(filter: $filter) { ${RUN_FIELDS} } }`, { filter }, {
      onData: ({ runUpdates: run }) =>
        setPage((p) => ({ ...p, runs: matches(run, f) ? upsert(p.runs, run) : p.runs.filter((r) => r.id !== run.id) })),
      onError: setError,
    });
  }, [key]);

  const update = (patch) => {
    const next = { ...f, ...patch };
    setQuery({ status: next.statuses, team: next.teamId, trigger: next.trigger, triggerId: next.triggerId, from: next.from, to: next.to });
  };
  const toggleStatus = (s) => update({ statuses: f.statuses.includes(s) ? f.statuses.filter((x) => x !== s) : [...f.statuses, s] });

  return html`<section>
    <h1>Runs</h1>
    ${can("OPERATOR") ? html`<${StartRun} teams=${teams.data ?? []} />` : null}
    <form class="filters" aria-label="Filter runs" onSubmit=${(e) => e.preventDefault()}>
      <fieldset class="statuses">
        <legend>Status</legend>
        ${STATUSES.map((s) => html`<label key=${s} class=${`chip${f.statuses.includes(s) ? " on" : ""}`}>
          <input type="checkbox" checked=${f.statuses.includes(s)} onChange=${() => toggleStatus(s)} /> ${label(s)}</label>`)}
      </fieldset>
      <label>Team
        <select value=${f.teamId} onChange=${(e) => update({ teamId: e.currentTarget.value })}>
          <option value="">any</option>
          ${(teams.data ?? []).map((t) => html`<option key=${t.id} value=${t.id}>${t.name}</option>`)}
        </select>
      </label>
      <label>Trigger
        <select value=${f.trigger} onChange=${(e) => update({ trigger: e.currentTarget.value })}>
          <option value="">any</option>
          ${TRIGGERS.map((t) => html`<option key=${t} value=${t}>${label(t)}</option>`)}
        </select>
      </label>
      ${f.triggerId
        ? html`<span class="chip on" data-testid="trigger-id-filter">started by <code>${f.triggerId.slice(0, 8)}</code>
            <button type="button" class="link" aria-label="Any trigger id" onClick=${() => update({ triggerId: "" })}>×</button></span>`
        : null}
      <label>From <input type="datetime-local" value=${f.from} onChange=${(e) => update({ from: e.currentTarget.value })} /></label>
      <label>To <input type="datetime-local" value=${f.to} onChange=${(e) => update({ to: e.currentTarget.value })} /></label>
      ${key !== JSON.stringify(filterFromQuery(new URLSearchParams()))
        ? html`<button type="button" class="link" onClick=${() => setQuery({})}>Clear filters</button>`
        : null}
    </form>
    <${ErrorBox} error=${error} />
    <div class="table-wrap">
      <table class="runs" data-testid="runs">
        <thead><tr><th>Run</th><th>Status</th><th>Team</th><th>Trigger</th><th>Created</th><th>Duration</th><th>Cost</th></tr></thead>
        <tbody>
          ${page.runs.map((r) => html`<tr key=${r.id} data-run-id=${r.id} data-status=${r.status}>
            <td><a href=${`/runs/${r.id}`}><code>${r.id.slice(0, 8)}</code></a> <span class="muted">${r.team ? "" : r.workflow}</span></td>
            <td><${Status} status=${r.status} /></td>
            <td>${r.team ? html`<a href=${`/teams/${encodeURIComponent(r.team.name)}`}>${r.team.name}</a> <span class="muted">v${r.teamVersion}</span>` : "—"}</td>
            <td>${label(r.trigger)}</td>
            <td>${fmtTime(r.createdAt)}</td>
            <td>${r.startedAt ? fmtDuration(between(r.startedAt, r.finishedAt)) : "—"}</td>
            <td>${fmtCost(r.usage?.costUsd)}</td>
          </tr>`)}
        </tbody>
      </table>
    </div>
    ${!loading && page.runs.length === 0 ? html`<${Empty}>No run matches.</${Empty}>` : null}
    ${page.more ? html`<button type="button" onClick=${() => load(page.end)} disabled=${loading}>Load more</button>` : null}
  </section>`;
}

/** Starts an investigation by a team (operators). */
export function StartRun({ teams, team: fixed }) {
  const [team, setTeam] = useState(fixed ?? "");
  const [task, setTask] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const chosen = fixed ?? team ?? "";
  const start = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const data = await gql("mutation Start($input: StartRunInput!) { startRun(input: $input) { id } }", {
        input: { team: chosen, task: task || null },
      });
      navigate(`/runs/${data.startRun.id}`);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<form class="start" onSubmit=${start} aria-label="Start an investigation">
    ${fixed
      ? null
      : html`<label>Team
          <select value=${team} onChange=${(e) => setTeam(e.currentTarget.value)} required data-testid="start-team">
            <option value="" disabled>choose a team</option>
            ${teams.map((t) => html`<option key=${t.id} value=${t.name}>${t.name}</option>`)}
          </select>
        </label>`}
    <label class="grow">Task (optional)
      <input type="text" value=${task} placeholder="e.g. why is checkout slow?" onInput=${(e) => setTask(e.currentTarget.value)} />
    </label>
    <button type="submit" class="primary" disabled=${busy || !chosen} data-testid="start-run">Investigate now</button>
    <${ErrorBox} error=${error} what="the run was not started" />
  </form>`;
}
