// The chaos page: registers the chaos service worker and gives the driver (cargo xtask chaos,
// over WebDriver) three calls: wake the worker with the plan (a message it handles inside
// waitUntil, which also starts a killed worker again), read the status, and verify what the
// container holds. status/verify run in this page's own wasm instance and only read IndexedDB.
import init, { chaos_status, chaos_verify } from '/chaos-pkg/web/background_assets_chaos.js';

const status = document.getElementById('status');

function activated(worker) {
  return new Promise((resolve, reject) => {
    if (worker.state === 'activated') return resolve();
    worker.addEventListener('statechange', () => {
      if (worker.state === 'activated') resolve();
      if (worker.state === 'redundant') reject(new Error(`${worker.scriptURL} became redundant`));
    });
  });
}

// Unhandled promise rejections, the worker's (it posts them here) and this page's own.
const unhandled = [];
function recordUnhandled(reason) {
  if (unhandled.length < 100) unhandled.push(reason);
}
navigator.serviceWorker.addEventListener('message', (event) => {
  const data = event.data || {};
  if (data.type === 'unhandledrejection') recordUnhandled(`worker: ${data.reason}`);
});
navigator.serviceWorker.startMessages();
window.addEventListener('unhandledrejection', (event) => {
  const reason = event.reason;
  recordUnhandled(`page: ${reason && reason.name ? `${reason.name}: ${reason.message}` : String(reason)}`);
});

async function main() {
  await init({ module_or_path: '/chaos-pkg/web/background_assets_chaos_bg.wasm' });
  const registration = await navigator.serviceWorker.register('/chaos/chaos-sw.js', { scope: '/chaos/' });
  await activated(registration.installing || registration.waiting || registration.active);
  window.chaos = {
    plan: null,
    wakes: 0,
    unhandled,
    wake() {
      this.wakes += 1;
      registration.active.postMessage({ type: 'run', plan: this.plan });
      return this.wakes;
    },
    status() { return chaos_status(this.plan); },
    verify() { return chaos_verify(this.plan); },
  };
  status.dataset.state = 'ready';
  status.textContent = 'ready';
}

main().catch((error) => {
  status.dataset.state = 'error';
  status.dataset.error = String(error && error.stack ? error.stack : error);
  status.textContent = `error: ${error}`;
});
