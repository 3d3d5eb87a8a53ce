// Following the event log over Server-Sent Events, with fetch() so the token travels in the
// Authorization header (EventSource could only put it in the URL, where it lands in logs).
// Like EventSource it reconnects by itself, resuming after the last event it saw with
// Last-Event-ID, so the server's catch-up hands over every event exactly once (API.md,
// "The event log").

import { authHeaders, unauthorized } from "./api.js";

const MIN_RETRY_MS = 250;

/**
 * Follow `path` (a feed URL without position). Options:
 *   after: a position to start after (default: from now);
 *   onEvent(event): each event's JSON, in position order;
 *   onState(state, detail): "live", "reconnecting", or "refused" (a 403/404: no retry).
 * Returns {close()}.
 */
export function follow(path, { after = null, onEvent, onState = () => {} }) {
  let last = after;
  let retryMs = 1000;
  let closed = false;
  let controller = null;
  let timer = null;

  async function connect() {
    controller = new AbortController();
    const headers = { Accept: "text/event-stream", ...authHeaders() };
    if (last !== null) headers["Last-Event-ID"] = String(last);
    let response;
    try {
      response = await fetch(path, { headers, signal: controller.signal, cache: "no-store" });
    } catch {
      return retry();
    }
    if (response.status === 401) {
      closed = true;
      unauthorized();
      return;
    }
    if (response.status === 403 || response.status === 404) {
      closed = true;
      onState("refused", response.status);
      return;
    }
    if (!response.ok || !response.body) return retry();
    if (last === null) {
      // "From now" means after the head the server saw; resume from there on a reconnect.
      const at = response.headers.get("X-Cairn-Position");
      if (at && /^\d+$/.test(at)) last = Number(at);
    }
    onState("live");
    try {
      await read(response.body);
    } catch {
      // a dropped connection, or close(): retry() tells them apart
    }
    retry();
  }

  async function read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let frame = { id: null, event: null, data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          dispatch(frame);
          frame = { id: null, event: null, data: [] };
          continue;
        }
        if (line.startsWith(":")) continue; // a comment: heartbeats
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? "" : line.slice(colon + 1);
        if (text.startsWith(" ")) text = text.slice(1);
        if (field === "data") frame.data.push(text);
        else if (field === "id") frame.id = text;
        else if (field === "event") frame.event = text;
        else if (field === "retry" && /^\d+$/.test(text)) retryMs = Math.max(MIN_RETRY_MS, Number(text));
      }
    }
  }

  function dispatch(frame) {
    if (frame.id !== null && /^\d+$/.test(frame.id)) last = Number(frame.id);
    if (!frame.data.length || closed) return;
    let event;
    try {
      event = JSON.parse(frame.data.join("\n"));
    } catch {
      return;
    }
    onEvent(event);
  }

  function retry() {
    if (closed) return;
    onState("reconnecting");
    timer = setTimeout(connect, retryMs);
  }

  connect();
  return {
    close() {
      closed = true;
      clearTimeout(timer);
      if (controller) controller.abort();
    },
    get position() {
      return last;
    },
  };
}
