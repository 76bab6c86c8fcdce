// Questions runs asked a person (`ask_human`): pending ones, oldest first, each
// answered in place (operators). A run that starts waiting for input brings the list
// up to date (`runUpdates` for WAITING_INPUT), and so does a reconnect.

import { useEffect, useState } from "preact/hooks";
import { gql, subscribe, reconnects } from "../api.js";
import { can } from "../session.js";
import { html, ErrorBox, Countdown, fmtTime, useQuery, Empty } from "../ui.js";

const FIELDS = "id runId stepKey question status answer answeredBy answeredAt expiresAt createdAt";

function Question({ q, onAnswered }) {
  const [answer, setAnswer] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const send = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const data = await gql(`mutation Answer($id: UUID!, $a: String!) { answerQuestion(id: $id, answer: $a) { ${FIELDS} } }`, { id: q.id, a: answer });
      onAnswered(data.answerQuestion);
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  const fieldId = `answer-${q.id}`;
  return html`<article class="card" data-question-id=${q.id}>
    <header><h3>${q.question}</h3><${Countdown} until=${q.expiresAt} /></header>
    <p class="meta">Asked ${fmtTime(q.createdAt)} by run <a href=${`/runs/${q.runId}`}>${q.runId.slice(0, 8)}…</a> · step <code>${q.stepKey}</code></p>
    <${ErrorBox} error=${error} what="the answer was refused" />
    ${can("OPERATOR")
      ? html`<form onSubmit=${send} class="decide">
          <label for=${fieldId}>Answer</label>
          <textarea id=${fieldId} rows="3" required value=${answer} onInput=${(e) => setAnswer(e.currentTarget.value)}></textarea>
          <div class="buttons"><button type="submit" class="primary" disabled=${busy || !answer.trim()}>Send answer</button></div>
        </form>`
      : null}
  </article>`;
}

export function Questions() {
  const query = useQuery(async () => (await gql(`{ pendingQuestions(first: 50) { edges { node { ${FIELDS} } } } }`)).pendingQuestions.edges.map((e) => e.node), []);
  const [answered, setAnswered] = useState([]);
  useEffect(
    () =>
      subscribe("subscription { runUpdates(filter: { statuses: [WAITING_INPUT] }) { id status } }", {}, {
        onData: () => query.reload(),
      }),
    [],
  );
  useEffect(() => {
    if (reconnects.value > 0) query.reload();
  }, [reconnects.value]);
  const list = query.data ?? [];
  return html`<section>
    <h1>Questions <span class="count">${list.length}</span></h1>
    <p class="hint">A run that asks a person waits (WAITING_INPUT) until someone answers here.</p>
    <${ErrorBox} error=${query.error} />
    ${list.length === 0 && !query.loading ? html`<${Empty}>No question waits for an answer.</${Empty}>` : null}
    <div class="cards">
      ${list.map((q) => html`<${Question} key=${q.id} q=${q} onAnswered=${(a) => {
        setAnswered((x) => [a, ...x].slice(0, 20));
        query.setData((l) => (l ?? []).filter((x) => x.id !== a.id));
      }} />`)}
    </div>
    ${answered.length
      ? html`<h2>Answered here</h2><ul class="plain">${answered.map((a) => html`<li key=${a.id}>${a.question} — <em>${a.answer}</em></li>`)}</ul>`
      : null}
  </section>`;
}
