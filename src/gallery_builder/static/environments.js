// The Environments page: lists environments from the builder's API, adds, rebuilds,
// cancels, rolls back and deletes them, and shows build logs live (Server-Sent Events) in xterm.js.
// Native ES modules, no build step. The page (templates/environments.html) gives the API
// URL as a data attribute and the XSRF token in <meta name="xsrf-token">.

import { AddForm } from "./environments/add-form.js";
import { EnvironmentsApi } from "./environments/api.js";
import { PageAlert } from "./environments/dom.js";
import { shortCommit } from "./environments/format.js";
import { LogDialog } from "./environments/log-stream.js";
import { EnvironmentsTable } from "./environments/table.js";

const byId = (id) => document.getElementById(id);

function start(root) {
  const xsrfToken = document.querySelector('meta[name="xsrf-token"]')?.content || "";
  const api = new EnvironmentsApi(root.dataset.apiUrl || "api/", xsrfToken);
  const alert = new PageAlert(byId("page-alert"));
  let log = null;

  const table = new EnvironmentsTable({
    api,
    alert,
    elements: {
      tbody: byId("environments-body"),
      wrapper: byId("environments-table-wrapper"),
      loading: byId("environments-loading"),
      empty: byId("environments-empty"),
      disk: byId("disk-usage"),
      rollbackDialog: byId("rollback-dialog"),
      rollbackConfirm: byId("rollback-confirm"),
      rollbackImage: byId("rollback-image"),
      rollbackCommit: byId("rollback-commit"),
      deleteDialog: byId("delete-dialog"),
      deleteConfirm: byId("delete-confirm"),
      deleteImage: byId("delete-image"),
    },
    onOpenLog: (build) => log.open(build),
    onChange: () => log?.sync(),
  });

  log = new LogDialog({
    api,
    table,
    elements: {
      dialog: byId("log-dialog"),
      terminal: byId("log-terminal"),
      state: byId("log-state"),
      title: byId("log-dialog-label"),
      subtitle: byId("log-subtitle"),
      detail: byId("log-detail"),
      cancel: byId("log-cancel"),
    },
  });

  new AddForm({
    api,
    elements: {
      dialog: byId("environment-dialog"),
      form: byId("environment-form"),
      error: byId("environment-form-error"),
      submit: byId("environment-submit"),
      credentials: byId("environment-credentials"),
      credentialsError: byId("environment-credentials-error"),
    },
    onAdded: (build) => {
      table.upsert(build);
      if (build.reused) {
        const commit = shortCommit(build.resolved_commit);
        const from = commit ? ` from commit ${commit}` : "";
        alert.show(`${build.image} is already built${from}: its image was reused.`, "info");
      }
      log.open(build);
    },
  });

  table.refresh();
}

const root = byId("environments-page");
if (root) start(root);
