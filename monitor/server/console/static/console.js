// cvmon console: progressive enhancement only; every page works without this file.
// - charts answer hover, focus and arrow keys with the value and sample count of the nearest
//   window (their data comes from the chart's data-src JSON, fetched once, same origin);
// - a confusion-matrix cell opens its predictions;
// - the controls apply as soon as one changes.
(function () {
  "use strict";
  var tip = null;
  var cache = {};

  function fmt(value, unit) {
    if (value === null || value === undefined || !isFinite(value)) return "no value";
    if (unit === "share") return (value * 100).toFixed(1) + " %";
    if (unit === "ms") return value.toFixed(1) + " ms";
    return Math.abs(value) >= 100 ? value.toFixed(0) : value.toPrecision(3);
  }

  function when(ms, seconds) {
    var d = new Date(ms);
    var text = d.toISOString().slice(0, 16).replace("T", " ");
    if (seconds >= 86400) return text.slice(0, 10) + " (" + Math.round(seconds / 86400) + "d)";
    return text + " UTC (" + Math.round(seconds / 3600) + "h)";
  }

  function load(svg) {
    var src = svg.getAttribute("data-src");
    if (!cache[src]) {
      cache[src] = fetch(src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (r) { if (!r.ok) throw new Error(r.status); return r.json(); });
    }
    return cache[src];
  }

  function times(data) {
    var set = {};
    data.lines.forEach(function (l) { l.points.forEach(function (p) { set[p[0]] = true; }); });
    return Object.keys(set).map(Number).sort(function (a, b) { return a - b; });
  }

  function show(svg, data, index, anchorX) {
    var ts = times(data);
    if (!ts.length) return;
    index = Math.max(0, Math.min(ts.length - 1, index));
    svg._index = index;
    var t = ts[index];
    var rows = ["<b>" + when(t, data.window_seconds) + "</b>"];
    data.lines.forEach(function (l) {
      l.points.forEach(function (p) {
        if (p[0] === t) rows.push(escapeHtml(l.label) + ": " + fmt(p[1], data.unit) + " (n=" + p[2] + ")");
      });
    });
    tip.innerHTML = rows.join("<br>");
    tip.hidden = false;
    var box = svg.getBoundingClientRect();
    var scale = box.width / svg.viewBox.baseVal.width;
    var x0 = +svg.getAttribute("data-x0"), x1 = +svg.getAttribute("data-x1");
    var t0 = +svg.getAttribute("data-t0"), t1 = +svg.getAttribute("data-t1");
    var mid = t + data.window_seconds * 500;
    var px = anchorX !== undefined ? anchorX : box.left + (x0 + (x1 - x0) * (mid - t0) / (t1 - t0)) * scale;
    var left = Math.min(window.scrollX + px + 12, window.scrollX + document.documentElement.clientWidth - tip.offsetWidth - 8);
    tip.style.left = Math.max(window.scrollX + 4, left) + "px";
    tip.style.top = window.scrollY + box.top + 8 + "px";
  }

  function escapeHtml(s) {
    return String(s).replace(/[&<>"']/g, function (c) { return "&#" + c.charCodeAt(0) + ";"; });
  }

  function nearest(svg, data, clientX) {
    var box = svg.getBoundingClientRect();
    var scale = box.width / svg.viewBox.baseVal.width;
    var x0 = +svg.getAttribute("data-x0"), x1 = +svg.getAttribute("data-x1");
    var t0 = +svg.getAttribute("data-t0"), t1 = +svg.getAttribute("data-t1");
    var t = t0 + ((clientX - box.left) / scale - x0) / (x1 - x0) * (t1 - t0) - data.window_seconds * 500;
    var ts = times(data), best = 0;
    for (var i = 1; i < ts.length; i++) if (Math.abs(ts[i] - t) < Math.abs(ts[best] - t)) best = i;
    return best;
  }

  function hide() { if (tip) tip.hidden = true; }

  function wire(svg) {
    svg.addEventListener("pointermove", function (e) {
      load(svg).then(function (data) { show(svg, data, nearest(svg, data, e.clientX), e.clientX); }).catch(hide);
    });
    svg.addEventListener("pointerleave", hide);
    svg.addEventListener("focus", function () {
      load(svg).then(function (data) { show(svg, data, svg._index === undefined ? times(data).length - 1 : svg._index); }).catch(hide);
    });
    svg.addEventListener("blur", hide);
    svg.addEventListener("keydown", function (e) {
      if (e.key !== "ArrowLeft" && e.key !== "ArrowRight" && e.key !== "Escape") return;
      e.preventDefault();
      if (e.key === "Escape") { hide(); return; }
      load(svg).then(function (data) {
        var i = svg._index === undefined ? times(data).length - 1 : svg._index;
        show(svg, data, i + (e.key === "ArrowRight" ? 1 : -1));
      }).catch(hide);
    });
  }

  function heatmap(svg) {
    var href = svg.getAttribute("data-href");
    svg.addEventListener("click", function (e) {
      var box = svg.getBoundingClientRect();
      var scale = box.width / svg.viewBox.baseVal.width;
      var margin = +svg.getAttribute("data-margin"), cell = +svg.getAttribute("data-cell"), n = +svg.getAttribute("data-n");
      var col = Math.floor(((e.clientX - box.left) / scale - margin) / cell);
      var row = Math.floor(((e.clientY - box.top) / scale - margin) / cell);
      if (row >= 0 && col >= 0 && row < n && col < n) window.location.href = href.replace("{t}", row).replace("{p}", col);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tip = document.getElementById("tip");
    if (tip) Array.prototype.forEach.call(document.querySelectorAll("svg.chart[data-src]"), wire);
    Array.prototype.forEach.call(document.querySelectorAll("svg.chart[data-href]"), heatmap);
    Array.prototype.forEach.call(document.querySelectorAll("form.controls select"), function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
  });
})();
