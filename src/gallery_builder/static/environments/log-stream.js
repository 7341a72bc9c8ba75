// The build log dialog: the log streamed live (Server-Sent Events) into xterm.js, or into
// a plain <pre> when the vendored xterm files are missing.

import { el, showModal, trackModal } from "./dom.js";
import { ACTIVE_STATES, STATE_BADGES, describeBuild } from "./format.js";

// ESC [ ... letter: terminal colour and cursor codes, which a <pre> cannot show.
// eslint-disable-next-line no-control-regex
const ANSI_CODES = /\x1b\[[0-9;?]*[A-Za-z]/g;

class PlainLog {
  constructor(container) {
    this.pre = el("pre", { class: "log-plain" });
    container.append(this.pre);
  }

  write(text) {
    const atBottom = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 8;
    this.pre.append(text.replace(ANSI_CODES, "").replace(/\r\n?/g, "\n"));
    if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
  }

  reset() {
    this.pre.textContent = "";
  }
}

function summaryLine(build) {
  const reused = build.reused ? " (the commit was already built; image reused)" : "";
  const lines = {
    built: `\x1b[1;32m✔ Built ${build.image}${reused}\x1b[0m`,
    failed: `\x1b[1;31m✘ Build failed${build.reason ? `: ${build.reason}` : ""}\x1b[0m`,
    cancelled: "\x1b[1;33m■ Build cancelled\x1b[0m",
  };
  return lines[build.state] || null;
}

export class LogDialog {
  // `elements`: dialog, terminal, state, title, subtitle, detail, cancel.
  // `table`: the EnvironmentsTable (its view of the build updates the header; its cancel
  // action cancels).
  constructor({ api, elements, table }) {
    this.api = api;
    this.elements = elements;
    this.table = table;
    this.terminal = null;
    this.fitAddon = null;
    this.source = null;
    this.build = null;
    this.startWhenShown = false;
    trackModal(elements.dialog);
    this.listen();
  }

  listen() {
    const { dialog, cancel } = this.elements;
    dialog.addEventListener("shown.bs.modal", () => {
      this.ensureTerminal();
      this.fit();
      if (this.startWhenShown && this.build) {
        this.startWhenShown = false;
        this.start();
      }
    });
    dialog.addEventListener("hidden.bs.modal", () => {
      this.close();
      this.startWhenShown = false;
      this.build = null;
    });
    cancel.addEventListener("click", async () => {
      if (!this.build) return;
      cancel.disabled = true;
      const cancelled = await this.table.cancel(this.build);
      cancel.disabled = false;
      // The stream's `state` event follows; until then show what the API said.
      if (cancelled && this.build && cancelled.id === this.build.id) this.setState(cancelled.state);
    });
    window.addEventListener("beforeunload", () => this.close());
  }

  ensureTerminal() {
    if (this.terminal) return;
    const container = this.elements.terminal;
    if (typeof window.Terminal !== "function") {
      this.terminal = new PlainLog(container);
      return;
    }
    this.terminal = new window.Terminal({
      convertEol: true,
      disableStdin: true,
      cursorBlink: false,
      cursorStyle: "bar",
      cursorInactiveStyle: "none",
      scrollback: 50000,
      fontSize: 13,
      fontFamily: 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace',
      theme: { background: "#1b1d21", foreground: "#e3e5e8", cursor: "#1b1d21" },
    });
    // Keys are not input here; let Escape reach the dialog so it closes.
    this.terminal.attachCustomKeyEventHandler((event) => event.key !== "Escape");
    const FitAddon = window.FitAddon?.FitAddon;
    if (typeof FitAddon === "function") {
      this.fitAddon = new FitAddon();
      this.terminal.loadAddon(this.fitAddon);
    }
    this.terminal.open(container);
    new ResizeObserver(() => this.fit()).observe(container);
  }

  fit() {
    if (!this.fitAddon || !this.elements.dialog.classList.contains("show")) return;
    try {
      this.fitAddon.fit();
    } catch {
      // not laid out yet
    }
  }

  setState(state, text) {
    const badge = this.elements.state;
    badge.dataset.state = state || "";
    badge.className = `badge ms-auto ${STATE_BADGES[state] || "text-bg-light"}`;
    const spinner = ACTIVE_STATES.has(state)
      ? el("span", { class: "spinner-grow spinner-grow-sm me-1", "aria-hidden": "true" })
      : "";
    badge.replaceChildren(spinner, text || state || "");
    this.elements.cancel.hidden = !ACTIVE_STATES.has(state);
  }

  showHeader(build) {
    const { title, subtitle, detail } = this.elements;
    title.textContent = `Build log: ${build.image || build.name}`;
    subtitle.textContent = `${build.repository}${build.ref ? ` @ ${build.ref}` : ""}`;
    subtitle.title = subtitle.textContent;
    detail.textContent = describeBuild(build);
    this.setState(build.state);
  }

  // While a log streams, the list's newer view of that build updates the header.
  sync() {
    if (!this.build || !this.source) return;
    const current = this.table.find(this.build.id);
    if (current && JSON.stringify(current) !== JSON.stringify(this.build)) {
      this.build = current;
      this.showHeader(current);
    }
  }

  close() {
    if (this.source) {
      this.source.close();
      this.source = null;
    }
  }

  start() {
    this.ensureTerminal();
    this.terminal.reset();
    this.fit();
    const source = new EventSource(this.api.logUrl(this.build.id));
    this.source = source;
    let received = false;
    const current = () => this.source === source;

    source.addEventListener("open", () => {
      if (current()) this.elements.detail.textContent = describeBuild(this.build);
    });
    source.addEventListener("log", (event) => {
      if (!current()) return;
      let chunk;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        chunk = event.data;
      }
      this.terminal.write(typeof chunk === "string" ? chunk : String(chunk));
      if (!received && this.build.state === "queued") this.setState("building");
      received = true;
    });
    source.addEventListener("state", (event) => {
      if (!current()) return;
      // The stream is over; without this, EventSource would reconnect and replay it.
      this.close();
      let final;
      try {
        final = JSON.parse(event.data);
      } catch {
        return;
      }
      this.build = final;
      this.showHeader(final);
      const line = summaryLine(final);
      if (line) this.terminal.write(`\r\n${line}\r\n`);
      if (this.table.find(final.id)) this.table.upsert(final);
      this.table.refresh();
    });
    source.addEventListener("error", () => {
      if (!current()) return;
      if (source.readyState === EventSource.CLOSED) {
        this.source = null;
        this.elements.detail.textContent = "The log stream is unavailable.";
        this.terminal.write("\r\n\x1b[1;31mThe log stream is unavailable.\x1b[0m\r\n");
      } else {
        this.elements.detail.textContent = "Connection lost; reconnecting…";
      }
    });
  }

  open(build) {
    const { dialog } = this.elements;
    if (dialog.dataset.modalState === "hiding") {
      // Its `hidden` handler clears the dialog first; open it again after that.
      dialog.addEventListener("hidden.bs.modal", () => this.open(build), { once: true });
      return;
    }
    this.close();
    this.build = build;
    this.showHeader(build);
    if (dialog.dataset.modalState === "shown") {
      this.start();
    } else {
      this.startWhenShown = true;
      showModal(dialog);
    }
  }
}
