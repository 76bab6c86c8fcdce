// Client routes on the History API: the server answers index.html for any of them.
// Same-origin `<a href="/…">` clicks are handled here (no reload); query strings
// carry view state (filters), so a link or a reload shows the same view.

import { signal } from "@preact/signals";

export const location = signal(current());

function current() {
  return { path: window.location.pathname, query: new URLSearchParams(window.location.search) };
}

export function navigate(to, { replace = false } = {}) {
  if (to === window.location.pathname + window.location.search) return;
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  location.value = current();
  window.scrollTo(0, 0);
}

/** Replaces the query string (filters) without a new history entry. */
export function setQuery(params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (Array.isArray(v)) v.forEach((x) => query.append(k, x));
    else if (v !== undefined && v !== null && v !== "") query.set(k, v);
  }
  const search = query.toString();
  history.replaceState(null, "", window.location.pathname + (search ? `?${search}` : ""));
  location.value = current();
}

window.addEventListener("popstate", () => {
  location.value = current();
});

document.addEventListener("click", (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const a = event.target.closest?.("a[href]");
  if (!a || a.target || a.hasAttribute("download")) return;
  const href = a.getAttribute("href");
  if (!href.startsWith("/") || href.startsWith("//") || href.startsWith("/graphiql")) return;
  event.preventDefault();
  navigate(href);
});

/** Matches `path` against a pattern like `/runs/:id`; the params, or null. */
export function match(pattern, path) {
  const want = pattern.split("/");
  const got = path.replace(/\/+$/, "").split("/");
  if (want.length !== got.length) return null;
  const params = {};
  for (let i = 0; i < want.length; i++) {
    if (want[i].startsWith(":")) params[want[i].slice(1)] = decodeURIComponent(got[i]);
    else if (want[i] !== got[i]) return null;
  }
  return params;
}
