// The environments API as the page uses it: JSON over fetch() with the hub's XSRF token.

export class ApiError extends Error {
  // `field` and `fieldMessage` come from a 400 answer: the request field at fault, and
  // what is wrong with it (the server's own words; the page has no rules of its own).
  constructor(status, message, field = null, fieldMessage = null) {
    super(message);
    this.status = status;
    this.field = field;
    this.fieldMessage = fieldMessage || message;
  }
}

function errorMessage(response, data) {
  if (data && typeof data.error === "string" && data.error) return data.error;
  if (response.status === 401) return "Your session has expired: reload the page to log in again.";
  if (response.status === 403) return "You are not allowed to manage environments.";
  return `The server answered ${response.status} ${response.statusText}`.trim();
}

export class EnvironmentsApi {
  constructor(baseUrl, xsrfToken) {
    this.baseUrl = baseUrl;
    this.xsrfToken = xsrfToken;
  }

  async request(method, path, body) {
    // Every request, GETs too: JupyterHub accepts a login cookie on fetch() requests
    // only together with the XSRF token.
    const headers = { Accept: "application/json", "X-XSRFToken": this.xsrfToken };
    const init = { method, headers, credentials: "same-origin", cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.baseUrl + path, init);
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
    if (!response.ok) {
      throw new ApiError(response.status, errorMessage(response, data), data?.field, data?.message);
    }
    return data;
  }

  list() {
    return this.request("GET", "environments");
  }

  add(fields) {
    return this.request("POST", "environments", fields);
  }

  defaultName(repository) {
    return this.request(
      "GET",
      `environments/default-name?repository=${encodeURIComponent(repository)}`,
    );
  }

  rebuild(id) {
    return this.request("POST", buildPath(id, "rebuild"), {});
  }

  cancel(id) {
    return this.request("POST", buildPath(id, "cancel"));
  }

  rollback(id, image) {
    return this.request("POST", buildPath(id, "rollback"), image ? { image } : {});
  }

  remove(id) {
    return this.request("DELETE", buildPath(id));
  }

  // EventSource cannot send headers, so the XSRF token travels as the _xsrf argument.
  logUrl(id) {
    return `${this.baseUrl}${buildPath(id, "log")}?_xsrf=${encodeURIComponent(this.xsrfToken)}`;
  }
}

function buildPath(id, action = "") {
  return `environments/${encodeURIComponent(id)}${action ? `/${action}` : ""}`;
}
