// The dashboard's entry point: the sign-in gate, the header (lookup, sign out) and the pages.

import * as api from "./api.js";
import { config, scope, signOut, token } from "./auth.js";
import { fill, h, messagePath } from "./dom.js";
import * as events from "./pages/events.js";
import * as message from "./pages/message.js";
import * as overview from "./pages/overview.js";
import * as queue from "./pages/queue.js";
import * as signin from "./pages/signin.js";
import { navigate, onRoute, render, route, start } from "./router.js";

const main = document.getElementById("main");
const lookup = document.getElementById("lookup");
const lookupError = document.getElementById("lookup-error");
const signOutButton = document.getElementById("sign-out");

route("/ui", overview);
route("/ui/queues/:name", queue);
route("/ui/queues/:name/messages/:id", message);
route("/ui/events", events);

let refusal = null; // why the sign-in form is shown again, if it is

function signedIn() {
  return !config.auth || Boolean(token());
}

function chrome() {
  const inside = signedIn();
  lookup.hidden = !inside;
  signOutButton.hidden = !(config.auth && inside);
  for (const a of document.querySelectorAll("header nav a")) {
    const here = a.getAttribute("href");
    const active = here === "/ui/" ? location.pathname === "/ui/" : location.pathname.startsWith(here);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

onRoute(async (found, isCurrent) => {
  chrome();
  lookupError.hidden = true;
  if (!signedIn()) {
    document.title = "Sign in · Cairn";
    const why = refusal;
    refusal = null;
    return signin.render(main, { refusal: why }, { done: () => render() });
  }
  if (!found) {
    document.title = "Not found · Cairn";
    fill(main, h("h1", {}, "Page not found"), h("p", {}, h("a", { href: "/ui/" }, "All queues")));
    return null;
  }
  return found.page.render(main, found.params, { isCurrent, scope: scope(), navigate });
});

api.onUnauthorized(() => {
  if (!config.auth) return;
  signOut();
  refusal = "The server refused the token (wrong, or expired). Sign in again.";
  render();
});

signOutButton.addEventListener("click", () => {
  signOut();
  navigate("/ui/");
});

lookup.addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = lookup.elements.id.value.trim();
  if (!id) return;
  lookupError.hidden = true;
  try {
    const found = await api.get(`/v1/messages/${api.q(id)}`);
    lookup.reset();
    navigate(messagePath(found.queue, found.id));
  } catch (error) {
    if (error.status === 401) return;
    lookupError.textContent =
      error.status === 404
        ? `No message ${id} in any queue this token may read.`
        : `Lookup failed: ${error.message}`;
    lookupError.hidden = false;
  }
});

start();
