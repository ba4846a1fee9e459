"""The leaderboard page's style and script, inlined into ``leaderboard.html`` (one file, no network, no fonts).

The script sorts the table by any column (numbers by the cell's ``data-v``, empty cells last either way), filters
rows by the architecture, source and status selects and the name search, restacks the plot's rows to match, and
draws a model's drill-down (per-class bar chart, label-map heatmap) from the JSON data block when its name is
clicked. Plain ES2017 DOM code, so any current browser runs it from a local file.
"""

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
th, td { border: 1px solid #c5d0e0; padding: 3px 7px; text-align: left; vertical-align: top;
         white-space: nowrap; }
#board td:last-child { white-space: normal; min-width: 24em; }
th { background: #dde6f3; }
thead th { position: sticky; top: 0; z-index: 1; }
th button.sort { font: inherit; font-weight: bold; background: none; border: 0; padding: 0; cursor: pointer; }
th[aria-sort="ascending"] button.sort::after { content: " \\25B2"; }
th[aria-sort="descending"] button.sort::after { content: " \\25BC"; }
tr.band-0 td { background: #eef3fb; }
tr.band-1 td { background: #ffffff; }
tr.group-start td { border-top: 3px solid #1f4e9c; }
tr.failed td { background: #fbeeee; color: #7a1f1f; }
tr.stopped td { background: #f4f5f7; color: #5b6270; }
button.model { font: inherit; color: #1f4e9c; background: none; border: 0; padding: 0; cursor: pointer;
               text-decoration: underline; text-align: left; }
.controls { display: flex; flex-wrap: wrap; gap: 1em; align-items: center; margin: 0.5em 0 1em; }
.table-scroll { max-height: 80vh; overflow: auto; border: 1px solid #c5d0e0; width: fit-content; max-width: 100%; }
.plot-scroll { max-height: 60vh; overflow-y: auto; width: fit-content; border: 1px solid #c5d0e0; }
.plot-scroll svg, svg.plot-axis { display: block; }
g.plot-row { cursor: pointer; }
#drilldown { border: 2px solid #1f4e9c; padding: 0.5em 1em 1em; margin: 1.5em 0; }
.charts { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
.heatmap-scroll { max-width: 100%; max-height: 80vh; overflow: auto; }
#decisions { max-width: 70em; }
#decisions p.method { color: #4a5a78; font-size: 12px; }
ul.flags li { color: #7a1f1f; font-weight: bold; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var table = document.getElementById("board");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var column = {};
  ["model", "architecture", "source", "status"].forEach(function (key) {
    column[key] = Number(table.getAttribute("data-" + key + "-column"));
  });
  var details = JSON.parse(document.getElementById("otce-details").textContent);

  function text(row, index) { return row.cells[index].textContent.trim(); }

  function esc(value) {
    return String(value).replace(/[&<>"']/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;"}[c];
    });
  }

  // --- sorting ---------------------------------------------------------------------------------------------------
  var headers = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var sorted = {index: -1, direction: 1};

  function key(row, index) {
    var cell = row.cells[index];
    var raw = cell.getAttribute("data-v");
    if (raw === null) { var value = cell.textContent.trim().toLowerCase(); return value === "" ? null : value; }
    return raw === "" ? null : Number(raw);
  }

  function sortBy(index) {
    var direction = sorted.index === index ? -sorted.direction : 1;
    sorted = {index: index, direction: direction};
    var keyed = rows.map(function (row, order) { return {row: row, key: key(row, index), order: order}; });
    keyed.sort(function (a, b) {
      if ((a.key === null) !== (b.key === null)) { return a.key === null ? 1 : -1; }  // empty cells last
      if (a.key !== null && a.key !== b.key) { return (a.key < b.key ? -1 : 1) * direction; }
      return a.order - b.order;
    });
    keyed.forEach(function (item) { body.appendChild(item.row); });
    headers.forEach(function (th, i) {
      th.setAttribute("aria-sort", i === index ? (direction > 0 ? "ascending" : "descending") : "none");
    });
  }

  headers.forEach(function (th, index) {
    th.querySelector("button.sort").addEventListener("click", function () { sortBy(index); });
  });

  // --- filtering -------------------------------------------------------------------------------------------------
  var search = document.getElementById("f-search");
  var selects = ["architecture", "source", "status"].map(function (name) {
    return {select: document.getElementById("f-" + name), index: column[name]};
  });
  var counter = document.getElementById("shown");
  var plot = document.querySelector("svg.plot-rows");
  var plotRows = Array.prototype.slice.call(document.querySelectorAll("g.plot-row"));
  var rowHeight = plot ? Number(plot.getAttribute("data-row")) : 0;

  function applyFilters() {
    var query = search.value.trim().toLowerCase();
    var visible = {};
    var shown = 0;
    rows.forEach(function (row) {
      var name = text(row, column.model);
      var keep = (query === "" || name.toLowerCase().indexOf(query) >= 0) && selects.every(function (f) {
        return f.select.value === "" || text(row, f.index) === f.select.value;
      });
      row.hidden = !keep;
      if (keep) { shown += 1; visible[name] = true; }
    });
    counter.textContent = shown + " of " + rows.length + " models";
    var y = 0;
    plotRows.forEach(function (g) {
      var keep = visible[g.getAttribute("data-model")] === true;
      g.style.display = keep ? "" : "none";
      if (keep) { g.setAttribute("transform", "translate(0," + y + ")"); y += rowHeight; }
    });
    if (plot) { plot.setAttribute("height", String(Math.max(y, rowHeight))); }
  }

  search.addEventListener("input", applyFilters);
  selects.forEach(function (f) { f.select.addEventListener("change", applyFilters); });

  function classText(c) { return String(c[1]) === String(c[0]) ? String(c[0]) : c[0] + " " + c[1]; }

  // --- drill-down ------------------------------------------------------------------------------------------------
  function barChart(classes) {
    var label = 170, width = 360, bar = 16, gap = 4, top = 22;
    var most = Math.max.apply(null, classes.map(function (c) { return c[3] || 0; }).concat([1e-12]));
    var height = top + classes.length * (bar + gap) + 24;
    var parts = ['<svg class="per-class" width="' + (label + width + 190) + '" height="' + height +
                 '" font-family="sans-serif" font-size="12" role="img">',
                 '<text x="0" y="14" font-weight="bold">contribution to H(Yt|Ys) per target class (nats)</text>'];
    classes.forEach(function (c, i) {
      var y = top + i * (bar + gap);
      var value = c[3] || 0;
      var share = c[2] === null ? "" : (100 * c[2]).toFixed(1) + "% of pixels";
      parts.push('<text x="' + (label - 6) + '" y="' + (y + 12) + '" text-anchor="end">' + esc(classText(c)) +
                 '</text><rect class="bar" x="' + label + '" y="' + y + '" width="' +
                 (width * Math.max(value, 0) / most).toFixed(1) + '" height="' + bar + '" fill="#1f4e9c"><title>' +
                 esc(c[1] + ": contribution " + value + ", " + share) + '</title></rect><text x="' +
                 (label + width + 6) + '" y="' + (y + 12) + '">' + esc(value.toFixed(4) + "  (" + share + ")") +
                 '</text>');
    });
    parts.push('<text x="' + label + '" y="' + (height - 6) + '" fill="#4a5a78">they add up to -OTCE; shorter: ' +
               'the source labels tell this class apart better</text></svg>');
    return parts.join("");
  }

  function heatmap(map) {
    if (!map) { return "<p>No label map was recorded for this model.</p>"; }
    var cell = 20, left = 150, top = 120;
    var width = Math.max(left + map.target.length * cell + 90, 340), height = top + map.source.length * cell + 10;
    var parts = ['<div class="heatmap-scroll"><svg class="label-map" width="' + width + '" height="' + height +
                 '" font-family="sans-serif" font-size="11" role="img">',
                 '<text x="0" y="14" font-weight="bold">label map P(target class | source class)</text>',
                 '<text x="0" y="' + (top - 6) + '" fill="#4a5a78">source \\ target</text>'];
    map.target.forEach(function (t, j) {
      var x = left + j * cell + cell / 2;
      parts.push('<text transform="translate(' + x + ',' + (top - 4) + ') rotate(-60)">' + esc(classText(t)) +
                 '</text>');
    });
    map.source.forEach(function (s, i) {
      var y = top + i * cell;
      parts.push('<text x="' + (left - 4) + '" y="' + (y + 13) + '" text-anchor="end">' + esc(classText(s)) +
                 '</text>');
      map.p[i].forEach(function (p, j) {
        var v = p === null ? 0 : Math.min(Math.max(p, 0), 1);
        var fill = "rgb(" + Math.round(255 - 224 * v) + "," + Math.round(255 - 177 * v) + "," +
                   Math.round(255 - 99 * v) + ")";
        parts.push('<rect class="cell" x="' + (left + j * cell) + '" y="' + y + '" width="' + cell + '" height="' +
                   cell + '" fill="' + fill + '" stroke="#e3e8f0"><title>' + esc("P(" + map.target[j][1] + " | " +
                   s[1] + ") = " + (p === null ? "n/a" : p)) + '</title></rect>');
      });
    });
    parts.push("</svg></div>");
    return parts.join("");
  }

  var panel = document.getElementById("drilldown");

  function showModel(name) {
    var found = details[name];
    panel.querySelector(".drilldown-title").textContent = name;
    panel.querySelector(".charts").innerHTML = found
      ? barChart(found.classes) + heatmap(found.label_map)
      : "<p>No per-class breakdown was recorded for this model.</p>";
    panel.hidden = false;
    panel.scrollIntoView();
  }

  document.addEventListener("click", function (event) {
    var target = event.target.closest("button.model, g.plot-row");
    if (target) { showModel(target.getAttribute("data-model") || target.textContent.trim()); }
  });
  panel.querySelector("button.close").addEventListener("click", function () { panel.hidden = true; });
  document.body.setAttribute("data-ready", "true");
})();
"""
