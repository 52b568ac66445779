// One followed stream: the browser's own EventSource, plus what a dashboard needs around it.
//
// Every response of the service lasts one window and ends with a "timeout" event; EventSource
// then reconnects by itself after the server's retry: hint, sending the last id as
// Last-Event-ID, and the stream goes on where it stopped. Around that, this class:
// - shows the connection's state (connecting / live / reconnecting / offline) and counts
//   reconnects, windows, events, duplicates and gaps (see diagnostics.js);
// - drops a logged event it has already seen (by id), so nothing is ever shown twice;
// - when EventSource gives up (an error status ends it for good), tries again itself, with
//   exponential backoff and full jitter (1 s doubling up to 30 s), resuming with
//   ?last_event_id= (a new EventSource cannot send the header);
// - pauses while the tab is hidden (closing the connection: a hidden tab should not hold a
//   server's stream) and resumes, from the last id, when it is shown again.

import { streamUrl } from "./config.js";
import { diagnostics, SeenIds } from "./diagnostics.js";
import { problem } from "./dom.js";

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 30000;

export class LiveStream {
  /**
   * name: the diagnostics key; path: the stream's path; params: its query;
   * onEvent(payload, {id, logged}): each envelope event (JSON), after the bookkeeping;
   * isLogged(payload): whether the event has a place in a log (a unique id), default: every
   *   event but the stream's own timeout, reset and error;
   * onState(record): after every state change;
   * probe(): a fetch of the same resource as JSON, to tell why a stream that never opened
   *   was refused (EventSource does not show the status or the body).
   */
  constructor({ name, path, params = {}, onEvent, isLogged = defaultIsLogged, onState, probe }) {
    this.name = name;
    this.path = path;
    this.params = params;
    this.onEvent = onEvent;
    this.isLogged = isLogged;
    this.onState = onState ?? (() => {});
    this.diag = diagnostics(name);
    this.seen = new SeenIds();
    this.source = null;
    this.lastEventId = params.last_event_id ?? "";
    this.failures = 0;
    this.retryTimer = null;
    this.probe = probe;
    this.paused = false;
    this.resumed = false;
    this.finished = false;
  }

  get url() {
    return streamUrl(this.path, { ...this.params, last_event_id: this.lastEventId });
  }

  open() {
    if (this.source || this.finished) return;
    if (document.visibilityState === "hidden") {
      this.pause(); // opened in a background tab: wait until someone looks
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const url = this.url;
    const source = new EventSource(url);
    this.source = source;
    this.diag.url = redacted(url);
    this.setState(this.diag.opens === 0 ? "connecting" : "reconnecting", "");
    source.onopen = () => {
      this.diag.opens += 1;
      if (this.diag.opens > 1) this.diag.reconnects += 1;
      this.failures = 0;
      this.setState("live", "");
    };
    source.onmessage = (message) => this.receive(message);
    source.onerror = () => {
      if (this.source !== source) return;
      if (source.readyState === EventSource.CONNECTING) {
        // The window ended (or the network blinked): EventSource reconnects by itself.
        this.setState("reconnecting", "resuming from the last event");
        return;
      }
      source.close();
      this.source = null;
      this.retryLater();
    };
  }

  receive(message) {
    const diag = this.diag;
    diag.events += 1;
    if (message.lastEventId) {
      this.lastEventId = message.lastEventId;
      diag.lastEventId = message.lastEventId;
    }
    let payload;
    try {
      payload = JSON.parse(message.data);
    } catch {
      diag.errors += 1;
      return;
    }
    if (payload === null || typeof payload !== "object") {
      diag.errors += 1;
      return;
    }
    if (isWindowEnd(payload)) {
      diag.windows += 1;
    } else if (payload.type === "reset") {
      diag.resets += 1;
      diag.gaps += Math.max(0, payload.missed_to - payload.missed_from + 1);
    } else if (isStreamError(payload)) {
      diag.errors += 1;
    }
    const logged = Boolean(message.lastEventId) && this.isLogged(payload);
    if (logged) {
      if (!this.seen.add(message.lastEventId)) {
        diag.duplicates += 1;
        return;
      }
      diag.ids += 1;
    }
    this.onEvent(payload, { id: message.lastEventId, logged });
  }

  retryLater() {
    if (this.finished || this.paused) return;
    const ceiling = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** this.failures);
    const delay = Math.max(250, Math.random() * ceiling);
    this.failures += 1;
    const retrying = `retrying in ${Math.ceil(delay / 1000)} s`;
    this.setState("offline", `connection lost; ${retrying}`);
    this.retryTimer = setTimeout(() => this.open(), delay);
    if (this.diag.opens === 0 && this.probe) this.explain(retrying);
  }

  async explain(retrying) {
    try {
      const response = await this.probe();
      if (!response.ok && !this.source && this.diag.state === "offline") {
        this.setState("offline", `refused: ${await problem(response)}; ${retrying}`);
      }
    } catch {
      // The service cannot be reached at all: "connection lost" says it already.
    }
  }

  /** Try at once (the network came back). */
  retryNow() {
    if (!this.source && this.retryTimer && !this.paused) this.open();
  }

  pause(detail = "paused while the tab is hidden") {
    if (this.finished || this.paused) return;
    this.paused = true;
    this.diag.pauses += 1;
    this.stop();
    this.setState("offline", detail);
  }

  resume() {
    if (!this.paused || this.finished) return;
    this.paused = false;
    this.resumed = true;
    this.diag.resumes += 1;
    this.open();
  }

  /** Whether the stream was resumed after a pause since this was last asked (once). */
  takeResumed() {
    const resumed = this.resumed;
    this.resumed = false;
    return resumed;
  }

  /** The stream is over (a task completed): no more reconnects. */
  finish(detail) {
    this.finished = true;
    this.stop();
    this.setState("offline", detail);
  }

  /** Stop following (another task or room was opened). */
  close(detail = "closed") {
    this.finish(detail);
  }

  stop() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  setState(state, detail) {
    this.diag.state = state;
    this.diag.detail = detail;
    this.onState(this.diag);
  }
}

/** A URL as it may be shown: without the token. */
function redacted(url) {
  const shown = new URL(url);
  if (shown.searchParams.has("access_token")) shown.searchParams.set("access_token", "…");
  return shown.toString();
}

/** The service's end of a window: a "timeout" with a reason (an exchange's has none). */
export function isWindowEnd(payload) {
  return payload.type === "timeout" && typeof payload.reason === "string";
}

/** The service's own error event (the store failed mid-stream): {type, error, detail}. */
export function isStreamError(payload) {
  return payload.type === "error" && typeof payload.error === "string" && "detail" in payload;
}

function defaultIsLogged(payload) {
  return !isWindowEnd(payload) && payload.type !== "reset" && !isStreamError(payload);
}
