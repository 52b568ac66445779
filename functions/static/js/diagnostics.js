// What each stream of the page has seen, for curious users and for tests:
// window.sseDiagnostics.<name> is a plain object, updated as events arrive.
//
//   state       connecting | live | reconnecting | offline
//   detail      why, when it is not plainly live ("paused while the tab is hidden", ...)
//   opens       connections made; reconnects = opens after the first
//   windows     window ends (the service's "timeout" events): each is followed by a reconnect
//   events      events received, of every type
//   ids         distinct event ids of logged events (those that have a place in a log)
//   duplicates  logged events received a second time (dropped, never shown twice)
//   gaps        events known to be missing: a "reset" from the service, or a skipped tick
//   lastEventId where a resume starts

export const registry = {};

export function diagnostics(name, extra = {}) {
  const record = {
    name,
    state: "offline",
    detail: "not started",
    url: "",
    opens: 0,
    reconnects: 0,
    windows: 0,
    events: 0,
    ids: 0,
    duplicates: 0,
    gaps: 0,
    resets: 0,
    errors: 0,
    pauses: 0,
    resumes: 0,
    lastEventId: "",
    ...extra,
  };
  registry[name] = record;
  return record;
}

/** The ids seen lately (a bounded memory: the last `limit`). */
export class SeenIds {
  constructor(limit = 5000) {
    this.limit = limit;
    this.set = new Set();
    this.order = [];
  }

  /** True the first time an id is added, false for a repeat. */
  add(id) {
    if (this.set.has(id)) return false;
    this.set.add(id);
    this.order.push(id);
    if (this.order.length > this.limit) this.set.delete(this.order.shift());
    return true;
  }

  clear() {
    this.set.clear();
    this.order = [];
  }
}

/** Keep the last `limit` items of an array, in place. */
export function keepLast(items, limit) {
  if (items.length > limit) items.splice(0, items.length - limit);
}
