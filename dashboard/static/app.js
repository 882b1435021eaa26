// kis-trader dashboard: confirmed controls, live event feed and equity curve (SSE); no build step.
"use strict";
const csrf = document.querySelector('meta[name="csrf-token"]').content;

function say(text) { document.getElementById("message").textContent = text; }

document.querySelectorAll("button[data-post]").forEach((button) => {
  button.addEventListener("click", async () => {
    if (!window.confirm(button.dataset.confirm)) return;
    const response = await fetch(button.dataset.post, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: button.dataset.body,
    });
    const answer = await response.json().catch(() => ({}));
    say(response.ok ? (answer.message || "done") : ("refused: " + (answer.detail || response.status)));
    if (response.ok) setTimeout(() => window.location.reload(), 300);
  });
});

function drawEquity(points) {
  const svg = document.getElementById("equity");
  if (!svg || points.length === 0) return;
  const values = points.map((p) => p.equity_krw);
  const lo = Math.min(...values), hi = Math.max(...values), span = hi - lo || 1;
  const w = 900, h = 240, pad = 10;
  const xy = values.map((v, i) => [
    pad + (points.length === 1 ? 0 : i * (w - 2 * pad) / (points.length - 1)),
    h - pad - (v - lo) * (h - 2 * pad) / span,
  ]);
  svg.innerHTML = '<polyline fill="none" stroke="#2563eb" stroke-width="2" points="' +
    xy.map((p) => p.join(",")).join(" ") + '"/>';
  const last = points[points.length - 1];
  document.getElementById("equity-last").textContent =
    last.time + ": equity " + last.equity_krw.toLocaleString() + " KRW, cash " +
    last.cash_krw.toLocaleString() + " KRW (" + points.length + " snapshots)";
}

if (document.getElementById("feed")) {
  let points = [];
  fetch("/api/equity", { credentials: "same-origin" }).then((r) => r.json()).then((p) => {
    points = p; drawEquity(points);
  });
  const source = new EventSource("/api/stream?after_id=" + (window.LAST_EVENT || 0));
  source.addEventListener("event", (message) => {
    const e = JSON.parse(message.data);
    const row = document.createElement("tr");
    row.className = e.level; row.dataset.id = e.id;
    for (const value of [e.at, e.level, e.kind, e.message]) {
      const cell = document.createElement("td"); cell.textContent = value; row.appendChild(cell);
    }
    const feed = document.getElementById("feed");
    feed.insertBefore(row, feed.rows[1] || null);
  });
  source.addEventListener("equity", (message) => {
    const point = JSON.parse(message.data);
    if (!points.length || points[points.length - 1].time !== point.time) points.push(point);
    drawEquity(points);
  });
}

const compare = document.getElementById("compare");
if (compare && window.RUNS) {
  const render = () => {
    const chosen = window.RUNS.filter((r) =>
      document.querySelector('input.compare[value="' + r.run_id + '"]').checked);
    if (chosen.length < 2) { compare.innerHTML = ""; return; }
    const keys = [...new Set(chosen.flatMap((r) => Object.keys(r.summary)))].sort();
    let html = "<tr><th>metric</th>" + chosen.map((r) => "<th>" + r.run_id.slice(0, 8) + "</th>").join("") + "</tr>";
    for (const k of keys) {
      html += "<tr><td>" + k + "</td>" + chosen.map((r) => "<td class=num>" + (r.summary[k] ?? "-") + "</td>").join("") + "</tr>";
    }
    compare.innerHTML = html;
  };
  document.querySelectorAll("input.compare").forEach((box) => box.addEventListener("change", render));
}
