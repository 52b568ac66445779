// The group chat: a room with AI personas (seeds/004).
//
// Sending a message is POST /api/chat/rooms/{roomId}/group-sse, whose answer is an SSE stream
// of the exchange (user_message, one ai_response per persona, exp_updated, complete, then
// "data: [DONE]"). EventSource cannot POST, so it is read with fetch and a stream reader, and
// parsed with the WHATWG rules (sse.js). The room itself is followed with EventSource on
// GET /api/chat/rooms/{roomId}/stream, so what other members say appears live too.
//
// Every event of an exchange is in the room's log, so it usually arrives twice: once in the
// POST's answer and once on the room's stream, with the same id (a room cursor). It is shown
// once, whichever comes first.

import { requestHeaders } from "./config.js";
import { diagnostics, SeenIds } from "./diagnostics.js";
import { byId, clock, h, problem, setText, uuid } from "./dom.js";
import { LiveStream } from "./live-stream.js";
import { readEventStream } from "./sse.js";

const USER_KEY = "serverless-sse.user";
const MAX_MESSAGES = 500;

function userId() {
  let id = localStorage.getItem(USER_KEY);
  if (!id) {
    id = `user-${uuid().slice(0, 8)}`;
    localStorage.setItem(USER_KEY, id);
  }
  return id;
}

export class ChatPanel {
  constructor({ onState }) {
    this.onState = onState;
    this.me = userId();
    this.list = byId("chat-messages");
    this.personaList = byId("personas");
    this.typing = byId("chat-typing");
    this.toasts = byId("exp-toasts");
    this.roomTitle = byId("room-title");
    this.compose = byId("chat-compose");
    this.text = byId("chat-text");
    this.sendButton = byId("chat-send");
    this.message = byId("chat-message");
    this.stream = null;
    this.room = null;
    this.shown = new SeenIds();
    this.chips = new Map(); // personaId -> {level, exp, progress}
    this.waiting = new Map(); // exchangeId -> Set of persona names still to answer
    this.mine = []; // my messages not yet confirmed: [{content, element}]
    this.exchange = diagnostics("exchange", { exchanges: 0, done: 0, answers: 0 });

    byId("room-join").addEventListener("submit", (event) => {
      event.preventDefault();
      this.join(byId("room-id").value.trim() || "lobby");
    });
    this.compose.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    this.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
  }

  get userName() {
    return byId("user-name").value.trim() || "Guest";
  }

  say(text, kind = "info") {
    this.message.className = `form-message ${kind}`;
    setText(this.message, text);
  }

  async join(roomId) {
    const query = new URLSearchParams({ userId: this.me });
    const response = await fetch(`/api/chat/rooms/${encodeURIComponent(roomId)}?${query}`, {
      headers: requestHeaders(),
    });
    if (!response.ok) {
      this.say(`Could not join ${roomId}: ${await problem(response)}`, "error");
      return;
    }
    const room = await response.json();
    this.stream?.close("left the room");
    this.room = room;
    this.shown.clear();
    this.waiting.clear();
    this.mine = [];
    this.list.replaceChildren();
    byId("room-id").value = room.id;
    setText(this.roomTitle, room.name || room.id);
    this.showPersonas(room);
    this.say("");
    this.compose.hidden = false;
    this.stream = new LiveStream({
      name: "room",
      path: `/api/chat/rooms/${encodeURIComponent(room.id)}/stream`,
      onEvent: (payload, meta) => this.accept(payload, meta.id),
      onState: this.onState,
      probe: () =>
        fetch(`/api/chat/rooms/${encodeURIComponent(room.id)}`, {
          headers: requestHeaders(),
        }),
    });
    this.stream.open();
    this.note(`You joined ${room.name || room.id} as ${this.userName}.`);
    this.renderTyping();
  }

  showPersonas(room) {
    const friendships = new Map((room.friendships ?? []).map((f) => [f.personaId, f]));
    this.chips.clear();
    this.personaList.replaceChildren(
      ...room.personas.map((persona) => {
        const friendship = friendships.get(persona.personaId) ?? { exp: 0, level: 1 };
        const level = h("span", { class: "persona-level" });
        const progress = h("progress", { max: 100, value: 0 });
        const chip = h(
          "li",
          { class: `persona style-${persona.style}`, dataset: { persona: persona.personaId } },
          h("span", { class: "avatar", "aria-hidden": "true" }, persona.name.slice(0, 1)),
          h("span", { class: "persona-name" }, persona.name),
          level,
          progress,
        );
        this.chips.set(persona.personaId, { chip, level, progress, name: persona.name });
        this.showFriendship(persona.personaId, friendship.exp, friendship.level);
        return chip;
      }),
    );
  }

  showFriendship(personaId, exp, level) {
    const chip = this.chips.get(personaId);
    if (!chip) return;
    setText(chip.level, `Lv ${level} · ${exp} EXP`);
    chip.progress.value = exp % 100;
    chip.progress.setAttribute(
      "aria-label",
      `Friendship with ${chip.name}: level ${level}, ${exp % 100} of 100 to the next`,
    );
  }

  async send() {
    const content = this.text.value.trim();
    if (!content || !this.room) return;
    this.text.value = "";
    const bubble = this.bubble({ own: true, sender: this.userName, content, pending: true });
    this.mine.push({ content, element: bubble });
    const diag = this.exchange;
    diag.exchanges += 1;
    diag.state = "connecting";
    diag.detail = "";
    const seen = new SeenIds();
    try {
      const response = await fetch(
        `/api/chat/rooms/${encodeURIComponent(this.room.id)}/group-sse`,
        {
          method: "POST",
          // A retried POST with the same key replays its exchange instead of starting another.
          headers: requestHeaders({ Accept: "text/event-stream", "Idempotency-Key": uuid() }),
          body: JSON.stringify({ message: content, sender: this.me, userName: this.userName }),
        },
      );
      if (!response.ok) {
        bubble.classList.add("failed");
        bubble.dataset.pending = "false";
        this.say(`Your message was not sent: ${await problem(response)}`, "error");
        diag.state = "offline";
        diag.detail = `refused (${response.status})`;
        return;
      }
      diag.state = "live";
      diag.opens += 1;
      await readEventStream(response, (event) => {
        diag.events += 1;
        if (event.data === "[DONE]") {
          diag.done += 1;
          return;
        }
        if (event.lastEventId) {
          diag.lastEventId = event.lastEventId;
          if (!seen.add(event.lastEventId)) {
            diag.duplicates += 1;
            return;
          }
          diag.ids += 1;
        }
        let payload;
        try {
          payload = JSON.parse(event.data);
        } catch {
          diag.errors += 1;
          return;
        }
        if (payload.type === "ai_response") diag.answers += 1;
        this.accept(payload, event.lastEventId);
      });
      diag.state = "offline";
      diag.detail = "the exchange is over";
    } catch (error) {
      diag.state = "offline";
      diag.detail = `failed: ${error.message}`;
      diag.errors += 1;
      this.say(`The answer stopped: ${error.message}. The room's stream shows the rest.`, "error");
    }
  }

  /** One event of the room, from either source; shown once. */
  accept(payload, id) {
    if (id && !this.shown.add(id)) return;
    const exchange = payload.exchangeId;
    switch (payload.type) {
      case "user_message": {
        const own = payload.senderId === this.me;
        const index = own ? this.mine.findIndex((m) => m.content === payload.content) : -1;
        if (index >= 0) {
          const [{ element }] = this.mine.splice(index, 1);
          element.dataset.pending = "false";
          element.dataset.exchange = exchange;
          element.querySelector("time").textContent = clock(payload.timestamp);
        } else {
          this.bubble({
            own,
            sender: payload.sender,
            content: payload.content,
            time: payload.timestamp,
            exchange,
          });
        }
        if (this.room) this.waiting.set(exchange, new Set(this.room.personas.map((p) => p.name)));
        break;
      }
      case "ai_response":
        this.bubble({
          ai: true,
          sender: payload.aiName,
          content: payload.content,
          time: payload.timestamp,
          exchange,
          persona: payload.personaId,
        });
        this.waiting.get(exchange)?.delete(payload.aiName);
        break;
      case "exp_updated":
        if (payload.userId === this.me) {
          this.showFriendship(payload.personaId, payload.newExp, payload.newLevel);
          this.toast(
            `+${payload.expIncrease} EXP with ${payload.personaName} · Lv ${payload.newLevel}`,
          );
        }
        break;
      case "error":
        if (exchange) {
          this.note(payload.message || "A persona could not answer.", "error", exchange);
          this.waiting.get(exchange)?.delete(payload.aiName);
        }
        break;
      case "complete":
        this.note(payload.message || "All answers are in.", "done", exchange);
        this.waiting.delete(exchange);
        break;
      case "timeout":
        if (exchange) {
          this.note(payload.message || "The answers took too long.", "error", exchange);
          this.waiting.delete(exchange);
        }
        break;
      case "reset":
        this.note(`Some messages of this room are no longer kept (${payload.reason}).`, "error");
        break;
      default:
        break;
    }
    this.renderTyping();
  }

  bubble({ own = false, ai = false, sender, content, time, exchange, persona, pending = false }) {
    const item = h(
      "li",
      {
        class: `message ${own ? "own" : ai ? "ai" : "other"}`,
        dataset: {
          type: ai ? "ai_response" : "user_message",
          exchange: exchange ?? "",
          persona: persona ?? "",
          pending: pending ? "true" : "false",
        },
      },
      ai ? h("span", { class: "avatar", "aria-hidden": "true" }, (sender || "?").slice(0, 1)) : "",
      h(
        "div",
        { class: "bubble" },
        h(
          "div",
          { class: "meta" },
          h("span", { class: "sender" }, sender || "someone"),
          h("time", {}, time ? clock(time) : "sending…"),
        ),
        h("p", { class: "content" }, content),
      ),
    );
    this.append(item);
    return item;
  }

  note(text, kind = "info", exchange = "") {
    this.append(h("li", { class: `note ${kind}`, dataset: { type: "note", exchange } }, text));
  }

  append(item) {
    const stick = this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 24;
    this.list.append(item);
    while (this.list.childElementCount > MAX_MESSAGES) this.list.firstElementChild.remove();
    if (stick) this.list.scrollTop = this.list.scrollHeight;
  }

  renderTyping() {
    const names = [...new Set([...this.waiting.values()].flatMap((set) => [...set]))];
    if (names.length === 0) setText(this.typing, "");
    else if (names.length === 1) setText(this.typing, `${names[0]} is answering…`);
    else
      setText(this.typing, `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are answering…`);
  }

  toast(text) {
    const item = h("li", { class: "toast" }, text);
    this.toasts.append(item);
    setTimeout(() => item.remove(), 4000);
  }

  pause() {
    this.stream?.pause();
  }

  resume() {
    this.stream?.resume();
  }
}
