// Built-in offline API reference: renders /openapi.json as a list of operations (used when no local Swagger UI
// is installed). Plain JS; text is inserted with textContent only.
"use strict";

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text != null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

function refName(schema) {
  if (!schema) return "";
  if (schema.$ref) return schema.$ref.split("/").pop();
  if (schema.type === "array" && schema.items) return `array of ${refName(schema.items) || schema.items.type}`;
  return schema.type || "";
}

function schemaTable(name, schema, root) {
  const box = el("details");
  box.appendChild(el("summary", name));
  const t = el("table");
  const head = el("tr");
  ["field", "type", "required"].forEach((h) => head.appendChild(el("th", h)));
  t.appendChild(head);
  const req = new Set(schema.required || []);
  for (const [k, v] of Object.entries(schema.properties || {})) {
    const row = el("tr");
    const types = v.anyOf ? v.anyOf.map(refName).join(" | ") : refName(v);
    [k, types, req.has(k) ? "yes" : ""].forEach((c) => row.appendChild(el("td", c)));
    t.appendChild(row);
  }
  box.appendChild(t);
  return box;
}

async function main() {
  const api = document.getElementById("api");
  let spec;
  try {
    spec = await (await fetch("openapi.json")).json();
  } catch (e) {
    api.replaceChildren(el("p", `could not load openapi.json: ${e.message}`));
    return;
  }
  document.getElementById("version").textContent = `${spec.info.title} ${spec.info.version} · OpenAPI ${spec.openapi}`;
  api.replaceChildren(el("p", spec.info.description || ""));
  for (const [path, ops] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const sec = el("section");
      sec.appendChild(el("h2", `${method.toUpperCase()} ${path}`));
      if (op.summary) sec.appendChild(el("p", op.summary));
      if (op.description) sec.appendChild(el("pre", op.description));
      if (op.requestBody) {
        sec.appendChild(el("h3", "request body"));
        sec.appendChild(el("p", Object.keys(op.requestBody.content).join(", ")));
      }
      sec.appendChild(el("h3", "responses"));
      const t = el("table");
      for (const [code, r] of Object.entries(op.responses || {})) {
        const row = el("tr");
        const content = r.content && r.content["application/json"];
        [code, r.description || "", content ? refName(content.schema) : ""].forEach((c) => row.appendChild(el("td", c)));
        t.appendChild(row);
      }
      sec.appendChild(t);
      api.appendChild(sec);
    }
  }
  const schemas = (spec.components && spec.components.schemas) || {};
  if (Object.keys(schemas).length) {
    api.appendChild(el("h2", "schemas"));
    for (const [name, s] of Object.entries(schemas)) api.appendChild(schemaTable(name, s, spec));
  }
}

document.addEventListener("DOMContentLoaded", main);
