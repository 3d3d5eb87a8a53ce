// The token prompt (auth on). The token is checked with one request that any valid token may
// make (GET /v1/projections) before it is kept, in sessionStorage: this tab only.

import * as api from "../api.js";
import { claims, signIn } from "../auth.js";
import { fill, h } from "../dom.js";

export function render(main, { refusal }, { done }) {
  const alert = h("p", { class: "error", role: "alert", hidden: !refusal }, refusal || "");
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const button = h("button", { type: "submit", class: "primary" }, "Sign in");
  const form = h(
    "form",
    { class: "signin" },
    h("h1", {}, "Sign in"),
    h(
      "p",
      {},
      "This broker asks for a bearer token (a JWT). It is kept for this browser tab only.",
    ),
    h("label", { for: "token" }, "Token"),
    input,
    alert,
    h("div", { class: "actions" }, button),
    h("p", { class: "hint" }, "For development: ", h("code", {}, 'cairn token --sub me --scope "admin"')),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = input.value.trim();
    const fail = (text) => {
      alert.textContent = text;
      alert.hidden = false;
      input.focus();
    };
    if (!claims(value)) return fail("That is not a JWT (three base64url parts separated by dots).");
    button.disabled = true;
    try {
      await api.get("/v1/projections", { bearer: value });
    } catch (error) {
      button.disabled = false;
      return fail(
        error.status === 401
          ? "The server refused this token (wrong signature, expired, or not for this broker)."
          : `Could not check the token: ${error.message}`,
      );
    }
    signIn(value);
    done();
  });
  fill(main, form);
  input.focus();
  return null;
}
