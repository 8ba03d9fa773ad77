// A cold-start diagnostic: the library's wasm fetched and compiled as ours-sw.js loads it (from
// the top level, install waiting for it), with no script imported and nothing instantiated.
// Beside the empty worker, what the wasm's fetch and compile cost a start.
const compiled = WebAssembly.compileStreaming(
  fetch('/pkg/worker/background_assets_bg.wasm', { cache: 'no-cache' }),
);
compiled.catch(() => {}); // install waits for (and reports) the same promise

self.addEventListener('install', (event) => {
  event.waitUntil(compiled.then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (!port) return;
  event.waitUntil(
    compiled.then(
      () => port.postMessage({ type: 'hello' }),
      (error) => port.postMessage({ type: 'hello', error: String(error) }),
    ),
  );
});
