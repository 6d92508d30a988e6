// Japanese labels of the domain codes (end causes, outcomes, topics, roles, …). The table is
// the server's (GET /api/labels, kind → code → label), read once at start, so a code cannot
// exist on the server and be missing, or spelt differently, on a screen. Within a kind the
// key order is the display order (outcome buttons, selects).
import { api } from "./api.js";

let table = {};
let loading = null;

// Loads the table once; later calls share the same promise. A failed load may be retried.
export function loadLabels() {
  if (!loading) {
    loading = api("GET", "/api/labels").then(
      (t) => { table = t || {}; return table; },
      (e) => { loading = null; throw e; },
    );
  }
  return loading;
}

// The label of `code` in `kind`; a code the table does not know is shown as itself, never
// blank. No code (null, undefined, "") gives "".
export function label(kind, code) {
  if (code === null || code === undefined || code === "") return "";
  const labels = table[kind];
  return (labels && labels[code]) || String(code);
}

// [code, label] pairs of `kind` in display order.
export function codes(kind) {
  return Object.entries(table[kind] || {});
}
