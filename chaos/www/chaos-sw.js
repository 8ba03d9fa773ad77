// The chaos service worker: every {type: 'run', plan} message runs chaos_run inside
// event.waitUntil — it opens the download manager (which continues whatever a killed instance
// left running), schedules what is not known yet and keeps the worker busy for a while.
importScripts('/chaos-pkg/worker/background_assets_chaos.js');

let wasmReady = null;
function loadWasm() {
  if (!wasmReady) {
    wasmReady = wasm_bindgen({ module_or_path: '/chaos-pkg/worker/background_assets_chaos_bg.wasm' });
  }
  return wasmReady;
}

// A promise rejection nothing handled (in the library or here) is reported to the pages, where the
// driver counts it: a library must leave none, even in a worker killed mid-download.
self.addEventListener('unhandledrejection', (event) => {
  const reason = event.reason;
  const text = reason && reason.name ? `${reason.name}: ${reason.message}` : String(reason);
  self.clients
    .matchAll({ includeUncontrolled: true })
    .then((clients) => clients.forEach((client) => client.postMessage({ type: 'unhandledrejection', reason: text })));
});

self.addEventListener('install', (event) => {
  event.waitUntil(loadWasm().then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => {
  event.waitUntil(loadWasm().then(() => self.clients.claim()));
});
self.addEventListener('message', (event) => {
  const data = event.data || {};
  if (data.type !== 'run' || !data.plan) return;
  event.waitUntil(
    loadWasm()
      .then(() => wasm_bindgen.chaos_run(data.plan))
      .catch((error) => console.warn('chaos_run:', error)),
  );
});
