// ESLint for the Environments page's native ES modules (src/gallery_builder/static/).
// Run by scripts/test from the repository root: eslint --config builder/frontend/eslint.config.js
import js from "@eslint/js";
import globals from "globals";

export default [
  js.configs.recommended,
  {
    files: ["src/gallery_builder/static/**/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: { ...globals.browser },
    },
    rules: {
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
      "no-unused-vars": ["error", { args: "after-used" }],
      // Text goes into the page with textContent / el(), never parsed as HTML.
      "no-restricted-properties": [
        "error",
        { property: "innerHTML", message: "Build elements with el(); never parse text as HTML." },
        { property: "outerHTML", message: "Build elements with el(); never parse text as HTML." },
      ],
    },
  },
];
