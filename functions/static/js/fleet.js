// The fleet table: GET /api/stream, a full snapshot first, then server_update deltas merged by
// server id; small CPU and memory charts per server; restart / stop / start buttons whose
// results arrive over the stream as control_result events.
//
// Tick bookkeeping (window.sseDiagnostics.fleet): every server_update carries the fleet's tick.
// Ticks must rise by exactly one, across windows too (the service carries the last tick in the
// stream's ids, so a reconnect neither repeats nor skips one). A repeated tick is a duplicate
// (dropped), a skipped one a gap; ticks that passed while the tab was hidden are counted apart
// (skippedWhileAway): the stream was closed on purpose then, and resumes with a fresh snapshot.

import { requestHeaders } from "./config.js";
import { keepLast } from "./diagnostics.js";
import { byId, clock, duration, h, problem, setText } from "./dom.js";
import { LiveStream } from "./live-stream.js";
import { Sparkline } from "./charts.js";

// The charts show what the page has seen, up to the last 5 minutes: over at least one minute
// (so that a fresh page does not stretch a few points across the whole chart), then over as
// much as has been seen, until the span is full.
const CHART_SPAN_MS = 5 * 60 * 1000;
const MIN_CHART_SPAN_MS = 60 * 1000;
const MAX_POINTS = 600;
const MAX_RESULTS = 6;
const RUNNING = new Set(["online", "warning", "critical", "offline"]);

/** Which actions a server's current status allows (the service has the last word: 409). */
function allowed(status, action) {
  if (action === "start") return status === "stopped";
  if (action === "stop") return RUNNING.has(status) || status === "starting";
  return RUNNING.has(status); // restart
}

function percent(value) {
  return value === null || value === undefined ? "—" : `${value.toFixed(1)} %`;
}

function rate(value) {
  return value === null || value === undefined ? "—" : value.toFixed(0);
}

export class FleetPanel {
  constructor({ onState }) {
    this.body = byId("fleet-rows");
    this.summary = byId("fleet-summary");
    this.results = byId("control-results");
    this.servers = new Map(); // id -> server fields, merged
    this.rows = new Map(); // id -> the row's elements
    this.history = new Map(); // id -> [{t, cpu, memory}]
    this.pending = new Map(); // "server action requested_at" -> result element
    this.lastTick = null;
    this.lastTimestamp = null;
    this.stream = new LiveStream({
      name: "fleet",
      path: "/api/stream",
      isLogged: (payload) => payload.type === "control_result",
      onEvent: (payload, meta) => this.receive(payload, meta),
      onState,
      probe: () => fetch("/api/servers", { headers: requestHeaders() }),
    });
    Object.assign(this.stream.diag, { ticks: [], controlResults: [], skippedWhileAway: 0 });
    this.body.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-action]");
      if (button) this.control(button.dataset.server, button.dataset.action);
    });
  }

  start() {
    this.stream.open();
  }

  receive(payload, meta) {
    if (payload.type === "server_update") this.update(payload);
    else if (payload.type === "control_result") this.controlled(payload.data, meta.id);
  }

  update(payload) {
    const diag = this.stream.diag;
    const tick = payload.tick;
    const afterPause = this.stream.takeResumed();
    if (this.lastTick !== null) {
      if (tick <= this.lastTick) {
        diag.duplicates += 1;
        return; // a tick's state never changes once it began: nothing to apply
      }
      const skipped = tick - this.lastTick - 1;
      if (skipped > 0 && afterPause) diag.skippedWhileAway += skipped;
      else if (skipped > 0) diag.gaps += skipped;
    }
    this.lastTick = tick;
    this.lastTimestamp = payload.timestamp;
    diag.ticks.push(tick);
    keepLast(diag.ticks, 1000);

    if (payload.full) {
      const order = payload.data.map((server) => server.id);
      this.servers = new Map(payload.data.map((server) => [server.id, { ...server }]));
      for (const id of [...this.rows.keys()]) if (!this.servers.has(id)) this.removeRow(id);
      for (const id of order) if (!this.rows.has(id)) this.addRow(id);
      const rows = order.map((id) => this.rows.get(id).row);
      // Every reconnect starts with a full snapshot: re-insert rows only when the order changed,
      // so that a focused button keeps its focus.
      if (rows.some((row, index) => this.body.children[index] !== row)) {
        this.body.replaceChildren(...rows);
      }
    } else {
      for (const change of payload.data) {
        if (change.removed) {
          this.servers.delete(change.id);
          this.removeRow(change.id);
          continue;
        }
        const server = this.servers.get(change.id);
        if (server) Object.assign(server, change);
        else {
          this.servers.set(change.id, { ...change });
          this.addRow(change.id);
          this.body.append(this.rows.get(change.id).row);
        }
      }
    }
    for (const [id, server] of this.servers) {
      const points = this.history.get(id) ?? [];
      points.push({ t: payload.timestamp, cpu: server.cpu, memory: server.memory });
      const oldest = payload.timestamp - CHART_SPAN_MS;
      while (points.length > MAX_POINTS || (points.length && points[0].t < oldest)) points.shift();
      this.history.set(id, points);
      this.renderRow(id);
    }
    this.renderSummary();
  }

  addRow(id) {
    const cell = (className, ...children) => h("td", { class: className }, ...children);
    const name = h("span", { class: "server-name" });
    const where = h("span", { class: "server-where" });
    const status = h("span", { class: "status" });
    const cpu = h("span", { class: "metric-value" });
    const memory = h("span", { class: "metric-value" });
    const disk = h("meter", { min: 0, max: 100, low: 85, high: 95, optimum: 0, value: 0 });
    const diskText = h("span", { class: "metric-value" });
    const network = h("span", { class: "metric-value" });
    const uptime = h("span");
    const cpuChart = new Sparkline(`CPU of ${id}`, "cpu");
    const memoryChart = new Sparkline(`Memory of ${id}`, "memory");
    const buttons = ["restart", "stop", "start"].map((action) =>
      h("button", {
        type: "button",
        class: `control control-${action}`,
        dataset: { server: id, action },
        "aria-label": `${action[0].toUpperCase()}${action.slice(1)} ${id}`,
        text: action[0].toUpperCase() + action.slice(1),
      }),
    );
    const row = h(
      "tr",
      { dataset: { server: id } },
      h("th", { scope: "row" }, name, where),
      cell("status-cell", status),
      cell("metric", cpu, cpuChart.element),
      cell("metric", memory, memoryChart.element),
      cell("metric", diskText, disk),
      cell("metric network", network),
      cell("uptime", uptime),
      cell("actions", h("div", { class: "button-group" }, ...buttons)),
    );
    this.rows.set(id, {
      row,
      name,
      where,
      status,
      cpu,
      memory,
      disk,
      diskText,
      network,
      uptime,
      cpuChart,
      memoryChart,
      buttons,
      busy: false,
    });
  }

  removeRow(id) {
    this.rows.get(id)?.row.remove();
    this.rows.delete(id);
    this.history.delete(id);
  }

  renderRow(id) {
    const server = this.servers.get(id);
    const view = this.rows.get(id);
    if (!server || !view) return;
    setText(view.name, id);
    view.name.title = [server.hostname, server.ip].filter(Boolean).join(" · ");
    setText(view.where, [server.role, server.region].filter(Boolean).join(" · "));
    setText(view.status, server.status);
    view.status.className = `status status-${server.status}`;
    view.row.dataset.status = server.status;
    setText(view.cpu, percent(server.cpu));
    setText(view.memory, percent(server.memory));
    setText(view.diskText, percent(server.disk));
    view.disk.value = server.disk ?? 0;
    view.disk.setAttribute("aria-label", `Disk of ${id}: ${percent(server.disk)}`);
    setText(view.network, `↓ ${rate(server.network_in)}  ↑ ${rate(server.network_out)}`);
    const started = Date.parse(server.started_at);
    const running = server.cpu !== null && server.cpu !== undefined && !Number.isNaN(started);
    setText(view.uptime, running ? duration((this.lastTimestamp - started) / 1000) : "—");
    const points = this.history.get(id) ?? [];
    const end = this.lastTimestamp;
    const seen = points.length ? end - points[0].t : 0;
    const span = Math.min(CHART_SPAN_MS, Math.max(MIN_CHART_SPAN_MS, seen));
    const label = `last ${duration(Math.min(span, seen) / 1000)}`;
    view.cpuChart.update(
      points.map((p) => ({ t: p.t, value: p.cpu })),
      end,
      span,
      label,
    );
    view.memoryChart.update(
      points.map((p) => ({ t: p.t, value: p.memory })),
      end,
      span,
      label,
    );
    for (const button of view.buttons) {
      button.disabled = view.busy || !allowed(server.status, button.dataset.action);
    }
  }

  renderSummary() {
    const counts = {};
    let cpu = 0;
    let memory = 0;
    let measured = 0;
    for (const server of this.servers.values()) {
      counts[server.status] = (counts[server.status] ?? 0) + 1;
      if (server.cpu !== null && server.cpu !== undefined) {
        cpu += server.cpu;
        memory += server.memory;
        measured += 1;
      }
    }
    const parts = ["online", "warning", "critical", "offline", "stopping", "stopped", "starting"]
      .filter((status) => counts[status])
      .map((status) =>
        h("li", { class: `status status-${status}` }, `${counts[status]} ${status}`),
      );
    const average = measured
      ? `avg CPU ${(cpu / measured).toFixed(0)} % · memory ${(memory / measured).toFixed(0)} %`
      : "no readings";
    this.summary.replaceChildren(
      h("ul", { class: "status-counts", "aria-label": "Servers by status" }, parts),
      h(
        "span",
        { class: "muted" },
        `${average} · tick ${this.lastTick} at ${clock(new Date(this.lastTimestamp).toISOString())}`,
      ),
    );
  }

  async control(serverId, action) {
    const view = this.rows.get(serverId);
    if (view) {
      view.busy = true;
      this.renderRow(serverId);
    }
    const item = h("li", { class: "result pending" }, `${action} ${serverId}: sending…`);
    this.showResult(item);
    try {
      const response = await fetch("/api/servers/control", {
        method: "POST",
        headers: requestHeaders(),
        body: JSON.stringify({ server_id: serverId, action }),
      });
      if (response.status !== 202) {
        item.className = "result refused";
        item.textContent = `${action} ${serverId} refused: ${await problem(response)}`;
        return;
      }
      const accepted = await response.json();
      const key = `${serverId} ${action} ${accepted.requested_at}`;
      if (this.pending.get(key) === "arrived") {
        this.pending.delete(key);
        item.remove(); // the stream was faster: its result is shown already
      } else {
        item.textContent = `${action} ${serverId}: accepted, waiting for the result on the stream…`;
        this.pending.set(key, item);
      }
    } catch (error) {
      item.className = "result refused";
      item.textContent = `${action} ${serverId} failed: ${error.message}`;
    } finally {
      if (view) {
        view.busy = false;
        this.renderRow(serverId);
      }
    }
  }

  controlled(result, id) {
    this.stream.diag.controlResults.push({
      id,
      server_id: result.server_id,
      action: result.action,
      requested_at: result.requested_at,
    });
    keepLast(this.stream.diag.controlResults, 1000);
    const key = `${result.server_id} ${result.action} ${result.requested_at}`;
    const item = this.pending.get(key);
    if (item instanceof Element) {
      this.pending.delete(key);
      this.confirm(item, result);
    } else if (item === undefined) {
      // Asked for elsewhere (another tab, another user), or the stream was faster than the
      // answer to our own POST: show it, and let the POST's answer find it done.
      this.pending.set(key, "arrived");
      while (this.pending.size > 100) this.pending.delete(this.pending.keys().next().value);
      const shown = h("li", { class: "result" });
      this.confirm(shown, result);
      this.showResult(shown);
    }
  }

  confirm(item, result) {
    const steps = (result.sequence ?? []).map((step) => step.status).join(" → ");
    item.className = "result done";
    item.replaceChildren(
      h("strong", {}, `${result.action} ${result.server_id}`),
      ` — ${result.message}; over the stream at ${clock()}`,
      steps ? h("span", { class: "muted" }, ` (${steps})`) : "",
    );
    item.dataset.confirmed = "true";
  }

  showResult(item) {
    this.results.prepend(item);
    while (this.results.children.length > MAX_RESULTS) this.results.lastElementChild.remove();
  }

  pause() {
    this.stream.pause();
  }

  resume() {
    this.stream.resume();
  }
}
