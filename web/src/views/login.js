// Log in: the password is exchanged for an API key valid 12 hours (`login`), kept in
// this browser's local storage; logging out revokes it.

import { useState } from "preact/hooks";
import { login } from "../session.js";
import { navigate, location } from "../router.js";
import { html, ErrorBox } from "../ui.js";

export function Login() {
  const [username, setUsername] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await login(username, password);
      const next = location.value.query.get("next");
      navigate(next && next.startsWith("/") && !next.startsWith("//") ? next : "/runs", { replace: true });
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login" id="main">
    <form onSubmit=${submit} aria-label="Log in">
      <h1>AIOps console</h1>
      <label for="username">Username</label>
      <input id="username" name="username" autocomplete="username" required value=${username} onInput=${(e) => setUsername(e.currentTarget.value)} />
      <label for="password">Password</label>
      <input id="password" name="password" type="password" autocomplete="current-password" required value=${password}
        onInput=${(e) => setPassword(e.currentTarget.value)} />
      <button type="submit" class="primary" disabled=${busy}>Log in</button>
      <${ErrorBox} error=${error} />
      <p class="hint">Your session is an API key valid 12 hours; logging out revokes it.</p>
    </form>
  </main>`;
}
