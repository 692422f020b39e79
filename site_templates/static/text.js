// A build file's readable view (v/<distro>/builds/<id>/*.html). The page holds no copy of
// the text: that would publish every log twice. It loads the results store's file,
// gunzips it when it is gzip'd (a host sends a .gz file as it is, or decoded when it says
// Content-Encoding: the first two bytes tell) and shows at most data-max characters.
"use strict";
(function () {
  const pre = document.getElementById("text");
  if (!pre || !pre.dataset.src) return;
  const max = Number(pre.dataset.max) || 4194304;
  const cut = document.getElementById("text-cut");

  // At most `limit` bytes of a stream, and whether that was all of it: a huge (or
  // hostile) file costs no more memory than that.
  async function read(stream, limit) {
    const reader = stream.getReader();
    const parts = [];
    let size = 0;
    while (size < limit) {
      const { done, value } = await reader.read();
      if (done) return { bytes: await new Blob(parts).arrayBuffer(), whole: true };
      parts.push(value);
      size += value.length;
    }
    reader.cancel();
    return { bytes: await new Blob(parts).arrayBuffer(), whole: false };
  }

  async function load() {
    const r = await fetch(pre.dataset.src);
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
    pre.textContent = `could not load ${pre.dataset.src}: ${e.message}`;
  });
})();
