/* Rerank debugger: plain JavaScript, no dependencies, no build step.
 *
 * Every request goes to the origin that served this page, by relative URL (the page lives at
 * <prefix>/_sidecar/ui, so "../" is the sidecar's root). All text from Elasticsearch or the
 * user is put into the page with textContent, never as HTML.
 */
"use strict";

(function () {
  const ROOT = new URL("../", document.baseURI); // the sidecar's root (keeps any path prefix)
  const api = (path) => new URL(path, ROOT).toString();
  const $ = (id) => document.getElementById(id);

  /* ---------- small DOM helpers (text only) ---------- */

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
  }

  function showError(box, message) {
    box.textContent = message;
    box.hidden = false;
  }

  function hideError(box) {
    box.textContent = "";
    box.hidden = true;
  }

  /* ---------- formatting ---------- */

  function fmtScore(value, digits) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return value.toFixed(digits);
  }

  function fmtMs(value) {
    if (typeof value !== "number" || !isFinite(value)) return "–";
    return value >= 100 ? value.toFixed(0) + " ms" : value.toFixed(1) + " ms";
  }

  function truncate(text, max) {
    const flat = text.replace(/\s+/g, " ").trim();
    return flat.length > max ? flat.slice(0, max - 1).trimEnd() + "…" : flat;
  }

  /** Movement from rank `from` to rank `to` (1-based): "▲3", "▼2", "=" or null. */
  function movement(from, to) {
    if (!Number.isInteger(from) || !Number.isInteger(to)) return null;
    if (from > to) return { text: "▲" + (from - to), cls: "up", label: "up " + (from - to) };
    if (from < to) return { text: "▼" + (to - from), cls: "down", label: "down " + (to - from) };
    return { text: "=", cls: "same", label: "unchanged" };
  }

  /* ---------- Server-Timing ---------- */

  function parseServerTiming(header) {
    const out = {};
    if (!header) return out;
    for (const part of header.split(",")) {
      const bits = part.trim().split(";");
      const name = bits.shift().trim();
      for (const bit of bits) {
        const [key, val] = bit.trim().split("=");
        if (key === "dur" && name) out[name] = parseFloat(val);
      }
    }
    return out;
  }

  function renderTimings(dl, timings, extra) {
    clear(dl);
    const names = [
      ["es", "Elasticsearch"],
      ["queue", "queue"],
      ["model", "model"],
      ["total", "total"],
    ];
    const add = (label, value, key) => {
      const item = el("div", "timing");
      item.dataset.name = key;
      item.appendChild(el("dt", null, label));
      item.appendChild(el("dd", null, fmtMs(value)));
      dl.appendChild(item);
    };
    for (const [key, label] of names) {
      if (key in timings) add(label, timings[key], key);
    }
    for (const [label, value, key] of extra || []) add(label, value, key);
  }

  /* ---------- documents ---------- */

  /** The first non-empty string in a _source value (objects and arrays searched in order). */
  function firstText(value, depth, skip) {
    if (depth > 4 || value === null || value === undefined) return null;
    if (typeof value === "string") {
      return value.trim() && value !== skip ? value : null;
    }
    if (Array.isArray(value)) {
      for (const item of value) {
        const found = firstText(item, depth + 1, skip);
        if (found) return found;
      }
      return null;
    }
    if (typeof value === "object") {
      for (const key of Object.keys(value)) {
        const found = firstText(value[key], depth + 1, skip);
        if (found) return found;
      }
    }
    return null;
  }

  /** Title: _source.title, else the first text field, else _id. Snippet: the next text. */
  function describe(hit) {
    const src = hit && typeof hit._source === "object" ? hit._source : null;
    let title = null;
    if (src) {
      const t = src.title;
      if (typeof t === "string" && t.trim()) title = t;
      else if (Array.isArray(t)) title = firstText(t, 0, null);
      if (!title) title = firstText(src, 0, null);
    }
    const snippet = src ? firstText(src, 0, title) : null;
    return {
      title: title ? truncate(title, 160) : String(hit._id),
      snippet: snippet ? truncate(snippet, 220) : "",
    };
  }

  const keyOf = (hit) => String(hit._index) + "\u0000" + String(hit._id);
  const hitsOf = (body) =>
    body && body.hits && Array.isArray(body.hits.hits) ? body.hits.hits : [];

  function errorText(status, body, fallback) {
    if (body && typeof body === "object") {
      const err = body.error;
      if (err && typeof err === "object") {
        const cause = Array.isArray(err.root_cause) && err.root_cause[0];
        const reason = err.reason || (cause && cause.reason) || err.type;
        if (reason) return `HTTP ${status}: ${reason}`;
      }
      if (typeof err === "string") return `HTTP ${status}: ${err}`;
    }
    return `HTTP ${status}: ${fallback}`;
  }

  /** One request to the sidecar: its status, body (parsed when JSON), headers and time. */
  async function call(url, init) {
    const t0 = performance.now();
    const resp = await fetch(url, { credentials: "same-origin", cache: "no-store", ...init });
    const text = await resp.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (e) {
      body = null;
    }
    return {
      ok: resp.ok,
      status: resp.status,
      body,
      text,
      header: (name) => resp.headers.get(name),
      clientMs: performance.now() - t0,
    };
  }

  function postJSON(url, payload) {
    return call(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(payload),
    });
  }

  /* ---------- service status ---------- */

  async function loadStatus() {
    const dot = $("service-dot");
    const text = $("service-text");
    try {
      const resp = await fetch(api("_sidecar/ready"), { cache: "no-store" });
      const body = await resp.json();
      const model = body && body.model ? body.model : {};
      const parts = [];
      if (model.name) parts.push(String(model.name));
      if (model.device) parts.push(String(model.device));
      if (body.ready) {
        dot.className = "dot ok";
        text.textContent = parts.join(" · ") + " · ready";
      } else {
        dot.className = "dot warn";
        const why = [];
        if (body.es && !body.es.reachable) why.push("Elasticsearch unreachable");
        if (model && !model.warm) why.push("model not ready");
        text.textContent = (parts.length ? parts.join(" · ") + " · " : "") + why.join(", ");
      }
    } catch (e) {
      dot.className = "dot bad";
      text.textContent = "sidecar status unavailable";
    }
  }

  /* ---------- tabs ---------- */

  function setupTabs() {
    const tabs = Array.from(document.querySelectorAll('[role="tab"]'));
    const select = (tab, focus) => {
      for (const t of tabs) {
        const on = t === tab;
        t.setAttribute("aria-selected", on ? "true" : "false");
        t.tabIndex = on ? 0 : -1;
        $(t.getAttribute("aria-controls")).hidden = !on;
      }
      if (focus) tab.focus();
    };
    tabs.forEach((tab, i) => {
      tab.addEventListener("click", () => select(tab, false));
      tab.addEventListener("keydown", (ev) => {
        let next = null;
        if (ev.key === "ArrowRight") next = tabs[(i + 1) % tabs.length];
        else if (ev.key === "ArrowLeft") next = tabs[(i - 1 + tabs.length) % tabs.length];
        else if (ev.key === "Home") next = tabs[0];
        else if (ev.key === "End") next = tabs[tabs.length - 1];
        if (next) {
          ev.preventDefault();
          select(next, true);
        }
      });
    });
    if (location.hash === "#playground") select($("tab-playground"), false);
    if (location.hash === "#evidence") select($("tab-evidence"), false);
  }

  /* ---------- compare ---------- */

  const INDEX_RE = /^[^\s/\\?#"<>|]+$/;

  function validIndex(name) {
    return INDEX_RE.test(name) && name !== "." && name !== "..";
  }

  function parseFields(raw) {
    return raw
      .split(",")
      .map((f) => f.trim())
      .filter((f) => f.length > 0);
  }

  function searchBody(query, fields, size, rerank) {
    // No fields: every field, leniently (numbers and dates are not matched against text), as
    // Elasticsearch's own default; spelled out because not every ES-compatible server has it.
    const mm = fields.length ? { query, fields } : { query, fields: ["*"], lenient: true };
    const body = { query: { multi_match: mm }, size };
    // The reranked side asks for the _rerank annotations (opt-in): each hit's ES rank and
    // scores, and the outcome's model and K, are what this tab shows.
    body.rerank = rerank ? { explain: true } : { enabled: false };
    return body;
  }

  function outcomeClass(status) {
    return ["applied", "cached", "shadow", "skipped", "fallback"].includes(status)
      ? status
      : "unknown";
  }

  function renderHit(hit, rank, opts) {
    const d = describe(hit);
    const li = el("li", "hit");
    li.dataset.key = keyOf(hit);
    li.dataset.id = String(hit._id);
    li.dataset.rank = String(rank);

    li.appendChild(el("span", "rank", rank));
    const mainCol = el("div", "hit-main");
    const titleRow = el("div", "hit-title-row");
    titleRow.appendChild(el("span", "hit-title", d.title));
    mainCol.appendChild(titleRow);
    if (d.snippet) mainCol.appendChild(el("p", "snippet", d.snippet));
    const meta = el("div", "hit-meta");
    meta.appendChild(el("span", "hit-id", hit._id));
    for (const [label, value] of opts.scores) {
      const s = el("span", "score");
      s.appendChild(el("span", "score-label", label));
      s.appendChild(el("span", "score-value", value));
      meta.appendChild(s);
    }
    if (opts.note) meta.appendChild(el("span", "note", opts.note));
    mainCol.appendChild(meta);
    li.appendChild(mainCol);

    const move = el("span", "move");
    if (opts.move) {
      move.textContent = opts.move.text;
      move.classList.add(opts.move.cls);
      move.title = opts.move.label;
      move.setAttribute("aria-label", opts.move.label);
    } else if (opts.moveText) {
      move.textContent = opts.moveText;
      move.classList.add("unknown");
      if (opts.moveTitle) move.title = opts.moveTitle;
    }
    li.appendChild(move);
    return li;
  }

  function linkColumns(lists) {
    const byKey = new Map();
    for (const list of lists) {
      for (const li of list.children) {
        const key = li.dataset.key;
        if (!byKey.has(key)) byKey.set(key, []);
        byKey.get(key).push(li);
      }
    }
    const toggle = (key, on) => {
      for (const li of byKey.get(key) || []) li.classList.toggle("linked", on);
    };
    for (const list of lists) {
      for (const li of list.children) {
        li.addEventListener("mouseenter", () => toggle(li.dataset.key, true));
        li.addEventListener("mouseleave", () => toggle(li.dataset.key, false));
      }
    }
  }

  function annotation(body) {
    if (!body || typeof body !== "object") return null;
    const a = body._rerank;
    return a && typeof a === "object" ? a : null;
  }

  function renderCompare(esRes, rrRes, size) {
    const esHits = hitsOf(esRes.body);
    const rrHits = hitsOf(rrRes.body);
    const rrRank = new Map(rrHits.map((h, i) => [keyOf(h), i + 1]));
    const esRank = new Map(esHits.map((h, i) => [keyOf(h), i + 1]));

    // Outcome.
    const header = rrRes.header("X-Rerank") || "";
    const ann = annotation(rrRes.body);
    const status = (ann && ann.status) || header.split(";")[0].trim() || "none";
    const outcome = $("outcome");
    outcome.textContent = header || status;
    outcome.className = "badge " + outcomeClass(status);
    const detail = [];
    if (ann && ann.model) detail.push("model " + ann.model);
    if (ann && Number.isInteger(ann.reranked)) detail.push(ann.reranked + " hits reranked");
    const total = rrRes.body && rrRes.body.hits && rrRes.body.hits.total;
    if (total && typeof total === "object" && typeof total.value === "number") {
      detail.push((total.relation === "gte" ? "≥ " : "") + total.value + " matches");
    } else if (typeof total === "number") {
      detail.push(total + " matches");
    }
    $("outcome-detail").textContent = detail.join(" · ");
    renderTimings($("timings"), parseServerTiming(rrRes.header("Server-Timing")), [
      ["round trip", rrRes.clientMs, "client"],
    ]);
    $("compare-summary").hidden = false;

    // Elasticsearch column.
    const esList = $("es-list");
    clear(esList);
    esHits.forEach((hit, i) => {
      const rank = i + 1;
      const to = rrRank.get(keyOf(hit));
      esList.appendChild(
        renderHit(hit, rank, {
          scores: [["BM25", fmtScore(hit._score, 3)]],
          move: to ? movement(rank, to) : null,
          moveText: to ? null : "▼",
          moveTitle: `not in the reranked top ${rrHits.length}`,
          note: to ? null : `below reranked top ${rrHits.length}`,
        })
      );
    });
    const esTiming = parseServerTiming(esRes.header("Server-Timing"));
    $("es-meta").textContent =
      "total" in esTiming ? "· answered in " + fmtMs(esTiming.total) : "";

    // Reranked column.
    const rrList = $("rr-list");
    clear(rrList);
    rrHits.forEach((hit, i) => {
      const rank = i + 1;
      const r = hit._rerank && typeof hit._rerank === "object" ? hit._rerank : null;
      const from =
        r && Number.isInteger(r.original_rank) ? r.original_rank : esRank.get(keyOf(hit));
      const scores = [];
      if (r && typeof r.rerank_score === "number") {
        scores.push(["rerank", fmtScore(r.rerank_score, 4)]);
        scores.push(["BM25", fmtScore(r.original_score, 3)]);
      } else {
        scores.push(["score", fmtScore(hit._score, 3)]);
      }
      rrList.appendChild(
        renderHit(hit, rank, {
          scores,
          move: from ? movement(from, rank) : null,
          moveText: from ? null : "new",
          moveTitle: "not in the Elasticsearch results shown",
          note: from && from > esHits.length ? `was #${from}` : null,
        })
      );
    });
    const modelOrder = status === "applied" || status === "cached";
    $("rr-meta").textContent = "· " + (modelOrder ? "model order" : "ES order (" + status + ")");

    linkColumns([esList, rrList]);
    $("compare-results").hidden = false;
    $("compare-empty").hidden = true;
    if (!esHits.length && !rrHits.length) {
      $("compare-empty").textContent = "No documents matched this query.";
      $("compare-empty").hidden = false;
    }
  }

  function setBusy(button, busy, label) {
    button.disabled = busy;
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.textContent = busy ? label : button.dataset.label;
    button.closest("form").setAttribute("aria-busy", busy ? "true" : "false");
  }

  function remember(key, value) {
    try {
      localStorage.setItem("rerank-ui." + key, value);
    } catch (e) {
      /* storage disabled: nothing to remember */
    }
  }

  function recall(key) {
    try {
      return localStorage.getItem("rerank-ui." + key);
    } catch (e) {
      return null;
    }
  }

  async function runCompare(ev) {
    if (ev) ev.preventDefault();
    const errBox = $("compare-error");
    hideError(errBox);
    const index = $("index").value.trim();
    const query = $("query").value.trim();
    const fields = parseFields($("fields").value);
    let size = parseInt($("size").value, 10);
    if (!Number.isInteger(size) || size < 1) size = 10;
    size = Math.min(size, 100);
    if (!index || !validIndex(index)) {
      showError(errBox, "Enter an index name (no spaces or slashes; commas and * are fine).");
      $("index").focus();
      return;
    }
    if (!query) {
      showError(errBox, "Enter a query.");
      $("query").focus();
      return;
    }
    remember("index", index);
    remember("fields", $("fields").value.trim());
    const params = new URLSearchParams({ index, q: query });
    if (fields.length) params.set("fields", fields.join(","));
    if (size !== 10) params.set("size", String(size));
    history.replaceState(null, "", "?" + params.toString());

    const url = api(encodeURIComponent(index).replace(/%2C/gi, ",") + "/_search");
    const button = $("compare-run");
    setBusy(button, true, "Searching…");
    try {
      const [esRes, rrRes] = await Promise.all([
        postJSON(url, searchBody(query, fields, size, false)),
        postJSON(url, searchBody(query, fields, size, true)),
      ]);
      const failed = [rrRes, esRes].find((r) => !r.ok || !r.body);
      if (failed) {
        const raw = truncate(failed.text || "no answer", 300);
        showError(errBox, errorText(failed.status, failed.body, raw));
        $("compare-summary").hidden = true;
        $("compare-results").hidden = true;
        return;
      }
      renderCompare(esRes, rrRes, size);
    } catch (e) {
      showError(errBox, "The sidecar could not be reached: " + (e && e.message ? e.message : e));
    } finally {
      setBusy(button, false);
    }
  }

  let indicesLoaded = false;
  async function loadIndices() {
    if (indicesLoaded) return;
    indicesLoaded = true;
    try {
      const resp = await fetch(api("_cat/indices?format=json&h=index&s=index"), {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!resp.ok) return;
      const rows = await resp.json();
      const list = $("index-list");
      clear(list);
      for (const row of Array.isArray(rows) ? rows : []) {
        const name = row && typeof row.index === "string" ? row.index : null;
        if (name && !name.startsWith(".")) {
          const opt = document.createElement("option");
          opt.value = name;
          list.appendChild(opt);
        }
      }
    } catch (e) {
      /* suggestions are optional */
    }
  }

  /* ---------- playground ---------- */

  async function runPlayground(ev) {
    if (ev) ev.preventDefault();
    const errBox = $("play-error");
    hideError(errBox);
    const query = $("play-query").value.trim();
    const lines = $("play-texts").value.split(/\r?\n/);
    const docs = [];
    const lineNo = [];
    lines.forEach((line, i) => {
      if (line.trim()) {
        docs.push(line.trim());
        lineNo.push(i + 1);
      }
    });
    if (!query) {
      showError(errBox, "Enter a query.");
      $("play-query").focus();
      return;
    }
    if (!docs.length) {
      showError(errBox, "Paste at least one candidate text, one per line.");
      $("play-texts").focus();
      return;
    }
    const button = $("play-run");
    setBusy(button, true, "Reranking…");
    try {
      const res = await postJSON(api("_sidecar/v1/rerank"), {
        query,
        documents: docs,
        return_documents: true,
      });
      if (!res.ok || !res.body || !Array.isArray(res.body.results)) {
        showError(errBox, errorText(res.status, res.body, truncate(res.text || "no answer", 300)));
        $("play-summary").hidden = true;
        clear($("play-list"));
        return;
      }
      const list = $("play-list");
      clear(list);
      res.body.results.forEach((r, i) => {
        const rank = i + 1;
        const idx = Number.isInteger(r.index) ? r.index : -1;
        const text =
          r.document && typeof r.document.text === "string" ? r.document.text : docs[idx];
        const li = el("li", "hit");
        li.dataset.index = String(idx);
        li.dataset.rank = String(rank);
        li.appendChild(el("span", "rank", rank));
        const mainCol = el("div", "hit-main");
        mainCol.appendChild(el("div", "hit-title play-text", text === undefined ? "" : text));
        const meta = el("div", "hit-meta");
        const s = el("span", "score");
        s.appendChild(el("span", "score-label", "score"));
        s.appendChild(el("span", "score-value", fmtScore(r.relevance_score, 4)));
        meta.appendChild(s);
        meta.appendChild(el("span", "note", "line " + (lineNo[idx] || "?")));
        mainCol.appendChild(meta);
        li.appendChild(mainCol);
        const mv = movement(idx + 1, rank);
        const move = el("span", "move");
        if (mv) {
          move.textContent = mv.text;
          move.classList.add(mv.cls);
          move.title = mv.label + " from the input order";
        }
        li.appendChild(move);
        list.appendChild(li);
      });
      const detail = [];
      if (res.body.model) detail.push("model " + res.body.model);
      detail.push(docs.length + (docs.length === 1 ? " text" : " texts"));
      const usage = res.body.usage;
      if (usage && typeof usage.total_tokens === "number") {
        detail.push(usage.total_tokens + " tokens");
      }
      $("play-detail").textContent = detail.join(" · ");
      renderTimings($("play-timings"), parseServerTiming(res.header("Server-Timing")), [
        ["round trip", res.clientMs, "client"],
      ]);
      $("play-summary").hidden = false;
    } catch (e) {
      showError(errBox, "The sidecar could not be reached: " + (e && e.message ? e.message : e));
    } finally {
      setBusy(button, false);
    }
  }

  /* ---------- evidence: the UBI report ---------- */

  const pct = (v) => (typeof v === "number" && isFinite(v) ? (100 * v).toFixed(1) + "%" : "–");
  const dec3 = (v) => fmtScore(v, 3);
  const int = (v) => (Number.isInteger(v) ? String(v) : "–");
  const COHORT_COLUMNS = [
    ["queries", "Queries", int],
    ["queries_with_click", "With a click", int],
    ["first_click_rate", "First click on #1", pct],
    ["mrr", "MRR", dec3],
    ["abandonment_rate", "No click", pct],
    ["zero_result_rate", "No hits", pct],
  ];
  const MODE_NAMES = {
    on: "on (reranked)",
    off: "off (Elasticsearch order)",
    shadow: "shadow (ES order shown, model run)",
    interleave: "interleave (both, team draft)",
  };

  function getAdmin(path, token, params) {
    const url = new URL(api(path));
    for (const [k, v] of Object.entries(params || {})) if (v) url.searchParams.set(k, v);
    return call(url.toString(), {
      headers: { Accept: "application/json", Authorization: "Bearer " + token },
    });
  }

  function renderWins(box, inter) {
    clear(box);
    const parts = [
      ["rerank", inter.rerank_wins, "reranker"],
      ["tie", inter.ties, "ties"],
      ["es", inter.es_wins, "Elasticsearch"],
    ];
    const total = parts.reduce((n, p) => n + (p[1] || 0), 0);
    box.setAttribute(
      "aria-label",
      `reranker ${inter.rerank_wins}, ties ${inter.ties}, Elasticsearch ${inter.es_wins}`
    );
    box.hidden = total === 0;
    for (const [cls, n, name] of parts) {
      if (!n) continue;
      const seg = el("span", "win " + cls, `${name} ${n}`);
      seg.style.flexGrow = String(n); // CSSOM, allowed by the page's CSP
      box.appendChild(seg);
    }
  }

  function renderCohorts(cohorts) {
    const head = $("cohorts-head");
    const body = $("cohorts-body");
    clear(head);
    clear(body);
    head.appendChild(el("th", null, "Cohort"));
    for (const [, title] of COHORT_COLUMNS) head.appendChild(el("th", "num", title));
    const modes = Object.keys(cohorts || {});
    if (!modes.length) {
      const row = el("tr");
      const cell = el("td", "detail", "No query logged in this period.");
      cell.colSpan = COHORT_COLUMNS.length + 1;
      row.appendChild(cell);
      body.appendChild(row);
      return;
    }
    for (const mode of modes) {
      const row = el("tr");
      row.appendChild(el("th", null, MODE_NAMES[mode] || mode));
      for (const [key, , fmt] of COHORT_COLUMNS) row.appendChild(el("td", "num", fmt(cohorts[mode][key])));
      body.appendChild(row);
    }
  }

  function renderEvidence(report, rollout) {
    const inter = report.interleaving || {};
    const verdict = $("verdict");
    const decisive = (inter.rerank_wins || 0) + (inter.es_wins || 0);
    let cls = "shadow";
    let word = "no verdict yet";
    if (decisive && inter.p_value < 0.05) {
      const rerankWins = inter.rerank_wins > inter.es_wins;
      cls = rerankWins ? "applied" : "fallback";
      word = rerankWins ? "reranker wins" : "Elasticsearch wins";
    }
    verdict.className = "badge " + cls;
    verdict.textContent = word;
    $("verdict-detail").textContent =
      `${inter.verdict || ""} · ${int(inter.queries)} interleaved queries`;
    renderWins($("wins"), inter);
    renderCohorts(report.cohorts);
    const clicks = report.clicks || {};
    $("evidence-clicks").textContent =
      `Clicks: ${int(clicks.matched)} on logged hits, ${int(clicks.on_other_objects)} on ` +
      `other objects, ${int(clicks.on_unknown_queries)} on queries not logged in the period.`;
    const tripped = rollout && rollout.guard_tripped;
    $("evidence-guard").textContent = tripped
      ? `The guard turned reranking off until the rules are reloaded: ${tripped}`
      : "The guard has not turned reranking off.";
    $("evidence-result").hidden = false;
  }

  async function runEvidence(ev) {
    if (ev) ev.preventDefault();
    const errBox = $("evidence-error");
    hideError(errBox);
    const token = $("evidence-token").value.trim();
    if (!token) {
      showError(errBox, "The report is part of the admin API: enter the admin token.");
      return;
    }
    const button = $("evidence-run");
    setBusy(button, true, "Loading…");
    try {
      const since = $("evidence-period").value;
      const res = await getAdmin("_sidecar/ubi/report", token, { since });
      if (res.status === 404) {
        showError(
          errBox,
          "No report here: UBI is off on this sidecar (ubi.enabled), or this address is " +
            "not in admin.allow_from."
        );
        return;
      }
      if (!res.ok) {
        showError(errBox, errorText(res.status, res.body, res.text || "the report failed"));
        return;
      }
      const rollout = await getAdmin("_sidecar/admin/rollout", token);
      renderEvidence(res.body, rollout.ok ? rollout.body : null);
    } catch (e) {
      showError(errBox, "The sidecar could not be reached: " + (e && e.message ? e.message : e));
    } finally {
      setBusy(button, false);
    }
  }

  /* ---------- start ---------- */

  function start() {
    setupTabs();
    const params = new URLSearchParams(location.search);
    $("index").value = params.get("index") || recall("index") || "";
    $("query").value = params.get("q") || "";
    $("fields").value = params.get("fields") || recall("fields") || "";
    if (params.get("size")) $("size").value = params.get("size");
    if ($("fields").value) $("compare-form").querySelector("details").open = true;

    $("compare-form").addEventListener("submit", runCompare);
    $("index").addEventListener("focus", loadIndices, { once: true });
    $("play-form").addEventListener("submit", runPlayground);
    $("evidence-form").addEventListener("submit", runEvidence);
    $("play-texts").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) runPlayground(ev);
    });
    loadStatus();
    if (params.get("index") && params.get("q")) runCompare(null);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
