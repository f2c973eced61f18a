// The oms dashboard. Plain JavaScript, no framework, no build step: each page's shell says which
// view it is (body data-page); this script reads OrderService's JSON routes with the session cookie
// and draws (an admin's every page: a banner while a service's database is down, from GET /databases).
// Every text from the server goes in with textContent, never as markup. A call that
// changes something sends the session's CSRF value (the oms_csrf cookie) as X-CSRF-Token.
"use strict";

const body = document.body;
const view = document.getElementById("view");
const message = document.getElementById("message");
const isAdmin = body.dataset.role === "admin";
const SVG = "http://www.w3.org/2000/svg";

// -- small helpers ------------------------------------------------------------------------------

function el(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "onclick") node.addEventListener("click", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svgEl(tag, attributes, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

function say(text, info) {
  message.textContent = text || "";
  message.className = info ? "info" : "";
}

async function call(method, path, payload, signal) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = cookie("oms_csrf");
  }
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: payload === undefined ? (method === "GET" ? undefined : "{}") : JSON.stringify(payload),
    signal,
  });
  const type = response.headers.get("content-type") || "";
  const answer = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const problem = typeof answer === "object" ? answer : { title: response.statusText, detail: answer };
    const error = new Error(`${response.status} ${problem.title}: ${problem.detail || ""}`);
    error.status = response.status;
    throw error;
  }
  return answer;
}

function money(amount, currency) {
  if (amount === null || amount === undefined) return "–";
  return `${(amount / 100).toFixed(2)} ${currency || ""}`.trim();
}

function status(text) {
  return el("span", { class: `status ${text}` }, text);
}

function time(stamp) {
  return stamp ? stamp.replace("T", " ").replace(/(\.\d+)?(Z|\+00:00)$/, "") : "";
}

function table(headers, rows) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))), rows);
}

function orderLink(id) {
  return el("a", { href: `/ui/orders/${encodeURIComponent(id)}` }, el("code", {}, id));
}

function pause(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); });
  });
}

// A click handler that runs work(event) with its button disabled meanwhile, and says what went wrong.
function clicked(work) {
  return async (event) => {
    const target = event.currentTarget;
    target.disabled = true;
    try {
      await work(event);
    } catch (error) {
      say(error.message);
    } finally {
      target.disabled = false;
    }
  };
}

function every(ms, work) {
  let busy = false;
  const tick = async () => {
    if (busy) return;
    busy = true;
    try {
      await work();
    } catch (error) {
      say(error.message);
    } finally {
      busy = false;
    }
  };
  tick();
  return setInterval(tick, ms);
}

// -- orders: the live list, counts by status, the chart -----------------------------------------

const PAGE = 50; // orders on a page of the orders list
const STATUSES = ["PENDING", "PLACED", "PAYMENT_FAILED", "OUT_OF_STOCK", "REJECTED", "CANCELLED", "COMPENSATION_FAILED"];

function ordersView() {
  const filter = el("select", { id: "status-filter", "aria-label": "status" },
    el("option", { value: "" }, "every status"), STATUSES.map((s) => el("option", { value: s }, s)));
  const search = el("input", {
    id: "search", type: "search", "aria-label": "search",
    placeholder: isAdmin ? "order id (ord_…) or customer id" : "order id (ord_…)",
  });
  const counts = el("div", { class: "counts", id: "counts" });
  const chart = el("div", { class: "chart panel", id: "chart" });
  const rows = el("tbody", { id: "orders" });
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ["order", "status", "reason", "customer", "total", "check", "created"].map((h) => el("th", {}, h)))),
    rows);
  // Pages of PAGE orders, newest first: each page after the first starts at the `next` of the one
  // before (a cursor: the rows on a page stay as they are while newer orders come in above).
  const newer = el("button", { id: "newer" }, "← Newer");
  const older = el("button", { id: "older" }, "Older →");
  const position = el("span", { id: "position", class: "muted", "aria-live": "polite" });
  const pager = el("div", { class: "toolbar pager", id: "pager", hidden: true }, newer, position, older);
  view.append(el("div", { class: "toolbar" }, filter, search, counts), chart, table, pager);

  let seen = new Map(); // id -> status|updated_at, to mark rows that are new or changed
  let cursors = [null]; // where each page up to the one shown starts: null is the newest
  let following = null; // the `next` of the page shown, when there are older orders
  const shown = () => JSON.stringify([filter.value, search.value.trim(), cursors]);
  const refresh = async () => {
    const asked = shown();
    const query = search.value.trim();
    let orders;
    let after = null;
    if (query.startsWith("ord_")) {
      try {
        orders = [await call("GET", `/orders/${encodeURIComponent(query)}`)];
      } catch (error) {
        if (error.status !== 404 && error.status !== 422) throw error;
        orders = [];
      }
      if (filter.value) orders = orders.filter((o) => o.status === filter.value);
    } else {
      const params = new URLSearchParams({ limit: String(PAGE) });
      if (filter.value) params.set("status", filter.value);
      if (query && isAdmin) params.set("customer_id", query);
      if (cursors.at(-1)) params.set("next", cursors.at(-1));
      const page = await call("GET", `/orders?${params}`);
      orders = page.items;
      after = page.next || null;
    }
    if (asked !== shown()) return; // the filter, the search or the page changed meanwhile: its own refresh draws
    following = after;
    const first = (cursors.length - 1) * PAGE + 1;
    position.textContent = orders.length ? `orders ${first} to ${first + orders.length - 1}, newest first` : "";
    newer.disabled = cursors.length === 1;
    older.disabled = !following;
    pager.hidden = cursors.length === 1 && !following;
    const next = new Map();
    rows.replaceChildren(...orders.map((order) => {
      const mark = `${order.status}|${order.updated_at}`;
      next.set(order.id, mark);
      const fresh = seen.size > 0 && seen.get(order.id) !== mark;
      return el("tr", { class: fresh ? "fresh" : null, "data-id": order.id, "data-status": order.status },
        el("td", {}, el("a", { href: `/ui/orders/${encodeURIComponent(order.id)}` }, el("code", {}, order.id))),
        el("td", {}, status(order.status)),
        el("td", {}, order.failure_reason || order.pending_reason || ""),
        el("td", {}, order.customer_id),
        el("td", { class: "num" }, money(order.total_amount, order.currency)),
        el("td", {}, order.inventory_check || "–"),
        el("td", {}, time(order.created_at)));
    }));
    if (!orders.length) rows.append(el("tr", {}, el("td", { colspan: 7, class: "muted" }, "no orders")));
    seen = next.size ? next : new Map([["", ""]]);
    say("");
  };
  const turn = (to) => () => {
    cursors = to();
    seen = new Map(); // another page's rows are not news
    refresh().catch((error) => say(error.message));
  };
  newer.addEventListener("click", turn(() => cursors.slice(0, -1)));
  older.addEventListener("click", turn(() => [...cursors, following]));
  filter.addEventListener("change", turn(() => [null]));
  search.addEventListener("input", turn(() => [null]));
  every(1000, refresh);

  every(2000, async () => {
    const figures = await call("GET", "/stats/orders?minutes=5");
    counts.replaceChildren(
      el("span", { class: "count" }, el("b", {}, figures.total), "orders"),
      ...Object.entries(figures.counts).filter(([, n]) => n > 0)
        .map(([name, n]) => el("span", { class: "count", "data-status": name }, el("b", {}, n), status(name))));
    drawChart(chart, figures);
  });
}

function drawChart(box, figures) {
  const width = Math.max(600, box.clientWidth - 34), height = 170, left = 44, right = 56, top = 12, bottom = 22;
  const buckets = figures.buckets;
  const plot = width - left - right, tall = height - top - bottom;
  const rateMax = Math.max(1, ...buckets.map((b) => b.orders_per_second));
  const msMax = Math.max(1, ...buckets.map((b) => b.p99_ms || 0));
  const step = plot / Math.max(1, buckets.length);
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "orders per second and saga duration" });
  svg.append(svgEl("line", { x1: left, y1: top + tall, x2: left + plot, y2: top + tall, stroke: "#999" }));
  svg.append(svgEl("text", { x: left - 6, y: top + 8, "text-anchor": "end", "font-size": 11, fill: "#2456c7" }, rateMax.toFixed(1)));
  svg.append(svgEl("text", { x: left - 6, y: top + tall, "text-anchor": "end", "font-size": 11, fill: "#2456c7" }, "0"));
  svg.append(svgEl("text", { x: left + plot + 6, y: top + 8, "font-size": 11, fill: "#b42318" }, `${Math.round(msMax)} ms`));
  buckets.forEach((b, i) => {
    const h = (b.orders_per_second / rateMax) * tall;
    const bar = svgEl("rect", { x: left + i * step + 1, y: top + tall - h, width: Math.max(1, step - 2), height: h, fill: "#c7d6fb" });
    bar.append(svgEl("title", {}, `${time(b.start)}: ${b.orders} orders, ${b.orders_per_second}/s, p50 ${b.p50_ms ?? "–"} ms, p99 ${b.p99_ms ?? "–"} ms`));
    svg.append(bar);
  });
  for (const [key, color] of [["p50_ms", "#157f3b"], ["p99_ms", "#b42318"]]) {
    const points = buckets.map((b, i) => (b[key] === null ? null : `${left + i * step + step / 2},${top + tall - (b[key] / msMax) * tall}`));
    const runs = points.join(" ").split(/\s*null\s*/).filter((run) => run.trim());
    for (const run of runs) svg.append(svgEl("polyline", { points: run.trim(), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const point of points.filter((p) => p !== null)) {
      const [x, y] = point.split(",");
      svg.append(svgEl("circle", { cx: x, cy: y, r: 2.5, fill: color }));
    }
  }
  const first = buckets[0], last = buckets[buckets.length - 1];
  svg.append(svgEl("text", { x: left, y: height - 4, "font-size": 11, fill: "#667085" }, time(first && first.start)));
  svg.append(svgEl("text", { x: left + plot, y: height - 4, "font-size": 11, "text-anchor": "end", fill: "#667085" }, "now"));
  const now = last || { orders_per_second: 0, p50_ms: null, p99_ms: null };
  box.replaceChildren(
    el("div", { class: "legend" },
      el("span", { class: "rate" }, "■ orders/s"), " (bars, per 10 s)   ",
      el("span", { class: "p50" }, "— p50"), "  ", el("span", { class: "p99" }, "— p99"), " saga duration   ·   last 10 s: ",
      `${now.orders_per_second}/s, p50 ${now.p50_ms ?? "–"} ms, p99 ${now.p99_ms ?? "–"} ms`),
    svg);
}

// -- one order: facts, its diagram drawn, its saga log, its actions ------------------------------

function orderView() {
  const id = body.dataset.order;
  const facts = el("dl", { class: "facts", id: "facts" });
  const actions = el("div", { class: "actions toolbar", id: "actions" });
  const diagram = el("div", { class: "diagram panel", id: "diagram" });
  const steps = el("tbody", { id: "steps" });
  const items = el("tbody", { id: "items" });
  view.append(
    el("div", { class: "panel" }, facts), actions,
    el("h2", {}, "Items"), el("table", {}, el("thead", {}, el("tr", {}, ["sku", "name", "quantity", "unit price", "amount"].map((h) => el("th", {}, h)))), items),
    el("h2", {}, "Sequence diagram"), diagram,
    el("h2", {}, "Saga log"),
    el("table", {}, el("thead", {}, el("tr", {}, ["#", "saga", "kind", "step", "outcome", "reason", "try", "started", "ms", "detail"].map((h) => el("th", {}, h)))), steps));
  const history = orderEvents(id);
  view.append(...history.section);
  every(1000, history.refresh);

  let drawn = "";
  const act = (what) => async (event) => {
    event.target.disabled = true;
    try {
      const order = await call("POST", `/orders/${encodeURIComponent(id)}/${what}`);
      say(`${what}: the order is ${order.status}`, true);
      drawn = "";
      await refresh();
    } catch (error) {
      say(error.message);
    } finally {
      event.target.disabled = false;
    }
  };

  const refresh = async () => {
    const order = await call("GET", `/orders/${encodeURIComponent(id)}`);
    const shown = [
      ["status", status(order.status)], ["saga", order.saga_status],
      ["reason", order.failure_reason || order.pending_reason || "–"], ["customer", order.customer_id],
      ["total", money(order.total_amount, order.currency)], ["inventory check", order.inventory_check || "–"],
      ["reservation", order.reservation], ["payment", order.payment_id || "–"],
      ["created", time(order.created_at)], ["updated", time(order.updated_at)],
      // In a tab of its own (the tracing UI is another site; this page stays live), when trace_url_template is set.
      ["trace", order.trace_url ? el("a", { id: "trace", href: order.trace_url, target: "_blank", rel: "noreferrer" }, order.trace_id)
        : el("code", { id: "trace" }, order.trace_id || "–")],
    ];
    facts.replaceChildren(...shown.flatMap(([name, value]) => [el("dt", {}, name), el("dd", {}, value)]));
    items.replaceChildren(...order.items.map((line) => el("tr", {},
      el("td", {}, el("code", {}, line.sku)), el("td", {}, line.name || "–"), el("td", { class: "num" }, line.quantity),
      el("td", { class: "num" }, money(line.unit_price, order.currency)), el("td", { class: "num" }, money(line.amount, order.currency)))));
    steps.replaceChildren(...(order.saga || []).map((row, i) => el("tr", {},
      el("td", {}, i + 1), el("td", {}, row.saga), el("td", {}, row.kind), el("td", {}, el("code", {}, row.name)),
      el("td", {}, status(row.outcome)), el("td", {}, row.reason || ""), el("td", { class: "num" }, row.attempt),
      el("td", {}, time(row.started_at)), el("td", { class: "num" }, row.duration_ms.toFixed(1)),
      el("td", {}, el("div", { class: "detail mono" }, JSON.stringify(row.detail))))));
    const running = order.saga_status === "running" || order.saga_status === "waiting";
    const buttons = [];
    if (order.status === "PLACED" && !running) buttons.push(el("button", { class: "danger", id: "cancel", onclick: act("cancel") }, "Cancel order"));
    if (isAdmin && (order.status === "COMPENSATION_FAILED" || running)) buttons.push(el("button", { id: "retry", onclick: act("retry") }, "Retry now"));
    actions.replaceChildren(...buttons, el("a", { href: `/orders/${encodeURIComponent(id)}/diagram`, class: "muted" }, "diagram as text"));
    const version = `${order.status}|${order.updated_at}|${(order.saga || []).length}`;
    if (version !== drawn) {
      const text = await call("GET", `/orders/${encodeURIComponent(id)}/diagram?format=svg`);
      const parsed = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
      if (parsed.namespaceURI === SVG) diagram.replaceChildren(document.importNode(parsed, true));
      drawn = version;
    }
    say("");
  };
  every(1000, refresh);
}

// -- events: the feed, live, newest at the top ----------------------------------------------------

const EVENT_TYPES = ["created", "placed", "payment_failed", "out_of_stock", "rejected", "cancelled", "compensation_failed"]
  .map((name) => `oms.order.${name}`);
const SHOWN_EVENTS = 200; // rows the Events page keeps; the oldest go past it
const WAIT = 25; // seconds a long poll of GET /events waits (the service allows 30)

function eventRow(event, fresh) {
  return el("tr", { class: fresh ? "fresh" : null, "data-id": event.id, "data-order": event.subject, "data-type": event.type },
    el("td", {}, time(event.time)),
    el("td", {}, el("code", {}, event.type)),
    el("td", {}, orderLink(event.subject)),
    el("td", { class: "num" }, event.sequence),
    el("td", {}, status(event.data.status)));
}

// New events (oldest first, as the feed gives them) go on top; past SHOWN_EVENTS the oldest go.
function showEvents(rows, events, fresh) {
  if (!events.length) return;
  rows.querySelectorAll("tr.none").forEach((row) => row.remove());
  rows.prepend(...events.map((event) => eventRow(event, fresh)).reverse());
  while (rows.children.length > SHOWN_EVENTS) rows.lastElementChild.remove();
}

// Reads the feed from just before the newest events, then long-polls it following `next`, until
// `signal` aborts (the filters changed). A refusal (4xx) stops it; anything else is tried again.
async function followEvents(filters, rows, live, signal) {
  let next;
  let first = true;
  while (!signal.aborted) {
    try {
      if (next === undefined) {
        const query = new URLSearchParams({ ...filters, count: String(SHOWN_EVENTS) });
        next = (await call("GET", `/ui/events/start?${query}`, undefined, signal)).next;
      }
      const query = new URLSearchParams({ ...filters, limit: "100", wait: first ? "0" : String(WAIT) });
      if (next) query.set("next", next);
      const page = await call("GET", `/events?${query}`, undefined, signal);
      showEvents(rows, page.items, !first);
      if (first && !rows.children.length) rows.append(el("tr", { class: "none" }, el("td", { colspan: 5, class: "muted" }, "no events yet")));
      next = page.next || next;
      first = false;
      live.textContent = "● live";
      say("");
    } catch (error) {
      if (signal.aborted) return;
      live.textContent = "";
      say(error.message);
      if (error.status && error.status < 500) return;
      await pause(2000, signal);
    }
  }
}

function eventsView() {
  const type = el("select", { id: "type-filter", "aria-label": "type" },
    el("option", { value: "" }, "every type"), EVENT_TYPES.map((t) => el("option", { value: t }, t)));
  const order = el("input", { id: "order-filter", type: "search", "aria-label": "order", placeholder: "order id (ord_…)" });
  const live = el("span", { id: "live", class: "live" });
  const rows = el("tbody", { id: "events" });
  view.append(el("div", { class: "toolbar" }, type, order, live),
    table(["time", "type", "order", "sequence", "status"], rows));
  let reading = null;
  const restart = () => {
    if (reading) reading.abort();
    reading = new AbortController();
    rows.replaceChildren();
    const filters = {};
    if (type.value) filters.type = type.value;
    if (order.value.trim()) filters.subject = order.value.trim();
    followEvents(filters, rows, live, reading.signal);
  };
  type.addEventListener("change", restart);
  order.addEventListener("input", restart);
  restart();
}

// -- one order's events, and (admins) where each was delivered ------------------------------------

function orderEvents(id) {
  const events = el("tbody", { id: "order-events" });
  const deliveries = el("tbody", { id: "deliveries" });
  const section = [el("h2", {}, "Events"), table(["#", "type", "time", "status"], events)];
  if (isAdmin) section.push(el("h2", {}, "Webhook deliveries"),
    table(["event", "endpoint", "outcome", "status code or error", "try", "at"], deliveries));
  const refresh = async () => {
    const page = await call("GET", `/events?${new URLSearchParams({ subject: id, limit: "1000" })}`);
    events.replaceChildren(...page.items.map((event) => el("tr", { "data-id": event.id, "data-type": event.type },
      el("td", { class: "num" }, event.sequence), el("td", {}, el("code", {}, event.type)),
      el("td", {}, time(event.time)), el("td", {}, status(event.data.status)))));
    if (isAdmin) await orderDeliveries(id, deliveries);
  };
  return { section, refresh };
}

async function orderDeliveries(id, rows) {
  let answer;
  try {
    answer = await call("GET", `/webhooks/deliveries?${new URLSearchParams({ order_id: id })}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    rows.replaceChildren(el("tr", { class: "none" }, el("td", { colspan: 6, class: "muted" }, "this service has no webhooks")));
    return;
  }
  const attempts = Array.isArray(answer) ? answer : answer.items;
  rows.replaceChildren(...attempts.map((a) => el("tr", { "data-event": a.event_id, "data-outcome": a.outcome },
    el("td", {}, `#${a.sequence} `, el("code", {}, a.event_type)), el("td", {}, el("code", {}, a.url)),
    el("td", {}, status(a.outcome)), el("td", {}, a.status_code ?? a.error ?? "–"),
    el("td", { class: "num" }, a.try), el("td", {}, time(a.at)))));
  if (!attempts.length) rows.append(el("tr", { class: "none" }, el("td", { colspan: 6, class: "muted" }, "not sent to any webhook endpoint")));
}

// -- breakers: state, rates, window, time in state; the operator's switches ---------------------

function breakersView() {
  const cards = el("div", { class: "cards", id: "breakers" });
  view.append(
    el("p", { class: "muted" }, "The breakers of the OrderService process that served this page: a switch acts on this process only (each replica has its own)."),
    cards);
  const fmtRate = (value) => (value === null ? "–" : `${value.toFixed(0)}%`);
  const since = (seconds) => (seconds < 120 ? `${seconds.toFixed(0)} s` : `${(seconds / 60).toFixed(1)} min`);
  const flip = (name, state) => async (event) => {
    event.target.disabled = true;
    try {
      const figures = await call("POST", `/breakers/${encodeURIComponent(name)}`, { state });
      say(`${name}: ${figures.state}`, true);
      await refresh();
    } catch (error) {
      say(error.message);
    } finally {
      event.target.disabled = false;
    }
  };
  const forcing = forceOpenDialog((name) => flip(name, "forced_open"));
  const refresh = async () => {
    const breakers = await call("GET", "/breakers");
    cards.replaceChildren(...Object.entries(breakers).map(([name, b]) => el("div", { class: "card panel", "data-breaker": name, "data-state": b.state },
      el("h2", {}, name, status(b.state)),
      el("dl", { class: "facts" },
        el("dt", {}, "in this state"), el("dd", {}, `${since(b.seconds_in_state)} (since ${time(b.state_since)})`),
        el("dt", {}, "failure rate"), el("dd", {}, fmtRate(b.failure_rate)),
        el("dt", {}, "slow-call rate"), el("dd", {}, fmtRate(b.slow_call_rate)),
        el("dt", {}, "window"), el("dd", {}, `${b.calls} calls (${b.failed_calls} failed, ${b.slow_calls} slow) of the last ${b.window_size} ${b.window_type === "time" ? "seconds" : "calls"}; rates from ${b.minimum_calls} calls`),
        el("dt", {}, "refused calls"), el("dd", {}, b.not_permitted_calls)),
      el("div", { class: "actions" },
        el("button", { class: "danger", "data-switch": "forced_open", onclick: () => forcing.ask(name), disabled: b.state === "forced_open" }, "Force open…"),
        el("button", { "data-switch": "disabled", onclick: flip(name, "disabled"), disabled: b.state === "disabled" }, "Disable"),
        el("button", { "data-switch": "closed", onclick: flip(name, "closed") }, "Reset to closed")))));
  };
  view.append(forcing.dialog);
  every(1000, refresh);
}

// Forcing a breaker open refuses every call to its service until someone resets it: asked first, in
// a dialog that the page's redrawing every second leaves alone. Cancel, Escape: nothing changes.
function forceOpenDialog(force) {
  const title = el("h2", {}, "Force open?");
  const what = el("p", {});
  let name = null;
  const dialog = el("dialog", { id: "force-open-dialog", "aria-labelledby": "force-open-title" }, title, what,
    el("div", { class: "actions" },
      el("button", { class: "danger", id: "force-open-confirm", onclick: (event) => { dialog.close(); force(name)(event); } }, "Confirm force open"),
      el("button", { id: "force-open-cancel", autofocus: true, onclick: () => dialog.close() }, "Cancel")));
  title.id = "force-open-title";
  const ask = (chosen) => {
    name = chosen;
    title.textContent = `Force the ${chosen} breaker open?`;
    what.textContent = `Every call of this process to ${SERVICES[chosen] || chosen} is refused until the breaker is reset to closed.`
      + (chosen === "inventory" ? " Orders are placed on the last known stock and prices (the fallback), and reserved later." : "");
    dialog.showModal();
  };
  return { dialog, ask };
}

// -- audit: what `oms audit` finds ------------------------------------------------------------------

function auditView() {
  const summary = el("div", { class: "panel", id: "summary" }, "reading the three services…");
  const rows = el("tbody", { id: "findings" });
  const again = el("button", { id: "again" }, "Run again");
  view.append(el("div", { class: "toolbar" }, again), summary,
    el("table", {}, el("thead", {}, el("tr", {}, ["order", "finding", "detail"].map((h) => el("th", {}, h)))), rows));
  const run = async () => {
    again.disabled = true;
    try {
      const report = await call("GET", "/audit");
      const n = (count, noun) => `${count} ${noun}${count === 1 ? "" : "s"}`;
      const counted = `${n(report.orders, "order")}, ${n(report.payments, "payment")}, ${n(report.reservations, "reservation")} held, ${n(report.items, "item")} (at ${time(report.at)})`;
      summary.replaceChildren(report.clean
        ? el("span", {}, status("clean"), " the three services agree: ", counted)
        : el("span", {}, status("failed"), ` ${report.findings.length} disagreements: `, counted));
      summary.dataset.clean = String(report.clean);
      rows.replaceChildren(...report.findings.map((f) => el("tr", {},
        el("td", {}, f.order_id === "-" ? "–" : el("a", { href: `/ui/orders/${encodeURIComponent(f.order_id)}` }, el("code", {}, f.order_id))),
        el("td", {}, status(f.kind)), el("td", {}, f.detail))));
      say("");
    } catch (error) {
      say(error.message);
    } finally {
      again.disabled = false;
    }
  };
  again.addEventListener("click", run);
  run();
}

// -- webhooks: each endpoint's health, its recent deliveries; test, replay, enable, disable --------

async function everyItem(path) {
  let items = [];
  let next = null;
  do {
    const page = await call("GET", next ? `${path}&next=${encodeURIComponent(next)}` : path);
    items = items.concat(page.items);
    next = page.next;
  } while (next);
  return items;
}

// "YYYY-MM-DDTHH:MM:SS", UTC as every time the dashboard shows, `ago` ms back: a datetime-local input's value.
function utcInput(ago) {
  return new Date(Date.now() - ago).toISOString().slice(0, 19);
}

// One dialog for the page: asks since when to replay an endpoint's events, then replays.
function replayDialog(done) {
  const since = el("input", { id: "replay-since", type: "datetime-local", step: 1, required: true });
  const title = el("h2", {}, "Replay");
  const dialog = el("dialog", { id: "replay-dialog" }, title,
    el("p", {}, "Every event since then (of the types it takes) is sent again, in order."),
    el("label", {}, "since (UTC) ", since));
  const problem = el("p", { class: "problem", role: "alert" });
  let endpoint = null;
  const confirm = el("button", { id: "replay-confirm", onclick: clicked(async () => {
    const at = new Date(`${since.value}Z`);
    try {
      if (!since.value || Number.isNaN(at.getTime())) throw new Error("Say since when: a date and a time.");
      const answer = await call("POST", `/webhooks/${encodeURIComponent(endpoint.id)}/replay`, { since: at.toISOString() });
      dialog.close();
      say(`replay: ${answer.queued} events queued for ${endpoint.url}`, true);
    } catch (error) {
      problem.textContent = error.message; // the dialog stays open, over the page's own message
      return;
    }
    await done();
  }) }, "Replay");
  dialog.append(problem,
    el("div", { class: "actions" }, confirm, el("button", { id: "replay-cancel", onclick: () => dialog.close() }, "Cancel")));
  const ask = (chosen) => {
    endpoint = chosen;
    problem.textContent = "";
    title.textContent = `Replay to ${chosen.url}`;
    since.value = utcInput(3600 * 1000);
    dialog.showModal();
  };
  return { dialog, ask };
}

function deliveryRow(a) {
  return el("tr", { "data-id": a.id, "data-outcome": a.outcome },
    el("td", {}, time(a.at)), el("td", {}, el("code", {}, a.event_type)),
    el("td", {}, a.order_id ? orderLink(a.order_id) : "–"), el("td", { class: "num" }, a.sequence ?? "–"),
    el("td", { class: "num" }, a.try), el("td", {}, status(a.outcome)), el("td", {}, a.status_code ?? a.error ?? "–"),
    el("td", { class: "num" }, a.duration_ms === null || a.duration_ms === undefined ? "–" : Math.round(a.duration_ms)),
    el("td", {}, time(a.next_try_at) || "–"));
}

function webhookCard(endpoint, attempts, act) {
  const enabled = endpoint.status === "enabled";
  const deliveries = el("tbody", {}, attempts.map(deliveryRow));
  if (!attempts.length) deliveries.append(el("tr", { class: "none" }, el("td", { colspan: 9, class: "muted" }, "nothing sent yet")));
  return el("div", { class: "card panel webhook", "data-webhook": endpoint.id, "data-status": endpoint.status },
    el("h2", {}, el("code", {}, endpoint.url), status(endpoint.status), endpoint.failing_since ? status("failing") : null),
    el("dl", { class: "facts" },
      el("dt", {}, "events"), el("dd", {}, endpoint.events.includes("*") ? "every type" : endpoint.events.join(", ")),
      endpoint.description ? [el("dt", {}, "description"), el("dd", {}, endpoint.description)] : [],
      endpoint.disabled_reason ? [el("dt", {}, "disabled because"), el("dd", { class: "reason" }, endpoint.disabled_reason)] : [],
      el("dt", {}, "last success"), el("dd", { class: "last-success" }, time(endpoint.last_success_at) || "never"),
      el("dt", {}, "failing since"), el("dd", { class: "failing-since" }, time(endpoint.failing_since) || "–"),
      el("dt", {}, "waiting"), el("dd", { class: "waiting" }, endpoint.waiting),
      el("dt", {}, "id"), el("dd", {}, el("code", {}, endpoint.id))),
    el("div", { class: "actions" },
      el("button", { "data-action": "test", onclick: act.test(endpoint) }, "Send a test"),
      el("button", { "data-action": "replay", onclick: act.replay(endpoint) }, "Replay…"),
      el("button", { "data-action": "enable", onclick: act.status(endpoint, "enabled"), disabled: enabled }, "Enable"),
      el("button", { class: "danger", "data-action": "disable", onclick: act.status(endpoint, "disabled"), disabled: !enabled }, "Disable")),
    el("h3", {}, "Recent deliveries"),
    table(["at", "event", "order", "#", "try", "outcome", "status code or error", "ms", "next try"], deliveries));
}

function webhooksView() {
  const cards = el("div", { class: "webhooks", id: "webhooks" });
  let drawn = "";
  const refresh = async () => {
    const endpoints = await everyItem("/webhooks?limit=100");
    const recent = await Promise.all(endpoints.map((e) => call("GET", `/webhooks/${encodeURIComponent(e.id)}/deliveries?limit=10`)));
    const version = JSON.stringify([endpoints, recent]);
    if (version === drawn) return; // drawn again only when something changed: a click is not lost
    drawn = version;
    cards.replaceChildren(...endpoints.map((e, i) => webhookCard(e, recent[i].items, act)));
    if (!endpoints.length) cards.append(el("p", { class: "muted", id: "no-webhooks" }, "No webhook endpoint yet: oms webhooks add URL"));
  };
  const replay = replayDialog(refresh);
  const path = (endpoint, what) => `/webhooks/${encodeURIComponent(endpoint.id)}${what}`;
  const act = {
    test: (endpoint) => clicked(async () => {
      const attempt = await call("POST", path(endpoint, "/test"));
      say(`test to ${endpoint.url}: ${attempt.status_code ?? attempt.error}`, attempt.status_code >= 200 && attempt.status_code < 300);
      await refresh();
    }),
    replay: (endpoint) => () => replay.ask(endpoint),
    status: (endpoint, wanted) => clicked(async () => {
      const changed = await call("PATCH", path(endpoint, ""), { status: wanted });
      say(`${changed.url}: ${changed.status}`, true);
      await refresh();
    }),
  };
  view.append(el("p", { class: "muted" }, "Each endpoint's health, and its last 10 deliveries (tries included). Add one with oms webhooks add URL."),
    cards, replay.dialog);
  every(2000, refresh);
}

// -- every page, for admins: a banner while a service's database is down --------------------------

const SERVICES = { order: "OrderService", inventory: "InventoryService", payment: "PaymentService" };
const FAULTS = {
  unreachable: "unreachable", timeout: "not answering in time", read_only: "read-only",
  disk_full: "full (no room to write)", busy: "busy", io: "failing (I/O errors)",
};

function databasesBanner() {
  const banner = el("div", { id: "databases", role: "alert", hidden: true });
  document.querySelector("main").prepend(banner);
  every(2000, async () => {
    const databases = await call("GET", "/databases");
    const wrong = Object.entries(databases).filter(([, d]) => d.up !== true);
    banner.replaceChildren(...wrong.map(([name, d]) => el("p", { class: d.up === false ? "down" : "unknown", "data-service": name, "data-kind": d.kind },
      d.up === false
        ? `${SERVICES[name]}'s database is ${FAULTS[d.kind] || d.kind} since ${(d.since || "").slice(11, 19)} UTC`
        : `${SERVICES[name]}'s database: not known (${d.detail})`)));
    banner.hidden = wrong.length === 0;
  });
}

if (isAdmin) databasesBanner();
({
  orders: ordersView, order: orderView, events: eventsView, webhooks: webhooksView, breakers: breakersView, audit: auditView,
})[body.dataset.page]();
