// The portal's only script: the live reach estimate on the compose page, showing the fields
// of the chosen audience and timing, and the live statistics of a campaign page. Everything
// goes through the public REST API with the session cookie (and the CSRF token for POSTs).
(function () {
  "use strict";
  var csrf = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function api(method, path, body) {
    var init = { method: method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(path, init).then(function (response) {
      return response.json().then(function (json) { return { ok: response.ok, json: json }; });
    });
  }

  function chosen(name) {
    var input = document.querySelector('input[name="' + name + '"]:checked');
    return input ? input.value : "";
  }

  function showChosen(name, attribute) {
    var value = chosen(name);
    document.querySelectorAll("[" + attribute + "]").forEach(function (element) {
      element.hidden = element.getAttribute(attribute) !== value;
    });
  }

  // ---- compose: the fields of the chosen options, and the live reach ----
  var form = document.getElementById("compose-form");
  if (form) {
    var app = document.currentScript.dataset.app;
    var timer = null;
    var asked = 0;
    var target = function () {
      var audience = chosen("audience");
      var value = function (id) { return document.getElementById(id).value.trim(); };
      if (audience === "everyone") return { broadcast: true };
      if (audience === "tags") return value("tags") ? { tags: value("tags") } : null;
      if (audience === "segment") return value("segment") ? { segment: value("segment") } : null;
      if (audience === "topic") return value("topic") ? { topic: value("topic") } : null;
      var items = value("list").split(/[\r\n]+/).map(function (line) {
        return line.split(",")[0].trim();
      }).filter(Boolean);
      if (!items.length) return null;
      return value("list_kind") === "aliases" ? { aliases: items } : { device_ids: items };
    };
    var estimate = function () {
      var reach = document.getElementById("reach");
      var body = target();
      if (!body) { reach.textContent = "choose an audience"; return; }
      var mine = ++asked;
      api("POST", "/v1/apps/" + app + "/audience/estimate", body).then(function (answer) {
        if (mine !== asked) return;
        reach.textContent = answer.ok
          ? answer.json.reach.toLocaleString("en") + " devices"
          : answer.json.error.message;
      }).catch(function () { reach.textContent = "unknown (the API did not answer)"; });
    };
    var refresh = function () {
      showChosen("audience", "data-audience");
      showChosen("timing", "data-timing");
      clearTimeout(timer);
      timer = setTimeout(estimate, 250);
    };
    form.addEventListener("input", refresh);
    form.addEventListener("change", refresh);
    refresh();
  }

  // ---- campaign page: counters, funnel and chart, refreshed every second ----
  var stats = document.getElementById("stats");
  if (stats) {
    var path = "/v1/apps/" + stats.dataset.app + "/campaigns/" + stats.dataset.campaign + "/stats";
    var series = ["delivered", "acked", "opened"];
    var funnel = ["targeted", "delivered", "acked", "opened", "clicked"];
    var plot = null;
    var history = [[]].concat(series.map(function () { return []; }));
    var draw = function (totals) {
      history[0].push(Date.now() / 1000);
      series.forEach(function (name, i) { history[i + 1].push(totals[name] || 0); });
      if (history[0].length > 3600) history.forEach(function (column) { column.shift(); });
      if (!window.uPlot) return;
      if (!plot) {
        var colours = ["#0b5cad", "#1b6e3a", "#a4161a"];
        plot = new uPlot({
          width: Math.min(stats.clientWidth - 40, 900), height: 260,
          series: [{}].concat(series.map(function (name, i) {
            return { label: name, stroke: colours[i], width: 2 };
          })),
          axes: [{}, { label: "devices" }]
        }, history, document.getElementById("chart"));
      } else {
        plot.setData(history);
      }
    };
    var campaignPath = path.replace(/\/stats$/, "");
    var showState = function () {
      api("GET", campaignPath).then(function (answer) {
        if (!answer.ok) return;
        var state = document.getElementById("campaign-state");
        state.textContent = answer.json.state;
        state.className = "state state-" + answer.json.state;
        if (answer.json.state === "finished" || answer.json.state === "cancelled") {
          document.querySelectorAll(".actions").forEach(function (el) { el.hidden = true; });
        }
      }).catch(function () {});
    };
    var update = function () {
      showState();
      api("GET", path).then(function (answer) {
        if (!answer.ok) {
          document.getElementById("stats-updated").textContent = answer.json.error.message;
          return;
        }
        var totals = answer.json.totals;
        Object.keys(totals).forEach(function (name) {
          var cell = document.getElementById("stat-" + name);
          if (cell) cell.textContent = totals[name].toLocaleString("en");
        });
        var base = totals.targeted || 0;
        funnel.forEach(function (name) {
          var share = base ? Math.min(100, (100 * (totals[name] || 0)) / base) : 0;
          document.getElementById("funnel-" + name).style.width = share + "%";
          document.getElementById("share-" + name).textContent = base ? share.toFixed(1) + "%" : "–";
        });
        document.getElementById("stats-updated").textContent =
          "updated " + new Date().toLocaleTimeString("en-GB");
        draw(totals);
      }).catch(function () {
        document.getElementById("stats-updated").textContent = "the API did not answer; retrying";
      });
    };
    update();
    setInterval(update, 1000);
  }
})();
