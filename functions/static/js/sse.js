// A text/event-stream parser for what EventSource cannot read: the answer to a POST (the group
// chat's exchange), read with fetch and a stream reader. It follows the WHATWG rules (HTML,
// "Server-sent events", parsing an event stream), as the service's own Python decoder does:
//
// - bytes are UTF-8, decoded with replacement, and one leading byte order mark is dropped;
// - lines end with CRLF, LF or CR, and a CRLF may be split across two chunks;
// - a line starting with ":" is a comment; "field:value" drops one leading space of the value;
//   a line without ":" is a field with an empty value; unknown fields are ignored;
// - data values are joined with LF; an id containing NUL is ignored; retry counts only when it
//   is all ASCII digits;
// - a blank line dispatches the event (none when no data arrived, but the last event id is set
//   either way); an event still open when the stream ends is discarded.
//
// Sans-IO: feed() takes bytes and returns what they completed. Work is linear in the input (an
// unfinished line is kept and joined once), memory is bounded by maxLineChars.

const LINE_END = /\r\n|\r|\n/g;
const DIGITS = /^[0-9]+$/;
const MAX_RETRY = (1n << 63n) - 1n; // a longer reconnection time is ignored, not rounded

export class EventStreamParser {
  constructor({ maxLineChars = 1 << 20 } = {}) {
    this.maxLineChars = maxLineChars;
    this.decoder = new TextDecoder("utf-8"); // drops one leading BOM, replaces bad bytes
    this.partial = "";
    this.skipLF = false; // the last chunk ended with CR: a leading LF belongs to it
    this.data = [];
    this.eventType = "";
    this.idBuffer = "";
    /** What an EventSource would send back as Last-Event-ID. */
    this.lastEventId = "";
    /** The reconnection time the stream asked for (ms), or null. */
    this.retry = null;
    this.comments = 0;
  }

  /** Parse a chunk (Uint8Array); returns the events it completed: {type, data, lastEventId}. */
  feed(bytes) {
    return this.feedText(this.decoder.decode(bytes, { stream: true }));
  }

  /** The stream ended: whatever it left unfinished is discarded, as the spec says. */
  end() {
    this.decoder.decode();
    this.partial = "";
    this.skipLF = false;
    this.data = [];
    this.eventType = "";
    this.idBuffer = this.lastEventId;
  }

  feedText(text) {
    const out = [];
    if (this.skipLF && text) {
      this.skipLF = false;
      if (text[0] === "\n") text = text.slice(1);
    }
    let start = 0;
    LINE_END.lastIndex = 0;
    for (let match = LINE_END.exec(text); match !== null; match = LINE_END.exec(text)) {
      let line = text.slice(start, match.index);
      if (this.partial) {
        line = this.partial + line;
        this.partial = "";
      }
      this.checkLength(line.length);
      this.line(line, out);
      start = LINE_END.lastIndex;
    }
    if (start < text.length) {
      this.partial += text.slice(start);
      this.checkLength(this.partial.length);
    } else if (text.endsWith("\r")) {
      this.skipLF = true;
    }
    return out;
  }

  checkLength(length) {
    if (length > this.maxLineChars) {
      throw new RangeError(`event stream line longer than ${this.maxLineChars} characters`);
    }
  }

  line(line, out) {
    if (line === "") {
      this.dispatch(out);
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) {
      this.comments += 1;
      return;
    }
    let name = line;
    let value = "";
    if (colon > 0) {
      name = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.startsWith(" ")) value = value.slice(1);
    }
    if (name === "data") {
      this.data.push(value);
    } else if (name === "event") {
      this.eventType = value;
    } else if (name === "id") {
      if (!value.includes("\0")) this.idBuffer = value;
    } else if (name === "retry" && DIGITS.test(value)) {
      const digits = value.replace(/^0+(?=.)/, "");
      if (digits.length <= 19 && BigInt(digits) <= MAX_RETRY) this.retry = Number(digits);
    }
  }

  dispatch(out) {
    this.lastEventId = this.idBuffer;
    if (this.data.length === 0) {
      this.eventType = "";
      return;
    }
    out.push({
      type: this.eventType || "message",
      data: this.data.join("\n"),
      lastEventId: this.lastEventId,
    });
    this.data = [];
    this.eventType = "";
  }
}

/**
 * Read a fetch Response's event stream to its end, calling onEvent for each event.
 * Returns the parser (its lastEventId is where a later reader would resume).
 */
export async function readEventStream(response, onEvent, { signal } = {}) {
  const parser = new EventStreamParser();
  const reader = response.body.getReader();
  const stop = () => reader.cancel().catch(() => {});
  signal?.addEventListener("abort", stop, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      for (const event of parser.feed(value)) onEvent(event);
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    parser.end();
  }
  return parser;
}
