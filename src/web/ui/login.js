// Login page: posts JSON to /api/login and moves to the console on success.
"use strict";
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = document.getElementById("login-error");
  const button = document.getElementById("login-button");
  err.hidden = true;
  button.disabled = true;
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        username: document.getElementById("username").value,
        password: document.getElementById("password").value,
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
