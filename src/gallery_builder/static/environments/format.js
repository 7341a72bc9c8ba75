// How builds are shown: numbers, sizes, limits, dates and commits.

const numberFormat = new Intl.NumberFormat(undefined, { maximumFractionDigits: 2 });
export const dateFormat = new Intl.DateTimeFormat(undefined, {
  dateStyle: "medium",
  timeStyle: "short",
});

export const ACTIVE_STATES = new Set(["queued", "building"]);
export const STATE_BADGES = {
  queued: "text-bg-secondary",
  building: "text-bg-primary",
  built: "text-bg-success",
  failed: "text-bg-danger",
  cancelled: "text-bg-warning",
};

export function formatNumber(value) {
  return numberFormat.format(value);
}

export function formatBytes(bytes) {
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

export function formatMemory(gb) {
  return gb === null || gb === undefined ? "default" : `${formatNumber(gb)} GB`;
}

export function formatCpu(cpu) {
  if (cpu === null || cpu === undefined) return "default";
  return `${formatNumber(cpu)} ${Number(cpu) === 1 ? "core" : "cores"}`;
}

export function parseDate(text) {
  if (!text) return null;
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function shortCommit(commit) {
  return commit ? String(commit).slice(0, 7) : "";
}

// The date worth showing for a build in its current state: [prefix, ISO text].
export function buildDate(build) {
  if (build.state === "queued") return ["queued ", build.created_at];
  if (build.state === "building") return ["started ", build.started_at || build.created_at];
  return ["", build.finished_at || build.started_at || build.created_at];
}

// One line about a build for the log dialog: commit, date, size, reuse.
export function describeBuild(build) {
  const parts = [];
  const commit = shortCommit(build.resolved_commit);
  if (commit) parts.push(`commit ${commit}`);
  const [prefix, date] = buildDate(build);
  const parsed = parseDate(date);
  if (parsed) {
    const when = prefix || (build.state === "built" ? "built " : "ended ");
    parts.push(`${when}${dateFormat.format(parsed)}`);
  }
  if (build.image_size) parts.push(formatBytes(build.image_size));
  if (build.reused) parts.push("reused image");
  return parts.join(" · ");
}
