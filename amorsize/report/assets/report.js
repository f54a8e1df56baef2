/* amorsize run report: draws the timeline and the curves from the JSON data block.
 * Inlined into every report; no network, no libraries. Data is only ever put into the
 * page as text (textContent) or numeric attributes, never parsed as HTML. */
(function () {
  "use strict";
  var SVGNS = "http://www.w3.org/2000/svg";
  var LANE_H = 24;
  var D = JSON.parse(document.getElementById("amorsize-data").textContent);

  function svg(name, attrs, parent) {
    var node = document.createElementNS(SVGNS, name);
    for (var key in attrs) { node.setAttribute(key, attrs[key]); }
    if (parent) { parent.appendChild(node); }
    return node;
  }
  function text(parent, x, y, content, anchor) {
    var node = svg("text", { x: x, y: y, "text-anchor": anchor || "start" }, parent);
    node.textContent = content;
    return node;
  }
  function fmtSeconds(s) {
    if (s === null || s === undefined) { return "\u2013"; }
    if (s === 0) { return "0 s"; }
    var a = Math.abs(s);
    if (a >= 100) { return s.toFixed(0) + " s"; }
    if (a >= 1) { return s.toFixed(2) + " s"; }
    if (a >= 0.001) { return (s * 1e3).toFixed(1) + " ms"; }
    return (s * 1e6).toFixed(0) + " \u00b5s";
  }
  function fmtNumber(n) {
    var a = Math.abs(n);
    if (a >= 1e6) { return (n / 1e6).toFixed(1) + "M"; }
    if (a >= 1e4) { return (n / 1e3).toFixed(0) + "k"; }
    if (a >= 100 || n === Math.round(n)) { return n.toFixed(0); }
    return n.toFixed(1);
  }
  function niceTicks(lo, hi, count) {
    var span = hi - lo;
    if (!(span > 0)) { return [lo]; }
    var step = Math.pow(10, Math.floor(Math.log10(span / count)));
    var err = span / count / step;
    if (err >= 7.5) { step *= 10; } else if (err >= 3.5) { step *= 5; } else if (err >= 1.5) { step *= 2; }
    var ticks = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) { ticks.push(t); }
    return ticks;
  }

  /* ---------------------------------------------------------------- timeline */
  var B = D.bars;
  var nLanes = D.lanes.length;
  var height = nLanes * LANE_H;
  var full = Math.max(D.span, 1e-6);
  var view = [0, full];
  var plot = document.getElementById("tl-plot");
  var labels = document.getElementById("tl-labels");
  var axisHost = document.getElementById("tl-axis");
  var tip = document.getElementById("tl-tip");
  var detail = document.getElementById("tl-detail");
  var zoomNote = document.getElementById("tl-zoom");

  D.lanes.forEach(function (lane) {
    var row = document.createElement("div");
    row.textContent = lane.label;
    row.title = lane.label;
    labels.appendChild(row);
  });

  var main = svg("svg", { height: height, preserveAspectRatio: "none", role: "img",
    "aria-label": "timeline: one lane per worker, one bar per chunk" }, plot);
  var bg = svg("g", {}, main);
  for (var l = 0; l < nLanes; l++) {
    svg("rect", { "class": "lane-bg", x: 0, y: l * LANE_H + 2, width: full, height: LANE_H - 4 }, bg);
  }
  if (D.agg) {
    var aggGroup = svg("g", {}, main);
    var A = D.agg;
    for (var c = 0; c < A.lane.length; c++) {
      svg("rect", { "class": "bar agg", x: A.slice[c] * A.width, width: A.width,
        y: A.lane[c] * LANE_H + 3, height: LANE_H - 6,
        "fill-opacity": (0.15 + 0.85 * A.busy[c]).toFixed(3), "data-c": c }, aggGroup);
    }
  }
  var barGroup = svg("g", {}, main);
  var order = [];
  for (var i = 0; i < B.id.length; i++) { order.push(i); }
  // failed bars last, so they are drawn on top of anything they touch
  order.sort(function (a, b) { return (B.f[a] & 2) - (B.f[b] & 2) || a - b; });
  var minWidth = full * 1e-6;
  order.forEach(function (k) {
    var cls = "bar chunk";
    if (B.f[k] & 1) { cls += " sampled"; }
    if (B.f[k] & 2) { cls += " failed"; }
    if (B.id[k] % 2) { cls += " alt"; }
    svg("rect", { "class": cls, x: B.s[k], width: Math.max(B.d[k], minWidth),
      y: B.lane[k] * LANE_H + 3, height: LANE_H - 6, "data-i": k,
      "data-chunk-id": B.id[k] }, barGroup);
  });
  D.revisions.forEach(function (r) {
    svg("line", { "class": "rev", x1: r.t, x2: r.t, y1: 0, y2: height }, main);
  });
  var axis = svg("svg", { "class": "axis" }, axisHost);

  function drawAxis() {
    while (axis.firstChild) { axis.removeChild(axis.firstChild); }
    var w = axisHost.clientWidth || 800;
    axis.setAttribute("viewBox", "0 0 " + w + " 22");
    niceTicks(view[0], view[1], Math.max(2, Math.floor(w / 110))).forEach(function (t) {
      var x = (t - view[0]) / (view[1] - view[0]) * w;
      svg("line", { x1: x, x2: x, y1: 0, y2: 5 }, axis);
      text(axis, Math.min(Math.max(x, 18), w - 18), 17, fmtSeconds(t), "middle");
    });
  }
  function applyView() {
    main.setAttribute("viewBox", view[0] + " 0 " + (view[1] - view[0]) + " " + height);
    zoomNote.textContent = view[0] === 0 && view[1] === full ? "" :
      "showing " + fmtSeconds(view[0]) + " \u2013 " + fmtSeconds(view[1]);
    drawAxis();
  }
  function zoom(factor, at) {
    var w = view[1] - view[0];
    var nw = Math.min(full, Math.max(full * 1e-5, w * factor));
    var left = at - (at - view[0]) * nw / w;
    left = Math.min(Math.max(left, 0), full - nw);
    view = [left, left + nw];
    applyView();
  }
  function timeAt(clientX) {
    var box = plot.getBoundingClientRect();
    return view[0] + (clientX - box.left) / Math.max(box.width, 1) * (view[1] - view[0]);
  }
  plot.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    zoom(Math.exp(ev.deltaY * 0.0015), timeAt(ev.clientX));
  }, { passive: false });
  var drag = null;
  plot.addEventListener("mousedown", function (ev) { drag = { x: ev.clientX, view: view.slice() }; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) { return; }
    var box = plot.getBoundingClientRect();
    var dt = (ev.clientX - drag.x) / Math.max(box.width, 1) * (drag.view[1] - drag.view[0]);
    var w = drag.view[1] - drag.view[0];
    var left = Math.min(Math.max(drag.view[0] - dt, 0), full - w);
    view = [left, left + w];
    applyView();
  });
  plot.addEventListener("dblclick", function () { view = [0, full]; applyView(); });
  document.getElementById("tl-in").addEventListener("click", function () {
    zoom(0.5, (view[0] + view[1]) / 2);
  });
  document.getElementById("tl-out").addEventListener("click", function () {
    zoom(2, (view[0] + view[1]) / 2);
  });
  document.getElementById("tl-reset").addEventListener("click", function () {
    view = [0, full]; applyView();
  });
  window.addEventListener("resize", drawAxis);

  function chunkText(k) {
    var lane = D.lanes[B.lane[k]];
    var lines = ["chunk " + B.id[k] + (B.f[k] & 1 ? "  (sampled while deciding)" : "") +
      (B.f[k] & 2 ? "  FAILED" : ""),
      B.n[k] + (B.n[k] === 1 ? " item" : " items") +
        (B.x[k] >= 0 ? "  (input " + B.x[k] + "\u2013" + (B.x[k] + B.n[k] - 1) + ")" : ""),
      lane.label + (B.p[k] >= 0 && B.p[k] !== lane.pid ? ", pid " + B.p[k] : ""),
      "start " + fmtSeconds(B.s[k]) + "  end " + fmtSeconds(B.s[k] + B.d[k]) +
        "  (" + fmtSeconds(B.d[k]) + ")"];
    return lines.join("\n");
  }
  function cellText(c) {
    var A = D.agg;
    var t0 = A.slice[c] * A.width;
    return D.lanes[A.lane[c]].label + "\n" + fmtSeconds(t0) + " \u2013 " + fmtSeconds(t0 + A.width) +
      "\nbusy " + (A.busy[c] * 100).toFixed(0) + " %\n" + A.chunks[c] + " chunks ended, " +
      A.items[c] + " items";
  }
  main.addEventListener("mousemove", function (ev) {
    var t = ev.target;
    var content = null;
    if (t.hasAttribute("data-i")) { content = chunkText(+t.getAttribute("data-i")); }
    else if (t.hasAttribute("data-c")) { content = cellText(+t.getAttribute("data-c")); }
    if (content === null) { tip.style.display = "none"; return; }
    tip.textContent = content;
    tip.style.display = "block";
    var host = plot.getBoundingClientRect();
    var x = ev.clientX - host.left + 14;
    if (x + tip.offsetWidth > host.width) { x = Math.max(0, ev.clientX - host.left - tip.offsetWidth - 10); }
    tip.style.left = (x + labels.offsetWidth) + "px";
    tip.style.top = (ev.clientY - host.top + 14) + "px";
  });
  main.addEventListener("mouseleave", function () { tip.style.display = "none"; });
  var selected = null;
  main.addEventListener("click", function (ev) {
    var t = ev.target;
    if (!t.hasAttribute("data-i")) { return; }
    var k = +t.getAttribute("data-i");
    if (selected) { selected.classList.remove("selected"); }
    selected = t;
    t.classList.add("selected");
    while (detail.firstChild) { detail.removeChild(detail.firstChild); }
    var info = document.createElement("pre");
    info.textContent = chunkText(k);
    detail.appendChild(info);
    if (B.e[k] >= 0) {
      var err = D.errors[B.e[k]];
      var title = document.createElement("div");
      title.className = "failed-title";
      title.textContent = err.type + ": " + err.message;
      var tb = document.createElement("pre");
      tb.className = "traceback";
      tb.textContent = err.traceback || "(no traceback was reported)";
      detail.appendChild(title);
      detail.appendChild(tb);
    }
  });
  applyView();

  /* ---------------------------------------------------------------- curves */
  function chart(hostId, opts) {
    var host = document.getElementById(hostId);
    var W = 640, H = 260, L = 56, R = 14, T = 14, Bm = 34;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": opts.title }, host);
    var ymax = Math.max(opts.ymax, 1e-9);
    function px(t) { return L + t / full * (W - L - R); }
    function py(v) { return H - Bm - v / ymax * (H - T - Bm); }
    niceTicks(0, ymax, 5).forEach(function (v) {
      svg("line", { "class": "tick", x1: L, x2: W - R, y1: py(v), y2: py(v) }, root);
      text(root, L - 6, py(v) + 4, fmtNumber(v), "end");
    });
    niceTicks(0, full, 6).forEach(function (t) {
      text(root, px(t), H - Bm + 16, fmtSeconds(t), "middle");
    });
    text(root, L, H - 4, opts.xlabel);
    svg("rect", { "class": "frame", x: L, y: T, width: W - L - R, height: H - T - Bm }, root);
    D.revisions.forEach(function (r) {
      svg("line", { "class": "revline", x1: px(r.t), x2: px(r.t), y1: T, y2: H - Bm }, root);
    });
    opts.draw(root, px, py);
    return root;
  }
  var C = D.curves;
  function pathOf(xs, ys, px, py) {
    var d = "M" + px(0).toFixed(1) + "," + py(0).toFixed(1);
    for (var i = 0; i < xs.length; i++) {
      d += "L" + px(xs[i]).toFixed(1) + "," + py(ys[i]).toFixed(1);
    }
    return d;
  }
  var tmax = 0;
  C.tput.forEach(function (v) { tmax = Math.max(tmax, v); });
  chart("chart-throughput", { title: "throughput over time", xlabel: "items / s over a rolling " +
      fmtSeconds(C.window) + " window", ymax: tmax * 1.1,
    draw: function (root, px, py) {
      var d = pathOf(C.t, C.tput, px, py);
      svg("path", { "class": "area", d: d + "L" + px(C.t[C.t.length - 1]).toFixed(1) + "," +
        py(0).toFixed(1) + "Z" }, root);
      svg("path", { "class": "line", d: d }, root);
    } });
  var nmax = D.total || 0;
  C.done.forEach(function (v) { nmax = Math.max(nmax, v); });
  D.predicted.forEach(function (p) { nmax = Math.max(nmax, p.n1); });
  chart("chart-items", { title: "items done over time against the prediction",
    xlabel: "items done (line), predicted (dashed)", ymax: nmax * 1.05,
    draw: function (root, px, py) {
      if (D.total) {
        svg("line", { "class": "total", x1: px(0), x2: px(full), y1: py(D.total), y2: py(D.total) }, root);
      }
      D.predicted.forEach(function (p, k) {
        // clipped at the end of the run; a later predicted end is written beside it
        var t1 = Math.min(p.t1, full);
        var n1 = p.t1 > p.t0 ? p.n0 + (p.n1 - p.n0) * (t1 - p.t0) / (p.t1 - p.t0) : p.n1;
        svg("path", { "class": "pred" + (k ? " rev2" : ""), d: "M" + px(p.t0).toFixed(1) + "," +
          py(p.n0).toFixed(1) + "L" + px(t1).toFixed(1) + "," + py(n1).toFixed(1) }, root);
        if (p.t1 > full) {
          text(root, px(full) - 4, py(n1) + 14, p.label + " ends at " + fmtSeconds(p.t1),
            "end").setAttribute("class", "ptext");
        }
      });
      svg("path", { "class": "line", d: pathOf(C.t, C.done, px, py) }, root);
    } });
  // drawn: tests wait for this; the load benchmark reads the times since navigation,
  // here and after the next frame (the page as drawn is on screen)
  var html = document.documentElement;
  html.setAttribute("data-render-ms", performance.now().toFixed(1));
  html.setAttribute("data-rendered", "1");
  requestAnimationFrame(function () {
    setTimeout(function () { html.setAttribute("data-painted-ms", performance.now().toFixed(1)); }, 0);
  });
})();
