// redisbatch dashboard: live updates over server-sent events.
// Every value from the server is put in place as text (textContent), never as HTML.
"use strict";

(function () {
  const body = document.body;
  const live = document.querySelector("[data-bind=live]");

  function setLive(text, ok) {
    if (!live) return;
    live.textContent = text;
    live.classList.toggle("off", !ok);
  }

  function cell(tag, text, cls) {
    const el = document.createElement(tag);
    if (text !== undefined) el.textContent = text;
    if (cls) el.className = cls;
    return el;
  }

  function bar(root, view) {
    const el = root.querySelector("[data-bind=bar]");
    if (el) {
      el.className = "state-" + view.state;
      el.value = view.percent;
      el.textContent = view.percent_text;
    }
    const pct = root.querySelector("[data-bind=percent_text]");
    if (pct) pct.textContent = view.percent_text;
  }

  function newBar(view) {
    const td = cell("td", undefined, "progress");
    const progress = document.createElement("progress");
    progress.max = 100;
    progress.setAttribute("data-bind", "bar");
    td.appendChild(progress);
    const pct = cell("span", "", "pct");
    pct.setAttribute("data-bind", "percent_text");
    td.appendChild(pct);
    bar(td, view);
    return td;
  }

  function stream(url, onUpdate, onEnd) {
    const source = new EventSource(url);
    source.addEventListener("open", () => setLive("live", true));
    source.addEventListener("error", () => setLive("reconnecting…", false));
    source.addEventListener("update", (e) => onUpdate(JSON.parse(e.data)));
    source.addEventListener("end", () => {
      source.close();
      setLive("final", true);
      if (onEnd) onEnd();
    });
    return source;
  }

  // ------------------------------------------------------------ jobs list

  function jobsPage() {
    const tbody = document.getElementById("jobs");
    const page = body.dataset.pageNo || "1";
    stream("/api/jobs/stream?page=" + encodeURIComponent(page), (data) => {
      const rows = data.jobs.map((view) => {
        const tr = document.createElement("tr");
        tr.dataset.job = view.job_id;
        const name = cell("td", undefined, "job");
        const link = cell("a", view.job_id);
        link.href = view.url;
        name.appendChild(link);
        tr.appendChild(name);
        const state = cell("td");
        state.appendChild(cell("span", view.state, "state state-" + view.state));
        tr.appendChild(state);
        tr.appendChild(newBar(view));
        for (const key of ["done", "rate", "eta", "workers", "failed"]) {
          tr.appendChild(cell("td", view[key], "num"));
        }
        tr.appendChild(cell("td", view.created));
        return tr;
      });
      tbody.replaceChildren(...rows);
      const count = document.getElementById("count");
      if (count) {
        count.textContent = data.total.toLocaleString("en-US") + (data.total === 1 ? " job" : " jobs");
      }
    });
  }

  // ------------------------------------------------------------ one job

  function jobPage() {
    const jobId = body.dataset.job;
    const q = "?id=" + encodeURIComponent(jobId);
    let failedCount = null;
    let source = null;

    function fill(rows, tbodyId, columns) {
      const tbody = document.getElementById(tbodyId);
      tbody.replaceChildren(
        ...rows.map((row) => {
          const tr = document.createElement("tr");
          for (const [key, cls] of columns) tr.appendChild(cell("td", row[key], cls));
          return tr;
        })
      );
    }

    async function loadFailed() {
      const reply = await fetch("/api/job/failed" + q + "&format=json&limit=50");
      if (!reply.ok) return;
      const data = await reply.json();
      document.getElementById("failed-shown").textContent = String(data.records.length);
      fill(data.records, "failed", [
        ["row", "num"], ["line", "num"], ["codes"], ["errors"], ["values", "values"],
      ]);
    }

    // The failed records are read again when their count changes, at most every 3 s.
    let failedTimer = null;
    let failedAt = 0;
    function refreshFailed() {
      if (failedTimer) return;
      failedTimer = setTimeout(() => {
        failedTimer = null;
        failedAt = Date.now();
        loadFailed();
      }, Math.max(0, failedAt + 3000 - Date.now()));
    }

    function update(data) {
      const view = data.job;
      bar(document, view);
      for (const el of document.querySelectorAll("[data-bind]")) {
        const key = el.dataset.bind;
        if (key.startsWith("batches.")) {
          el.textContent = view.batches[key.slice(8)].toLocaleString("en-US");
        } else if (key === "state") {
          el.textContent = view.state;
          el.className = "state state-" + view.state;
        } else if (key in view && typeof view[key] === "string") {
          el.textContent = view[key];
        }
      }
      fill(data.events, "events", [["time"], ["type"], ["batch", "num"], ["detail"]]);
      if (view.failed_count !== failedCount) {
        const first = failedCount === null;
        failedCount = view.failed_count;
        if (!first) refreshFailed();
      }
    }

    function connect() {
      if (source) source.close();
      source = stream("/api/job/stream" + q, update, loadFailed);
    }
    connect();

    const result = document.getElementById("action-result");
    const tokenInput = document.getElementById("token");
    if (tokenInput) tokenInput.value = sessionStorage.getItem("redisbatch-token") || "";
    for (const button of document.querySelectorAll("button[data-action]")) {
      button.addEventListener("click", async () => {
        const action = button.dataset.action;
        const headers = {};
        const token = tokenInput ? tokenInput.value.trim() : "";
        if (token) {
          headers["X-Redisbatch-Token"] = token;
          sessionStorage.setItem("redisbatch-token", token);
        }
        const reply = await fetch("/api/job/" + action + q, { method: "POST", headers });
        let data = {};
        try { data = await reply.json(); } catch (e) { data = {}; }
        if (reply.ok) {
          result.className = "";
          result.textContent = action + ": " + (data.changed ? "done" : "nothing changed") +
            " (job " + data.state + ")";
          connect();
        } else {
          result.className = "refused";
          result.textContent = action + " refused (" + reply.status + "): " + (data.error || "");
        }
      });
    }
  }

  if (body.dataset.page === "jobs") jobsPage();
  else if (body.dataset.page === "job") jobPage();
})();
