// A cold-start diagnostic: the library's worker script imported as ours-sw.js imports it, and its
// wasm never loaded. Beside the empty worker, what the script alone costs a start (its fetch, the
// browser's store of it, its compile and evaluation).
importScripts('/pkg/worker/background_assets_worker.js');

self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});
self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (port) port.postMessage({ type: 'hello' });
});
