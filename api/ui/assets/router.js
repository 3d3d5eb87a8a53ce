// Client-side routing with the history API: every /ui/... URL is served the same page by the
// server, and this module picks what to draw from the path.

const routes = [];
let current = null;
let renderToken = 0;
let handler = async () => {};

/** Register a page: pattern like "/ui/queues/:name/messages/:id". */
export function route(pattern, page) {
  const names = [];
  const regex = new RegExp(
    "^" +
      pattern.replace(/:([a-z]+)/g, (_, name) => {
        names.push(name);
        return "([^/]+)";
      }) +
      "/?$",
  );
  routes.push({ regex, names, page });
}

export function match(pathname) {
  for (const { regex, names, page } of routes) {
    const found = regex.exec(pathname);
    if (found) {
      const params = {};
      names.forEach((name, i) => {
        params[name] = decodeURIComponent(found[i + 1]);
      });
      return { page, params };
    }
  }
  return null;
}

/** What to do with each route change: handler(match, isCurrent) */
export function onRoute(fn) {
  handler = fn;
}

export function navigate(href, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", href);
  else history.pushState(null, "", href);
  return render();
}

export async function render() {
  if (current && current.cleanup) current.cleanup();
  const token = ++renderToken;
  current = { cleanup: null };
  const state = current;
  const cleanup = await handler(match(location.pathname), () => token === renderToken);
  if (token === renderToken) state.cleanup = cleanup;
  else if (cleanup) cleanup();
}

/** Same-origin links under /ui/ are routed here rather than loaded. */
export function start() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const anchor = event.target.closest("a[href]");
    if (!anchor || anchor.target || anchor.hasAttribute("download")) return;
    const url = new URL(anchor.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui/")) return;
    if (anchor.getAttribute("href").startsWith("#")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", () => render());
  return render();
}
