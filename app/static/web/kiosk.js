// The kiosk screen: a full-screen page on a tablet by the shelves. Unpaired, it asks staff
// for the pairing code; paired, it follows its kiosk's event stream and shows each tap
// (`kiosk.screen` events: the product, a shelf's category, the shopper's greeting, or a
// friendly word about a tag it cannot use), and goes back to its attract loop when the
// visit is over. What it shows comes whole in the event; the page never works out a price.

import { api, ApiError, form, money, number, OfflineError, t } from "/static/web/core.js";

const data = JSON.parse(document.getElementById("kiosk-data").textContent);
const IDLE_MS = Math.max(1, Number(data.idle_s) || 90) * 1000;
const SHOWCASE_MS = 5000;
const KEPT = "omnicard-kiosk:screen";
const VIEWS = ["attract", "product", "category", "hello", "notice"];

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child) node.append(child);
  return node;
}

/** The page may load pictures from this site only: anything else gives way to the
 * product's generated tile. */
function picture(product) {
  const url = product.image_url || "";
  if (url.startsWith("/") && !url.startsWith("//")) return url;
  try {
    const parsed = new URL(url);
    if (parsed.origin === location.origin || parsed.pathname.startsWith("/media/products/")) return parsed.pathname;
  } catch { /* no usable address */ }
  return `/media/products/${product.id}.svg`;
}

function lower(price, listPrice) {
  return price && listPrice && listPrice.currency === price.currency && price.amount < listPrice.amount;
}

// ---------------------------------------------------------------------------- the state

const state = {
  view: "attract",
  payload: null, // the last screen payload shown
  shopper: null, // {first_name, stars} while a shopper has joined the visit
  sessionId: null,
  lastActivity: Date.now(),
};

function keep() {
  try {
    sessionStorage.setItem(KEPT, JSON.stringify({ payload: state.payload, shopper: state.shopper, at: state.lastActivity }));
  } catch { /* nothing kept: a reload shows the attract loop */ }
}

function showView(name) {
  state.view = name;
  for (const view of VIEWS) {
    const section = $(view);
    if (section) section.hidden = view !== name;
  }
  document.body.dataset.view = name;
}

function renderGreeting() {
  const greeting = $("greeting");
  if (state.shopper) {
    greeting.textContent = t("kiosk.greeting", { name: state.shopper.first_name, stars: number(state.shopper.stars) });
    greeting.hidden = false;
  } else {
    greeting.textContent = "";
    greeting.hidden = true;
  }
}

// ------------------------------------------------------------------------- the views

function priceLine(product) {
  const line = el("p", { class: "k-card-price" }, el("span", { class: "k-price-small", text: money(product.price) }));
  if (lower(product.price, product.list_price)) {
    line.append(" ", el("s", { class: "k-list-price-small", text: money(product.list_price) }));
  }
  return line;
}

function productCard(product, extra = null) {
  return el("li", { class: "k-card", "data-product-id": product.id },
    el("img", { class: "k-card-picture", src: picture(product), alt: "", loading: "lazy" }),
    el("h3", { class: "k-card-name", text: product.name }),
    product.price ? priceLine(product) : null,
    extra);
}

function reasonText(reason) {
  if (!reason) return "";
  const name = reason.product_name;
  switch (reason.kind) {
    case "bought_with": return name ? t("kiosk.reason.bought_with", { product: name }) : t("kiosk.reason.bought_with_any");
    case "tapped_with": return name ? t("kiosk.reason.tapped_with", { product: name }) : t("kiosk.reason.tapped_with_any");
    case "your_history": return t("kiosk.reason.your_history");
    case "hidden_gem": return t("kiosk.reason.hidden_gem");
    default: return "";
  }
}

function renderProduct(payload) {
  const p = payload.product;
  const soldHere = p.sold_here !== false;
  $("not-sold").hidden = soldHere;
  const img = $("product-picture");
  img.src = picture(p);
  img.alt = p.name;
  $("product-category").textContent = p.category || "";
  $("product-name").textContent = p.name;
  $("product-price").textContent = money(p.price);
  const list = $("product-list-price");
  if (lower(p.price, p.list_price)) {
    list.textContent = t("kiosk.list_price", { amount: money(p.list_price) });
    list.hidden = false;
  } else {
    list.textContent = "";
    list.hidden = true;
  }
  const stock = $("product-stock");
  stock.className = "k-stock " + (!soldHere ? "k-stock-none" : p.in_stock ? "k-stock-yes" : "k-stock-no");
  stock.textContent = !soldHere ? t("kiosk.not_sold_short") : p.in_stock ? t("kiosk.in_stock_here") : t("kiosk.out_of_stock_here");
  $("product-description").textContent = p.description || "";

  const all = (p.variants || []).filter(Boolean);
  const variants = all.length === 1 && all[0].sku === p.sku ? [] : all;
  const box = $("variants-box");
  const ul = $("variants");
  ul.replaceChildren(...variants.map((v) => el("li", { class: "k-variant" + (v.sku === p.sku ? " k-variant-this" : "") },
    el("span", { class: "k-variant-name", text: v.name }),
    el("span", { class: "k-variant-price", text: money(v.price) }),
    el("span", { class: "k-variant-stock", text: !soldHere ? "" : v.in_stock ? t("kiosk.in_stock_here") : t("kiosk.out_of_stock_here") }))));
  box.hidden = variants.length === 0;

  const save = $("save");
  save.disabled = false;
  save.dataset.productId = p.id;
  $("save-status").textContent = "";

  const suggestions = payload.suggestions || [];
  $("suggestions").replaceChildren(...suggestions.map((s) =>
    productCard(s.product, el("p", { class: "k-reason", text: reasonText(s.reason) }))));
  $("suggestions-box").hidden = suggestions.length === 0;
  $("product").classList.toggle("k-alone", suggestions.length === 0);
  showView("product");
}

function renderCategory(payload) {
  const c = payload.category || { name: "", products: [] };
  $("category-name").textContent = c.name;
  const products = c.products || [];
  $("category-products").replaceChildren(...(products.length
    ? products.map((p) => productCard(p))
    : [el("li", { class: "k-empty", text: t("kiosk.category_empty") })]));
  showView("category");
}

function renderHello(payload) {
  const s = state.shopper;
  if (!s) return renderAttract();
  $("hello-title").textContent = t("kiosk.hello", { name: s.first_name });
  $("hello-stars").textContent = t("kiosk.stars", { stars: number(s.stars) });
  const suggestions = payload.suggestions || [];
  $("hello-suggestions").replaceChildren(...suggestions.map((x) =>
    productCard(x.product, el("p", { class: "k-reason", text: reasonText(x.reason) }))));
  $("hello-suggestions-box").hidden = suggestions.length === 0;
  showView("hello");
}

const NOTICE_CODES = ["unknown_tag", "unreadable_tag", "not_sold_here", "card_frozen", "card_not_registered"];
function renderNotice(payload) {
  const code = payload.message && payload.message.code;
  const key = NOTICE_CODES.includes(code) ? code : payload.view === "refused" ? "refused" : "unknown_tag";
  $("notice-title").textContent = t(`kiosk.${key}.title`);
  $("notice-text").textContent = t(`kiosk.${key}.text`);
  $("notice").dataset.code = key;
  showView("notice");
}

let showcaseTimer = null;
let showcaseIndex = 0;
function renderShowcase() {
  const list = $("showcase");
  if (!list) return;
  const featured = data.featured || [];
  const shown = featured.length ? featured.slice(showcaseIndex % featured.length).concat(featured.slice(0, showcaseIndex % featured.length)).slice(0, 3) : [];
  list.replaceChildren(...shown.map((p, i) => {
    const card = productCard(p, el("p", { class: "k-reason", text: t("kiosk.tap_to_see") }));
    if (i === 0) card.classList.add("k-card-lead");
    return card;
  }));
}

function renderAttract() {
  state.payload = null;
  state.shopper = null;
  state.sessionId = null;
  renderGreeting();
  showcaseIndex = 0;
  renderShowcase();
  clearInterval(showcaseTimer);
  showcaseTimer = setInterval(() => {
    if (state.view !== "attract") return;
    showcaseIndex += 1;
    renderShowcase();
  }, SHOWCASE_MS);
  showView("attract");
  keep();
}

/** Show one `kiosk.screen` payload (the contract's screen payload). */
export function show(payload, { at = Date.now() } = {}) {
  if (!payload || typeof payload !== "object") return;
  if (payload.session_id !== state.sessionId) state.shopper = null; // a new visit
  state.sessionId = payload.session_id ?? null;
  if (payload.shopper) state.shopper = payload.shopper;
  state.payload = payload;
  state.lastActivity = at;
  renderGreeting();
  try {
    if (payload.view === "product" && payload.product) renderProduct(payload);
    else if (payload.view === "category") renderCategory(payload);
    else if (payload.view === "shopper") renderHello(payload);
    else renderNotice(payload);
  } catch (err) {
    console.error(err); // never a blank screen: the visit goes on from the attract loop
    renderAttract();
    return;
  }
  keep();
  const main = $("main");
  if (main) main.scrollTop = 0;
  window.scrollTo(0, 0);
}

// ------------------------------------------------------------------- save for later

async function saveForLater() {
  const button = $("save");
  const status = $("save-status");
  const productId = Number(button.dataset.productId);
  if (!state.sessionId || !productId) return;
  state.lastActivity = Date.now();
  button.disabled = true;
  status.className = "k-save-status";
  status.textContent = t("kiosk.saving");
  try {
    await api("POST", "/v1/kiosk/saved", { session_id: state.sessionId, product_id: productId });
    status.textContent = t("kiosk.saved");
    status.classList.add("k-ok");
  } catch (err) {
    button.disabled = false;
    status.classList.add("k-problem");
    if (err instanceof ApiError && err.code === "no_shopper") status.textContent = t("kiosk.save_needs_card");
    else if (err instanceof ApiError && err.code === "session_over") status.textContent = t("kiosk.save_session_over");
    else if (err instanceof OfflineError) status.textContent = t("error.offline");
    else status.textContent = t("kiosk.save_failed");
  }
}

// -------------------------------------------------------------------------- the stream

function follow() {
  let source = null;
  const connect = () => {
    source = new EventSource("/v1/events", { withCredentials: true });
    document.body.dataset.stream = "connecting";
    source.addEventListener("open", () => {
      document.body.classList.remove("k-offline");
      document.body.dataset.stream = "open"; // taps from now on reach this screen
    });
    source.addEventListener("kiosk.screen", (e) => {
      // The stream's envelope: {id, type, created_at, data}; data is the screen's payload.
      let envelope = null;
      try { envelope = JSON.parse(e.data); } catch { return; }
      show(envelope && envelope.data);
    });
    source.onerror = () => {
      // The browser reconnects by itself (with Last-Event-ID); the view stays as it is.
      document.body.classList.add("k-offline");
      document.body.dataset.stream = "connecting";
      if (source.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
    };
  };
  connect();
}

function watchIdle() {
  const touched = () => { if (state.view !== "attract") state.lastActivity = Date.now(); };
  document.addEventListener("pointerdown", touched, { passive: true });
  document.addEventListener("keydown", touched);
  setInterval(() => {
    if (state.view !== "attract" && Date.now() - state.lastActivity >= IDLE_MS) renderAttract();
  }, 1000);
}

// ------------------------------------------------------------------------------- start

function startPaired() {
  $("save").addEventListener("click", saveForLater);
  // After a reload (a language switch), the visit's screen comes back while it lasts.
  let kept = null;
  try { kept = JSON.parse(sessionStorage.getItem(KEPT) || "null"); } catch { kept = null; }
  if (kept && kept.payload && Date.now() - kept.at < IDLE_MS) {
    state.shopper = kept.shopper;
    state.sessionId = kept.payload.session_id ?? null;
    show(kept.payload, { at: kept.at });
  } else {
    renderAttract();
  }
  watchIdle();
  follow();
  window.omnicardKiosk = { show, attract: renderAttract, state };
}

function startPairing() {
  const f = $("pair-form");
  form(f, async (values) => {
    const code = String(values.code || "").trim().toUpperCase();
    const r = await api("POST", "/kiosk/pair", { code });
    location.assign((r.data && r.data.redirect) || "/kiosk");
  });
  $("code").focus();
}

if ($("pair-form")) startPairing();
else startPaired();
