// The token and what it may do. The server says in the page whether auth is on
// (api/ui/dashboard.py), so the dashboard never makes a request only to find out.
//
// The scope is read from the token's payload to decide what to show (buttons, pages); the
// server still checks every request, so a forged payload shows buttons that only fail.

const KEY = "cairn.token";

export const config = JSON.parse(document.getElementById("cairn-config").textContent || "{}");

export function token() {
  return config.auth ? sessionStorage.getItem(KEY) : null;
}

export function signIn(value) {
  sessionStorage.setItem(KEY, value);
}

export function signOut() {
  sessionStorage.removeItem(KEY);
}

/** The token's claims, or null when it is not a JWT at all. */
export function claims(value) {
  const parts = (value || "").split(".");
  if (parts.length !== 3) return null;
  try {
    const base64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    return payload && typeof payload === "object" ? payload : null;
  } catch {
    return null;
  }
}

function globPattern(glob) {
  const escaped = glob.split("*").map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${escaped.join(".*")}$`);
}

/** What the current token may do, as api/auth.py's Principal decides it. */
export function scope() {
  if (!config.auth) return everything;
  const payload = claims(token()) || {};
  const words = typeof payload.scope === "string" ? payload.scope.split(/\s+/) : [];
  const read = words.filter((w) => w.startsWith("read:") && w.length > 5).map((w) => globPattern(w.slice(5)));
  const admin = words.includes("admin");
  const events = words.includes("events:read");
  return {
    subject: typeof payload.sub === "string" ? payload.sub : null,
    manage: admin || words.includes("queues:manage"),
    readsSome: admin || events || read.length > 0,
    canRead: (queue) => admin || events || read.some((p) => p.test(queue)),
  };
}

const everything = { subject: null, manage: true, readsSome: true, canRead: () => true };
