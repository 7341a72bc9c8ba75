// The "Add an environment" form. It checks nothing itself: the fields go to the server as
// typed, and a 400 answer's field error is shown next to that field, in the server's words.
// The name's placeholder is the name the server would derive from the repository URL.

import { hideModal, setBusy, trackModal } from "./dom.js";

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
const DEFAULT_NAME_DELAY_MS = 250;

export class AddForm {
  // `elements`: dialog, form, error, submit, credentials, credentialsError.
  // `onAdded(build)` gets the queued build once the dialog has closed.
  constructor({ api, elements, onAdded }) {
    this.api = api;
    this.elements = elements;
    this.onAdded = onAdded;
    this.namePlaceholder = elements.form.elements.name.placeholder;
    this.nameTimer = null;
    this.nameRequest = 0;
    trackModal(elements.dialog);
    this.listen();
  }

  get fields() {
    return this.elements.form.elements;
  }

  listen() {
    const { dialog, form } = this.elements;
    dialog.addEventListener("show.bs.modal", (event) => {
      if (event.target === dialog) this.reset();
    });
    dialog.addEventListener("shown.bs.modal", () => this.fields.repository.focus());
    dialog.addEventListener("hidden.bs.modal", () => {
      // Never keep a password in the page longer than needed.
      this.fields.password.value = "";
    });
    this.fields.repository.addEventListener("input", () => this.scheduleDefaultName());
    // Editing a field clears its error.
    form.addEventListener("input", (event) => {
      const input = event.target;
      if (input.classList?.contains("is-invalid")) {
        input.classList.remove("is-invalid");
        const feedback = document.getElementById(`${input.id}-error`);
        if (feedback) feedback.textContent = "";
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  scheduleDefaultName() {
    clearTimeout(this.nameTimer);
    const repository = this.fields.repository.value.trim();
    if (!repository) {
      this.fields.name.placeholder = this.namePlaceholder;
      return;
    }
    this.nameTimer = setTimeout(() => this.showDefaultName(repository), DEFAULT_NAME_DELAY_MS);
  }

  async showDefaultName(repository) {
    const request = ++this.nameRequest;
    try {
      const { name } = await this.api.defaultName(repository);
      if (request === this.nameRequest && name) this.fields.name.placeholder = name;
    } catch {
      // Only a hint: the field keeps its generic placeholder.
    }
  }

  clearErrors() {
    const { form, error, credentialsError } = this.elements;
    for (const box of [error, credentialsError]) {
      box.hidden = true;
      box.textContent = "";
    }
    for (const input of form.querySelectorAll(".is-invalid")) input.classList.remove("is-invalid");
    for (const feedback of form.querySelectorAll(".invalid-feedback")) feedback.textContent = "";
  }

  showCredentials() {
    const box = this.elements.credentials;
    window.bootstrap.Collapse.getOrCreateInstance(box, { toggle: false }).show();
  }

  // Show the server's message next to the field it named; returns the element to focus.
  showError(apiError) {
    const { field, fieldMessage, message } = apiError;
    const inputName = FIELD_INPUTS[field];
    if (apiError.status === 400 && inputName) {
      const input = this.fields[inputName];
      input.classList.add("is-invalid");
      document.getElementById(`${input.id}-error`).textContent = fieldMessage;
      if (inputName === "username" || inputName === "password") this.showCredentials();
      return input;
    }
    if (apiError.status === 400 && field === "credentials") {
      this.elements.credentialsError.textContent = fieldMessage;
      this.elements.credentialsError.hidden = false;
      this.showCredentials();
      return this.fields.username;
    }
    this.elements.error.textContent = message;
    this.elements.error.hidden = false;
    return null;
  }

  // The fields as typed; empty optional fields are left out.
  read() {
    const body = { repository: this.fields.repository.value.trim() };
    for (const name of ["ref", "name", "memory", "cpu"]) {
      const value = this.fields[name].value.trim();
      if (value) body[name] = value;
    }
    const username = this.fields.username.value.trim();
    const password = this.fields.password.value;
    if (username || password) body.credentials = { username, password };
    return body;
  }

  reset() {
    this.elements.form.reset();
    this.clearErrors();
    this.fields.name.placeholder = this.namePlaceholder;
    setBusy(this.elements.submit, false);
    const box = this.elements.credentials;
    window.bootstrap.Collapse.getOrCreateInstance(box, { toggle: false }).hide();
  }

  async submit() {
    const { submit, dialog } = this.elements;
    if (submit.disabled) return;
    this.clearErrors();
    setBusy(submit, true);
    let build;
    try {
      build = await this.api.add(this.read());
    } catch (error) {
      setBusy(submit, false);
      this.showError(error)?.focus();
      return;
    }
    this.fields.password.value = "";
    await hideModal(dialog);
    setBusy(submit, false);
    this.onAdded(build);
  }
}
