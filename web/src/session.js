// Who is logged in: `login` exchanges a password for a 12-hour API key, `logout`
// revokes that key (the server forgets it at once), `me` says who and with which role.

import { signal } from "@preact/signals";
import { gql, setToken, token } from "./api.js";

/** `{ userId, username, role, apiKeyId }` of the caller, or null. */
export const me = signal(null);

const RANK = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };

/** Whether the caller has at least `role`: the console shows only what they may do. */
export function can(role) {
  return me.value != null && RANK[me.value.role] >= RANK[role];
}

export async function loadMe() {
  if (!token.value) {
    me.value = null;
    return null;
  }
  const data = await gql("{ me { userId username role apiKeyId } }");
  me.value = data.me;
  return data.me;
}

export async function login(username, password) {
  const data = await gql(
    "mutation Login($u: String!, $p: String!) { login(username: $u, password: $p) { token apiKey { id expiresAt } } }",
    { u: username, p: password },
  );
  setToken(data.login.token);
  return loadMe();
}

export async function logout() {
  const id = me.value?.apiKeyId;
  try {
    if (id) await gql("mutation Logout($id: UUID!) { revokeApiKey(id: $id) { id revokedAt } }", { id });
  } finally {
    me.value = null;
    setToken(null);
  }
}
