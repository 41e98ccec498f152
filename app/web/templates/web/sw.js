// Omnicard's service worker: the website keeps working as an installed app, also offline.
// - The shell (scripts, styles, icons) is cached at install, under this version's name.
// - Pages: network first; each page the shopper opens is kept, and shown when offline.
// - The API (/v1/) and anything but GET never touch the caches.
// Rendered by the server (app/web/pwa.py): VERSION changes whenever a static file does.
const VERSION = {{ version|tojson }};
const SHELL = {{ shell|tojson }};
const OFFLINE_TEXT = {{ {"en": t_en, "es": t_es}|tojson }};
const PREFIX = "omnicard-";
const STATIC_CACHE = `${PREFIX}static-${VERSION}`;
const PAGES_CACHE = `${PREFIX}pages-${VERSION}`;

self.addEventListener("install", (event) => {
  event.waitUntil((async () => {
    const cache = await caches.open(STATIC_CACHE);
    // "reload": fresh copies from the server, not from the browser's HTTP cache.
    await cache.addAll(SHELL.map((url) => new Request(url, { cache: "reload" })));
    await self.skipWaiting();
  })());
});

self.addEventListener("activate", (event) => {
  event.waitUntil((async () => {
    const names = await caches.keys();
    await Promise.all(names
      .filter((name) => name.startsWith(PREFIX) && name !== STATIC_CACHE && name !== PAGES_CACHE)
      .map((name) => caches.delete(name)));
    await self.clients.claim();
    // The page that installed this worker was loaded before it: keep it too.
    const windows = await self.clients.matchAll({ type: "window" });
    await Promise.all(windows.map((client) => keepPage(new Request(client.url, { credentials: "same-origin" }))));
  })());
});

// A page that has no worker in control asks for one (static/web/core.js).
self.addEventListener("message", (event) => {
  if (event.data !== "claim") return;
  event.waitUntil((async () => {
    await self.clients.claim();
    if (event.source && event.source.type === "window") {
      await keepPage(new Request(event.source.url, { credentials: "same-origin" }));
    }
  })());
});

function isPage(response) {
  return response.ok && response.type === "basic" && !response.redirected
    && (response.headers.get("Content-Type") || "").startsWith("text/html");
}

async function keepPage(request) {
  try {
    const response = await fetch(request);
    if (isPage(response)) await (await caches.open(PAGES_CACHE)).put(request.url, response);
  } catch { /* offline now: kept the next time */ }
}

async function offlinePage(request) {
  const cache = await caches.open(PAGES_CACHE);
  const kept = await cache.match(request.url, { ignoreVary: true })
    || await cache.match(request.url, { ignoreVary: true, ignoreSearch: true })
    || await cache.match(new URL("/", self.location).href, { ignoreVary: true });
  if (kept) return kept;
  const lang = (self.navigator.language || "en").slice(0, 2) === "es" ? "es" : "en";
  return new Response(OFFLINE_TEXT[lang], {
    status: 503, headers: { "Content-Type": "text/plain; charset=utf-8" },
  });
}

async function fromNetworkFirst(request) {
  try {
    const response = await fetch(request);
    if (isPage(response)) {
      const copy = response.clone();
      caches.open(PAGES_CACHE).then((cache) => cache.put(request.url, copy));
    }
    return response;
  } catch {
    return offlinePage(request);
  }
}

async function fromCacheFirst(request) {
  const cache = await caches.open(STATIC_CACHE);
  const kept = await cache.match(request, { ignoreVary: true });
  if (kept) return kept;
  const response = await fetch(request);
  if (response.ok && response.type === "basic") await cache.put(request, response.clone());
  return response;
}

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin || url.pathname.startsWith("/v1/")) return;
  if (request.method !== "GET") {
    // Logging out: the pages kept for this shopper go with the session.
    if (request.method === "POST" && url.pathname === "/logout") {
      event.waitUntil(caches.delete(PAGES_CACHE));
    }
    return;
  }
  if (request.mode === "navigate") {
    event.respondWith(fromNetworkFirst(request));
  } else if (url.pathname.startsWith("/static/")) {
    event.respondWith(fromCacheFirst(request));
  }
});
