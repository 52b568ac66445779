// The dashboard page: wires the three panels to the page, shows each stream's connection
// state, pauses every stream while the tab is hidden, and publishes the diagnostics.
//
// Query parameters: ?window=N (seconds; passed on to every stream), ?task=<id> opens a task,
// ?room=<id> joins a room (else "lobby").

import { ChatPanel } from "./chat.js";
import { config } from "./config.js";
import { registry } from "./diagnostics.js";
import { byId, h, setText } from "./dom.js";
import { FleetPanel } from "./fleet.js";
import { TaskPanel } from "./tasks.js";

window.sseDiagnostics = registry;

const STATE_TEXT = {
  connecting: "Connecting",
  live: "Live",
  reconnecting: "Reconnecting",
  offline: "Offline",
};

// A window's end is routine: the stream is live again a moment later. The pill (a live region)
// says "Reconnecting" only when that takes longer than this, so that it does not flicker, or
// chatter to a screen reader, at every window end.
const RECONNECTING_AFTER_MS = 1000;
const pendingStates = new Map();

/** Draw a stream's state into its pill ("#<name>-state") and reconnect counter. */
function showState(diag) {
  clearTimeout(pendingStates.get(diag.name));
  pendingStates.delete(diag.name);
  const pill = document.getElementById(`${diag.name}-state`);
  if (pill && diag.state === "reconnecting" && pill.dataset.state === "live") {
    const { state, detail } = diag;
    pendingStates.set(
      diag.name,
      setTimeout(() => drawPill(pill, state, detail), RECONNECTING_AFTER_MS),
    );
  } else if (pill) {
    drawPill(pill, diag.state, diag.detail);
  }
  const reconnects = document.getElementById(`${diag.name}-reconnects`);
  if (reconnects) setText(reconnects, String(diag.reconnects));
  if (diag.name === "fleet") setText(byId("fleet-windows"), String(diag.windows));
}

function drawPill(pill, state, detail) {
  pill.dataset.state = state;
  setText(pill.querySelector(".label"), STATE_TEXT[state] ?? state);
  pill.title = detail || STATE_TEXT[state];
  setText(pill.querySelector(".detail"), detail ? ` — ${detail}` : "");
}

const onState = (diag) => showState(diag);
const fleet = new FleetPanel({ onState });
const tasks = new TaskPanel({ onState });
const chat = new ChatPanel({ onState });
const panels = [fleet, tasks, chat];

// A hidden tab holds no stream open (the server's and the network's resources go to someone
// who is looking); when it is shown again each stream resumes from its last id.
document.addEventListener("visibilitychange", () => {
  for (const panel of panels) {
    if (document.visibilityState === "hidden") panel.pause();
    else panel.resume();
  }
});
window.addEventListener("online", () => {
  for (const panel of panels) panel.stream?.retryNow();
});

// -- the diagnostics table -----------------------------------------------------------------

const COLUMNS = [
  "state",
  "opens",
  "reconnects",
  "windows",
  "events",
  "ids",
  "duplicates",
  "gaps",
  "detail",
];
const diagnosticsPanel = byId("diagnostics");
const diagnosticsRows = byId("diagnostics-rows");

function showDiagnostics() {
  if (!diagnosticsPanel.open) return;
  diagnosticsRows.replaceChildren(
    ...Object.values(registry).map((diag) =>
      h(
        "tr",
        {},
        h("th", { scope: "row" }, diag.name),
        COLUMNS.map((column) => h("td", {}, String(diag[column] ?? ""))),
      ),
    ),
  );
}
diagnosticsPanel.addEventListener("toggle", showDiagnostics);
setInterval(showDiagnostics, 1000);

// -- the access token ----------------------------------------------------------------------

const tokenForm = byId("token-form");
const tokenInput = byId("token");
tokenInput.value = config.token;
tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  config.token = tokenInput.value.trim();
  location.reload(); // every stream starts again with the new credential
});

// -- start ---------------------------------------------------------------------------------

if (config.windowSeconds !== null) {
  setText(byId("window-note"), `Streams use ${config.windowSeconds}-second windows (?window=).`);
}
const query = new URLSearchParams(location.search);
fleet.start();
if (query.get("task")) tasks.openById(query.get("task"));
chat.join(query.get("room") || "lobby");
