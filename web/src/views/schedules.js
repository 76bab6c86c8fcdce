// Cron schedules: each starts runs of a team at its cron times, read in its IANA time
// zone. Everyone sees them with their next fire times (the wall clock in the
// schedule's zone and the instant in UTC) and their last fire; operators trigger one
// now (and get a link to the run it started); admins create, enable, disable and
// delete them. A refused field (a bad cron expression, an unknown zone) comes back as
// the server's error naming it (`cron: …`), shown at that field of the form.

import { useState } from "preact/hooks";
import { gql } from "../api.js";
import { can } from "../session.js";
import { html, ErrorBox, fmtTime, useQuery, Empty, Action, Status, label } from "../ui.js";
import { useTeams } from "./runs.js";

/** Next fire times shown per schedule. */
const NEXT = 3;
/** Schedules per page (each costs ~25 of the server's complexity budget of 1000). */
const PAGE = 25;
const FIELDS = `id name team input cron timezone overlapPolicy catchUpPolicy enabled nextFireAt
  lastFire { fireTime outcome missedCount runId error } nextFireTimes(n: ${NEXT}) { at local }`;
const LIST = `query Schedules($first: Int!, $after: String) { schedules(first: $first, after: $after) {
  totalCount nodes { ${FIELDS} } pageInfo { hasNextPage endCursor } } }`;

const OVERLAP = {
  SKIP: "skip a fire time while a run of it is active",
  ALLOW: "start another run even while one is active",
};
const CATCH_UP = {
  SKIP: "after downtime, skip the fire times missed",
  RUN_ONCE: "after downtime, run once for the latest missed",
};
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/**
 * The wall clock of an RFC 3339 time with its offset, as the zone reads it:
 * `2027-03-14T03:00:00-04:00` → `Sun 2027-03-14 03:00 (UTC−04:00)`.
 */
export function wallClock(local) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?(Z|[+-]\d{2}:\d{2})$/.exec(local);
  if (!m) return local;
  const [, y, mo, d, h, mi, s, offset] = m;
  const day = WEEKDAYS[new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d))).getUTCDay()];
  const time = s === "00" ? `${h}:${mi}` : `${h}:${mi}:${s}`;
  const utc = offset === "Z" || offset === "+00:00" ? "UTC" : `UTC${offset.replace("-", "−")}`;
  return `${day} ${y}-${mo}-${d} ${time} (${utc})`;
}

/** An instant in UTC: `2027-03-14 07:00 UTC`. */
export function utcInstant(iso) {
  const t = new Date(iso).toISOString();
  const seconds = t.slice(17, 19);
  return `${t.slice(0, 10)} ${t.slice(11, 16)}${seconds === "00" ? "" : `:${seconds}`} UTC`;
}

/** The field a server error names (`cron: …`, `input.task: …`), if it is one of the form's. */
function fieldOf(error) {
  const m = /^([a-z][A-Za-z]*)(?:\.([a-z]+))?:/.exec(error?.message ?? "");
  if (!m) return null;
  const field = m[1] === "input" ? (m[2] === "task" ? "task" : "alerts") : m[1];
  return ["name", "team", "cron", "timezone", "task", "alerts"].includes(field) ? field : null;
}

function zones() {
  try {
    return Intl.supportedValuesOf("timeZone");
  } catch {
    return ["UTC"];
  }
}

export function Schedules() {
  const admin = can("ADMIN");
  const [extra, setExtra] = useState({ list: [], end: null, more: null });
  const [moreError, setMoreError] = useState(null);
  const q = useQuery(async () => {
    setExtra({ list: [], end: null, more: null });
    setMoreError(null);
    return (await gql(LIST, { first: PAGE, after: null })).schedules;
  }, []);
  const loadMore = async () => {
    setMoreError(null);
    try {
      const data = (await gql(LIST, { first: PAGE, after: extra.end ?? q.data.pageInfo.endCursor })).schedules;
      setExtra((x) => ({ list: [...x.list, ...data.nodes], end: data.pageInfo.endCursor, more: data.pageInfo.hasNextPage }));
    } catch (e) {
      setMoreError(e);
    }
  };
  const schedules = [...(q.data?.nodes ?? []), ...extra.list];
  const more = extra.more ?? q.data?.pageInfo.hasNextPage;
  return html`<section>
    <h1>Schedules ${q.data ? html`<span class="count">${q.data.totalCount}</span>` : null}</h1>
    <p class="hint">Each schedule starts a run of its team at its cron times, read in its time zone (daylight
      saving included). Times are shown as the zone's wall clock, and as the instant in UTC.</p>
    <${ErrorBox} error=${q.error} />
    ${admin ? html`<${CreateSchedule} onCreated=${q.reload} />` : null}
    ${schedules.length === 0 && !q.loading && !q.error ? html`<${Empty}>No schedule yet.</${Empty}>` : null}
    <div class="cards wide-cards" data-testid="schedules">
      ${schedules.map((s) => html`<${ScheduleCard} key=${s.id} schedule=${s} onChanged=${q.reload} />`)}
    </div>
    <${ErrorBox} error=${moreError} what="the next page was not read" />
    ${more ? html`<${Action} onClick=${loadMore}>Load more</${Action}>` : null}
  </section>`;
}

function ScheduleCard({ schedule: s, onChanged }) {
  const [error, setError] = useState(null);
  const [started, setStarted] = useState(null);
  const admin = can("ADMIN");
  const attempt = (f) => async () => {
    setError(null);
    try {
      await f();
    } catch (e) {
      setError(e);
    }
  };
  const trigger = attempt(async () => {
    const d = await gql("mutation Trigger($id: UUID!) { triggerSchedule(id: $id) { id status } }", { id: s.id });
    setStarted(d.triggerSchedule);
  });
  const toggle = attempt(async () => {
    await gql("mutation Enable($id: UUID!, $enabled: Boolean!) { updateSchedule(id: $id, input: { enabled: $enabled }) { id enabled } }", {
      id: s.id,
      enabled: !s.enabled,
    });
    onChanged();
  });
  const remove = attempt(async () => {
    if (!window.confirm(`Delete schedule ${s.name}? The runs it started stay.`)) return;
    await gql("mutation Delete($id: UUID!) { deleteSchedule(id: $id) }", { id: s.id });
    onChanged();
  });
  const task = s.input?.task;
  const alerts = s.input?.alerts;
  const fire = s.lastFire;
  return html`<article class="card schedule" data-schedule=${s.name} data-schedule-id=${s.id} data-enabled=${String(s.enabled)} aria-label=${`Schedule ${s.name}`}>
    <header>
      <h3>${s.name}</h3>
      <span class=${`badge ${s.enabled ? "s-running" : "s-cancelled"}`} data-testid="enabled">${s.enabled ? "enabled" : "disabled"}</span>
      <span class="muted">runs <a href=${`/teams/${encodeURIComponent(s.team)}`}>${s.team}</a></span>
    </header>
    <dl class="facts">
      <div><dt>Cron</dt><dd><code data-testid="cron">${s.cron}</code></dd></div>
      <div><dt>Time zone</dt><dd data-testid="timezone">${s.timezone}</dd></div>
      <div><dt>Overlap</dt><dd title=${OVERLAP[s.overlapPolicy]}>${label(s.overlapPolicy)}</dd></div>
      <div><dt>Catch-up</dt><dd title=${CATCH_UP[s.catchUpPolicy]}>${label(s.catchUpPolicy)}</dd></div>
      <div><dt>Last fire</dt><dd data-testid="last-fire">${fire
        ? html`<${Status} status=${fire.outcome} /> ${fmtTime(fire.fireTime)}${fire.missedCount > 1 ? ` (${fire.missedCount} times)` : ""}
            ${fire.runId ? html` · <a href=${`/runs/${fire.runId}`}>run ${fire.runId.slice(0, 8)}</a>` : null}
            ${fire.error ? html`<span class="bad"> ${fire.error}</span>` : null}`
        : "never"}</dd></div>
      <div><dt>Runs</dt><dd><a href=${`/runs?trigger=SCHEDULE&triggerId=${s.id}`}>runs it started</a></dd></div>
    </dl>
    ${task || alerts ? html`<p class="meta">${task ? html`Task: <q>${task}</q>` : null}${task && alerts ? " · " : null}${alerts ? `alerts given (${Array.isArray(alerts) ? alerts.length : (alerts.alerts?.length ?? "?")})` : null}</p>` : html`<p class="meta">No task; each run investigates the firing alerts at the time.</p>`}
    <div>
      <h4 class="sub">${s.enabled ? "Next fire times" : "Would fire at (disabled)"}, ${s.timezone} · UTC</h4>
      <ol class="fires" data-testid="next-fires">
        ${s.nextFireTimes.map((t) => html`<li key=${t.at} data-at=${t.at} data-local=${t.local}>
          <span class="wall">${wallClock(t.local)}</span>${" = "}<time class="instant" datetime=${t.at} title=${`your time: ${fmtTime(t.at)}`}>${utcInstant(t.at)}</time>
        </li>`)}
      </ol>
    </div>
    ${started
      ? html`<p class="notice" role="status" data-testid="started">Started run <a href=${`/runs/${started.id}`} data-testid="started-run">${started.id.slice(0, 8)}</a> (${label(started.status)}).</p>`
      : null}
    <${ErrorBox} error=${error} />
    <div class="buttons">
      ${can("OPERATOR") ? html`<${Action} kind="small" testid="trigger" title=${`Start a run of ${s.name} now`} onClick=${trigger}>Trigger now</${Action}>` : null}
      ${admin ? html`<${Action} kind="small" testid="toggle" onClick=${toggle}>${s.enabled ? "Disable" : "Enable"}</${Action}>` : null}
      ${admin ? html`<${Action} kind="danger small" testid="delete" title=${`Delete schedule ${s.name}`} onClick=${remove}>Delete</${Action}>` : null}
    </div>
  </article>`;
}

const EMPTY = { name: "", team: "", task: "", alerts: "", cron: "", timezone: "UTC", overlapPolicy: "SKIP", catchUpPolicy: "SKIP", enabled: true };

/** The admins' form; the server checks every field and its error names the one it refuses. */
function CreateSchedule({ onCreated }) {
  const teams = useTeams();
  const [open, setOpen] = useState(false);
  const [v, setV] = useState(EMPTY);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (name) => (e) => setV({ ...v, [name]: e.currentTarget.type === "checkbox" ? e.currentTarget.checked : e.currentTarget.value });
  const bad = fieldOf(error);
  const submit = async (e) => {
    e.preventDefault();
    setError(null);
    let alerts = null;
    if (v.alerts.trim()) {
      try {
        alerts = JSON.parse(v.alerts);
      } catch (err) {
        setError({ code: "INVALID_JSON", message: `alerts: not JSON (${err.message})` });
        return;
      }
    }
    setBusy(true);
    try {
      await gql("mutation Create($input: CreateScheduleInput!) { createSchedule(input: $input) { id } }", {
        input: {
          name: v.name,
          team: v.team,
          cron: v.cron,
          timezone: v.timezone || null,
          task: v.task || null,
          alerts,
          overlapPolicy: v.overlapPolicy,
          catchUpPolicy: v.catchUpPolicy,
          enabled: v.enabled,
        },
      });
      setV(EMPTY);
      setOpen(false);
      onCreated();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  if (!open) return html`<p><button type="button" data-testid="new-schedule" onClick=${() => setOpen(true)}>Add a schedule</button></p>`;
  const fieldError = (name) =>
    bad === name
      ? html`<span class="field-error" role="alert" id=${`schedule-${name}-error`} data-field-error=${name} data-code=${error.code}><strong>${error.code}</strong>: ${error.message}</span>`
      : null;
  const invalid = (name) => (bad === name ? { "aria-invalid": "true", "aria-describedby": `schedule-${name}-error` } : {});
  return html`<form class="create schedule-form" onSubmit=${submit} aria-label="Add a schedule" data-testid="schedule-form">
    <label>Name <input id="schedule-name" required autocomplete="off" value=${v.name} onInput=${set("name")} ...${invalid("name")} />${fieldError("name")}</label>
    <label>Team
      <select id="schedule-team" required value=${v.team} onChange=${set("team")} ...${invalid("team")}>
        <option value="" disabled>choose a team</option>
        ${(teams.data ?? []).map((t) => html`<option key=${t.id} value=${t.name}>${t.name}</option>`)}
      </select>${fieldError("team")}
    </label>
    <label>Cron (minute hour day-of-month month day-of-week)
      <input id="schedule-cron" required autocomplete="off" class="mono" placeholder="0 9 * * 1-5" value=${v.cron} onInput=${set("cron")} ...${invalid("cron")} />${fieldError("cron")}
    </label>
    <label>Time zone (IANA)
      <input id="schedule-timezone" list="schedule-zones" autocomplete="off" value=${v.timezone} onInput=${set("timezone")} ...${invalid("timezone")} />${fieldError("timezone")}
      <datalist id="schedule-zones">${zones().map((z) => html`<option key=${z} value=${z} />`)}</datalist>
    </label>
    <label>Overlap
      <select id="schedule-overlap" value=${v.overlapPolicy} onChange=${set("overlapPolicy")}>
        ${Object.entries(OVERLAP).map(([k, text]) => html`<option key=${k} value=${k}>${label(k)}: ${text}</option>`)}
      </select>
    </label>
    <label>Catch-up
      <select id="schedule-catch-up" value=${v.catchUpPolicy} onChange=${set("catchUpPolicy")}>
        ${Object.entries(CATCH_UP).map(([k, text]) => html`<option key=${k} value=${k}>${label(k)}: ${text}</option>`)}
      </select>
    </label>
    <label class="check"><input id="schedule-enabled" type="checkbox" checked=${v.enabled} onChange=${set("enabled")} /> Enabled</label>
    <label class="grow">Task (optional)
      <input id="schedule-task" autocomplete="off" placeholder="e.g. morning health check of checkout" value=${v.task} onInput=${set("task")} ...${invalid("task")} />${fieldError("task")}
    </label>
    <label class="wide"><span>Alerts (optional JSON: a list, or Alertmanager's <code>{"alerts": [...]}</code>; none: the firing alerts at each run)</span>
      <textarea id="schedule-alerts" rows="3" class="mono" spellcheck="false" value=${v.alerts} onInput=${set("alerts")} ...${invalid("alerts")}></textarea>${fieldError("alerts")}
    </label>
    <div class="buttons">
      <button type="submit" class="primary" disabled=${busy} data-testid="save-schedule">Save</button>
      <button type="button" onClick=${() => { setOpen(false); setError(null); }}>Cancel</button>
    </div>
    ${error && !bad ? html`<div class="wide"><${ErrorBox} error=${error} what="the schedule was not saved" /></div>` : null}
  </form>`;
}
