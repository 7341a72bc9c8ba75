// DOM helpers of the Environments page: elements from data (text is never parsed as
// HTML), Bootstrap modals that wait for their transitions, busy buttons, the page alert.

// el("span", {class: "x", title: "y"}, child, "text", ...)
export function el(tag, attrs, ...children) {
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

export const icon = (name, extra = "") =>
  el("i", { class: `fa fa-${name} ${extra}`.trim(), "aria-hidden": "true" });

export function setBusy(button, busy) {
  button.disabled = busy;
  const spinner = button.querySelector(".spinner-border");
  if (spinner) spinner.hidden = !busy;
}

function modal(element) {
  return window.bootstrap.Modal.getOrCreateInstance(element);
}

// Bootstrap ignores show() and hide() while a modal is still fading in or out, so each
// modal's phase is tracked and the calls below wait for the transition to end.
export function trackModal(element) {
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

export function showModal(element) {
  afterTransition(element, () => {
    if (element.dataset.modalState === "hidden") modal(element).show();
  });
}

// Hide a modal; resolves once it is fully hidden.
export function hideModal(element) {
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

// The page's alert area: one dismissible message at a time. `source` lets the list's own
// error be cleared once the list loads again, without hiding other messages.
export class PageAlert {
  constructor(area) {
    this.area = area;
  }

  show(message, kind = "danger", source = null) {
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
    this.area.replaceChildren(alert);
    if (source) this.area.dataset.source = source;
    else delete this.area.dataset.source;
  }

  clear(source = null) {
    if (source && this.area.dataset.source !== source) return;
    this.area.replaceChildren();
    delete this.area.dataset.source;
  }
}
