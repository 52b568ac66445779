// Follow one stream with the npm `eventsource` package and report, one JSON line per event on
// stdout, what its listeners see. The package reconnects by itself after each window's
// `timeout`, sending Last-Event-ID, exactly as a browser does.
//
//   node follow.mjs <url> named|envelope
import { EventSource } from "eventsource";

const [url, format] = process.argv.slice(2);
const report = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const source = new EventSource(url);

source.addEventListener("open", () => report({ kind: "open" }));
source.addEventListener("error", () => report({ kind: "error", readyState: source.readyState }));

if (format === "named") {
  source.addEventListener("tick", (event) => {
    report({ kind: "tick", n: JSON.parse(event.data).n, id: event.lastEventId });
  });
  source.addEventListener("timeout", (event) => report({ kind: "timeout", id: event.lastEventId }));
} else {
  source.addEventListener("message", (event) => {
    const data = JSON.parse(event.data);
    if (data.type === "tick") report({ kind: "tick", n: data.n, id: event.lastEventId });
    else if (data.type === "timeout") report({ kind: "timeout", id: event.lastEventId });
  });
}

process.on("SIGTERM", () => {
  source.close();
  process.exit(0);
});
