// Users and API keys. Everyone manages their own keys (a new key is shown once;
// its role is at most yours); admins also list, create, disable and enable users,
// and see and revoke any user's keys.

import { useState } from "preact/hooks";
import { gql } from "../api.js";
import { can, me } from "../session.js";
import { html, ErrorBox, fmtTime, useQuery, Action, Empty, label } from "../ui.js";

const ROLES = ["VIEWER", "OPERATOR", "ADMIN"];

export function Access() {
  const admin = can("ADMIN");
  const [userId, setUserId] = useState(null);
  const users = useQuery(async () => (admin ? (await gql("{ users(first: 100) { edges { node { id username role disabled createdAt } } } }")).users.edges.map((e) => e.node) : []), [admin]);
  const whose = userId ?? me.value?.userId;
  const whoseName = (users.data ?? []).find((u) => u.id === whose)?.username ?? me.value?.username;
  return html`<section>
    <h1>Users and API keys</h1>
    ${admin ? html`<${Users} users=${users} onKeys=${setUserId} selected=${whose} />` : null}
    <${Keys} userId=${whose} username=${whoseName} own=${whose === me.value?.userId} />
  </section>`;
}

function Users({ users, onKeys, selected }) {
  const [form, setForm] = useState({ username: "", password: "", role: "VIEWER" });
  const [error, setError] = useState(null);
  const toggle = (u) => async () => {
    setError(null);
    try {
      await gql(`mutation T($id: UUID!) { ${u.disabled ? "enableUser" : "disableUser"}(id: $id) { id disabled } }`, { id: u.id });
      users.reload();
    } catch (e) {
      setError(e);
    }
  };
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      await gql("mutation C($u: String!, $p: String!, $r: Role!) { createUser(username: $u, password: $p, role: $r) { id } }", { u: form.username, p: form.password, r: form.role });
      setForm({ username: "", password: "", role: "VIEWER" });
      users.reload();
    } catch (err) {
      setError(err);
    }
  };
  return html`<section class="panel" aria-label="Users">
    <h2>Users</h2>
    <${ErrorBox} error=${users.error || error} />
    <div class="table-wrap"><table data-testid="users">
      <thead><tr><th>User</th><th>Role</th><th>State</th><th>Created</th><th></th></tr></thead>
      <tbody>${(users.data ?? []).map((u) => html`<tr key=${u.id} class=${selected === u.id ? "selected" : ""}>
        <td>${u.username}</td><td>${label(u.role)}</td><td>${u.disabled ? "disabled" : "enabled"}</td><td>${fmtTime(u.createdAt)}</td>
        <td class="buttons">
          <button type="button" class="small" onClick=${() => onKeys(u.id)}>Keys</button>
          ${u.id !== me.value?.userId ? html`<${Action} kind="small" onClick=${toggle(u)}>${u.disabled ? "Enable" : "Disable"}</${Action}>` : null}
        </td>
      </tr>`)}</tbody>
    </table></div>
    <form class="create" onSubmit=${create} aria-label="Create a user">
      <label>Username <input required value=${form.username} autocomplete="off" onInput=${(e) => setForm({ ...form, username: e.currentTarget.value })} /></label>
      <label>Password (12+ characters) <input type="password" required minlength="12" autocomplete="new-password" value=${form.password}
        onInput=${(e) => setForm({ ...form, password: e.currentTarget.value })} /></label>
      <label>Role <select value=${form.role} onChange=${(e) => setForm({ ...form, role: e.currentTarget.value })}>
        ${ROLES.map((r) => html`<option key=${r} value=${r}>${label(r)}</option>`)}</select></label>
      <div class="buttons"><button type="submit" class="primary">Create user</button></div>
    </form>
  </section>`;
}

function Keys({ userId, username, own }) {
  const keys = useQuery(
    async () =>
      userId
        ? (await gql("query K($u: UUID) { apiKeys(userId: $u, first: 100) { edges { node { id name prefix role createdAt lastUsedAt expiresAt revokedAt } } } }", { u: own ? null : userId })).apiKeys.edges.map((e) => e.node)
        : [],
    [userId, own],
  );
  const [created, setCreated] = useState(null);
  const [name, setName] = useState("");
  const [days, setDays] = useState("90");
  const [error, setError] = useState(null);
  const revoke = (k) => async () => {
    setError(null);
    try {
      await gql("mutation R($id: UUID!) { revokeApiKey(id: $id) { id revokedAt } }", { id: k.id });
      keys.reload();
    } catch (e) {
      setError(e);
    }
  };
  const create = async (e) => {
    e.preventDefault();
    setError(null);
    try {
      const d = await gql("mutation C($input: CreateApiKeyInput!) { createApiKey(input: $input) { token apiKey { id name } } }", {
        input: { name, userId: own ? null : userId, expiresInDays: days ? Number(days) : null },
      });
      setCreated(d.createApiKey);
      setName("");
      keys.reload();
    } catch (err) {
      setError(err);
    }
  };
  const list = keys.data ?? [];
  return html`<section class="panel" aria-label="API keys">
    <h2>API keys ${own ? "(yours)" : `of ${username ?? "…"}`}</h2>
    <${ErrorBox} error=${keys.error || error} />
    ${created
      ? html`<div class="notice" role="status">
          <p>The key <strong>${created.apiKey.name}</strong>, shown this once (it is stored only as a hash):</p>
          <p><code class="token" data-testid="new-key">${created.token}</code></p>
          <button type="button" class="small" onClick=${() => setCreated(null)}>I have copied it</button>
        </div>`
      : null}
    ${list.length === 0 && !keys.loading ? html`<${Empty}>No key.</${Empty}>` : null}
    ${list.length
      ? html`<div class="table-wrap"><table data-testid="keys">
          <thead><tr><th>Name</th><th>Prefix</th><th>Role</th><th>Created</th><th>Last used</th><th>Expires</th><th></th></tr></thead>
          <tbody>${list.map((k) => html`<tr key=${k.id} class=${k.revokedAt ? "revoked" : ""}>
            <td>${k.name}${k.id === me.value?.apiKeyId ? html` <span class="muted">(this session)</span>` : null}</td>
            <td><code>${k.prefix}</code></td><td>${label(k.role)}</td><td>${fmtTime(k.createdAt)}</td>
            <td>${fmtTime(k.lastUsedAt)}</td><td>${k.expiresAt ? fmtTime(k.expiresAt) : "never"}</td>
            <td>${k.revokedAt ? `revoked ${fmtTime(k.revokedAt)}` : k.id === me.value?.apiKeyId ? "log out to revoke" : html`<${Action} kind="danger small" onClick=${revoke(k)}>Revoke</${Action}>`}</td>
          </tr>`)}</tbody></table></div>`
      : null}
    <form class="create" onSubmit=${create} aria-label="Create an API key">
      <label>Name <input required value=${name} autocomplete="off" onInput=${(e) => setName(e.currentTarget.value)} /></label>
      <label>Expires in days <input type="number" min="1" value=${days} onInput=${(e) => setDays(e.currentTarget.value)} /></label>
      <div class="buttons"><button type="submit" class="primary">Create key</button></div>
    </form>
  </section>`;
}
