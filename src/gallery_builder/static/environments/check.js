// What the builder's image check found, shown in a row: a badge and the reasons when the
// hub cannot run the image (see gallery_builder.after_build.compatibility_view).

import { el } from "./dom.js";

export function checkNote(build) {
  const check = build.check;
  if (!check || !check.checked) return null;
  const problems = Array.isArray(check.problems) ? check.problems : [];
  if (problems.length === 0) {
    const versions = `jupyterhub ${check.jupyterhub || "?"}, voila ${check.voila || "none"}, jupytext ${check.jupytext || "none"}`;
    return el(
      "span",
      { class: "badge text-bg-light border ms-1 check-ok", title: versions },
      "checked",
    );
  }
  return el(
    "div",
    { class: "check-problems", dataset: { field: "check" } },
    el("span", { class: "badge text-bg-danger", title: problems.join("\n") }, "incompatible"),
    ...problems.map((problem) =>
      el("div", { class: "small text-danger incompatible-reason" }, problem),
    ),
  );
}
