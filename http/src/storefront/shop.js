// The storefront: a page over the shop's REST API, through the gateway it is served by.
// No framework and no build step. Every value from the API is put in the page as text (never as
// HTML), so a product called "<script>" is shown, not run.
"use strict";

const TOKEN = "shop.token";
const state = { token: localStorage.getItem(TOKEN), me: null, lastCheckout: null };

// ---- the API -------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

// What a failed call means to a person: the problem's detail, or what the status says.
const WORDS = {
  400: "That was not accepted",
  401: "Please log in",
  403: "You are not allowed to do that",
  404: "Not found",
  409: "That conflicts with something that already exists",
  413: "That is too large",
  429: "Too many attempts; wait a moment and try again",
  502: "A service is not reachable right now; try again shortly",
  503: "The shop is busy; try again in a moment",
  504: "The shop took too long to answer; try again",
};

async function api(method, path, body, headers = {}) {
  return (await call(method, path, body, headers)).data;
}

// Every page of a list (`GET /api/products`, `GET /api/orders`), following each answer's
// `Link: <…>; rel="next"`, up to `most` entries.
async function apiAll(path, most = 1000) {
  const all = [];
  let next = path;
  while (next && all.length < most) {
    const { data, link } = await call("GET", next);
    all.push(...(Array.isArray(data) ? data : []));
    const m = /<([^>]+)>;\s*rel="next"/.exec(link || "");
    next = m && m[1].startsWith("/api/") ? m[1] : null;
  }
  return all;
}

async function call(method, path, body, headers = {}) {
  const h = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "The shop cannot be reached. Check your connection and try again.");
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (!resp.ok) {
    if (resp.status === 401 && state.token && !path.startsWith("/api/auth/login")) {
      setToken(null);
    }
    const detail = data && typeof data.detail === "string" && data.detail ? data.detail : WORDS[resp.status];
    throw new ApiError(resp.status, sentence(detail || `The shop answered ${resp.status}`));
  }
  return { data, link: resp.headers.get("Link") };
}

function sentence(s) {
  const t = s.trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

// ---- the page ------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const view = () => document.getElementById("view");

function show(...nodes) {
  view().replaceChildren(...nodes.flat().filter((n) => n !== null && n !== undefined && n !== false));
}

// `keep`: the message outlives the next navigation (a welcome, shown on the page it leads to).
function flash(message, kind = "error", keep = false) {
  state.keep = keep;
  const f = document.getElementById("flash");
  f.textContent = message;
  f.className = kind;
  f.hidden = !message;
}

function money(v) {
  return `$${Number(v).toFixed(2)}`;
}

function when(iso) {
  return new Date(iso).toLocaleString();
}

// Runs `work`, showing its error in words instead of throwing.
async function attempt(work) {
  try {
    await work();
  } catch (e) {
    flash(e instanceof ApiError ? e.message : `Something went wrong: ${e.message}`);
  }
}

function setToken(token) {
  state.token = token;
  state.me = null;
  if (token) localStorage.setItem(TOKEN, token);
  else localStorage.removeItem(TOKEN);
}

async function whoAmI() {
  if (state.token && !state.me) {
    try {
      state.me = await api("GET", "/api/auth/me");
    } catch (e) {
      setToken(null);
    }
  }
  const me = state.me;
  document.getElementById("whoami").textContent = me ? `${me.username}${me.role === "ADMIN" ? " (admin)" : ""}` : "";
  document.getElementById("login-link").hidden = !!me;
  document.getElementById("register-link").hidden = !!me;
  document.getElementById("logout").hidden = !me;
  for (const a of document.querySelectorAll("[data-needs]")) {
    a.hidden = a.dataset.needs === "admin" ? !(me && me.role === "ADMIN") : !me;
  }
  if (me) {
    try {
      const cart = await api("GET", "/api/cart");
      const n = cart.items.reduce((sum, i) => sum + i.quantity, 0);
      document.getElementById("cart-count").textContent = n ? `(${n})` : "";
    } catch (e) {
      document.getElementById("cart-count").textContent = "";
    }
  }
  return me;
}

// ---- views ---------------------------------------------------------------------------------

async function catalog() {
  const products = await apiAll("/api/products");
  const me = state.me;
  const cards = products.map((p) => {
    const qty = el("input", { type: "number", min: 1, max: 1000, value: 1, "aria-label": `Quantity of ${p.name}` });
    return el(
      "article",
      { class: "product", "data-product": p.id },
      el("h3", { text: p.name }),
      el("p", { class: "description", text: p.description || "" }),
      el("p", { class: "price", text: money(p.price) }),
      el("p", { class: "stock", text: p.stock > 0 ? `${p.stock} in stock` : "Out of stock" }),
      me
        ? el(
            "div",
            { class: "buy" },
            qty,
            el("button", {
              type: "button",
              text: "Add to cart",
              onclick: () =>
                attempt(async () => {
                  await api("POST", "/api/cart/add", { productId: p.id, quantity: Number(qty.value) });
                  flash(`Added ${qty.value} × ${p.name} to your cart.`, "ok");
                  await whoAmI();
                }),
            }),
          )
        : el("p", { class: "hint" }, el("a", { href: "#/login", text: "Log in" }), " to buy."),
    );
  });
  show(el("h2", { text: "Catalog" }), products.length ? el("div", { class: "grid" }, cards) : el("p", { text: "Nothing for sale yet." }));
}

function form(title, fields, submit, onsubmit, extra) {
  const inputs = {};
  const rows = fields.map(([name, label, type, more = {}]) => {
    inputs[name] = el("input", { name, type, id: `f-${name}`, required: true, ...more });
    return el("p", {}, el("label", { for: `f-${name}`, text: label }), inputs[name]);
  });
  const f = el(
    "form",
    {
      onsubmit: (e) => {
        e.preventDefault();
        attempt(() => onsubmit(Object.fromEntries(Object.entries(inputs).map(([k, i]) => [k, i.value]))));
      },
    },
    rows,
    el("button", { type: "submit", text: submit }),
  );
  return [el("h2", { text: title }), f, extra];
}

async function login() {
  show(
    ...form(
      "Log in",
      [
        ["username", "Username", "text", { autocomplete: "username" }],
        ["password", "Password", "password", { autocomplete: "current-password" }],
      ],
      "Log in",
      async (v) => {
        const answer = await api("POST", "/api/auth/login", { username: v.username, password: v.password });
        setToken(answer.token);
        flash(`Welcome, ${answer.username}.`, "ok", true);
        location.hash = "#/";
      },
      el("p", {}, "New here? ", el("a", { href: "#/register", text: "Register" })),
    ),
  );
}

async function register() {
  show(
    ...form(
      "Register",
      [
        ["username", "Username (3 to 50 letters, digits, . _ -)", "text", { autocomplete: "username" }],
        ["email", "Email", "email", { autocomplete: "email" }],
        ["password", "Password (8 to 72 bytes)", "password", { autocomplete: "new-password" }],
      ],
      "Register",
      async (v) => {
        await api("POST", "/api/auth/register", v);
        const answer = await api("POST", "/api/auth/login", { username: v.username, password: v.password });
        setToken(answer.token);
        flash(`Welcome, ${answer.username}. Your account is ready.`, "ok", true);
        location.hash = "#/";
      },
    ),
  );
}

async function checkout() {
  // One key per attempt: a double click or a resent request makes one order, not two.
  const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
  const order = await api("POST", "/api/orders", undefined, { "Idempotency-Key": key });
  state.lastCheckout = order;
  await whoAmI();
  await cart();
}

function outcome(order) {
  if (order.status === "PAID") {
    return el(
      "section",
      { class: "outcome paid", "data-outcome": "PAID" },
      el("h3", { text: `Order #${order.id} is paid` }),
      el("p", {}, "Transaction ", el("code", { class: "txn", text: order.paymentId || "" }), ` for ${money(order.totalAmount)}.`),
      el("p", {}, el("a", { href: `#/orders/${order.id}`, text: "See the order" })),
    );
  }
  return el(
    "section",
    { class: "outcome cancelled", "data-outcome": "CANCELLED" },
    el("h3", { text: `Order #${order.id} was cancelled` }),
    el("p", { class: "reason", text: `The payment did not go through: ${order.failureReason || "no reason given"}.` }),
    el("p", { text: "Nothing was charged, and your cart is kept as it was." }),
    el("button", { type: "button", id: "retry", text: "Try again", onclick: () => attempt(checkout) }),
  );
}

async function cart() {
  const c = await api("GET", "/api/cart");
  const last = state.lastCheckout;
  const rows = c.items.map((i) => {
    const qty = el("input", { type: "number", min: 0, max: 1000, value: i.quantity, "aria-label": `Quantity of ${i.productName}` });
    qty.addEventListener("change", () =>
      attempt(async () => {
        await api("PUT", `/api/cart/items/${i.productId}`, { quantity: Number(qty.value) });
        await whoAmI();
        await cart();
      }),
    );
    return el(
      "tr",
      { "data-product": i.productId },
      el("td", { text: i.productName }),
      el("td", { class: "num", text: money(i.price) }),
      el("td", {}, qty),
      el("td", { class: "num subtotal", text: money(i.subtotal) }),
      el(
        "td",
        {},
        el("button", {
          type: "button",
          class: "link",
          text: "Remove",
          onclick: () =>
            attempt(async () => {
              await api("DELETE", `/api/cart/items/${i.productId}`);
              await whoAmI();
              await cart();
            }),
        }),
      ),
    );
  });
  show(
    el("h2", { text: "Your cart" }),
    last ? outcome(last) : null,
    c.items.length
      ? el(
          "div",
          {},
          el(
            "table",
            { class: "cart" },
            el("thead", {}, el("tr", {}, ["Product", "Price", "Quantity", "Subtotal", ""].map((h) => el("th", { text: h })))),
            el("tbody", {}, rows),
            el("tfoot", {}, el("tr", {}, el("th", { colspan: 3, text: "Total" }), el("th", { class: "num", id: "total", text: money(c.totalAmount) }), el("th"))),
          ),
          last && last.status === "CANCELLED"
            ? null
            : el("button", { type: "button", id: "checkout", class: "primary", text: "Check out", onclick: () => attempt(checkout) }),
        )
      : el("p", {}, "Your cart is empty. ", el("a", { href: "#/", text: "Browse the catalog" }), "."),
  );
}

function statusBadge(status) {
  return el("span", { class: `status ${status.toLowerCase()}`, text: status });
}

async function orders() {
  const list = await apiAll("/api/orders");
  show(
    el("h2", { text: "Your orders" }),
    list.length
      ? el(
          "table",
          { class: "orders" },
          el("thead", {}, el("tr", {}, ["Order", "Placed", "Total", "Status"].map((h) => el("th", { text: h })))),
          el(
            "tbody",
            {},
            list.map((o) =>
              el(
                "tr",
                { "data-order": o.id },
                el("td", {}, el("a", { href: `#/orders/${o.id}`, text: `#${o.id}` })),
                el("td", { text: when(o.createdAt) }),
                el("td", { class: "num", text: money(o.totalAmount) }),
                el("td", {}, statusBadge(o.status)),
              ),
            ),
          ),
        )
      : el("p", { text: "No orders yet." }),
  );
}

async function order(id) {
  const [o, history] = await Promise.all([api("GET", `/api/orders/${id}`), api("GET", `/api/orders/${id}/history`)]);
  show(
    el("h2", {}, `Order #${o.id} `, statusBadge(o.status)),
    el(
      "p",
      {},
      `Placed ${when(o.createdAt)}; total ${money(o.totalAmount)}.`,
      o.paymentId ? el("span", {}, " Transaction ", el("code", { class: "txn", text: o.paymentId }), ".") : null,
      o.failureReason ? el("span", { class: "reason", text: ` Cancelled: ${o.failureReason}.` }) : null,
    ),
    el(
      "table",
      {},
      el("thead", {}, el("tr", {}, ["Product", "Price", "Quantity"].map((h) => el("th", { text: h })))),
      el("tbody", {}, o.items.map((i) => el("tr", {}, el("td", { text: i.productName }), el("td", { class: "num", text: money(i.price) }), el("td", { text: i.quantity })))),
    ),
    el("h3", { text: "What happened" }),
    el("ol", { class: "history" }, history.steps.map((s) => el("li", {}, el("time", { text: when(s.at) }), ` ${s.step.replaceAll("_", " ").toLowerCase()} (${s.service})`, s.detail ? `: ${s.detail}` : ""))),
  );
}

function productForm(p, onsave) {
  const f = {
    name: el("input", { value: p ? p.name : "", "aria-label": "Name", required: true, maxlength: 255 }),
    description: el("input", { value: p ? p.description || "" : "", "aria-label": "Description", maxlength: 2000 }),
    price: el("input", { value: p ? Number(p.price).toFixed(2) : "", "aria-label": "Price", inputmode: "decimal", required: true }),
    stock: el("input", { type: "number", min: 0, value: p ? p.stock : 0, "aria-label": "Stock", required: true }),
  };
  return el(
    "form",
    {
      class: "product-form",
      "data-product": p ? p.id : "new",
      onsubmit: (e) => {
        e.preventDefault();
        attempt(() => onsave({ name: f.name.value, description: f.description.value || null, price: f.price.value, stock: Number(f.stock.value) }));
      },
    },
    f.name,
    f.description,
    f.price,
    f.stock,
    el("button", { type: "submit", text: p ? "Save" : "Create" }),
  );
}

async function admin() {
  if (!state.me || state.me.role !== "ADMIN") {
    show(el("h2", { text: "Admin" }), el("p", { text: "This page is for administrators. Log in as one." }));
    return;
  }
  const products = await apiAll("/api/products");
  const found = el("div", { id: "admin-order" });
  const orderId = el("input", { type: "number", min: 1, id: "admin-order-id", "aria-label": "Order id" });
  const lookUp = async () => {
    const h = await api("GET", `/api/orders/${Number(orderId.value)}/history`);
    const move = (to, label) =>
      el("button", {
        type: "button",
        text: label,
        onclick: () =>
          attempt(async () => {
            await api("PUT", `/api/orders/${h.orderId}/status`, { status: to });
            flash(`Order #${h.orderId} is now ${to}.`, "ok");
            await lookUp();
          }),
      });
    found.replaceChildren(
      el("p", {}, `Order #${h.orderId} `, statusBadge(h.status)),
      h.status === "PAID" ? move("SHIPPED", "Mark shipped") : null,
      h.status === "SHIPPED" ? move("DELIVERED", "Mark delivered") : null,
    );
  };
  show(
    el("h2", { text: "Admin" }),
    el("h3", { text: "Orders" }),
    el(
      "form",
      { onsubmit: (e) => { e.preventDefault(); attempt(lookUp); } },
      el("label", { for: "admin-order-id", text: "Order number " }),
      orderId,
      el("button", { type: "submit", text: "Find" }),
    ),
    found,
    el("h3", { text: "Products" }),
    el("p", { class: "hint", text: "Name, description, price, stock." }),
    products.map((p) =>
      el(
        "div",
        { class: "admin-product" },
        productForm(p, async (body) => {
          await api("PUT", `/api/products/${p.id}`, body);
          await admin();
          flash(`Saved ${body.name}.`, "ok");
        }),
        el("button", {
          type: "button",
          class: "link danger",
          text: "Delete",
          onclick: () =>
            attempt(async () => {
              await api("DELETE", `/api/products/${p.id}`);
              await admin();
              flash(`Deleted ${p.name}.`, "ok");
            }),
        }),
      ),
    ),
    el("h3", { text: "New product" }),
    productForm(null, async (body) => {
      const made = await api("POST", "/api/products", body);
      await admin();
      flash(`Created ${made.name}.`, "ok");
    }),
  );
}

// ---- routing -------------------------------------------------------------------------------

async function route() {
  const hash = location.hash || "#/";
  const [, page, arg] = hash.split("/");
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("here", (a.dataset.nav === "catalog" && !page) || a.dataset.nav === page);
  }
  if (page !== "cart") state.lastCheckout = null;
  await whoAmI();
  const needsLogin = ["cart", "orders", "admin"].includes(page);
  if (needsLogin && !state.me) {
    flash("Please log in first.");
    return login();
  }
  document.body.dataset.page = page || "catalog";
  await attempt(async () => {
    switch (page) {
      case "login":
        return login();
      case "register":
        return register();
      case "cart":
        return cart();
      case "orders":
        return arg ? order(arg) : orders();
      case "admin":
        return admin();
      default:
        return catalog();
    }
  });
}

window.addEventListener("hashchange", () => {
  if (state.keep) state.keep = false;
  else flash("");
  route();
});
document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("logout").addEventListener("click", () => {
    setToken(null);
    flash("You are logged out.", "ok", true);
    location.hash = "#/";
    route();
  });
  route();
});
