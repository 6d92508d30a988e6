// Login page: posts JSON to /api/login and moves to the console on success.
import { byId } from "./dom.js";

byId("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = byId("login-error");
  const button = byId("login-button");
  err.hidden = true;
  button.disabled = true;
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        username: byId("username").value,
        password: byId("password").value,
      }),
    });
    if (res.ok) {
      location.href = "/";
      return;
    }
    const body = await res.json().catch(() => ({}));
    err.textContent = body.message || "ログインできませんでした。";
    err.hidden = false;
  } catch (e) {
    err.textContent = "サーバーに接続できません。";
    err.hidden = false;
  } finally {
    button.disabled = false;
  }
});
