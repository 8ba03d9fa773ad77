// The demo's service worker: a classic script (no import() in a service worker, and Firefox may
// lack module workers). It does three things:
//
//   1. runs the background-assets extension (pkg/worker/background_assets_worker.js: the worker
//      glue and the entry, js/extension.js, in one script): the install / activate /
//      periodicsync / fetch / message listeners, with this app's hooks passed in. The extension
//      serves stored assets at /background-assets/file/<path> and /background-assets/id/<id>
//      straight from the IndexedDB container (with Range), online or offline;
//   2. keeps the page shell (HTML, JS, CSS, manifest, icons, the wasm package, pkg.json) in a
//      Cache Storage cache filled at install and serves it cache-first, so the app opens offline.
//      Only the shell lives there: every asset comes from the container;
//   3. tells open pages what it does (BroadcastChannel "background-assets-demo"): each extension
//      hook call, and each request for a stored asset with its Range header.
//
// Every listener is added synchronously during the first evaluation, as service workers require.
importScripts('/pkg/worker/background_assets_worker.js');

/** Bump after changing any shell file: a changed sw.js installs a fresh cache. */
const SHELL_VERSION = 1;
const SHELL_CACHE = `demo-shell-v${SHELL_VERSION}`;
// The worker's own wasm is not here: the extension keeps it in its own cache, under its digest.
const SHELL = [
  '/',
  '/app.js',
  '/styles.css',
  '/manifest.webmanifest',
  '/icons/icon-192.png',
  '/icons/icon-512.png',
  '/pkg.json',
  '/pkg/background_assets.js',
  '/pkg/background_assets_bg.wasm',
];

// --- telling pages what happens ------------------------------------------------------------------

const channel = new BroadcastChannel('background-assets-demo');
/** Hook calls since this worker started, replayed to a page that asks (it may open later). */
const history = [];
/** Downloads whose first didWriteData was announced. */
const progressAnnounced = new Set();

/** Posts a hook call (or, with source 'worker', something the app's worker did itself). */
function announce(name, text, source = 'hook') {
  const message = { kind: 'hook', source, name, text, at: Date.now() };
  history.push(message);
  if (history.length > 200) history.shift();
  channel.postMessage(message);
}

channel.onmessage = ({ data }) => {
  if (data && data.kind === 'history') {
    for (const message of history) channel.postMessage({ ...message, replayed: true });
  }
};

function describe(value) {
  if (value === undefined || value === null) return '';
  if (value instanceof Error) return `${value.name}: ${value.message}`;
  try {
    return JSON.stringify(value);
  } catch (_) {
    return String(value);
  }
}

// --- the shell cache -----------------------------------------------------------------------------

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(SHELL_CACHE)
      .then((cache) => cache.addAll(SHELL.map((url) => new Request(url, { cache: 'reload' }))))
      .then(() => announce('shell', `${SHELL.length} shell files cached (${SHELL_CACHE})`, 'worker')),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches.keys()
      .then((names) => Promise.all(
        names.filter((name) => name.startsWith('demo-shell-') && name !== SHELL_CACHE)
          .map((name) => caches.delete(name)),
      )),
  );
});

self.addEventListener('fetch', (event) => {
  const url = new URL(event.request.url);
  if (url.origin !== location.origin || event.request.method !== 'GET') return;
  if (url.pathname.startsWith('/background-assets/')) {
    // Served by the extension's own fetch listener; only observed here.
    channel.postMessage({
      kind: 'request',
      path: url.pathname,
      range: event.request.headers.get('Range'),
      destination: event.request.destination,
    });
    return;
  }
  const shellPath = event.request.mode === 'navigate' ? '/' : url.pathname;
  if (!SHELL.includes(shellPath)) return;
  event.respondWith(
    caches.open(SHELL_CACHE)
      .then((cache) => cache.match(shellPath))
      .then((cached) => cached || fetch(event.request)),
  );
});

// --- the extension, with this app's hooks --------------------------------------------------------

BackgroundAssets.extension({
  // A new version takes over at once, and the first visit is controlled without a reload (so
  // the page can use the served URLs right away).
  skipWaiting: true,
  clientsClaim: true,
  async didInstall(info) {
    announce('didInstall', `remaining allowance ${describe(info && info.remainingAllowance)}`);
    return undefined; // the default: the packs pkg.json installs on first installation
  },
  async didUpdate(info) {
    announce('didUpdate', `updated ${describe(info && info.updated)}, removed ${describe(info && info.removed)}`);
    return undefined;
  },
  async checkForUpdates(info) {
    announce('checkForUpdates', `updated ${describe(info && info.updated)}, removed ${describe(info && info.removed)}`);
    return undefined;
  },
  didBegin(id) { announce('didBegin', id); },
  didPause(id) { announce('didPause', id); },
  didWriteData(id, bytesWritten, totalWritten, totalExpected) {
    // Called for every chunk: announced once per download (the page's delegate shows progress).
    if (progressAnnounced.has(id)) return;
    progressAnnounced.add(id);
    announce('didWriteData', `${id}: first ${bytesWritten} bytes of ${totalExpected} (further calls not announced)`);
    void totalWritten;
  },
  didFinish(id, finished) { announce('didFinish', `${id} → ${finished && finished.url ? finished.url : ''}`); },
  didFail(id, error) { announce('didFail', `${id}: ${describe(error)}`); },
  didRequeueAsNonEssential(id) { announce('didRequeueAsNonEssential', id); },
  async authenticationChallenge(id, challenge) {
    announce('authenticationChallenge', `${id}: ${challenge && challenge.status} (declined)`);
    return null;
  },
  /** Messages that are not the library's: the page's hello (see below). */
  message(event) {
    const port = event.ports[0];
    if (!port || !event.data || event.data.type !== 'hello') return;
    event.waitUntil(
      hello().then(
        (reply) => port.postMessage(reply),
        (error) => port.postMessage({ error: String(error) }),
      ),
    );
  },
});

// --- the worker's own answer to the page (its wasm version; shown in #status) --------------------

async function hello() {
  const wasm = await BackgroundAssets.loadWasm();
  return { type: 'hello', version: wasm.version(), context: wasm.globalContext() };
}
