// The environments table: the latest build of each image, kept fresh while builds run,
// with the row actions (logs, rebuild, cancel, roll back, delete), the previous images kept
// for a roll back, and the Docker data root's space.

import { el, hideModal, icon, setBusy, showModal, trackModal } from "./dom.js";
import {
  ACTIVE_STATES,
  STATE_BADGES,
  buildDate,
  dateFormat,
  formatBytes,
  formatCpu,
  formatMemory,
  parseDate,
  shortCommit,
} from "./format.js";

const POLL_MS = 2500;

export function stateBadge(state, extraClass = "") {
  return el(
    "span",
    {
      class: `badge ${STATE_BADGES[state] || "text-bg-light"} state-badge ${extraClass}`.trim(),
      dataset: { field: "state" },
    },
    state === "building"
      ? el("span", { class: "spinner-grow spinner-grow-sm me-1", "aria-hidden": "true" })
      : null,
    state || "unknown",
  );
}

function timeElement(text, prefix = "") {
  const date = parseDate(text);
  if (!date) return el("span", { class: "text-body-secondary" }, "—");
  return el(
    "time",
    { datetime: date.toISOString(), title: date.toISOString() },
    prefix + dateFormat.format(date),
  );
}

// Only http(s) URLs become links: a repository string is user input.
function repositoryLink(url) {
  const text = String(url || "");
  let parsed = null;
  try {
    parsed = new URL(text);
  } catch {
    parsed = null;
  }
  if (parsed && (parsed.protocol === "https:" || parsed.protocol === "http:")) {
    const shown = `${parsed.host}${parsed.pathname}`.replace(/\/+$/, "").replace(/\.git$/i, "");
    return el(
      "a",
      {
        href: parsed.href,
        target: "_blank",
        rel: "noopener noreferrer",
        title: text,
        class: "repository-link",
        dataset: { field: "repository" },
      },
      shown,
      icon("arrow-up-right-from-square", "ms-1 small opacity-50"),
    );
  }
  return el(
    "span",
    {
      class: "repository-link font-monospace small",
      title: text,
      dataset: { field: "repository" },
    },
    text,
  );
}

function actionButton(action, label, iconName, style, options = {}) {
  return el(
    "button",
    {
      type: "button",
      class: `btn btn-sm ${style}`,
      dataset: { action },
      title: options.title || label,
      disabled: options.disabled || false,
    },
    icon(iconName),
    el("span", { class: "action-label" }, label),
  );
}

function renderRow(build) {
  const active = ACTIVE_STATES.has(build.state);
  const tr = el("tr", {
    dataset: { buildId: build.id, state: build.state, image: build.image || "" },
  });

  tr.append(
    el(
      "td",
      { class: "environment-cell" },
      el("div", { class: "fw-semibold text-break", dataset: { field: "name" } }, build.name || ""),
      el("code", { class: "small text-break", dataset: { field: "image" } }, build.image || ""),
    ),
  );

  tr.append(el("td", { class: "repository-cell" }, repositoryLink(build.repository)));

  const commit = shortCommit(build.resolved_commit);
  tr.append(
    el(
      "td",
      { class: "ref-cell" },
      el(
        "div",
        { class: "text-break", dataset: { field: "ref" } },
        icon("code-branch", "me-1 text-body-tertiary"),
        build.ref ? build.ref : el("span", { class: "text-body-secondary" }, "default branch"),
      ),
      commit
        ? el(
            "code",
            { class: "small", title: build.resolved_commit, dataset: { field: "commit" } },
            commit,
          )
        : null,
    ),
  );

  const secondary = (text) => el("span", { class: "text-body-secondary" }, text);
  tr.append(
    el(
      "td",
      { class: "limits-cell text-nowrap small" },
      el(
        "div",
        { dataset: { field: "memory" } },
        secondary("Memory "),
        formatMemory(build.memory_gb),
      ),
      el("div", { dataset: { field: "cpu" } }, secondary("CPU "), formatCpu(build.cpu)),
    ),
  );

  const status = el("td", { class: "status-cell" }, stateBadge(build.state));
  if (build.reused) {
    status.append(
      el(
        "span",
        {
          class: "badge text-bg-light border ms-1",
          title: "The commit was already built; its image was reused.",
        },
        "reused",
      ),
    );
  }
  if (build.state === "failed" && build.reason) {
    status.append(
      el(
        "div",
        { class: "small text-danger reason", dataset: { field: "reason" }, title: build.reason },
        build.reason,
      ),
    );
  }
  tr.append(status);

  const [datePrefix, dateText] = buildDate(build);
  tr.append(
    el(
      "td",
      { class: "small text-nowrap", dataset: { field: "date" } },
      timeElement(dateText, datePrefix),
    ),
  );

  const previous = Array.isArray(build.previous) ? build.previous : [];
  tr.append(
    el(
      "td",
      { class: "text-end text-nowrap small", dataset: { field: "size" } },
      formatBytes(build.image_size),
      ...previous.map((image) =>
        el(
          "div",
          {
            class: "text-body-secondary previous-image",
            title: image.used_by.length
              ? `Previous image, in use by ${image.used_by.join(", ")}`
              : `Previous image ${image.image}`,
            dataset: { field: "previous" },
          },
          `previous ${shortCommit(image.commit) || "?"} · ${formatBytes(image.size)}`,
        ),
      ),
    ),
  );

  const actions = el("div", { class: "d-inline-flex flex-nowrap justify-content-end gap-1" });
  actions.append(
    actionButton("logs", "Logs", "terminal", "btn-outline-secondary", {
      title: "Show the build log",
    }),
  );
  actions.append(
    actionButton("rebuild", "Rebuild", "rotate-right", "btn-outline-primary", {
      title: active ? "A build is already running" : "Fetch the ref again and build it",
      disabled: active,
    }),
  );
  if (active) {
    actions.append(
      actionButton("cancel", "Cancel", "ban", "btn-outline-warning", {
        title: "Cancel this build",
      }),
    );
  }
  if (previous.length) {
    actions.append(
      actionButton("rollback", "Roll back", "clock-rotate-left", "btn-outline-secondary", {
        title: `Make the previous image (commit ${shortCommit(previous[0].commit) || "?"}) current again`,
        disabled: active,
      }),
    );
  }
  actions.append(
    actionButton("delete", "Delete", "trash", "btn-outline-danger", {
      title: "Delete this environment",
    }),
  );
  tr.append(el("td", { class: "text-end actions-cell" }, actions));
  return tr;
}

export class EnvironmentsTable {
  // `elements`: tbody, wrapper, loading, empty, disk, deleteDialog, deleteConfirm,
  // deleteImage, rollbackDialog, rollbackConfirm, rollbackImage, rollbackCommit.
  // `onOpenLog(build)` shows a build's log; `onChange()` runs after every redraw.
  constructor({ api, alert, elements, onOpenLog, onChange = () => {} }) {
    this.api = api;
    this.alert = alert;
    this.elements = elements;
    this.onOpenLog = onOpenLog;
    this.onChange = onChange;
    this.builds = []; // the latest list, newest first
    this.generation = 0; // bumped by every change, so a slower, older answer is dropped
    this.rows = new Map(); // build id -> { tr, key }
    this.pollTimer = null;
    this.refreshWhenVisible = false;
    this.loaded = false;
    this.deleteTarget = null;
    this.rollbackTarget = null;

    elements.tbody.addEventListener("click", (event) => this.onRowClick(event));
    trackModal(elements.rollbackDialog);
    elements.rollbackConfirm.addEventListener("click", () => this.rollbackConfirmed());
    trackModal(elements.deleteDialog);
    elements.deleteDialog.addEventListener("shown.bs.modal", () => elements.deleteConfirm.focus());
    elements.deleteConfirm.addEventListener("click", () => this.deleteConfirmed());
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && this.refreshWhenVisible) {
        this.refreshWhenVisible = false;
        this.refresh();
      }
    });
  }

  find(id) {
    return this.builds.find((b) => b.id === id);
  }

  render() {
    const { tbody, wrapper, loading, empty } = this.elements;
    const seen = new Set();
    let previous = null;
    for (const build of this.builds) {
      const key = JSON.stringify(build);
      let entry = this.rows.get(build.id);
      if (!entry) {
        entry = { tr: renderRow(build), key };
        this.rows.set(build.id, entry);
      } else if (entry.key !== key) {
        const tr = renderRow(build);
        entry.tr.replaceWith(tr);
        entry.tr = tr;
        entry.key = key;
      }
      const expected = previous ? previous.nextElementSibling : tbody.firstElementChild;
      if (expected !== entry.tr) tbody.insertBefore(entry.tr, expected);
      previous = entry.tr;
      seen.add(build.id);
    }
    for (const [id, entry] of this.rows) {
      if (!seen.has(id)) {
        entry.tr.remove();
        this.rows.delete(id);
      }
    }
    loading.hidden = this.loaded;
    empty.hidden = !this.loaded || this.builds.length > 0;
    wrapper.hidden = this.loaded && this.builds.length === 0;
    this.onChange();
  }

  // Show one build in the list: it replaces its own row, or the row of the same image (the
  // list holds the latest build of each image), or goes on top.
  upsert(build) {
    this.generation += 1;
    const index = this.builds.findIndex((b) => b.id === build.id);
    if (index >= 0) this.builds[index] = build;
    else this.builds = [build, ...this.builds.filter((b) => b.image !== build.image)];
    this.render();
    this.schedulePoll();
  }

  remove(id) {
    this.generation += 1;
    this.builds = this.builds.filter((b) => b.id !== id);
    this.render();
    this.schedulePoll();
  }

  async refresh() {
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    if (document.hidden && this.loaded) {
      this.refreshWhenVisible = true;
      return;
    }
    const generation = ++this.generation;
    let retry = true;
    try {
      const data = await this.api.list();
      if (generation !== this.generation) return;
      this.builds = Array.isArray(data?.environments) ? data.environments : [];
      this.showDisk(data?.disk);
      this.loaded = true;
      this.render();
      this.alert.clear("list");
    } catch (error) {
      if (generation !== this.generation) return;
      retry = error.status !== 401 && error.status !== 403;
      this.alert.show(`Could not load the environments: ${error.message}`, "danger", "list");
      if (!this.loaded) {
        this.elements.loading.hidden = true;
        this.pollTimer = retry ? setTimeout(() => this.refresh(), POLL_MS * 2) : null;
        return;
      }
    }
    if (retry) this.schedulePoll();
  }

  showDisk(disk) {
    const { disk: element } = this.elements;
    if (!element || !disk) return;
    const low = disk.min_free_bytes && disk.free_bytes < disk.min_free_bytes;
    element.textContent =
      `Docker data root: ${formatBytes(disk.used_bytes)} used, ` +
      `${formatBytes(disk.free_bytes)} free of ${formatBytes(disk.total_bytes)}` +
      (disk.min_free_bytes ? ` (builds need ${formatBytes(disk.min_free_bytes)} free)` : "");
    element.classList.toggle("text-danger", Boolean(low));
  }

  // Poll the list only while something is queued or building.
  schedulePoll() {
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    if (this.builds.some((b) => ACTIVE_STATES.has(b.state))) {
      this.pollTimer = setTimeout(() => this.refresh(), POLL_MS);
    }
  }

  onRowClick(event) {
    const button = event.target.closest("button[data-action]");
    if (!button || !this.elements.tbody.contains(button)) return;
    const tr = button.closest("tr[data-build-id]");
    const build = tr && this.find(tr.dataset.buildId);
    if (!build) return;
    const actions = {
      logs: () => this.onOpenLog(build),
      rebuild: () => this.rebuild(build, button),
      cancel: () => this.cancel(build, button),
      rollback: () => this.confirmRollback(build),
      delete: () => this.confirmDelete(build),
    };
    actions[button.dataset.action]?.();
  }

  async rebuild(build, button) {
    button.disabled = true;
    try {
      const next = await this.api.rebuild(build.id);
      this.upsert(next);
      this.onOpenLog(next);
    } catch (error) {
      button.disabled = false;
      this.alert.show(`Could not rebuild ${build.image}: ${error.message}`);
    }
  }

  async cancel(build, button = null) {
    if (button) button.disabled = true;
    try {
      const cancelled = await this.api.cancel(build.id);
      if (cancelled) this.upsert(cancelled);
      return cancelled;
    } catch (error) {
      if (button) button.disabled = false;
      this.alert.show(`Could not cancel the build of ${build.image}: ${error.message}`);
      this.refresh();
      return null;
    }
  }

  confirmRollback(build) {
    const target = build.previous?.[0];
    if (!target) return;
    this.rollbackTarget = { build, image: target.image };
    this.elements.rollbackImage.textContent = build.image;
    this.elements.rollbackCommit.textContent = shortCommit(target.commit) || target.image;
    setBusy(this.elements.rollbackConfirm, false);
    showModal(this.elements.rollbackDialog);
  }

  async rollbackConfirmed() {
    const target = this.rollbackTarget;
    const { rollbackDialog, rollbackConfirm } = this.elements;
    if (!target) return;
    setBusy(rollbackConfirm, true);
    try {
      const current = await this.api.rollback(target.build.id, target.image);
      await hideModal(rollbackDialog);
      this.alert.show(
        `${target.build.image} is back at commit ${shortCommit(current.resolved_commit)}.`,
        "success",
      );
      await this.refresh();
    } catch (error) {
      await hideModal(rollbackDialog);
      this.alert.show(`Could not roll back ${target.build.image}: ${error.message}`);
      this.refresh();
    } finally {
      setBusy(rollbackConfirm, false);
      this.rollbackTarget = null;
    }
  }

  confirmDelete(build) {
    this.deleteTarget = build;
    this.elements.deleteImage.textContent = build.image || build.name;
    setBusy(this.elements.deleteConfirm, false);
    showModal(this.elements.deleteDialog);
  }

  async deleteConfirmed() {
    const build = this.deleteTarget;
    const { deleteDialog, deleteConfirm } = this.elements;
    if (!build) return;
    setBusy(deleteConfirm, true);
    try {
      await this.api.remove(build.id);
      await hideModal(deleteDialog);
      this.remove(build.id);
      this.alert.show(`Deleted ${build.image}.`, "success");
    } catch (error) {
      await hideModal(deleteDialog);
      this.alert.show(`Could not delete ${build.image}: ${error.message}`);
      if (error.status === 404) this.refresh();
    } finally {
      setBusy(deleteConfirm, false);
      this.deleteTarget = null;
    }
  }
}
