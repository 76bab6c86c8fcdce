// The approvals inbox: pending approvals, oldest first, live (`approvalRequested`;
// reconciled with `pendingApprovals` after a reconnect). Each shows the tool, the
// exact arguments that will be executed, the risk note and a ticking expiry; an
// operator approves or rejects it with a comment. A decision that lost a race (already
// decided by someone else, or expired) comes back as the server's CONFLICT, shown on
// the card with the approval's state as it now is.

import { useEffect, useState } from "preact/hooks";
import { gql, subscribe, reconnects } from "../api.js";
import { can } from "../session.js";
import { html, ErrorBox, Countdown, Status, fmtTime, useQuery, Empty, Json } from "../ui.js";

export const APPROVAL_FIELDS = "id runId stepKey tool args riskNote status requestedAt expiresAt decidedBy decidedAt comment";

export async function decide(approval, approve, comment) {
  const name = approve ? "approve" : "reject";
  const data = await gql(
    `mutation Decide($id: UUID!, $comment: String) { ${name}(id: $id, comment: $comment) { ${APPROVAL_FIELDS} } }`,
    { id: approval.id, comment: comment || null },
  );
  return data[name];
}

/** One approval with its decision form (operators) or its outcome. */
export function ApprovalCard({ approval, onDecided, showRun = true }) {
  const [comment, setComment] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const [current, setCurrent] = useState(approval);
  useEffect(() => setCurrent(approval), [approval]);
  const pending = current.status === "PENDING";
  const act = async (approve) => {
    setBusy(true);
    setError(null);
    try {
      const decided = await decide(current, approve, comment);
      setCurrent(decided);
      onDecided?.(decided);
    } catch (e) {
      setError(e);
      // Show what the approval is now (someone else decided it, or it expired).
      try {
        const now = await gql(`query A($id: UUID!) { approval(id: $id) { ${APPROVAL_FIELDS} } }`, { id: current.id });
        if (now.approval) setCurrent(now.approval);
      } catch {
        /* the error above is what matters */
      }
    } finally {
      setBusy(false);
    }
  };
  const commentId = `comment-${current.id}`;
  return html`<article class="card approval" data-approval-id=${current.id} data-status=${current.status} aria-label=${`Approval of ${current.tool}`}>
    <header>
      <h3><code>${current.tool}</code></h3>
      <${Status} status=${current.status} />
      ${pending ? html`<${Countdown} until=${current.expiresAt} />` : null}
    </header>
    ${current.riskNote ? html`<p class="risk"><strong>Risk:</strong> ${current.riskNote}</p>` : null}
    <p class="meta">Requested ${fmtTime(current.requestedAt)}${showRun ? html` by run <a href=${`/runs/${current.runId}`}>${current.runId.slice(0, 8)}…</a>` : null} · step <code>${current.stepKey}</code></p>
    <details open>
      <summary>Exact arguments</summary>
      <${Json} value=${current.args} />
    </details>
    ${!pending && current.decidedBy
      ? html`<p class="decided">${current.status.toLowerCase()} by <strong>${current.decidedBy}</strong> at ${fmtTime(current.decidedAt)}${current.comment ? html`: “${current.comment}”` : null}</p>`
      : null}
    <${ErrorBox} error=${error} what="the decision was refused" />
    ${pending && can("OPERATOR")
      ? html`<form class="decide" onSubmit=${(e) => e.preventDefault()}>
          <label for=${commentId}>Comment</label>
          <input id=${commentId} type="text" value=${comment} placeholder="why (kept with the run)"
            onInput=${(e) => setComment(e.currentTarget.value)} />
          <div class="buttons">
            <button type="button" class="primary" data-testid="approve" disabled=${busy} onClick=${() => act(true)}>Approve</button>
            <button type="button" class="danger" data-testid="reject" disabled=${busy} onClick=${() => act(false)}>Reject</button>
          </div>
        </form>`
      : null}
  </article>`;
}

export function Approvals() {
  // How many are pending in all: the inbox shows the oldest 50.
  const [total, setTotal] = useState(0);
  const query = useQuery(async () => {
    const data = await gql(`{ pendingApprovals(first: 50) { totalCount edges { node { ${APPROVAL_FIELDS} } } } }`);
    setTotal(data.pendingApprovals.totalCount);
    return data.pendingApprovals.edges.map((e) => e.node);
  }, []);
  const [decided, setDecided] = useState([]);
  // Live: new approvals appear without a reload; after a reconnect, re-read the list.
  useEffect(() => {
    return subscribe(`subscription { approvalRequested { ${APPROVAL_FIELDS} } }`, {}, {
      onData: (data) => {
        const a = data.approvalRequested;
        query.setData((list) => {
          const rest = (list ?? []).filter((x) => x.id !== a.id);
          return a.status === "PENDING" ? [...rest, a] : rest;
        });
      },
    });
  }, []);
  useEffect(() => {
    if (reconnects.value > 0) query.reload();
  }, [reconnects.value]);
  const list = query.data ?? [];
  return html`<section>
    <h1>Approvals <span class="count" data-testid="approval-count">${list.length}</span></h1>
    <p class="hint">Risky actions wait here for a person. Approve runs the action exactly as shown; reject hands the
      agent your comment instead.</p>
    <${ErrorBox} error=${query.error} />
    ${query.loading && !query.data ? html`<p>Loading…</p>` : null}
    ${list.length === 0 && !query.loading ? html`<${Empty}>Nothing waits for a decision.</${Empty}>` : null}
    ${total > list.length ? html`<p class="hint">The oldest ${list.length} of ${total} are shown; decide them to see the rest.</p>` : null}
    <div class="cards" data-testid="approvals">
      ${list.map((a) => html`<${ApprovalCard} key=${a.id} approval=${a} onDecided=${(d) => {
        setDecided((x) => [d, ...x].slice(0, 20));
        query.setData((l) => (l ?? []).filter((x) => x.id !== d.id));
      }} />`)}
    </div>
    ${decided.length
      ? html`<h2>Decided here</h2>
          <ul class="plain">
            ${decided.map((d) => html`<li key=${d.id}><${Status} status=${d.status} /> <code>${d.tool}</code> of run <a href=${`/runs/${d.runId}`}>${d.runId.slice(0, 8)}…</a> ${d.comment ? html`— “${d.comment}”` : null}</li>`)}
          </ul>`
      : null}
  </section>`;
}
