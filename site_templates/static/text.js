// The one readable view of build files: v/text.html?k=log&f=12/log.gz&b=12&n=hello&v=1.0
// (rebuilder.site.paths.text_view). The page holds no copy of any text: that would publish
// every log twice, and a page per build is a file and a folder more per build. It loads
// the results store's file named by `f`, gunzips it when it is gzip'd (a host sends a .gz
// file as it is, or decoded when it says Content-Encoding: the first two bytes tell) and
// shows at most data-max characters. Everything from the query is shown as text only.
"use strict";
(function () {
  const pre = document.getElementById("text");
  if (!pre) return;
  const max = Number(pre.dataset.max) || 4194304;
  const root = pre.dataset.root || "../";
  const cut = document.getElementById("text-cut");
  const q = new URLSearchParams(location.search);
  const kind = q.get("k") || "file";
  const rel = q.get("f") || "";
  const name = q.get("n") || "";
  const build = q.get("b") || "";
  const version = q.get("v") || "";

  // only a file of the results store: plain segments below builds/, nothing that climbs
  // out of it or names another host
  const parts = rel.split("/");
  const safe =
    rel.length > 0 && rel.length < 4096 && !/[\\\0]/.test(rel) &&
    parts.every((p) => p !== "" && p !== "." && p !== "..");
  const src = root + "builds/" + parts.map(encodeURIComponent).join("/");

  const title = name ? `${kind}: ${name} ${version} (build ${build})` : kind;
  document.title = `${title} · rebuilder`;
  document.getElementById("text-title").textContent = title;
  if (name) {
    const back = document.getElementById("text-back");
    const a = back.querySelector("a");
    // a build's files are shared by every profile holding the group: the way back is the
    // search for its name, which lists it in each
    a.href = root + "index.html?q=" + encodeURIComponent(name);
    a.textContent = `${name} ${version}`;
    back.hidden = false;
  }

  // At most `limit` bytes of a stream, and whether that was all of it: a huge (or
  // hostile) file costs no more memory than that.
  async function read(stream, limit) {
    const reader = stream.getReader();
    const chunks = [];
    let size = 0;
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) return { bytes: await new Blob(chunks).arrayBuffer(), whole: true };
      chunks.push(value);
      size += value.length;
    }
    reader.cancel();
    return { bytes: await new Blob(chunks).arrayBuffer(), whole: false };
  }

  async function load() {
    if (!safe) throw new Error("not a results store file");
    for (const id of ["text-plain", "text-stored"]) document.getElementById(id).href = src;
    const r = await fetch(src);
    if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
    // UTF-8 takes at most 4 bytes a character: this many bytes hold `max` characters
    let got = await read(r.body, 4 * max);
    const head = new Uint8Array(got.bytes, 0, Math.min(2, got.bytes.byteLength));
    if (head.length === 2 && head[0] === 0x1f && head[1] === 0x8b) {
      const gunzip = new DecompressionStream("gzip");
      got = await read(new Blob([got.bytes]).stream().pipeThrough(gunzip), 4 * max);
    }
    let text = new TextDecoder("utf-8").decode(got.bytes);
    if (!got.whole || text.length > max) {
      text = text.slice(0, max);
      if (cut) cut.hidden = false;
    }
    pre.textContent = text;
    // "plain text" opens the text as text: the stored file is gzip'd, which a plain host
    // sends as a download; the whole text, decoded here, is in memory already
    const plain = document.getElementById("text-plain");
    if (plain && got.whole && text.length <= max) {
      plain.href = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
    }
  }

  load().catch((e) => {
    pre.textContent = `could not load ${rel}: ${e.message}`;
  });
})();
