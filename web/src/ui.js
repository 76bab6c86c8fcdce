// Small shared pieces: the `html` template tag, formatting, status badges, errors,
// countdowns, and the hook that loads a query.

import { h } from "preact";
import { useEffect, useState, useCallback, useRef } from "preact/hooks";
import htm from "htm";

export const html = htm.bind(h);

export const TERMINAL = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];

export function isTerminal(status) {
  return TERMINAL.includes(status);
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "short", timeStyle: "medium" });
}

export function fmtDuration(ms) {
  if (ms == null || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function between(start, end) {
  if (!start) return null;
  return (end ? new Date(end) : new Date()) - new Date(start);
}

export function fmtCost(usd) {
  if (!usd) return "$0";
  return usd < 0.01 ? `$${usd.toFixed(4)}` : `$${usd.toFixed(2)}`;
}

export function label(status) {
  return (status ?? "").toLowerCase().replace(/_/g, " ");
}

export function Status({ status }) {
  return html`<span class=${`badge s-${(status ?? "").toLowerCase()}`} data-status=${status}>${label(status)}</span>`;
}

/** A GraphQL error, with its code first: CONFLICT, FORBIDDEN… are what a person acts on. */
export function ErrorBox({ error, what }) {
  if (!error) return null;
  return html`<div class="error" role="alert" data-code=${error.code}>
    <strong>${error.code ?? "ERROR"}</strong>${what ? html` — ${what}` : null}: ${error.message}
  </div>`;
}

/** Seconds to `until`, ticking; "expired" after it. */
export function Countdown({ until }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  const left = new Date(until) - now;
  if (left <= 0) return html`<span class="countdown expired">expired</span>`;
  const s = Math.floor(left / 1000);
  const text = s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
  return html`<span class=${`countdown${s < 300 ? " soon" : ""}`} title=${fmtTime(until)}>expires in ${text}</span>`;
}

/**
 * Runs `load` (an async function) on mount and when `deps` change: `{ data, error,
 * loading, reload, setData }`.
 */
export function useQuery(load, deps = []) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const reload = useCallback(async () => {
    const mine = ++generation.current;
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ ...s, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    reload();
  }, [reload]);
  const setData = (f) => setState((s) => ({ ...s, data: typeof f === "function" ? f(s.data) : f }));
  return { ...state, reload, setData };
}

/** A button for an async action: disabled while it runs. */
export function Action({ onClick, children, kind = "", title, testid, disabled }) {
  const [busy, setBusy] = useState(false);
  const run = async (e) => {
    e.preventDefault();
    setBusy(true);
    try {
      await onClick();
    } finally {
      setBusy(false);
    }
  };
  return html`<button type="button" class=${kind} title=${title} data-testid=${testid} disabled=${busy || disabled} onClick=${run}>
    ${children}
  </button>`;
}

export function Json({ value }) {
  return html`<pre class="json">${JSON.stringify(value, null, 2)}</pre>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}
