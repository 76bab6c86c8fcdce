// What investigations connect to: alert sources (Prometheus, Alertmanager),
// remediation webhooks, the Alertmanager receivers that may post to the webhook intake,
// LLM providers, their models and credentials. Everyone sees the lists (secrets only as
// a masked hint, which is all the API ever returns; a receiver's token only once, in
// the answer that created it); admins add and delete; operators test a model.

import { useState } from "preact/hooks";
import { gql } from "../api.js";
import { can } from "../session.js";
import { html, ErrorBox, fmtTime, useQuery, Empty, Action } from "../ui.js";

/** A small form from field definitions: `{ name, label, type, options, required }`. */
function CreateForm({ title, fields, onSubmit }) {
  const initial = Object.fromEntries(fields.map((f) => [f.name, f.value ?? (f.options ? f.options[0] : "")]));
  const [values, setValues] = useState(initial);
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onSubmit(values);
      setValues(initial);
      setOpen(false);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  if (!open) return html`<p><button type="button" onClick=${() => setOpen(true)}>${title}</button></p>`;
  return html`<form class="create" onSubmit=${submit} aria-label=${title}>
    ${fields.map((f) => html`<label key=${f.name}>${f.label}
      ${f.options
        ? html`<select value=${values[f.name]} onChange=${(e) => setValues({ ...values, [f.name]: e.currentTarget.value })}>
            ${f.options.map((o) => html`<option key=${o} value=${o}>${o}</option>`)}</select>`
        : html`<input type=${f.type ?? "text"} required=${f.required} value=${values[f.name]} autocomplete=${f.type === "password" ? "new-password" : "off"}
            onInput=${(e) => setValues({ ...values, [f.name]: e.currentTarget.value })} />`}
    </label>`)}
    <div class="buttons">
      <button type="submit" class="primary" disabled=${busy}>Save</button>
      <button type="button" onClick=${() => setOpen(false)}>Cancel</button>
    </div>
    <${ErrorBox} error=${error} />
  </form>`;
}

function Remove({ what, mutation, name, onDone }) {
  const [error, setError] = useState(null);
  return html`<${Action} kind="danger small" title=${`Delete ${what} ${name}`} onClick=${async () => {
      if (!window.confirm(`Delete ${what} ${name}?`)) return;
      try {
        await gql(`mutation Delete($name: String!) { ${mutation}(name: $name) }`, { name });
        onDone();
      } catch (e) {
        setError(e);
      }
    }}>Delete</${Action}>${error ? html`<${ErrorBox} error=${error} />` : null}`;
}

const orNull = (v) => (v === "" ? null : v);

export function Sources() {
  const q = useQuery(
    async () =>
      gql(`{ alertSources { id name prometheusUrl alertmanagerUrl auth username authHint timeoutMs updatedAt }
        webhooks { id name url secretHint timeoutMs updatedAt }
        alertmanagerReceivers { id name tokenPrefix approvalMode createdAt lastUsedAt } }`),
    [],
  );
  const admin = can("ADMIN");
  const sources = q.data?.alertSources ?? [];
  const hooks = q.data?.webhooks ?? [];
  const receivers = q.data?.alertmanagerReceivers ?? [];
  // The token of the receiver just created: in this component's memory only, shown once.
  const [created, setCreated] = useState(null);
  return html`<section>
    <h1>Alert sources</h1>
    <p class="hint">Where the tools read alerts and metrics. Without one, runs use the server's default
      (<code>AIOPS_PROMETHEUS_URL</code>, <code>AIOPS_ALERTMANAGER_URL</code>).</p>
    <${ErrorBox} error=${q.error} />
    ${sources.length === 0 && !q.loading ? html`<${Empty}>No alert source stored.</${Empty}>` : null}
    ${sources.length
      ? html`<div class="table-wrap"><table data-testid="sources">
          <thead><tr><th>Name</th><th>Prometheus</th><th>Alertmanager</th><th>Auth</th><th>Secret</th><th>Timeout</th>${admin ? html`<th></th>` : null}</tr></thead>
          <tbody>${sources.map((s) => html`<tr key=${s.id}>
            <td>${s.name}</td><td><code>${s.prometheusUrl ?? "—"}</code></td><td><code>${s.alertmanagerUrl ?? "—"}</code></td>
            <td>${s.auth.toLowerCase()}${s.username ? ` (${s.username})` : ""}</td><td class="masked">${s.authHint ?? "—"}</td><td>${s.timeoutMs} ms</td>
            ${admin ? html`<td><${Remove} what="alert source" mutation="deleteAlertSource" name=${s.name} onDone=${q.reload} /></td>` : null}
          </tr>`)}</tbody></table></div>`
      : null}
    ${admin
      ? html`<${CreateForm} title="Add an alert source" fields=${[
          { name: "name", label: "Name", required: true },
          { name: "prometheusUrl", label: "Prometheus URL", type: "url" },
          { name: "alertmanagerUrl", label: "Alertmanager URL", type: "url" },
          { name: "auth", label: "Auth", options: ["NONE", "BEARER", "BASIC"] },
          { name: "username", label: "User (basic)" },
          { name: "secret", label: "Token or password", type: "password" },
        ]} onSubmit=${async (v) => {
          await gql("mutation Create($input: CreateAlertSourceInput!) { createAlertSource(input: $input) { id } }", {
            input: { name: v.name, prometheusUrl: orNull(v.prometheusUrl), alertmanagerUrl: orNull(v.alertmanagerUrl), auth: v.auth, username: orNull(v.username), secret: orNull(v.secret) },
          });
          q.reload();
        }} />`
      : null}

    <h2>Remediation webhooks</h2>
    ${hooks.length === 0 && !q.loading ? html`<${Empty}>No webhook stored.</${Empty}>` : null}
    ${hooks.length
      ? html`<div class="table-wrap"><table>
          <thead><tr><th>Name</th><th>URL</th><th>Secret</th><th>Timeout</th>${admin ? html`<th></th>` : null}</tr></thead>
          <tbody>${hooks.map((w) => html`<tr key=${w.id}><td>${w.name}</td><td><code>${w.url}</code></td><td class="masked">${w.secretHint}</td><td>${w.timeoutMs} ms</td>
            ${admin ? html`<td><${Remove} what="webhook" mutation="deleteWebhook" name=${w.name} onDone=${q.reload} /></td>` : null}</tr>`)}</tbody></table></div>`
      : null}
    ${admin
      ? html`<${CreateForm} title="Add a webhook" fields=${[
          { name: "name", label: "Name", required: true },
          { name: "url", label: "URL", type: "url", required: true },
          { name: "secret", label: "Signing secret (16+ characters)", type: "password", required: true },
        ]} onSubmit=${async (v) => {
          await gql("mutation Create($input: CreateWebhookInput!) { createWebhook(input: $input) { id } }", { input: v });
          q.reload();
        }} />`
      : null}

    <h2>Alertmanager receivers</h2>
    <p class="hint">Alertmanager starts investigations by posting to <code data-testid="webhook-url">${WEBHOOK_URL()}</code> with a
      receiver's token. The token is shown once, when the receiver is created: only its SHA-256 is stored.</p>
    ${created ? html`<${NewReceiver} created=${created} onDone=${() => setCreated(null)} />` : null}
    ${receivers.length === 0 && !q.loading ? html`<${Empty}>No receiver: Alertmanager cannot post here yet.</${Empty}>` : null}
    ${receivers.length
      ? html`<div class="table-wrap"><table data-testid="receivers">
          <thead><tr><th>Name</th><th>Token</th><th>Approvals</th><th>Created</th><th>Last used</th>${admin ? html`<th></th>` : null}</tr></thead>
          <tbody>${receivers.map((r) => html`<tr key=${r.id} data-receiver=${r.name}>
            <td>${r.name}</td><td class="masked">aiopsam_${r.tokenPrefix}…</td>
            <td title=${r.approvalMode === "REJECT" ? "approvals of its runs are rejected at once" : "approvals of its runs wait for a person"}>${r.approvalMode === "REJECT" ? "rejected at once" : "wait for a person"}</td>
            <td>${fmtTime(r.createdAt)}</td><td>${r.lastUsedAt ? fmtTime(r.lastUsedAt) : "never"}</td>
            ${admin ? html`<td><${Remove} what="receiver" mutation="deleteAlertmanagerReceiver" name=${r.name} onDone=${q.reload} /></td>` : null}</tr>`)}</tbody></table></div>`
      : null}
    ${admin
      ? html`<${CreateForm} title="Add a receiver" fields=${[
          { name: "name", label: "Name", required: true },
          { name: "approvalMode", label: "Approvals of its runs", options: ["WAIT", "REJECT"] },
        ]} onSubmit=${async (v) => {
          const d = await gql(
            "mutation Create($input: CreateAlertmanagerReceiverInput!) { createAlertmanagerReceiver(input: $input) { token receiver { id name tokenPrefix } } }",
            { input: { name: v.name, approvalMode: v.approvalMode } },
          );
          setCreated(d.createAlertmanagerReceiver);
          q.reload();
        }} />`
      : null}
  </section>`;
}

const WEBHOOK_URL = () => `${window.location.origin}/api/alertmanager/webhook`;

/** A new receiver's token, this once, with the URL and the `alertmanager.yml` to paste. */
function NewReceiver({ created, onDone }) {
  const [copied, setCopied] = useState(null);
  const copy = async (text, what) => {
    try {
      await navigator.clipboard.writeText(text);
      setCopied(`${what} copied`);
    } catch {
      setCopied("the browser refused to copy: select the text and copy it (Ctrl+C)");
    }
  };
  const snippet = `route:
  receiver: aiops
receivers:
  - name: aiops
    webhook_configs:
      - url: ${WEBHOOK_URL()}
        send_resolved: true
        max_alerts: 1000
        http_config:
          authorization:
            credentials: ${created.token}
`;
  return html`<div class="notice" role="status" data-testid="new-receiver">
    <p>The token of <strong>${created.receiver.name}</strong>, shown this once (only its hash is stored). Copy it now:</p>
    <p><code class="token" data-testid="receiver-token">${created.token}</code></p>
    <p>In <code>alertmanager.yml</code> (or put the token in a file and use <code>credentials_file</code>):</p>
    <pre class="snippet" data-testid="receiver-snippet">${snippet}</pre>
    <div class="buttons">
      ${navigator.clipboard ? html`<button type="button" class="small" onClick=${() => copy(created.token, "token")}>Copy the token</button>
        <button type="button" class="small" onClick=${() => copy(snippet, "configuration")}>Copy the configuration</button>` : null}
      <button type="button" class="small" data-testid="receiver-done" onClick=${onDone}>I have copied it</button>
      ${copied ? html`<span class="muted" role="status">${copied}</span>` : null}
    </div>
  </div>`;
}

export function Models() {
  const admin = can("ADMIN");
  const q = useQuery(
    async () =>
      gql(`{ providers { id name kind baseUrl azureApiVersion credential updatedAt }
        models { id name provider upstream supportsTools supportsJson supportsStreaming contextTokens inputPricePerMtok outputPricePerMtok }
        llmBreakers { endpoint state consecutiveFailures retryAt }
        ${admin ? "credentials { id name hint updatedAt }" : ""} }`),
    [admin],
  );
  const [tests, setTests] = useState({});
  const providers = q.data?.providers ?? [];
  const models = q.data?.models ?? [];
  const credentials = q.data?.credentials ?? [];
  const breakers = q.data?.llmBreakers ?? [];
  return html`<section>
    <h1>Models</h1>
    <p class="hint">Teams name models in <code>model:</code>; <code>builtin:rules</code> (the rule-based analyst) needs none and ends every fallback list.</p>
    <${ErrorBox} error=${q.error} />
    <h2>Models</h2>
    ${models.length === 0 && !q.loading ? html`<${Empty}>No model stored: teams use <code>builtin:rules</code>.</${Empty}>` : null}
    ${models.length
      ? html`<div class="table-wrap"><table data-testid="models">
          <thead><tr><th>Name</th><th>Provider</th><th>Upstream</th><th>Capabilities</th><th>Context</th><th>$ / 1M in · out</th><th></th></tr></thead>
          <tbody>${models.map((m) => html`<tr key=${m.id}>
            <td>${m.name}</td><td>${m.provider}</td><td><code>${m.upstream}</code></td>
            <td>${[m.supportsTools && "tools", m.supportsJson && "json", m.supportsStreaming && "streaming"].filter(Boolean).join(", ")}</td>
            <td>${m.contextTokens}</td><td>${m.inputPricePerMtok} · ${m.outputPricePerMtok}</td>
            <td class="buttons">
              ${can("OPERATOR")
                ? html`<${Action} kind="small" onClick=${async () => {
                    try {
                      const d = await gql("mutation T($name: String!) { testModel(name: $name) { ok latencyMs message } }", { name: m.name });
                      setTests({ ...tests, [m.name]: d.testModel });
                    } catch (e) {
                      setTests({ ...tests, [m.name]: { ok: false, message: `${e.code}: ${e.message}`, latencyMs: 0 } });
                    }
                  }}>Test</${Action}>`
                : null}
              ${admin ? html`<${Remove} what="model" mutation="deleteModel" name=${m.name} onDone=${q.reload} />` : null}
              ${tests[m.name] ? html`<span class=${tests[m.name].ok ? "ok" : "bad"}>${tests[m.name].ok ? "ok" : "failed"} (${tests[m.name].latencyMs} ms): ${tests[m.name].message}</span>` : null}
            </td>
          </tr>`)}</tbody></table></div>`
      : null}
    ${admin && providers.length
      ? html`<${CreateForm} title="Add a model" fields=${[
          { name: "name", label: "Name (what teams write)", required: true },
          { name: "provider", label: "Provider", options: providers.map((p) => p.name) },
          { name: "upstream", label: "Upstream model id" },
          { name: "inputPricePerMtok", label: "$ per 1M input tokens", type: "number", value: "0" },
          { name: "outputPricePerMtok", label: "$ per 1M output tokens", type: "number", value: "0" },
        ]} onSubmit=${async (v) => {
          await gql("mutation Create($input: CreateModelInput!) { createModel(input: $input) { id } }", {
            input: { name: v.name, provider: v.provider, upstream: orNull(v.upstream), inputPricePerMtok: Number(v.inputPricePerMtok) || 0, outputPricePerMtok: Number(v.outputPricePerMtok) || 0 },
          });
          q.reload();
        }} />`
      : null}

    <h2>Providers</h2>
    ${providers.length === 0 && !q.loading ? html`<${Empty}>No provider stored.</${Empty}>` : null}
    ${providers.length
      ? html`<div class="table-wrap"><table>
          <thead><tr><th>Name</th><th>Kind</th><th>Base URL</th><th>Credential</th>${admin ? html`<th></th>` : null}</tr></thead>
          <tbody>${providers.map((p) => html`<tr key=${p.id}><td>${p.name}</td><td>${p.kind.toLowerCase()}</td><td><code>${p.baseUrl}</code></td><td>${p.credential ?? "—"}</td>
            ${admin ? html`<td><${Remove} what="provider" mutation="deleteProvider" name=${p.name} onDone=${q.reload} /></td>` : null}</tr>`)}</tbody></table></div>`
      : null}
    ${admin
      ? html`<${CreateForm} title="Add a provider" fields=${[
          { name: "name", label: "Name", required: true },
          { name: "kind", label: "Kind", options: ["OPENAI", "AZURE_OPENAI", "ANTHROPIC"] },
          { name: "baseUrl", label: "Base URL", type: "url", required: true },
          { name: "credential", label: "Credential", options: ["", ...credentials.map((c) => c.name)] },
        ]} onSubmit=${async (v) => {
          await gql("mutation Create($input: CreateProviderInput!) { createProvider(input: $input) { id } }", {
            input: { name: v.name, kind: v.kind, baseUrl: v.baseUrl, credential: orNull(v.credential) },
          });
          q.reload();
        }} />`
      : null}

    ${admin
      ? html`<h2>Credentials</h2>
          <p class="hint">Stored encrypted; only the last characters are ever shown.</p>
          ${credentials.length === 0 && !q.loading ? html`<${Empty}>No credential stored.</${Empty}>` : null}
          ${credentials.length
            ? html`<div class="table-wrap"><table data-testid="credentials">
                <thead><tr><th>Name</th><th>Key</th><th>Updated</th><th></th></tr></thead>
                <tbody>${credentials.map((c) => html`<tr key=${c.id}><td>${c.name}</td><td class="masked">${c.hint}</td><td>${fmtTime(c.updatedAt)}</td>
                  <td><${Remove} what="credential" mutation="deleteCredential" name=${c.name} onDone=${q.reload} /></td></tr>`)}</tbody></table></div>`
            : null}
          <${CreateForm} title="Add a credential" fields=${[
            { name: "name", label: "Name", required: true },
            { name: "secret", label: "API key", type: "password", required: true },
          ]} onSubmit=${async (v) => {
            await gql("mutation Create($name: String!, $secret: String!) { createCredential(name: $name, secret: $secret) { id } }", v);
            q.reload();
          }} />`
      : null}

    ${breakers.length
      ? html`<h2>Circuit breakers</h2>
          <ul class="plain">${breakers.map((b) => html`<li key=${b.endpoint}><code>${b.endpoint}</code> ${b.state.toLowerCase()}
            ${b.consecutiveFailures ? ` · ${b.consecutiveFailures} failures` : ""}${b.retryAt ? ` · probes from ${fmtTime(b.retryAt)}` : ""}</li>`)}</ul>`
      : null}
  </section>`;
}
