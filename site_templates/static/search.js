// Package and maintainer search for the dashboard: no framework, no inline code (the pages' CSP forbids it).
//
// The index is cut into prefix shards (see rebuilder/site/search.py): the manifest
// search/index.json is fetched once, then each query needs only the one shard of its
// longest known prefix, a few kilobytes. Results are built with textContent and DOM
// nodes, never parsed as markup: package names come from repository indexes.
"use strict";

(function () {
  const input = document.getElementById("q");
  const form = document.getElementById("search-form");
  const note = document.getElementById("search-status");
  const table = document.getElementById("search-results");
  const body = document.getElementById("search-body");
  if (!input || !form || !note || !table || !body) return;

  const root = input.dataset.root || "";
  const MAX_SHOWN = 100;
  const STATUSES = new Set(["GOOD", "BAD", "FAIL", "UNKWN"]);
  const MAINTAINER = -1; // the suite of a maintainer's entry: its page is the entry's page
  let manifest = null; // {nodes: Map(prefix -> [shard, count, leaf]), suites: [...]}
  let manifestLoad = null;
  const shards = new Map(); // shard number -> Promise of its entries
  let latest = 0; // the newest query: answers to older ones are dropped

  function getJSON(path) {
    return fetch(root + path).then(function (r) {
      if (!r.ok) throw new Error(path + ": HTTP " + r.status);
      return r.json();
    });
  }

  function loadManifest() {
    if (!manifestLoad) {
      manifestLoad = getJSON("search/index.json").then(function (m) {
        manifest = { nodes: new Map(Object.entries(m.nodes)), suites: m.suites };
        return manifest;
      });
      manifestLoad.catch(function () { manifestLoad = null; }); // retry on the next key
    }
    return manifestLoad;
  }

  function loadShard(n) {
    if (!shards.has(n)) {
      const p = getJSON("search/" + n + ".json").then(function (s) { return s.e; });
      p.catch(function () { shards.delete(n); });
      shards.set(n, p);
    }
    return shards.get(n);
  }

  // The entries answering q: from a leaf shard all those starting with q; from an inner
  // shard (a prefix with many names) its first entries, when q is that prefix.
  async function lookup(q) {
    const m = await loadManifest();
    for (let i = q.length; i >= 0; i--) {
      const prefix = q.slice(0, i);
      const node = m.nodes.get(prefix);
      if (!node) continue;
      const [shard, count, leaf] = node;
      if (leaf) {
        const entries = await loadShard(shard);
        return { entries: entries.filter(function (e) { return e[0].toLowerCase().startsWith(q); }), more: 0 };
      }
      if (prefix !== q) return { entries: [], more: 0 }; // no name goes on with q's next letter
      const entries = await loadShard(shard);
      return { entries: entries, more: count - entries.length };
    }
    return { entries: [], more: 0 };
  }

  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function show(found, started, q) {
    const rows = document.createDocumentFragment();
    const shown = found.entries.slice(0, MAX_SHOWN);
    let people = 0;
    for (const e of shown) {
      const [name, version, status, suiteIndex, page, source] = e;
      const person = suiteIndex === MAINTAINER;
      const suite = person ? ["maintainer", ""] : manifest.suites[suiteIndex];
      if (!suite) continue;
      if (person) people++;
      const tr = document.createElement("tr");
      const a = document.createElement("a");
      a.href = page.startsWith("/") ? root + page.slice(1)
        : root + suite[2] + "pkg/" + (page || source || name) + ".html";
      a.textContent = name;
      const first = cell(tr, "");
      first.appendChild(a);
      if (source) {
        const small = document.createElement("span");
        small.className = "meta";
        small.textContent = " (from " + source + ")";
        first.appendChild(small);
      }
      cell(tr, version);
      cell(tr, status, STATUSES.has(status) ? "s-" + status : "");
      cell(tr, suite[0]);
      cell(tr, suite[1]);
      rows.appendChild(tr);
    }
    body.replaceChildren(rows);
    table.hidden = shown.length === 0;
    const total = found.entries.length + found.more;
    const packages = total - people;
    let text = total === 0 ? "No package or maintainer name starts with that."
      : packages + (packages === 1 ? " package" : " packages");
    if (people) text += ", " + people + (people === 1 ? " maintainer" : " maintainers");
    if (total > shown.length) text += ", the first " + shown.length + " shown: type more to narrow";
    note.textContent = text;
    note.dataset.q = q; // what was answered, and how fast (ms): the browser test reads these
    note.dataset.ms = (performance.now() - started).toFixed(1);
  }

  async function search() {
    const started = performance.now();
    const mine = ++latest;
    const q = input.value.trim().toLowerCase();
    if (!q) {
      body.replaceChildren();
      table.hidden = true;
      note.textContent = "";
      return;
    }
    try {
      const found = await lookup(q);
      if (mine === latest) show(found, started, q);
    } catch (err) {
      if (mine === latest) note.textContent = "Search is unavailable: " + err.message;
    }
  }

  input.addEventListener("input", search);
  input.addEventListener("focus", function () { loadManifest().catch(function () {}); }, { once: true });
  form.addEventListener("submit", function (ev) {
    ev.preventDefault(); // Enter opens the first result
    const first = body.querySelector("a");
    if (first) window.location.href = first.href;
  });
  const given = new URLSearchParams(window.location.search).get("q");
  if (given) {
    input.value = given;
    search();
  }
})();
