// One run, live: its team's topology with each node's state, the step timeline,
// the event log, model output while a step streams it, approvals waiting on it, the
// report with its evidence, usage and cost, and the operator's controls.
//
// The event log is `runEvents` from seq 0: the stored history, then live events, each
// stored seq exactly once. The subscription's `afterSeq` follows the last seq seen,
// so when the socket reconnects it resumes right after it (no gap); a seq seen twice
// is dropped (no duplicate).

import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { gql, subscribe } from "../api.js";
import { can } from "../session.js";
import { html, Status, ErrorBox, fmtTime, fmtDuration, between, fmtCost, Action, isTerminal, Json, label } from "../ui.js";
import { Topology, specNodes } from "../topology.js";
import { EventLog, foldNodeState, nodeOf, settle } from "../runstate.js";
import { markdown } from "../markdown.js";
import { ApprovalCard, APPROVAL_FIELDS } from "./approvals.js";

const USAGE = "inputTokens outputTokens costUsd";
const RUN_QUERY = `query Run($id: UUID!) { run(id: $id) {
  id workflow status trigger triggerId error attempt lastSeq pauseRequested
  createdAt startedAt finishedAt deadlineAt teamVersion team { name spec }
  report result usage { ${USAGE} }
  usageBreakdown { byNode { node usage { ${USAGE} } } byAgent { node agent usage { ${USAGE} } } }
  approvals { ${APPROVAL_FIELDS} } } }`;
const STEPS_QUERY = `query Steps($id: UUID!, $after: String) { run(id: $id) {
  steps(first: 80, after: $after) { totalCount edges { node { key status attempts error startedAt finishedAt } }
  pageInfo { hasNextPage endCursor } } } }`;
const EVENTS_SUBSCRIPTION = `subscription Events($runId: UUID!, $afterSeq: Int!) {
  runEvents(runId: $runId, afterSeq: $afterSeq) { seq kind payload createdAt live branch } }`;

/** Calls `f` at most every `ms`, with a trailing call. */
function throttle(f, ms) {
  let timer = null;
  let pending = false;
  return () => {
    if (timer) {
      pending = true;
      return;
    }
    f();
    timer = setTimeout(function tick() {
      timer = null;
      if (pending) {
        pending = false;
        f();
        timer = setTimeout(tick, ms);
      }
    }, ms);
  };
}

export function RunDetail({ id }) {
  const [run, setRun] = useState(null);
  const [error, setError] = useState(null);
  const [steps, setSteps] = useState({ list: [], total: 0, more: false });
  const [selected, setSelected] = useState(null);
  const [version, setVersion] = useState(0);
  const [subscription, setSubscription] = useState(0);
  const log = useRef(null);
  const states = useRef({});
  if (!log.current || log.current.runId !== id) {
    log.current = Object.assign(new EventLog(), { runId: id });
    states.current = {};
  }

  const loadRun = async () => {
    try {
      const data = await gql(RUN_QUERY, { id });
      if (!data.run) setError({ code: "NOT_FOUND", message: `no run ${id}` });
      else setRun(data.run);
    } catch (e) {
      setError(e);
    }
  };
  const loadSteps = async () => {
    try {
      const list = [];
      let after = null;
      let total = 0;
      let more = false;
      // Up to 1,040 steps (pages of 80: the API's complexity limit).
      for (let i = 0; i < 13; i++) {
        const data = await gql(STEPS_QUERY, { id, after });
        if (!data.run) return;
        const c = data.run.steps;
        list.push(...c.edges.map((e) => e.node));
        total = c.totalCount;
        more = c.pageInfo.hasNextPage;
        after = c.pageInfo.endCursor;
        if (!more) break;
      }
      setSteps({ list, total, more });
    } catch (e) {
      setError(e);
    }
  };

  const refresh = useMemo(() => ({ run: throttle(loadRun, 400), steps: throttle(loadSteps, 1000) }), [id]);

  useEffect(() => {
    setRun(null);
    setError(null);
    loadRun();
    loadSteps();
  }, [id]);

  // The event log; re-rendered at most every 50 ms however fast events come (a
  // timer, not an animation frame: a tab in the background keeps up too).
  useEffect(() => {
    const variables = { runId: id, afterSeq: log.current.lastSeq };
    let frame = null;
    const render = () => {
      frame = null;
      setVersion((v) => v + 1);
    };
    const stop = subscribe(EVENTS_SUBSCRIPTION, variables, {
      onData: ({ runEvents: event }) => {
        if (!log.current.add(event)) return;
        variables.afterSeq = log.current.lastSeq;
        states.current = foldNodeState(states.current, event);
        if (event.kind.startsWith("RUN_") || event.kind.startsWith("APPROVAL_") || event.kind.startsWith("INPUT_")) refresh.run();
        if (event.kind.startsWith("STEP_")) refresh.steps();
        frame ??= setTimeout(render, 50);
      },
      onError: setError,
      onComplete: () => {
        refresh.run();
        refresh.steps();
      },
    });
    return () => {
      stop();
      if (frame) clearTimeout(frame);
    };
  }, [id, subscription]);

  const act = (name) => async () => {
    setError(null);
    try {
      const data = await gql(`mutation Act($id: UUID!) { ${name}(id: $id) { id status } }`, { id });
      setRun((r) => ({ ...r, ...data[name] }));
      refresh.run();
      // A finished run's log ended; retry and resume continue it.
      setSubscription((n) => n + 1);
    } catch (e) {
      setError(e);
    }
  };

  // The same elements while their inputs are the same: a log streaming events (a
  // render every 50 ms) does not re-render a thousand steps or the report each time.
  const stepsView = useMemo(() => run && html`<${Steps} steps=${steps} run=${run} node=${selected} />`, [steps, run, selected]);
  const reportView = useMemo(
    () => run && html`${run.report || run.result ? html`<${Report} run=${run} />` : null}<${UsagePanel} run=${run} />`,
    [run],
  );

  if (error && !run) return html`<section><h1>Run</h1><${ErrorBox} error=${error} /></section>`;
  if (!run) return html`<section><h1>Run</h1><p>Loading…</p></section>`;

  const nodes = specNodes(run.team?.spec);
  // Nodes never reached are `skipped`, once the log has caught up with the run.
  const replayed = log.current.lastSeq >= run.lastSeq;
  const current = Object.fromEntries(nodes.map((n) => [n.id, states.current[n.id] ?? "idle"]));
  const nodeStates = replayed ? settle(current, nodes, run.status) : current;
  const terminal = isTerminal(run.status);
  const pendingApprovals = run.approvals.filter((a) => a.status === "PENDING");
  const streams = [...log.current.streams.entries()].filter(([, s]) => !s.done && !terminal);

  return html`<section class="run" data-run-id=${run.id} data-status=${run.status}>
    <header class="run-head">
      <h1>Run <code>${run.id.slice(0, 8)}</code> <${Status} status=${run.status} /></h1>
      <dl class="facts">
        <div><dt>Team</dt><dd>${run.team ? html`<a href=${`/teams/${encodeURIComponent(run.team.name)}`}>${run.team.name}</a> v${run.teamVersion}` : run.workflow}</dd></div>
        <div><dt>Trigger</dt><dd>${label(run.trigger)}${run.triggerId ? html` <code>${run.triggerId}</code>` : null}</dd></div>
        <div><dt>Created</dt><dd>${fmtTime(run.createdAt)}</dd></div>
        <div><dt>Duration</dt><dd>${run.startedAt ? fmtDuration(between(run.startedAt, run.finishedAt)) : "—"}</dd></div>
        <div><dt>Deadline</dt><dd>${terminal ? "—" : fmtTime(run.deadlineAt)}</dd></div>
        <div><dt>Cost</dt><dd data-testid="run-cost">${fmtCost(run.usage.costUsd)} · ${run.usage.inputTokens} in / ${run.usage.outputTokens} out</dd></div>
      </dl>
      ${can("OPERATOR") ? html`<${Controls} run=${run} act=${act} />` : null}
      ${run.pauseRequested && run.status !== "PAUSED" ? html`<p class="hint">Pausing at the next step boundary…</p>` : null}
      ${run.error ? html`<div class="error" role="alert"><strong>${run.status}</strong>: ${run.error}</div>` : null}
      <${ErrorBox} error=${error} />
    </header>

    ${pendingApprovals.length
      ? html`<section class="panel attention" aria-label="Waiting for a decision">
          <h2>Waiting for a decision</h2>
          ${pendingApprovals.map((a) => html`<${ApprovalCard} key=${a.id} approval=${a} showRun=${false} onDecided=${() => refresh.run()} />`)}
        </section>`
      : null}

    <div class="run-grid">
      ${nodes.length
        ? html`<section class="panel" aria-label="Topology">
            <h2>Topology ${selected ? html`<button type="button" class="link" onClick=${() => setSelected(null)}>show all nodes</button>` : null}</h2>
            <${Topology} spec=${run.team.spec} states=${nodeStates} selected=${selected} onSelect=${setSelected} />
            <${Legend} />
          </section>`
        : null}
      ${streams.length
        ? html`<section class="panel" aria-label="Model output">
            <h2>Model output <span class="live-dot" aria-hidden="true"></span></h2>
            ${streams.map(([branch, s]) => html`<div key=${branch} class="stream" data-branch=${branch}>
              <p class="meta"><code>${branch || "run"}</code>${s.model ? html` · ${s.model}` : null}</p>
              <pre aria-live="polite">${s.text}</pre>
            </div>`)}
          </section>`
        : null}
    </div>

    ${stepsView}
    <${Events} log=${log.current} version=${version} node=${selected} />
    ${reportView}
  </section>`;
}

function Controls({ run, act }) {
  const s = run.status;
  const active = !isTerminal(s);
  return html`<div class="buttons controls" role="group" aria-label="Run controls">
    ${active && s !== "PAUSED" ? html`<${Action} testid="pause" onClick=${act("pauseRun")}>Pause</${Action}>` : null}
    ${s === "PAUSED" ? html`<${Action} testid="resume" kind="primary" onClick=${act("resumeRun")}>Resume</${Action}>` : null}
    ${active ? html`<${Action} testid="cancel" kind="danger" onClick=${act("cancelRun")}>Cancel</${Action}>` : null}
    ${s === "FAILED" || s === "TIMED_OUT" ? html`<${Action} testid="retry" kind="primary" onClick=${act("retryRun")}>Retry from the failed step</${Action}>` : null}
  </div>`;
}

function Legend() {
  const words = ["idle", "running", "waiting", "failing", "degraded", "healthy", "failed", "skipped"];
  return html`<ul class="legend" aria-label="Node states">${words.map((w) => html`<li key=${w}><span class=${`swatch st-${w}`}></span>${w}</li>`)}</ul>`;
}

/** The step timeline: each step's bar from its start to its end, on the run's clock. */
function Steps({ steps, run, node }) {
  const list = node ? steps.list.filter((s) => nodeOf(s.key) === node) : steps.list;
  const starts = steps.list.map((s) => s.startedAt && +new Date(s.startedAt)).filter(Boolean);
  const origin = run.startedAt ? +new Date(run.startedAt) : Math.min(...starts);
  const end = run.finishedAt ? +new Date(run.finishedAt) : Date.now();
  const span = Math.max(1, end - origin);
  return html`<section class="panel" aria-label="Steps">
    <h2>Steps <span class="count">${steps.total}</span>${node ? html` <span class="muted">of ${node}</span>` : null}</h2>
    <ol class="timeline" data-testid="steps">
      ${list.map((s) => {
        const from = s.startedAt ? +new Date(s.startedAt) : origin;
        const to = s.finishedAt ? +new Date(s.finishedAt) : end;
        const left = Math.max(0, Math.min(100, ((from - origin) / span) * 100));
        const width = Math.max(0.5, Math.min(100 - left, ((to - from) / span) * 100));
        return html`<li key=${s.key} data-step=${s.key} data-status=${s.status} data-attempts=${s.attempts}>
          <span class="step-key" title=${s.key}>${s.key}</span>
          <span class="bar-track"><span class=${`bar s-${s.status.toLowerCase()}`} style=${{ marginLeft: `${left}%`, width: `${width}%` }}></span></span>
          <span class="step-facts">${label(s.status)} · ${fmtDuration(between(s.startedAt, s.finishedAt))}${s.attempts > 1 ? html` · <strong>${s.attempts} attempts</strong>` : null}</span>
          ${s.error ? html`<span class="step-error">${s.error}</span>` : null}
        </li>`;
      })}
    </ol>
    ${steps.more ? html`<p class="hint">Showing the first ${steps.list.length} of ${steps.total} steps.</p>` : null}
  </section>`;
}

/** One line about an event: what a person scans for. */
function summary(e) {
  const p = e.payload ?? {};
  switch (e.kind) {
    case "TOOL_CALL":
      return `${p.tool} ${JSON.stringify(p.args ?? {}).slice(0, 160)}`;
    case "TOOL_RESULT":
      return `${p.tool} ${p.ok ? "ok" : `failed: ${p.error ?? ""}`}`;
    case "FINDING":
      return `${p.node}: ${p.status} — ${p.summary ?? ""}`;
    case "APPROVAL_REQUESTED":
      return `${p.tool} needs approval`;
    case "APPROVAL_DECIDED":
      return `${(p.status ?? "").toLowerCase()}${p.decided_by ? ` by ${p.decided_by}` : ""}`;
    case "INPUT_REQUESTED":
      return p.question ?? "";
    case "STEP_FAILED":
      return `${p.step_key} — ${p.error ?? ""}`;
    case "STEP_SUCCEEDED":
      return `${p.step_key}${p.duration_ms != null ? ` (${fmtDuration(p.duration_ms)})` : ""}`;
    default:
      return p.step_key ?? (Object.keys(p).length ? JSON.stringify(p).slice(0, 160) : "");
  }
}

const ROW = 28;
const GROUPS = {
  all: () => true,
  steps: (k) => k.startsWith("STEP_"),
  tools: (k) => k.startsWith("TOOL_") || k === "FINDING",
  humans: (k) => k.startsWith("APPROVAL_") || k.startsWith("INPUT_"),
  run: (k) => k.startsWith("RUN_"),
};

/**
 * The event log, windowed: only the rows in view are in the DOM, so a log of many
 * thousands of events scrolls and updates smoothly. Follows the end while the view
 * is at the bottom.
 */
function Events({ log, version, node }) {
  const [group, setGroup] = useState("all");
  const [open, setOpen] = useState(null);
  const [scroll, setScroll] = useState({ top: 0, height: 420 });
  const box = useRef(null);
  const atEnd = useRef(true);
  const list = useMemo(() => {
    const keep = GROUPS[group];
    return log.events.filter((e) => keep(e.kind) && (!node || nodeOf(e.payload?.step_key) === node || e.payload?.node === node));
  }, [log, version, group, node]);
  useEffect(() => {
    const el = box.current;
    if (el && atEnd.current) el.scrollTop = el.scrollHeight;
  }, [list.length]);
  const onScroll = (e) => {
    const el = e.currentTarget;
    atEnd.current = el.scrollTop + el.clientHeight >= el.scrollHeight - ROW;
    setScroll({ top: el.scrollTop, height: el.clientHeight });
  };
  const first = Math.max(0, Math.floor(scroll.top / ROW) - 10);
  const last = Math.min(list.length, Math.ceil((scroll.top + scroll.height) / ROW) + 10);
  const openEvent = open != null ? log.events.find((e) => e.seq === open) : null;
  return html`<section class="panel" aria-label="Event log">
    <h2>Events <span class="count">${log.events.length}</span></h2>
    <div class="buttons" role="group" aria-label="Show events">
      ${Object.keys(GROUPS).map((g) => html`<button key=${g} type="button" class=${group === g ? "on" : ""} aria-pressed=${group === g ? "true" : "false"}
        onClick=${() => setGroup(g)}>${g}</button>`)}
    </div>
    <div class="event-log" ref=${box} onScroll=${onScroll} tabindex="0" role="log" aria-label="Run events"
      data-testid="events" data-count=${log.events.length} data-last-seq=${log.lastSeq}
      data-duplicates=${log.duplicates} data-gaps=${log.gaps}>
      <div style=${{ height: `${list.length * ROW}px`, position: "relative" }}>
        ${list.slice(first, last).map((e, i) => html`<button type="button" key=${e.seq} class=${`event k-${e.kind.toLowerCase()}`} data-seq=${e.seq}
          style=${{ top: `${(first + i) * ROW}px` }} onClick=${() => setOpen(open === e.seq ? null : e.seq)}>
          <span class="seq">${e.seq}</span>
          <span class="at">${new Date(e.createdAt).toLocaleTimeString()}</span>
          <span class="kind">${e.kind}</span>
          <span class="what">${summary(e)}</span>
        </button>`)}
      </div>
    </div>
    ${openEvent ? html`<div class="event-detail"><p class="meta">Event ${openEvent.seq} · ${openEvent.kind} · ${fmtTime(openEvent.createdAt)}</p><${Json} value=${openEvent.payload} /></div>` : null}
  </section>`;
}

/** The report (Markdown) and the evidence its root causes cite. */
function Report({ run }) {
  const body = useMemo(() => markdown(run.report ?? ""), [run.report]);
  const causes = run.result?.root_causes ?? [];
  const evidence = causes.flatMap((c) => (c.evidence ?? []).map((e) => ({ ...e, node: c.node })));
  return html`<section class="panel" aria-label="Report">
    <h2>Report</h2>
    ${run.result?.summary ? html`<p class="summary"><strong>${run.result.severity ?? ""}</strong> ${run.result.summary}</p>` : null}
    <article class="report" data-testid="report">${body}</article>
    ${evidence.length
      ? html`<h3>Evidence</h3>
          <ul class="evidence" data-testid="evidence">
            ${evidence.map((e, i) => html`<li key=${i}>
              <span class="muted">${e.node} · ${e.kind}</span>
              ${e.query ? html` <code>${e.query}</code>` : null}
              ${e.alert ? html` <code>${e.alert}</code>` : null}
              ${e.start ? html` <span class="muted">${fmtTime(e.start)} – ${fmtTime(e.end)}</span>` : null}
              ${e.url && /^https?:/i.test(e.url) ? html` <a href=${e.url} target="_blank" rel="noopener noreferrer">graph</a>` : null}
            </li>`)}
          </ul>`
      : null}
    ${run.result ? html`<details><summary>Structured result</summary><${Json} value=${run.result} /></details>` : null}
  </section>`;
}

function UsagePanel({ run }) {
  const nodes = run.usageBreakdown?.byNode ?? [];
  const agents = run.usageBreakdown?.byAgent ?? [];
  return html`<section class="panel" aria-label="Usage">
    <h2>Usage and cost</h2>
    <p>${run.usage.inputTokens} input tokens, ${run.usage.outputTokens} output tokens, ${fmtCost(run.usage.costUsd)}.</p>
    ${nodes.length
      ? html`<div class="table-wrap"><table>
          <thead><tr><th>Node</th><th>Agent</th><th>Input</th><th>Output</th><th>Cost</th></tr></thead>
          <tbody>
            ${nodes.map((n) => html`<tr key=${n.node}><td>${n.node}</td><td class="muted">all</td><td>${n.usage.inputTokens}</td><td>${n.usage.outputTokens}</td><td>${fmtCost(n.usage.costUsd)}</td></tr>`)}
            ${agents.map((a) => html`<tr key=${`${a.node}/${a.agent}`}><td>${a.node}</td><td>${a.agent}</td><td>${a.usage.inputTokens}</td><td>${a.usage.outputTokens}</td><td>${fmtCost(a.usage.costUsd)}</td></tr>`)}
          </tbody>
        </table></div>`
      : null}
  </section>`;
}

