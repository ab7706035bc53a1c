// Progressive enhancement only: "Older rows" appends the next keyset page from the JSON API
// in place (without JavaScript the link opens that page). The table's data-api is the page's
// own filter; the cursor comes from the API's answer.
"use strict";

function cell(tr, text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (text instanceof Node) td.appendChild(text); else td.textContent = text == null ? "" : String(text);
  tr.appendChild(td);
  return td;
}

function traceLink(root, id, org, className) {
  const a = document.createElement("a");
  a.className = className;
  a.href = root + "/trace?" + new URLSearchParams({ id: id, organization: org }).toString();
  a.textContent = id;
  return a;
}

function rowElement(root, r) {
  const tr = document.createElement("tr");
  tr.dataset.id = r.id;
  cell(tr, (r.created_at || "").replace("T", " ").slice(0, 23), "nowrap");
  cell(tr, r.organization_id);
  cell(tr, r.integration_id);
  cell(tr, r.direction);
  cell(tr, r.activity_type + (r.method ? " " + r.method + " " + (r.endpoint || "") : ""));
  const badge = document.createElement("span");
  badge.className = "badge status-" + r.status;
  badge.textContent = r.status;
  cell(tr, badge);
  cell(tr, r.response_time_ms == null ? "" : r.response_time_ms.toFixed(1) + " ms", "num");
  cell(tr, r.status_code, "num");
  cell(tr, r.attempt, "num");
  cell(tr, (r.error_type ? r.error_type + ": " : "") + (r.error_message || ""), "error");
  const ids = cell(tr, "", "ids");
  if (r.request_id) ids.appendChild(traceLink(root, r.request_id, r.organization_id, "trace-request"));
  if (r.run_id) ids.appendChild(traceLink(root, r.run_id, r.organization_id, "trace-run"));
  return tr;
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("activity");
  const next = document.getElementById("next-page");
  if (!table || !next) return;
  next.addEventListener("click", async (event) => {
    event.preventDefault();
    const url = table.dataset.api + "&after=" + encodeURIComponent(next.dataset.cursor);
    const response = await fetch(url, { credentials: "same-origin", headers: { accept: "application/json" } });
    if (!response.ok) { window.location = next.href; return; }
    const page = await response.json();
    const body = table.tBodies[0];
    for (const r of page.rows) body.appendChild(rowElement(table.dataset.root, r));
    if (page.next_cursor) {
      next.dataset.cursor = page.next_cursor;
      next.href = next.href.replace(/after=[^&]*/, "after=" + encodeURIComponent(page.next_cursor));
    } else {
      next.remove();
    }
  });
});
