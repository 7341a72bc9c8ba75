// The Environments page: lists environments from the builder's API, adds, rebuilds,
// cancels and deletes them, and shows build logs live (Server-Sent Events) in xterm.js.
// Plain browser JavaScript, no build step. The page (templates/environments.html) gives the
// API URL and the limits as data attributes and the XSRF token in <meta name="xsrf-token">.
"use strict";

(() => {
  const root = document.getElementById("environments-page");
  if (!root) return;

  const API = root.dataset.apiUrl || "api/";
  const MAX_MEMORY_GB = Number(root.dataset.maxMemoryGb);
  const MAX_CPU = Number(root.dataset.maxCpu);
  const XSRF_TOKEN = document.querySelector('meta[name="xsrf-token"]')?.content || "";
  const ACTIVE_STATES = new Set(["queued", "building"]);
  const POLL_MS = 2500;
  const STATE_BADGES = {
    queued: "text-bg-secondary",
    building: "text-bg-primary",
    built: "text-bg-success",
    failed: "text-bg-danger",
    cancelled: "text-bg-warning",
  };

  const $ = (id) => document.getElementById(id);
  const tbody = $("environments-body");
  const tableWrapper = $("environments-table-wrapper");
  const loadingEl = $("environments-loading");
  const emptyEl = $("environments-empty");
  const alertArea = $("page-alert");

  // ---- small DOM helpers ---------------------------------------------------------------

  // el("span", {class: "x", title: "y"}, child, "text", ...): text is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  const icon = (name, extra = "") =>
    el("i", { class: `fa fa-${name} ${extra}`.trim(), "aria-hidden": "true" });

  function modal(element) {
    return window.bootstrap.Modal.getOrCreateInstance(element);
  }

  // Bootstrap ignores show() and hide() while a modal is still fading in or out, so each
  // modal's phase is tracked and the calls below wait for the transition to end.
  function trackModal(element) {
    element.dataset.modalState = "hidden";
    const phases = { show: "showing", shown: "shown", hide: "hiding", hidden: "hidden" };
    for (const [event, phase] of Object.entries(phases)) {
      element.addEventListener(`${event}.bs.modal`, (e) => {
        if (e.target === element && !e.defaultPrevented) element.dataset.modalState = phase;
      });
    }
  }

  function afterTransition(element, callback) {
    const phase = element.dataset.modalState;
    if (phase === "showing" || phase === "hiding") {
      const next = phase === "showing" ? "shown.bs.modal" : "hidden.bs.modal";
      element.addEventListener(next, () => callback(), { once: true });
    } else {
      callback();
    }
  }

  function showModal(element) {
    afterTransition(element, () => {
      if (element.dataset.modalState === "hidden") modal(element).show();
    });
  }

  // Hide a modal; resolves once it is fully hidden.
  function hideModal(element) {
    return new Promise((resolve) => {
      afterTransition(element, () => {
        if (element.dataset.modalState === "hidden") {
          resolve();
          return;
        }
        element.addEventListener("hidden.bs.modal", () => resolve(), { once: true });
        modal(element).hide();
      });
    });
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    const spinner = button.querySelector(".spinner-border");
    if (spinner) spinner.hidden = !busy;
  }

  // ---- formatting ----------------------------------------------------------------------

  const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
  const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

  function formatNumber(value) {
    return numberFormat.format(value);
  }

  function formatBytes(bytes) {
    if (bytes === null || bytes === undefined || !Number.isFinite(Number(bytes))) return "—";
    const units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let value = Number(bytes);
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) {
      value /= 1000;
      unit += 1;
    }
    const digits = unit === 0 || value >= 10 ? 0 : 1;
    return `${value.toFixed(digits)} ${units[unit]}`;
  }

  function formatMemory(gb) {
    return gb === null || gb === undefined ? "default" : `${formatNumber(gb)} GB`;
  }

  function formatCpu(cpu) {
    if (cpu === null || cpu === undefined) return "default";
    return `${formatNumber(cpu)} ${Number(cpu) === 1 ? "core" : "cores"}`;
  }

  function parseDate(text) {
    if (!text) return null;
    const date = new Date(text);
    return Number.isNaN(date.getTime()) ? null : date;
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

  function shortCommit(commit) {
    return commit ? String(commit).slice(0, 7) : "";
  }

  // The date worth showing for a build in its current state.
  function buildDate(build) {
    if (build.state === "queued") return ["queued ", build.created_at];
    if (build.state === "building") return ["started ", build.started_at || build.created_at];
    return ["", build.finished_at || build.started_at || build.created_at];
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
    return el("span", { class: "repository-link font-monospace small", title: text, dataset: { field: "repository" } }, text);
  }

  // The server's default name (build_request.derive_name), for the name field's placeholder.
  function deriveName(url) {
    let text = String(url || "").trim();
    if (!text) return "";
    let path;
    const scheme = text.match(/^[a-z][a-z0-9+.-]*:\/\/[^/]*(.*)$/i);
    if (scheme) path = scheme[1].split(/[?#]/, 1)[0];
    else {
      const scp = text.match(/^(?:[^@/]+@)?[^:/]+:(.*)$/);
      path = scp ? scp[1] : text;
    }
    let last = path.replace(/\/+$/, "").split("/").pop() || "";
    try {
      last = decodeURIComponent(last);
    } catch {
      // keep it as typed
    }
    if (last.toLowerCase().endsWith(".git")) last = last.slice(0, -4);
    const name = last
      .toLowerCase()
      .replace(/[^a-z0-9_.-]+/g, "-")
      .replace(/[._-]{2,}/g, "-")
      .slice(0, 63)
      .replace(/^[._-]+|[._-]+$/g, "");
    return name || "environment";
  }

  // ---- the API -------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message, field) {
      super(message);
      this.status = status;
      this.field = field || null;
    }
  }

  function errorMessage(response, data) {
    if (data && typeof data.error === "string" && data.error) return data.error;
    if (data && typeof data.message === "string" && data.message) return data.message;
    if (response.status === 401) return "Your session has expired: reload the page to log in again.";
    if (response.status === 403) return "You are not allowed to manage environments.";
    return `The server answered ${response.status} ${response.statusText}`.trim();
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    // Every request, GETs too: JupyterHub accepts a login cookie on fetch() requests
    // only together with the XSRF token.
    headers["X-XSRFToken"] = XSRF_TOKEN;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(API + path, init);
    } catch {
      throw new ApiError(0, "The environments service cannot be reached. Try again in a moment.");
    }
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("json")) {
      try {
        data = await response.json();
      } catch {
        data = null;
      }
    }
    if (!response.ok) throw new ApiError(response.status, errorMessage(response, data), data?.field);
    return data;
  }

  const buildPath = (id, action = "") =>
    `environments/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;

  // ---- page alert ----------------------------------------------------------------------

  function showAlert(message, kind = "danger") {
    const close = el("button", {
      type: "button",
      class: "btn-close",
      "data-bs-dismiss": "alert",
      "aria-label": "Close",
    });
    const alert = el(
      "div",
      {
        class: `alert alert-${kind} alert-dismissible fade show`,
        role: kind === "danger" ? "alert" : "status",
      },
      el("span", { class: "alert-message" }, message),
      close,
    );
    alertArea.replaceChildren(alert);
    delete alertArea.dataset.source;
  }

  function clearAlert() {
    alertArea.replaceChildren();
    delete alertArea.dataset.source;
  }

  // ---- the table -----------------------------------------------------------------------

  let builds = []; // the latest list, newest first
  let listGeneration = 0; // bumped by every change, so a slower, older answer is dropped
  const rows = new Map(); // build id -> { tr, key }
  let pollTimer = null;
  let refreshWhenVisible = false;
  let loaded = false;

  function stateBadge(state, extraClass = "") {
    return el(
      "span",
      {
        class: `badge ${STATE_BADGES[state] || "text-bg-light"} state-badge ${extraClass}`.trim(),
        dataset: { field: "state" },
      },
      state === "building" ? el("span", { class: "spinner-grow spinner-grow-sm me-1", "aria-hidden": "true" }) : null,
      state || "unknown",
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
    const tr = el("tr", { dataset: { buildId: build.id, state: build.state, image: build.image || "" } });

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

    tr.append(
      el(
        "td",
        { class: "limits-cell text-nowrap small" },
        el("div", { dataset: { field: "memory" } }, el("span", { class: "text-body-secondary" }, "Memory "), formatMemory(build.memory_gb)),
        el("div", { dataset: { field: "cpu" } }, el("span", { class: "text-body-secondary" }, "CPU "), formatCpu(build.cpu)),
      ),
    );

    const status = el("td", { class: "status-cell" }, stateBadge(build.state));
    if (build.reused) {
      status.append(
        el(
          "span",
          { class: "badge text-bg-light border ms-1", title: "The commit was already built; its image was reused." },
          "reused",
        ),
      );
    }
    if (build.state === "failed" && build.reason) {
      status.append(el("div", { class: "small text-danger reason", dataset: { field: "reason" }, title: build.reason }, build.reason));
    }
    tr.append(status);

    const [datePrefix, dateText] = buildDate(build);
    tr.append(el("td", { class: "small text-nowrap", dataset: { field: "date" } }, timeElement(dateText, datePrefix)));

    tr.append(el("td", { class: "text-end text-nowrap small", dataset: { field: "size" } }, formatBytes(build.image_size)));

    const actions = el("div", { class: "d-inline-flex flex-nowrap justify-content-end gap-1" });
    actions.append(actionButton("logs", "Logs", "terminal", "btn-outline-secondary", { title: "Show the build log" }));
    actions.append(
      actionButton("rebuild", "Rebuild", "rotate-right", "btn-outline-primary", {
        title: active ? "A build is already running" : "Fetch the ref again and build it",
        disabled: active,
      }),
    );
    if (active) {
      actions.append(actionButton("cancel", "Cancel", "ban", "btn-outline-warning", { title: "Cancel this build" }));
    }
    actions.append(actionButton("delete", "Delete", "trash", "btn-outline-danger", { title: "Delete this environment" }));
    tr.append(el("td", { class: "text-end actions-cell" }, actions));
    return tr;
  }

  function renderTable() {
    const seen = new Set();
    let previous = null;
    for (const build of builds) {
      const key = JSON.stringify(build);
      let entry = rows.get(build.id);
      if (!entry) {
        entry = { tr: renderRow(build), key };
        rows.set(build.id, entry);
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
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.tr.remove();
        rows.delete(id);
      }
    }
    loadingEl.hidden = loaded;
    emptyEl.hidden = !loaded || builds.length > 0;
    tableWrapper.hidden = loaded && builds.length === 0;
    syncLogDialog();
  }

  // Show one build in the list: it replaces its own row, or the row of the same image (the
  // list holds the latest build of each image), or goes on top.
  function upsert(build) {
    listGeneration += 1;
    const index = builds.findIndex((b) => b.id === build.id);
    if (index >= 0) builds[index] = build;
    else builds = [build, ...builds.filter((b) => b.image !== build.image)];
    renderTable();
    schedulePoll();
  }

  function removeBuild(id) {
    listGeneration += 1;
    builds = builds.filter((b) => b.id !== id);
    renderTable();
    schedulePoll();
  }

  const findBuild = (id) => builds.find((b) => b.id === id);

  async function refresh() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (document.hidden && loaded) {
      refreshWhenVisible = true;
      return;
    }
    const generation = ++listGeneration;
    let retry = true;
    try {
      const data = await api("GET", "environments");
      if (generation !== listGeneration) return;
      builds = Array.isArray(data?.environments) ? data.environments : [];
      loaded = true;
      renderTable();
      if (alertArea.dataset.source === "list") clearAlert();
    } catch (error) {
      if (generation !== listGeneration) return;
      retry = error.status !== 401 && error.status !== 403;
      showAlert(`Could not load the environments: ${error.message}`);
      alertArea.dataset.source = "list";
      if (!loaded) {
        loadingEl.hidden = true;
        pollTimer = retry ? setTimeout(refresh, POLL_MS * 2) : null;
        return;
      }
    }
    if (retry) schedulePoll();
  }

  // Poll the list only while something is queued or building.
  function schedulePoll() {
    clearTimeout(pollTimer);
    pollTimer = null;
    if (builds.some((b) => ACTIVE_STATES.has(b.state))) pollTimer = setTimeout(refresh, POLL_MS);
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && refreshWhenVisible) {
      refreshWhenVisible = false;
      refresh();
    }
  });

  // ---- row actions ---------------------------------------------------------------------

  tbody.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button || !tbody.contains(button)) return;
    const tr = button.closest("tr[data-build-id]");
    const build = tr && findBuild(tr.dataset.buildId);
    if (!build) return;
    switch (button.dataset.action) {
      case "logs":
        openLog(build);
        break;
      case "rebuild":
        rebuild(build, button);
        break;
      case "cancel":
        cancel(build, button);
        break;
      case "delete":
        confirmDelete(build);
        break;
      default:
        break;
    }
  });

  async function rebuild(build, button) {
    button.disabled = true;
    try {
      const next = await api("POST", buildPath(build.id, "rebuild"), {});
      upsert(next);
      openLog(next);
    } catch (error) {
      button.disabled = false;
      showAlert(`Could not rebuild ${build.image}: ${error.message}`);
    }
  }

  async function cancel(build, button) {
    if (button) button.disabled = true;
    try {
      const cancelled = await api("POST", buildPath(build.id, "cancel"));
      if (cancelled) upsert(cancelled);
      return cancelled;
    } catch (error) {
      if (button) button.disabled = false;
      showAlert(`Could not cancel the build of ${build.image}: ${error.message}`);
      refresh();
      return null;
    }
  }

  // ---- delete --------------------------------------------------------------------------

  const deleteDialog = $("delete-dialog");
  const deleteConfirm = $("delete-confirm");
  let deleteTarget = null;
  trackModal(deleteDialog);

  function confirmDelete(build) {
    deleteTarget = build;
    $("delete-image").textContent = build.image || build.name;
    setBusy(deleteConfirm, false);
    showModal(deleteDialog);
  }

  deleteDialog.addEventListener("shown.bs.modal", () => deleteConfirm.focus());

  deleteConfirm.addEventListener("click", async () => {
    const build = deleteTarget;
    if (!build) return;
    setBusy(deleteConfirm, true);
    try {
      await api("DELETE", buildPath(build.id));
      await hideModal(deleteDialog);
      removeBuild(build.id);
      showAlert(`Deleted ${build.image}.`, "success");
    } catch (error) {
      await hideModal(deleteDialog);
      showAlert(`Could not delete ${build.image}: ${error.message}`);
      if (error.status === 404) refresh();
    } finally {
      setBusy(deleteConfirm, false);
      deleteTarget = null;
    }
  });

  // ---- the add form --------------------------------------------------------------------

  const formDialog = $("environment-dialog");
  const form = $("environment-form");
  const formError = $("environment-form-error");
  const submitButton = $("environment-submit");
  const credentialsBox = $("environment-credentials");
  const credentialsError = $("environment-credentials-error");
  const namePlaceholder = form.elements.name.placeholder;
  trackModal(formDialog);

  // API error field -> form input name.
  const FIELD_INPUTS = {
    repository: "repository",
    ref: "ref",
    name: "name",
    memory: "memory",
    cpu: "cpu",
    username: "username",
    password: "password",
    "credentials.username": "username",
    "credentials.password": "password",
  };

  function clearFormErrors() {
    formError.hidden = true;
    formError.textContent = "";
    credentialsError.hidden = true;
    credentialsError.textContent = "";
    for (const input of form.querySelectorAll(".is-invalid")) input.classList.remove("is-invalid");
    for (const feedback of form.querySelectorAll(".invalid-feedback")) feedback.textContent = "";
  }

  function showCredentials() {
    window.bootstrap.Collapse.getOrCreateInstance(credentialsBox, { toggle: false }).show();
  }

  // Show `message` next to the field the API named; returns the element to focus.
  function showFieldError(field, message) {
    const inputName = FIELD_INPUTS[field];
    if (inputName) {
      const input = form.elements[inputName];
      input.classList.add("is-invalid");
      $(`${input.id}-error`).textContent = message;
      if (inputName === "username" || inputName === "password") showCredentials();
      return input;
    }
    if (field === "credentials") {
      credentialsError.textContent = message;
      credentialsError.hidden = false;
      showCredentials();
      return form.elements.username;
    }
    formError.textContent = field && field !== "body" ? `${field}: ${message}` : message;
    formError.hidden = false;
    return null;
  }

  function numberField(name, maximum, unit, errors) {
    const input = form.elements[name];
    if (input.validity.badInput) {
      errors.push([name, "must be a number like 2 or 0.5"]);
      return undefined;
    }
    const text = input.value.trim();
    if (!text) return undefined;
    const value = Number(text);
    if (!Number.isFinite(value)) errors.push([name, "must be a number like 2 or 0.5"]);
    else if (value <= 0) errors.push([name, "must be greater than 0"]);
    else if (Number.isFinite(maximum) && value > maximum) errors.push([name, `must be at most ${formatNumber(maximum)} ${unit}`]);
    return value;
  }

  function readForm() {
    const errors = [];
    const fields = form.elements;
    const body = {};
    const repository = fields.repository.value.trim();
    if (!repository) errors.push(["repository", "is required"]);
    body.repository = repository;
    const ref = fields.ref.value.trim();
    if (ref) body.ref = ref;
    const name = fields.name.value.trim();
    if (name) body.name = name;
    const memory = numberField("memory", MAX_MEMORY_GB, "GB", errors);
    if (memory !== undefined) body.memory = memory;
    const cpu = numberField("cpu", MAX_CPU, "cores", errors);
    if (cpu !== undefined) body.cpu = cpu;
    const username = fields.username.value.trim();
    const password = fields.password.value;
    if (username || password) body.credentials = { username, password };
    return { body, errors };
  }

  function resetForm() {
    form.reset();
    clearFormErrors();
    form.elements.name.placeholder = namePlaceholder;
    setBusy(submitButton, false);
    window.bootstrap.Collapse.getOrCreateInstance(credentialsBox, { toggle: false }).hide();
  }

  formDialog.addEventListener("show.bs.modal", (event) => {
    if (event.target === formDialog) resetForm();
  });
  formDialog.addEventListener("shown.bs.modal", () => form.elements.repository.focus());
  formDialog.addEventListener("hidden.bs.modal", () => {
    // Never keep a password in the page longer than needed.
    form.elements.password.value = "";
  });

  form.elements.repository.addEventListener("input", () => {
    form.elements.name.placeholder = deriveName(form.elements.repository.value) || namePlaceholder;
  });

  // Editing a field clears its error.
  form.addEventListener("input", (event) => {
    const input = event.target;
    if (input.classList?.contains("is-invalid")) {
      input.classList.remove("is-invalid");
      const feedback = $(`${input.id}-error`);
      if (feedback) feedback.textContent = "";
    }
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (submitButton.disabled) return;
    clearFormErrors();
    const { body, errors } = readForm();
    if (errors.length) {
      let first = null;
      for (const [field, message] of errors) first = first || showFieldError(field, message);
      first?.focus();
      return;
    }
    setBusy(submitButton, true);
    let build;
    try {
      build = await api("POST", "environments", body);
    } catch (error) {
      setBusy(submitButton, false);
      const target =
        error.status === 400 ? showFieldError(error.field, error.message) : showFieldError(null, error.message);
      target?.focus();
      return;
    }
    form.elements.password.value = "";
    await hideModal(formDialog);
    setBusy(submitButton, false);
    upsert(build);
    if (build.reused) {
      const commit = shortCommit(build.resolved_commit);
      showAlert(
        `${build.image} is already built${commit ? ` from commit ${commit}` : ""}: its image was reused.`,
        "info",
      );
    }
    openLog(build);
  });

  // ---- the log dialog ------------------------------------------------------------------

  const logDialog = $("log-dialog");
  const logTerminal = $("log-terminal");
  const logState = $("log-state");
  const logTitle = $("log-dialog-label");
  const logSubtitle = $("log-subtitle");
  const logDetail = $("log-detail");
  const logCancel = $("log-cancel");
  trackModal(logDialog);

  // Used when xterm.js is not there (its vendored files missing): a plain <pre>.
  class PlainLog {
    constructor(container) {
      this.pre = el("pre", { class: "log-plain" });
      container.append(this.pre);
    }

    write(text) {
      const atBottom = this.pre.scrollHeight - this.pre.scrollTop - this.pre.clientHeight < 8;
      const plain = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, "").replace(/\r\n?/g, "\n");
      this.pre.append(plain);
      if (atBottom) this.pre.scrollTop = this.pre.scrollHeight;
    }

    reset() {
      this.pre.textContent = "";
    }

    fit() {}
  }

  let terminal = null;
  let fitAddon = null;
  let logSource = null;
  let logBuild = null;
  let startWhenShown = false;

  function ensureTerminal() {
    if (terminal) return;
    if (typeof window.Terminal === "function") {
      terminal = new window.Terminal({
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
      terminal.attachCustomKeyEventHandler((event) => event.key !== "Escape");
      const FitAddon = window.FitAddon?.FitAddon;
      if (typeof FitAddon === "function") {
        fitAddon = new FitAddon();
        terminal.loadAddon(fitAddon);
      }
      terminal.open(logTerminal);
      new ResizeObserver(() => fitTerminal()).observe(logTerminal);
    } else {
      terminal = new PlainLog(logTerminal);
    }
  }

  function fitTerminal() {
    if (!fitAddon || !logDialog.classList.contains("show")) return;
    try {
      fitAddon.fit();
    } catch {
      // not laid out yet
    }
  }

  function setLogState(state, text) {
    logState.dataset.state = state || "";
    logState.className = `badge ms-auto ${STATE_BADGES[state] || "text-bg-light"}`;
    logState.replaceChildren(
      ACTIVE_STATES.has(state) ? el("span", { class: "spinner-grow spinner-grow-sm me-1", "aria-hidden": "true" }) : "",
      text || state || "",
    );
    logCancel.hidden = !ACTIVE_STATES.has(state);
  }

  function describeBuild(build) {
    const parts = [];
    const commit = shortCommit(build.resolved_commit);
    if (commit) parts.push(`commit ${commit}`);
    const [prefix, date] = buildDate(build);
    const parsed = parseDate(date);
    if (parsed) parts.push(`${prefix || (build.state === "built" ? "built " : "ended ")}${dateFormat.format(parsed)}`);
    if (build.image_size) parts.push(formatBytes(build.image_size));
    if (build.reused) parts.push("reused image");
    return parts.join(" · ");
  }

  function showLogHeader(build) {
    logTitle.textContent = `Build log: ${build.image || build.name}`;
    logSubtitle.textContent = `${build.repository}${build.ref ? ` @ ${build.ref}` : ""}`;
    logSubtitle.title = logSubtitle.textContent;
    logDetail.textContent = describeBuild(build);
    setLogState(build.state);
  }

  // While a log streams, the list's newer view of that build updates the dialog's header.
  function syncLogDialog() {
    if (!logBuild || !logSource) return;
    const current = findBuild(logBuild.id);
    if (current && JSON.stringify(current) !== JSON.stringify(logBuild)) {
      logBuild = current;
      showLogHeader(current);
    }
  }

  function closeStream() {
    if (logSource) {
      logSource.close();
      logSource = null;
    }
  }

  function writeSummary(build) {
    const lines = {
      built: `\x1b[1;32m✔ Built ${build.image}${build.reused ? " (the commit was already built; image reused)" : ""}\x1b[0m`,
      failed: `\x1b[1;31m✘ Build failed${build.reason ? `: ${build.reason}` : ""}\x1b[0m`,
      cancelled: "\x1b[1;33m■ Build cancelled\x1b[0m",
    };
    if (lines[build.state]) terminal.write(`\r\n${lines[build.state]}\r\n`);
  }

  function startStream() {
    ensureTerminal();
    terminal.reset();
    fitTerminal();
    const build = logBuild;
    // EventSource cannot send headers, so the XSRF token travels as the _xsrf argument.
    const source = new EventSource(
      API + buildPath(build.id, "log") + "?_xsrf=" + encodeURIComponent(XSRF_TOKEN),
    );
    logSource = source;
    let received = false;

    source.addEventListener("open", () => {
      if (logSource === source) logDetail.textContent = describeBuild(logBuild);
    });
    source.addEventListener("log", (event) => {
      if (logSource !== source) return;
      let chunk;
      try {
        chunk = JSON.parse(event.data);
      } catch {
        chunk = event.data;
      }
      terminal.write(typeof chunk === "string" ? chunk : String(chunk));
      if (!received && logBuild.state === "queued") setLogState("building");
      received = true;
    });
    source.addEventListener("state", (event) => {
      if (logSource !== source) return;
      // The stream is over; without this, EventSource would reconnect and replay it.
      closeStream();
      let final;
      try {
        final = JSON.parse(event.data);
      } catch {
        return;
      }
      logBuild = final;
      showLogHeader(final);
      writeSummary(final);
      if (findBuild(final.id)) upsert(final);
      refresh();
    });
    source.addEventListener("error", () => {
      if (logSource !== source) return;
      if (source.readyState === EventSource.CLOSED) {
        logSource = null;
        logDetail.textContent = "The log stream is unavailable.";
        terminal.write("\r\n\x1b[1;31mThe log stream is unavailable.\x1b[0m\r\n");
      } else {
        logDetail.textContent = "Connection lost; reconnecting…";
      }
    });
  }

  function openLog(build) {
    if (logDialog.dataset.modalState === "hiding") {
      // Its `hidden` handler clears the dialog first; open it again after that.
      logDialog.addEventListener("hidden.bs.modal", () => openLog(build), { once: true });
      return;
    }
    closeStream();
    logBuild = build;
    showLogHeader(build);
    if (logDialog.dataset.modalState === "shown") {
      startStream();
    } else {
      startWhenShown = true;
      showModal(logDialog);
    }
  }

  logDialog.addEventListener("shown.bs.modal", () => {
    ensureTerminal();
    fitTerminal();
    if (startWhenShown && logBuild) {
      startWhenShown = false;
      startStream();
    }
  });
  logDialog.addEventListener("hidden.bs.modal", () => {
    closeStream();
    startWhenShown = false;
    logBuild = null;
  });

  logCancel.addEventListener("click", async () => {
    if (!logBuild) return;
    logCancel.disabled = true;
    const cancelled = await cancel(logBuild, null);
    logCancel.disabled = false;
    // The stream's `state` event follows; until then show what the API said.
    if (cancelled && logBuild && cancelled.id === logBuild.id) setLogState(cancelled.state);
  });

  window.addEventListener("beforeunload", closeStream);

  refresh();
})();
