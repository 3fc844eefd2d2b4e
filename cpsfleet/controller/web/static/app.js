// cpsfleet dashboard: sortable tables and filters that apply on change. No dependencies.
"use strict";

function cellKey(row, index, kind) {
  const cell = row.cells[index];
  if (!cell) return "";
  const raw = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
  if (kind === "number") {
    // Counts are written as the reader writes them: "1 234" in French, "1,234" in English.
    const number = parseFloat(raw.replace(/[\s\u00a0\u202f,]/g, ""));
    return Number.isNaN(number) ? Infinity : number;
  }
  return raw.toLocaleLowerCase();
}

function sortTable(table, index, kind, ascending) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows).filter((row) => !row.classList.contains("empty"));
  const direction = ascending ? 1 : -1;
  rows.sort((a, b) => {
    const x = cellKey(a, index, kind);
    const y = cellKey(b, index, kind);
    if (x === y) return 0;
    if (kind === "number") return (x - y) * direction;
    if (x === "") return 1; // blanks last, whichever the direction
    if (y === "") return -1;
    return x.localeCompare(y) * direction;
  });
  rows.forEach((row) => body.appendChild(row));
}

function makeSortable(table) {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((header, index) => {
    const button = header.querySelector("button.sort");
    if (!button) return;
    button.addEventListener("click", () => {
      const ascending = header.getAttribute("aria-sort") !== "ascending";
      headers.forEach((other) => other.removeAttribute("aria-sort"));
      header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      sortTable(table, index, header.dataset.kind || "text", ascending);
    });
  });
}

// The roster's import: the chosen CSV file sent as the body of POST /api/v1/roster, with the
// session's CSRF token; the page then shows the new roster, or every fault the import found.
async function importRoster(event) {
  event.preventDefault();
  const form = event.target;
  const file = form.querySelector("input[type=file]").files[0];
  const status = document.getElementById("roster-status");
  if (!file) return;
  form.querySelector("button").disabled = true;
  status.textContent = form.dataset.sending;
  try {
    const reply = await fetch("/api/v1/roster", {
      method: "POST",
      headers: {
        "Content-Type": "text/csv",
        "X-CSRF-Token": form.dataset.csrf,
        "X-Roster-File": encodeURIComponent(file.name),
      },
      body: file,
    });
    const answer = await reply.json();
    if (reply.ok) {
      window.location.assign(`/roster?done=roster_imported&count=${answer.imported}`);
      return;
    }
    status.textContent = form.dataset.refused;
    const problems = document.createElement("pre");
    problems.className = "problems";
    problems.textContent = typeof answer.detail === "string" ? answer.detail : JSON.stringify(answer.detail);
    status.appendChild(problems);
  } catch (error) {
    status.textContent = `${form.dataset.refused} ${error}`;
  }
  form.querySelector("button").disabled = false;
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("table.sortable").forEach(makeSortable);
  const roster = document.getElementById("roster-form");
  if (roster) roster.addEventListener("submit", importRoster);
  document.querySelectorAll("select[data-autosubmit]").forEach((select) => {
    select.addEventListener("change", () => select.form.submit());
  });
});
