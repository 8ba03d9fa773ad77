// The service worker entry: a classic script (no import() in a service worker, and Firefox may
// lack module workers). Every listener is added here, synchronously, during the first
// evaluation; the wasm loads asynchronously and events wait for it inside waitUntil.
importScripts('/pkg/worker/background_assets.js');

let wasmReady = null;

/** Initialises the worker's wasm once; every event handler awaits this. */
function loadWasm() {
  if (!wasmReady) {
    wasmReady = wasm_bindgen({ module_or_path: '/pkg/worker/background_assets_bg.wasm' });
  }
  return wasmReady;
}

self.addEventListener('install', (event) => {
  event.waitUntil(loadWasm().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(loadWasm().then(() => self.clients.claim()));
});

/** Size and seed of the generated body fetched from `?cdn=` (see app.js). */
const PROBE_BYTES = 262144;
const PROBE_SEED = 42;

/** Fetches a generated body from the CDN and hashes it with the worker's wasm. */
async function probe(cdn) {
  const url = `${cdn}/gen/${PROBE_BYTES}/${PROBE_SEED}`;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return { url, bytes: bytes.length, sha256: wasm_bindgen.sha256Hex(bytes) };
}

async function hello(data) {
  await loadWasm();
  const reply = {
    type: 'hello',
    version: wasm_bindgen.version(),
    context: wasm_bindgen.globalContext(),
  };
  if (data && data.cdn) reply.probe = await probe(data.cdn);
  return reply;
}

self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (!port) return;
  event.waitUntil(
    hello(event.data).then(
      (reply) => port.postMessage(reply),
      (error) => port.postMessage({ error: String(error) }),
    ),
  );
});
