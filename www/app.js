// The page: loads the wasm package as an ES module, registers the service worker (a classic
// script) and asks it, over a MessageChannel, which wasm it runs. The results go into
// <output id="status"> as data attributes, which the end-to-end tests read.
import init, { version, globalContext } from '/pkg/background_assets.js';

const status = document.getElementById('status');
const WORKER_REPLY_TIMEOUT_MS = 20000;

function show(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

/** Posts `message` to `worker` and resolves with its reply on a fresh MessageChannel. */
function ask(worker, message) {
  return new Promise((resolve, reject) => {
    const channel = new MessageChannel();
    const timer = setTimeout(
      () => reject(new Error(`no reply from the service worker in ${WORKER_REPLY_TIMEOUT_MS} ms`)),
      WORKER_REPLY_TIMEOUT_MS,
    );
    channel.port1.onmessage = (event) => {
      clearTimeout(timer);
      if (event.data && event.data.error) reject(new Error(`service worker: ${event.data.error}`));
      else resolve(event.data);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

async function main() {
  await init();
  status.dataset.pageVersion = version();
  status.dataset.pageContext = globalContext();
  show('page-ready', `page wasm ${version()}; registering the service worker…`);

  if (!('serviceWorker' in navigator)) throw new Error('this browser has no service workers');
  await navigator.serviceWorker.register('/sw.js', { scope: '/' });
  const registration = await navigator.serviceWorker.ready;
  // `?cdn=<origin>` (the end-to-end tests pass their local CDN): the worker also fetches a
  // generated body from it and hashes it in its wasm.
  const cdn = new URLSearchParams(location.search).get('cdn');
  const reply = await ask(registration.active, { type: 'hello', cdn });
  status.dataset.workerVersion = reply.version;
  status.dataset.workerContext = reply.context;
  if (reply.probe) {
    status.dataset.workerProbeUrl = reply.probe.url;
    status.dataset.workerProbeBytes = String(reply.probe.bytes);
    status.dataset.workerProbeSha256 = reply.probe.sha256;
  }
  show('ready', `page wasm ${version()}, service worker wasm ${reply.version} (${reply.context})`);
}

main().catch((error) => {
  status.dataset.error = String(error && error.message ? error.message : error);
  show('error', `failed: ${status.dataset.error}`);
  console.error(error);
});
