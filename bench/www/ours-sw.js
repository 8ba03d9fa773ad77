// The cold-start measure's "ours": a service worker that loads the library (the worker glue and
// the extension entry in one script, and the wasm, instantiated before install completes) and
// answers messages from its wasm (`boot`, this evaluation's time origin, tells the restart measure
// a restarted worker from one that kept running). It does not call BackgroundAssets.extension(): that would run
// the demo's install (the page server's /pkg.json declares 192 MiB of packs), which is download
// time, not start-up time. It starts loading the wasm where extension() does on a worker's first
// evaluation: at the top level. The wasm is pinned to the glue: at install it is fetched, checked
// against the glue's SHA-256, compiled, and its copy stored in Cache Storage (which install here
// does not wait for; the extension's does); a restarted worker loads that copy. The empty worker
// (empty-sw.js) is the baseline.
importScripts('/pkg/worker/background_assets_worker.js');
BackgroundAssets.loadWasm().catch(() => {}); // install waits for (and reports) the same load

self.addEventListener('install', (event) => {
  event.waitUntil(BackgroundAssets.loadWasm().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});

self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (!port) return;
  event.waitUntil(
    BackgroundAssets.loadWasm().then(
      (wasm) => port.postMessage({ type: 'hello', version: wasm.version(), boot: performance.timeOrigin }),
      (error) => port.postMessage({ type: 'hello', error: String(error) }),
    ),
  );
});
