// The console's only way out: GraphQL over HTTP (`/graphql`) for queries and
// mutations, graphql-ws (`/graphql/ws`, protocol graphql-transport-ws) for
// subscriptions. Same origin only: the page's CSP refuses anything else.
//
// The API key lives in localStorage. Any UNAUTHENTICATED answer (an expired or
// revoked key) ends the session here, and the router sends the person to /login.

import { signal } from "@preact/signals";
import { createClient } from "graphql-ws";

const TOKEN_KEY = "aiops_console_token";

/** The API key of this browser's session, or null. */
export const token = signal(localStorage.getItem(TOKEN_KEY));

/** The WebSocket's state: "idle" | "connecting" | "connected" | "reconnecting". */
export const socketState = signal("idle");

/**
 * Incremented each time the WebSocket connects again after it was lost: live views
 * (runUpdates, approvalRequested) reconcile with a query when it changes.
 */
export const reconnects = signal(0);

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  if (value !== token.value) {
    disposeSocket();
    token.value = value;
  }
}

/** A GraphQL error answer: `code` is `extensions.code` of the first error. */
export class GqlError extends Error {
  constructor(errors) {
    super(errors.map((e) => e.message).join("; "));
    this.errors = errors;
    this.code = errors[0]?.extensions?.code ?? "INTERNAL";
    this.violations = errors.flatMap((e) => e.extensions?.violations ?? []);
  }
}

/** Runs a query or mutation; resolves to `data`, rejects with a GqlError. */
export async function gql(query, variables = {}) {
  const headers = { "content-type": "application/json" };
  if (token.value) headers.authorization = `Bearer ${token.value}`;
  let response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers,
      body: JSON.stringify({ query, variables }),
    });
  } catch (e) {
    throw new GqlError([{ message: `the server cannot be reached (${e.message})`, extensions: { code: "UNAVAILABLE" } }]);
  }
  let body;
  try {
    body = await response.json();
  } catch {
    throw new GqlError([{ message: `HTTP ${response.status}`, extensions: { code: "INTERNAL" } }]);
  }
  if (body.errors?.length) {
    const error = new GqlError(body.errors);
    if (error.code === "UNAUTHENTICATED" && token.value) setToken(null);
    throw error;
  }
  return body.data;
}

let client = null;
/** Subscriptions this page holds open: a socket closed with none is idle, not lost. */
let open = 0;

function disposeSocket() {
  if (client) {
    client.dispose();
    client = null;
  }
  socketState.value = "idle";
}

/** Between reconnection attempts: 0.5 s, 1 s, 2 s, then 3 s (plus up to 0.5 s). */
function retryWait(retries) {
  const ms = Math.min(3000, 500 * 2 ** retries) + Math.random() * 500;
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function socket() {
  if (client) return client;
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql/ws`;
  let connectedOnce = false;
  client = createClient({
    url,
    lazy: true,
    lazyCloseTimeout: 1000,
    keepAlive: 10000,
    retryAttempts: Infinity,
    retryWait,
    // A refused key (4403) ends the session; everything else is worth retrying.
    shouldRetry: (event) => !(event && (event.code === 4403 || event.code === 4401)),
    connectionParams: () => ({ Authorization: `Bearer ${token.value}` }),
    on: {
      connecting: () => {
        socketState.value = connectedOnce ? "reconnecting" : "connecting";
      },
      connected: () => {
        if (connectedOnce) reconnects.value += 1;
        connectedOnce = true;
        socketState.value = "connected";
      },
      closed: (event) => {
        if (event && event.code === 4403) {
          setToken(null);
          return;
        }
        socketState.value = open > 0 ? "reconnecting" : "idle";
      },
    },
  });
  return client;
}

/**
 * Subscribes; `onData(data)` for each result, `onError(GqlError)` once if the server
 * refuses it. `variables` is kept by reference and sent again as it is when the
 * socket reconnects: change it in place (e.g. `afterSeq`) to resume where you are.
 * Returns the function that ends the subscription.
 */
export function subscribe(query, variables, { onData, onError, onComplete } = {}) {
  let ended = false;
  const end = () => {
    if (!ended) {
      ended = true;
      open--;
    }
  };
  open++;
  const dispose = socket().subscribe(
    { query, variables },
    {
      next: (result) => {
        if (result.errors?.length) onError?.(new GqlError(result.errors));
        else onData?.(result.data);
      },
      error: (error) => {
        end();
        if (Array.isArray(error)) onError?.(new GqlError(error));
        else if (error && typeof error.code === "number") socketState.value = "idle";
        else onError?.(new GqlError([{ message: String(error?.message ?? error) }]));
      },
      complete: () => {
        end();
        onComplete?.();
      },
    },
  );
  return () => {
    end();
    dispose();
  };
}
