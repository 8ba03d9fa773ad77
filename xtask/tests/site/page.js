// The e2e fixture page. It does not open the download manager by itself (that would count as
// the app's first launch): the test calls `window.fixture.*` through WebDriver when it wants to.
const params = new URLSearchParams(location.search);
const CDN = params.get('cdn');
const SCRIPT = `/sw.js?cdn=${encodeURIComponent(CDN)}`;

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

async function activeRegistration(timeoutMs = 30000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const registration = await navigator.serviceWorker.getRegistration('/');
    if (registration && registration.active && registration.active.state === 'activated' && navigator.serviceWorker.controller) {
      return registration;
    }
    if (Date.now() > deadline) throw new Error('no activated, controlling service worker in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function ask(worker, message, timeoutMs = 30000) {
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(() => reject(new Error('the worker did not answer')), timeoutMs);
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      resolve(event.data);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

let wasm = null;
async function pageWasm() {
  if (!wasm) {
    wasm = await import('/pkg/background_assets.js');
    await wasm.default();
  }
  return wasm;
}

// Events the page's delegate received (see setDelegate).
const pageEvents = [];
// What the library warned about in this page (console.warn), for failure reports.
const warnings = [];
const consoleWarn = console.warn.bind(console);
console.warn = (...args) => {
  warnings.push(args.map(String).join(' '));
  consoleWarn(...args);
};

window.fixture = {
  async registerInBackground() {
    await navigator.serviceWorker.register(SCRIPT, { scope: '/' });
    return null;
  },
  // The launch gate from the page while the worker's install downloads: ready(), then the file.
  async readyThenFile(path) {
    const { DownloadManager } = await pageWasm();
    const manager = DownloadManager.shared();
    const started = Date.now();
    await manager.ready();
    const waited = Date.now() - started;
    const file = await manager.file(path);
    if (!file) return { waited, file: null };
    const blob = await file.blob();
    const digest = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
    return { waited, file: { id: file.id, size: file.size, sha256: file.sha256, digest } };
  },
  async setDelegate(on) {
    const { DownloadManager } = await pageWasm();
    const delegate = on
      ? {
          didBegin: (id) => pageEvents.push({ handler: 'didBegin', id }),
          didFinish: (id, finished) => pageEvents.push({ handler: 'didFinish', id, size: finished.size }),
          didFail: (id, error) => pageEvents.push({ handler: 'didFail', id, error: error && error.name }),
        }
      : null;
    DownloadManager.shared().setDelegate(delegate);
    return null;
  },
  // Schedules a download from the page (the JS face); resolves once it is scheduled.
  async schedule(download) {
    const { DownloadManager } = await pageWasm();
    await DownloadManager.shared().schedule(download);
    return null;
  },
  // pause / resume / cancel a download from the page (the JS face).
  async control(op, id) {
    const { DownloadManager } = await pageWasm();
    await DownloadManager.shared()[op](id);
    return null;
  },
  pageEvents() {
    return pageEvents.slice();
  },
  warnings() {
    return warnings.slice();
  },
  // The browser fetch the library handed download `id` to (Background Fetch), if any.
  async libraryFetch(id) {
    const registration = await navigator.serviceWorker.getRegistration('/');
    if (!registration || !('backgroundFetch' in registration)) return { available: false, fetch: null };
    const fetch = await registration.backgroundFetch.get(`background-assets:background-assets:${id}`);
    return {
      available: true,
      fetch: fetch && { downloaded: fetch.downloaded, downloadTotal: fetch.downloadTotal, result: fetch.result, failureReason: fetch.failureReason },
    };
  },
  async register() {
    await navigator.serviceWorker.register(SCRIPT, { scope: '/' });
    const registration = await activeRegistration();
    return { scriptURL: registration.active.scriptURL };
  },
  async log() {
    const cache = await caches.open('fixture-log');
    const entries = [];
    for (const request of await cache.keys()) {
      entries.push(await (await cache.match(request)).json());
    }
    entries.sort((a, b) => a.at - b.at);
    return entries;
  },
  async fetchServed(path, range) {
    const headers = range ? { Range: range } : {};
    const response = await fetch(path, { headers });
    const body = await response.arrayBuffer();
    return {
      status: response.status,
      contentRange: response.headers.get('Content-Range'),
      length: body.byteLength,
      sha256: hex(await crypto.subtle.digest('SHA-256', body)),
      hex: body.byteLength <= 4096 ? hex(body) : null,
    };
  },
  async launch() {
    const { launch } = await pageWasm();
    return launch();
  },
  async update() {
    const registration = await navigator.serviceWorker.getRegistration('/');
    const before = navigator.serviceWorker.controller;
    const changed = new Promise((resolve) => navigator.serviceWorker.addEventListener('controllerchange', resolve, { once: true }));
    await registration.update();
    await Promise.race([changed, new Promise((_, reject) => setTimeout(() => reject(new Error('no controllerchange after update()')), 30000))]);
    await activeRegistration();
    return { replaced: navigator.serviceWorker.controller !== before };
  },
  async hello(probe) {
    const registration = await activeRegistration();
    return ask(registration.active, { type: 'hello', probe: probe || null });
  },
  async cacheNames() {
    const names = await caches.keys();
    const out = {};
    for (const name of names) out[name] = (await (await caches.open(name)).keys()).map((r) => r.url);
    return out;
  },
  async askWorker(message) {
    const registration = await activeRegistration();
    return ask(registration.active, message);
  },
  async reports() {
    const registration = await activeRegistration();
    return ask(registration.active, { type: 'reports' });
  },
  async pageInfo() {
    const { version, globalContext } = await pageWasm();
    return { version: version(), context: globalContext() };
  },
};

const status = document.getElementById('status');
status.dataset.state = 'ready';
status.textContent = 'ready';
