// GraphiQL for AIOps Agent Executor, wired to /graphql (HTTP) and /graphql/ws
// (graphql-transport-ws, through the graphql-ws client bundled in graphiql.min.js).
// Loaded by /graphiql after React, ReactDOM and GraphiQL (all deferred, in order).
//
// The API key is kept in this browser's localStorage only and sent as
// "Authorization: Bearer …" over HTTP and in connection_init over WebSocket.
(function () {
  "use strict";

  // GraphiQL's dialogs (react-remove-scroll) insert a <style> element and give it this
  // global's value as nonce; the page's CSP admits styles with this response's nonce.
  window.__webpack_nonce__ = document.currentScript.nonce;

  const KEY = "aiops_token";
  const form = document.getElementById("auth");
  const input = document.getElementById("token");
  const state = document.getElementById("state");

  const endpoint = (path, ws) => {
    const u = new URL(path, window.location.origin);
    if (ws) u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    return u.toString();
  };

  const token = localStorage.getItem(KEY) || "";
  const auth = token ? { Authorization: "Bearer " + token } : {};
  input.value = token;
  state.textContent = token ? "key set" : "no key: only `health` and `login` answer";

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(KEY, input.value.trim());
    window.location.reload();
  });

  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, {
      fetcher: GraphiQL.createFetcher({
        url: endpoint("/graphql"),
        subscriptionUrl: endpoint("/graphql/ws", true),
        headers: auth,
        wsConnectionParams: auth,
      }),
      defaultQuery:
        "{ me { username role } runs(first: 10) { edges { node { id status workflow createdAt } } } }\n",
    })
  );
})();
