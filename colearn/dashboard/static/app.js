// The colearn dashboard: follows /events (server-sent events, one full view per change) and draws the view.
"use strict";
(function () {
  const C = window.ColearnCharts, esc = C.esc, fmt = C.fmt;
  const VOTE_NAMES = { P: "proposer", A: "approve", R: "reject", X: "abstain", "-": "not asked (no proposal)" };
  const VOTE_FILL = { P: "#3b6fd8", A: "#2e9d57", R: "#d64545", X: "#e0b43c", "-": "#c9ccd1" };
  let view = null;

  const tip = document.getElementById("tip");
  window.ColearnTip = {
    show(ev, html) {
      tip.innerHTML = html; tip.hidden = false;
      const w = tip.offsetWidth, h = tip.offsetHeight;
      tip.style.left = Math.min(ev.clientX + 14, window.innerWidth - w - 8) + "px";
      tip.style.top = (ev.clientY + 14 + h > window.innerHeight ? ev.clientY - h - 10 : ev.clientY + 14) + "px";
    },
    hide() { tip.hidden = true; },
  };

  function chip(label, value) { return '<span class="chip">' + esc(label) + " <b>" + esc(value) + "</b></span>"; }

  function renderHeader(v) {
    document.getElementById("title").textContent = v.title || "colearn";
    document.title = "colearn: " + (v.title || "dashboard");
    const status = document.getElementById("status"), known = v.status === "finished" || v.status === "running";
    const waiting = !known && String(v.status).startsWith("waiting");
    status.textContent = known ? v.status : waiting ? "waiting" : "cannot read the folder";
    status.className = "badge " + (known ? v.status : waiting ? "muted" : "error");
    document.querySelectorAll(".metric").forEach((el) => { el.textContent = v.metric || "score"; });
    if (!v.n_learners) { document.getElementById("summary").innerHTML = ""; return; }
    const bytes = v.rounds.map((r) => r.bytes).filter((b) => b !== null);
    let html = chip("rounds", v.rounds_done + (v.rounds_planned !== null && v.rounds_planned !== undefined ? " / " + v.rounds_planned : "")) +
      chip("learners", v.n_learners) +
      chip("accepted", v.accepted + (v.acceptance_rate !== null ? " (" + (100 * v.acceptance_rate).toFixed(0) + "%)" : "")) +
      chip("mean held test " + v.metric, fmt(v.mean_test));
    if (bytes.length) html += chip("bytes / proposal", C.bytes(bytes[bytes.length - 1]));
    if (v.ledger) html += chip("transactions", v.ledger.transactions) + chip("gas", fmt(v.ledger.total_gas));
    if (v.seed !== null && v.seed !== undefined) html += chip("seed", v.seed);
    document.getElementById("summary").innerHTML = html;
  }

  function cellTip(r, i) {
    const code = r.votes[i], items = [["vote", VOTE_NAMES[code]]];
    if (code !== "P" && code !== "-") items.push(["proposal's vote " + view.metric, fmt(r.proposal_vote[i])], ["proposal's test " + view.metric, fmt(r.proposal_test[i])]);
    items.push(["held vote " + view.metric, fmt(r.held_vote[i])], ["held test " + view.metric, fmt(r.held_test[i])]);
    if (r.dp_epsilon[i] !== null) items.push(["DP \u03b5 spent", fmt(r.dp_epsilon[i], 3)]);
    if (r.vote_errors[i]) items.push(["why it abstained", r.vote_errors[i]]);
    if (r.accept_errors[i]) items.push(["accept failed", r.accept_errors[i]]);
    if (r.flagged.includes(i)) items.push(["flagged", "by the protocol this round"]);
    return "<b>round " + r.round + ", learner " + i + "</b>" + C.rows(items);
  }

  function roundTip(r) {
    const items = [["proposer", r.proposer === null ? "-" : r.proposer], ["decision", r.accepted ? "accepted" : "rejected"],
      ["approve / reject / abstain", r.approvals + " / " + r.rejections + " / " + r.abstentions]];
    if (r.reason) items.push(["why", r.reason]);
    items.push(["mean held test " + view.metric, fmt(r.mean_test)], ["bytes", C.bytes(r.bytes)],
      ["time propose / vote / accept", [r.times.propose, r.times.vote, r.times.accept].map(C.duration).join(" / ")],
      ["round time", C.duration(r.times.total)]);
    if (r.flagged.length) items.push(["flagged", r.flagged.join(", ")]);
    const gas = view.ledger && view.ledger.rounds.find((g) => g.round === r.round);
    if (gas) items.push(["transactions / gas", gas.transactions + " / " + fmt(gas.gas)]);
    return "<b>round " + r.round + "</b>" + C.rows(items);
  }

  function renderGrid(v) {
    const el = document.getElementById("grid");
    if (!v.rounds.length) { el.innerHTML = '<p class="muted" id="message">' + esc(v.n_learners ? "no round has finished yet" : v.status || "waiting for the first round...") + "</p>"; return; }
    const n = v.n_learners, rounds = v.rounds, label = 64, top = 30;
    const cw = Math.max(9, Math.min(26, Math.floor((el.clientWidth - label - 8) / rounds.length)));
    const ch = Math.max(12, Math.min(22, cw));
    const width = label + cw * rounds.length + 4, height = top + ch * n + 4;
    const every = Math.max(1, Math.ceil(28 / cw));
    let svg = '<svg id="vote-grid" xmlns="http://www.w3.org/2000/svg" width="' + width + '" height="' + height + '">';
    svg += '<text x="0" y="' + (top - 6) + '">decision</text>';
    for (let i = 0; i < n; i++) {
      const flagged = v.has_flags && v.learners[i] && v.learners[i].flagged ? " \u2691" : "";
      svg += '<text x="0" y="' + (top + i * ch + ch / 2 + 3) + '">learner ' + i + flagged + "</text>";
    }
    rounds.forEach((r, k) => {
      const x = label + k * cw;
      if (r.round % every === 0 || k === 0) svg += '<text x="' + (x + cw / 2) + '" y="9" text-anchor="middle">' + r.round + "</text>";
      const fill = r.accepted ? "#2e9d57" : r.proposer === null || r.reason && r.reason.startsWith("no proposal") ? "#c9ccd1" : "#d64545";
      svg += '<rect class="decision" data-round="' + r.round + '" data-accepted="' + r.accepted + '" x="' + (x + 1) + '" y="' + (top - 16) +
        '" width="' + (cw - 2) + '" height="10" rx="2" fill="' + fill + '"/>';
      for (let i = 0; i < n; i++) {
        const code = r.votes[i], flagged = r.flagged.includes(i);
        svg += '<rect class="cell" data-round="' + r.round + '" data-learner="' + i + '" data-vote="' + code + '"' +
          (flagged ? ' data-flagged="1" stroke="#f07c00" stroke-width="2"' : "") + ' x="' + (x + 1) + '" y="' + (top + i * ch + 1) +
          '" width="' + (cw - 2) + '" height="' + (ch - 2) + '" rx="2" fill="' + VOTE_FILL[code] + '"/>';
        if (code === "P" && cw >= 12) svg += '<text x="' + (x + cw / 2) + '" y="' + (top + i * ch + ch / 2 + 3) + '" text-anchor="middle" class="mark">P</text>';
      }
    });
    el.innerHTML = svg + "</svg>";
  }

  function learnerSeries(v, key, initialKey) {
    return Array.from({ length: v.n_learners }, (_, i) => ({
      name: "learner " + i, color: C.color(i, v.n_learners),
      values: [(v[initialKey] || [])[i] === undefined ? null : v[initialKey][i], ...v.rounds.map((r) => r[key][i])],
    }));
  }

  function renderCharts(v) {
    const xs0 = [-1, ...v.rounds.map((r) => r.round)], xs = v.rounds.map((r) => r.round);
    const meanTest = [mean(v.initial_test || []), ...v.rounds.map((r) => r.mean_test)];
    C.line(document.getElementById("chart-test"), { xs: xs0, series: [...learnerSeries(v, "held_test", "initial_test"),
      { name: "mean", color: "#111", values: meanTest, width: 2.5 }] });
    C.line(document.getElementById("chart-vote"), { xs: xs0, series: learnerSeries(v, "held_vote", "initial_vote") });
    let accepted = 0;
    const rate = v.rounds.map((r, k) => { accepted += r.accepted ? 1 : 0; return accepted / (k + 1); });
    C.line(document.getElementById("chart-accept"), { xs, yMin: 0, yMax: 1, yFormat: (x) => x === null || x === undefined ? "-" : (100 * x).toFixed(0) + "%",
      series: [{ name: "accepted so far", color: "#2e9d57", values: rate, width: 2 }] });
    const phase = (name) => v.rounds.map((r) => r.times[name]);
    const other = v.rounds.map((r) => Math.max(0, r.times.total - r.times.propose - r.times.vote - r.times.accept));
    C.bars(document.getElementById("chart-time"), { xs, yFormat: C.duration, stacks: [
      { name: "propose", color: "#3b6fd8", values: phase("propose") }, { name: "vote", color: "#2e9d57", values: phase("vote") },
      { name: "accept", color: "#8b5cf6", values: phase("accept") }, { name: "other", color: "#c9ccd1", values: other }],
      extra: (i) => [["total", C.duration(v.rounds[i].times.total)]] });
    C.bars(document.getElementById("chart-bytes"), { xs, yFormat: C.bytes, stacks: [{ name: "proposal", color: "#0f766e", values: v.rounds.map((r) => r.bytes) }],
      extra: (i) => [["proposer", v.rounds[i].proposer === null ? "-" : v.rounds[i].proposer]] });
    document.getElementById("dp-section").hidden = !v.has_dp;
    if (v.has_dp) C.line(document.getElementById("chart-dp"), { xs, yMin: 0, yFormat: (x) => fmt(x, 3), series: Array.from({ length: v.n_learners }, (_, i) => ({
      name: "learner " + i, color: C.color(i, v.n_learners), values: v.rounds.map((r) => r.dp_epsilon[i]) })) });
    document.getElementById("ledger-section").hidden = !v.ledger;
    if (v.ledger) {
      const byRound = new Map(v.ledger.rounds.map((g) => [g.round, g]));
      C.bars(document.getElementById("chart-gas"), { xs, yFormat: (x) => fmt(x, 0), stacks: [{ name: "gas", color: "#a16207",
        values: xs.map((x) => (byRound.get(x) || {}).gas || 0) }], extra: (i) => [["transactions", (byRound.get(xs[i]) || {}).transactions || 0]] });
    }
  }

  function mean(values) {
    const known = values.filter((x) => x !== null && x !== undefined);
    return known.length ? known.reduce((a, b) => a + b, 0) / known.length : null;
  }

  function renderLearners(v) {
    const heads = ["learner", "proposed", "accepted", "final vote " + v.metric, "final test " + v.metric];
    if (v.has_dp) heads.push("DP \u03b5 spent / target");
    if (v.has_flags) heads.push("rounds flagged");
    let html = "<tr>" + heads.map((h) => "<th>" + esc(h) + "</th>").join("") + "</tr>";
    for (const l of v.learners) {
      html += '<tr data-learner="' + l.learner + '"><td>' + l.learner + "</td><td>" + l.proposed + "</td><td>" + l.accepted +
        "</td><td>" + fmt(l.final_vote) + "</td><td>" + fmt(l.final_test) + "</td>";
      if (v.has_dp) html += "<td>" + (l.dp ? fmt(l.dp.consumed_epsilon, 2) + " / " + fmt(l.dp.target_epsilon, 2) : "-") + "</td>";
      if (v.has_flags) html += '<td class="' + (l.flagged ? "flagged" : "") + '">' + l.flagged + "</td>";
      html += "</tr>";
    }
    document.getElementById("learners").innerHTML = html;
  }

  function render(v) {
    view = v;
    renderHeader(v);
    renderGrid(v);
    if (v.n_learners) { renderCharts(v); renderLearners(v); }
    document.body.dataset.roundsShown = String(v.rounds.length);
  }

  document.getElementById("grid").addEventListener("mousemove", (ev) => {
    const target = ev.target.closest && ev.target.closest("[data-round]");
    if (!target || !view) { window.ColearnTip.hide(); return; }
    const r = view.rounds.find((x) => x.round === Number(target.dataset.round));
    if (!r) return;
    window.ColearnTip.show(ev, target.dataset.learner !== undefined ? cellTip(r, Number(target.dataset.learner)) : roundTip(r));
  });
  document.getElementById("grid").addEventListener("mouseleave", () => window.ColearnTip.hide());
  window.addEventListener("resize", () => { if (view) render(view); });

  const connection = document.getElementById("connection");
  const events = new EventSource("events");
  events.addEventListener("view", (ev) => render(JSON.parse(ev.data)));
  events.onopen = () => { connection.textContent = "live"; };
  events.onerror = () => {
    connection.textContent = view && view.status === "finished" ? "server stopped" : "reconnecting...";
  };
})();
