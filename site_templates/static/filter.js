// Filters the rows of a long table as you type: the maintainers page. No framework, no
// inline code (the CSP allows only this file); without JavaScript every row stays shown.
"use strict";
(function () {
  const box = document.getElementById("filter");
  const table = document.getElementById(box ? box.dataset.table : "");
  if (!box || !table) return;
  const rows = Array.from(table.tBodies[0].rows);
  const keys = rows.map((r) => r.textContent.toLowerCase());
  const status = document.getElementById("filter-status");
  box.hidden = false;
  box.parentElement.hidden = false;
  box.addEventListener("input", () => {
    const q = box.value.trim().toLowerCase();
    let shown = 0;
    rows.forEach((r, i) => {
      const hit = !q || keys[i].includes(q);
      r.hidden = !hit;
      if (hit) shown += 1;
    });
    status.textContent = q ? `${shown} of ${rows.length}` : "";
  });
})();
