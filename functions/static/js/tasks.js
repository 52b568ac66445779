// The task log viewer: create a task or open one by id, follow GET /api/tasks/{id}/stream, and
// show its typed events (log, phase_update, step_update, dependency_request, user_question,
// review_required, error, complete).
//
// As the source system's client does (seeds/001): at most the last 1,000 events are kept, and
// bursts are drawn in batches, one render per 10 events or 100 ms, whichever comes first.

import { requestHeaders } from "./config.js";
import { keepLast } from "./diagnostics.js";
import { byId, clock, h, problem, setText } from "./dom.js";
import { LiveStream } from "./live-stream.js";

export const MAX_EVENTS = 1000;
const BATCH_EVENTS = 10;
const BATCH_MS = 100;
const TASK_TYPES = new Set([
  "log",
  "phase_update",
  "step_update",
  "dependency_request",
  "user_question",
  "review_required",
  "error",
  "complete",
]);

export class TaskPanel {
  constructor({ onState }) {
    this.onState = onState;
    this.view = byId("task-view");
    this.heading = byId("task-heading");
    this.idText = byId("task-id-text");
    this.status = byId("task-status");
    this.phase = byId("task-phase");
    this.stepText = byId("task-step");
    this.stepBar = byId("task-progress");
    this.count = byId("task-count");
    this.log = byId("task-log");
    this.message = byId("task-message");
    this.outputForm = byId("task-output");
    this.outputText = byId("task-output-text");
    this.finishButton = byId("task-finish");
    this.stream = null;
    this.task = null;
    this.events = [];
    this.pending = [];
    this.timer = null;

    byId("task-create").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create(byId("task-title").value.trim());
    });
    byId("task-open").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = byId("task-id").value.trim();
      if (id) this.openById(id);
    });
    this.outputForm.addEventListener("submit", (event) => {
      event.preventDefault();
      this.sendOutput();
    });
    this.finishButton.addEventListener("click", () => this.finish());
  }

  say(text, kind = "info") {
    this.message.className = `form-message ${kind}`;
    setText(this.message, text);
  }

  async create(title) {
    const response = await fetch("/api/tasks", {
      method: "POST",
      headers: requestHeaders(),
      body: JSON.stringify(title ? { title } : {}),
    });
    if (response.status !== 201) {
      this.say(`Could not create the task: ${await problem(response)}`, "error");
      return;
    }
    const task = await response.json();
    this.say(`Created task ${task.id}.`);
    this.open(task);
  }

  async openById(id) {
    const response = await fetch(`/api/tasks/${encodeURIComponent(id)}`, {
      headers: requestHeaders(),
    });
    if (!response.ok) {
      this.say(`Could not open task ${id}: ${await problem(response)}`, "error");
      return;
    }
    this.say("");
    this.open(await response.json());
  }

  open(task) {
    this.stream?.close("another task was opened");
    clearTimeout(this.timer);
    this.timer = null;
    this.task = task;
    this.events = [];
    this.pending = [];
    this.log.replaceChildren();
    this.view.hidden = false;
    byId("task-id").value = task.id;
    setText(this.heading, task.title || "Untitled task");
    setText(this.idText, task.id);
    this.showTask(task);
    this.stream = new LiveStream({
      name: "task",
      path: `/api/tasks/${encodeURIComponent(task.id)}/stream`,
      onEvent: (payload) => this.queue(payload),
      onState: this.onState,
      probe: () =>
        fetch(`/api/tasks/${encodeURIComponent(task.id)}`, { headers: requestHeaders() }),
    });
    Object.assign(this.stream.diag, { renders: 0, kept: 0, types: {}, task: task.id });
    this.stream.open();
  }

  showTask(task) {
    setText(this.status, task.status.replace("_", " "));
    this.status.className = `badge task-${task.status}`;
    if (task.phase) this.showPhase(task.phase);
    if (task.step) this.showStep(task.step);
    const finished = task.status !== "in_progress";
    for (const control of this.outputForm.elements) control.disabled = finished;
  }

  showPhase(phase) {
    setText(this.phase, `Phase ${phase.phase} · ${phase.name} — ${phase.status.replace("_", " ")}`);
  }

  showStep(step) {
    setText(this.stepText, `${step.step} (${step.progress}/${step.total})`);
    this.stepBar.max = Math.max(1, step.total);
    this.stepBar.value = Math.min(step.progress, step.total);
  }

  queue(payload) {
    const diag = this.stream.diag;
    diag.types[payload.type] = (diag.types[payload.type] ?? 0) + 1;
    if (!TASK_TYPES.has(payload.type) && payload.type !== "reset") return;
    this.pending.push(payload);
    if (payload.type === "complete") this.stream.finish("the task is finished");
    if (this.pending.length >= BATCH_EVENTS) this.flush();
    else if (this.timer === null) this.timer = setTimeout(() => this.flush(), BATCH_MS);
  }

  flush() {
    clearTimeout(this.timer);
    this.timer = null;
    const batch = this.pending.splice(0);
    if (batch.length === 0) return;
    this.events.push(...batch);
    keepLast(this.events, MAX_EVENTS);
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 24;
    const fragment = document.createDocumentFragment();
    for (const payload of batch) fragment.append(this.entry(payload));
    this.log.append(fragment);
    while (this.log.childElementCount > MAX_EVENTS) this.log.firstElementChild.remove();
    if (stick) this.log.scrollTop = this.log.scrollHeight;
    const diag = this.stream.diag;
    diag.renders += 1;
    diag.kept = this.events.length;
    setText(
      this.count,
      `${diag.ids} events${diag.ids > MAX_EVENTS ? `, the last ${MAX_EVENTS} shown` : ""}`,
    );
  }

  entry(payload) {
    const data = payload.data ?? {};
    const time = h("time", { datetime: data.timestamp ?? "" }, clock(data.timestamp));
    const item = (className, ...children) =>
      h("li", { class: `entry ${className}`, dataset: { type: payload.type } }, time, ...children);
    switch (payload.type) {
      case "log":
        return item(
          `log level-${data.level}`,
          h("span", { class: "level" }, data.level),
          h("span", { class: "text" }, data.message),
        );
      case "phase_update":
        this.showPhase(data);
        return item(
          "phase",
          h(
            "span",
            { class: "text" },
            `Phase ${data.phase} · ${data.name} — ${data.status.replace("_", " ")}`,
          ),
        );
      case "step_update":
        this.showStep(data);
        return item(
          "step",
          h("span", { class: "text" }, `Step ${data.progress}/${data.total}: ${data.step}`),
        );
      case "dependency_request":
        return item(
          "card dependency",
          h("strong", {}, `Dependency requested: ${data.name ?? "?"}`),
          fields(data, ["name"]),
        );
      case "user_question":
        return item(
          "card question",
          h("strong", {}, `Question: ${data.question ?? ""}`),
          list(data.options),
          fields(data, ["question", "options"]),
        );
      case "review_required":
        return item(
          "card review",
          h("strong", {}, `Review required: ${data.summary ?? ""}`),
          list(data.files),
          fields(data, ["summary", "files"]),
        );
      case "error":
        return item(
          "error",
          h("span", { class: "level" }, data.fatal ? "fatal" : "error"),
          h("span", { class: "text" }, data.message),
        );
      case "complete":
        this.showTask({ ...this.task, status: data.status });
        return item(
          `complete task-${data.status}`,
          h("strong", {}, `Task ${data.status}`),
          data.summary ? h("span", { class: "text" }, `: ${data.summary}`) : "",
        );
      case "reset":
        return item(
          "notice",
          h(
            "span",
            { class: "text" },
            `Events ${payload.missed_from}–${payload.missed_to} are no longer kept (${payload.reason}).`,
          ),
        );
      default:
        return item("log", h("span", { class: "text" }, JSON.stringify(payload)));
    }
  }

  async sendOutput() {
    if (!this.task) return;
    let text = this.outputText.value;
    if (!text.trim()) return;
    if (!text.endsWith("\n")) text += "\n";
    const response = await fetch(`/api/tasks/${encodeURIComponent(this.task.id)}/output`, {
      method: "POST",
      headers: requestHeaders({ "Content-Type": "text/plain; charset=utf-8" }),
      body: text,
    });
    if (!response.ok) {
      this.say(`The output was refused: ${await problem(response)}`, "error");
      return;
    }
    this.outputText.value = "";
    this.say("");
  }

  async finish() {
    if (!this.task) return;
    const response = await fetch(`/api/tasks/${encodeURIComponent(this.task.id)}/complete`, {
      method: "POST",
      headers: requestHeaders(),
      body: JSON.stringify({ status: "succeeded" }),
    });
    if (!response.ok) this.say(`Could not finish the task: ${await problem(response)}`, "error");
  }

  pause() {
    this.stream?.pause();
  }

  resume() {
    this.stream?.resume();
  }
}

/** The fields of a block the heading does not show, as a definition list. */
function fields(data, shown) {
  const rest = Object.entries(data).filter(
    ([name]) => !shown.includes(name) && name !== "timestamp" && name !== "id",
  );
  if (rest.length === 0) return "";
  return h(
    "dl",
    { class: "fields" },
    rest.flatMap(([name, value]) => [
      h("dt", {}, name),
      h("dd", {}, typeof value === "string" ? value : JSON.stringify(value)),
    ]),
  );
}

function list(items) {
  if (!Array.isArray(items) || items.length === 0) return "";
  return h(
    "ul",
    { class: "choices" },
    items.map((item) => h("li", {}, String(item))),
  );
}
