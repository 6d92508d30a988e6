// The one way the UI builds DOM. Rendering code never goes through innerHTML with API data:
// text is set as text, so a caller's number or a note cannot become markup.

// h("td", { class: "num", text: "3" }, child, …) → a new element.
// props: class, text, dataset, on<event> handlers, true for boolean attributes, else attributes.
export function h(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// The element with this id.
export const byId = (id) => document.getElementById(id);

// Markup the server rendered and sanitised itself (the talk script, from the approved
// Markdown with raw HTML escaped). It holds no call data; this is the only place the UI
// parses HTML, so nothing else can slip API data in as markup.
export function serverHtml(html) {
  const t = document.createElement("template");
  t.innerHTML = html || "";
  return t.content;
}
