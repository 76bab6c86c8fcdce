// What a run's event log says about its team's nodes, as a pure fold over events
// (so the page shows the same thing whether it watched the run live or replayed
// its log after a reload):
//
//   idle      nothing about the node yet;
//   running   a step, tool call or model stream under `node/<id>/` has started;
//   waiting   a step under it waits for a person (approval or answer);
//   failing / degraded / healthy   its FINDING's status;
//   failed    a step under it failed for good;
//   skipped   the run ended and the node was never investigated.

import { isTerminal } from "./ui.js";

/** The node a step key or branch belongs to (`node/<id>/…`), or null. */
export function nodeOf(key) {
  if (typeof key !== "string" || !key.startsWith("node/")) return null;
  const rest = key.slice(5);
  const end = rest.indexOf("/");
  return decodeSegment(end < 0 ? rest : rest.slice(0, end));
}

/** Step key segments escape `%` and `/` (`%25`, `%2F`). */
function decodeSegment(segment) {
  return segment.replace(/%2F/gi, "/").replace(/%25/g, "%");
}

const FINAL = new Set(["failing", "degraded", "healthy", "failed"]);

/** The next node states after `event` (returns `states` itself when nothing changes). */
export function foldNodeState(states, event) {
  const p = event.payload ?? {};
  const set = (node, state) => {
    if (!node || states[node] === state) return states;
    return { ...states, [node]: state };
  };
  switch (event.kind) {
    case "FINDING":
      return set(p.node, p.status ?? "healthy");
    case "STEP_STARTED":
    case "TOOL_CALL":
    case "STEP_RETRY_SCHEDULED":
    case "STEP_SUCCEEDED":
    case "TOOL_RESULT":
    case "APPROVAL_DECIDED":
    case "INPUT_RECEIVED": {
      const node = nodeOf(p.step_key);
      if (!node || FINAL.has(states[node])) return states;
      return set(node, "running");
    }
    case "LLM_TOKEN": {
      const node = nodeOf(event.branch);
      if (!node || FINAL.has(states[node])) return states;
      return set(node, "running");
    }
    case "APPROVAL_REQUESTED":
    case "INPUT_REQUESTED": {
      const node = nodeOf(p.step_key);
      if (!node || FINAL.has(states[node])) return states;
      return set(node, "waiting");
    }
    case "STEP_FAILED": {
      const node = nodeOf(p.step_key);
      if (!node || p.retryable) return states;
      return set(node, "failed");
    }
    default:
      return states;
  }
}

/** Nodes never reached by a finished run are `skipped`. */
export function settle(states, nodes, status) {
  if (!isTerminal(status)) return states;
  const out = { ...states };
  for (const n of nodes) if (!out[n.id] || out[n.id] === "idle") out[n.id] = "skipped";
  return out;
}

/**
 * A run's event log as the page holds it: events by seq, each stored seq once, in
 * order; live events (LLM tokens) apart, per branch.
 */
export class EventLog {
  constructor() {
    this.events = [];
    this.lastSeq = 0;
    this.duplicates = 0;
    this.gaps = 0;
    this.streams = new Map();
  }

  /** Adds one event from `runEvents`; false for a duplicate (already seen). */
  add(event) {
    if (event.live) {
      const s = this.streams.get(event.branch) ?? { text: "", model: null, done: false, at: null };
      s.text = (s.text + (event.payload?.text ?? "")).slice(-4000);
      s.model = event.payload?.model ?? s.model;
      s.done = false;
      s.at = event.createdAt;
      this.streams.set(event.branch, s);
      return true;
    }
    if (event.seq <= this.lastSeq) {
      this.duplicates++;
      return false;
    }
    if (event.seq !== this.lastSeq + 1) this.gaps++;
    this.lastSeq = event.seq;
    this.events.push(event);
    // A model's stream ends with its step.
    const key = event.payload?.step_key;
    if (key && (event.kind === "STEP_SUCCEEDED" || event.kind === "STEP_FAILED")) {
      for (const [branch, s] of this.streams) if (branch === "" || key === branch || key.startsWith(`${branch}/`)) s.done = true;
    }
    return true;
  }
}
