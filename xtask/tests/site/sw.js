// The e2e fixture's service worker: the library's worker entry with handlers that record every
// call in Cache Storage (one entry per call, so several worker versions never overwrite each
// other) for the test page to read. `FIXTURE_VERSION` is rewritten by the test to make an update.
importScripts('/pkg/worker/background_assets.js', '/pkg/worker/extension.js');

const FIXTURE_VERSION = 1;
// Tells one run of this worker script from the next (the tests restart the worker).
const STARTED = `${Date.now()}-${Math.random()}`;
const LOG = 'fixture-log';
const CDN = new URL(self.location.href).searchParams.get('cdn');
let sequence = 0;

function plain(value) {
  if (value instanceof Error || (value && typeof value === 'object' && 'code' in value && 'name' in value)) {
    return { name: value.name, code: value.code, message: value.message };
  }
  if (value && typeof value === 'object' && 'sha256' in value) {
    return { id: value.id, size: value.size, sha256: value.sha256, url: value.url };
  }
  return value;
}

function record(handler, ...args) {
  const entry = { handler, args: args.map(plain), version: FIXTURE_VERSION, at: Date.now() };
  const key = `/log/${Date.now()}-${FIXTURE_VERSION}-${sequence++}-${Math.random()}`;
  return caches
    .open(LOG)
    .then((cache) => cache.put(key, new Response(JSON.stringify(entry))))
    .catch((e) => console.error('fixture log', e));
}

// The library's warnings in this worker are logged too (failure reports show them).
const consoleWarn = console.warn.bind(console);
console.warn = (...args) => {
  record('warning', args.map(String).join(' '));
  consoleWarn(...args);
};

async function count(handler) {
  const cache = await caches.open(LOG);
  let n = 0;
  for (const request of await cache.keys()) {
    if ((await (await cache.match(request)).json()).handler === handler) n += 1;
  }
  return n;
}

// Downloads the fixture asks for beyond the declared packs: one over the initial allowance, one
// from a host outside the allow-list, one that fits.
function extras() {
  const localhost = CDN.replace('127.0.0.1', 'localhost');
  return [
    { id: 'over-allowance', url: `${CDN}/gen/2097152/13`, size: 2097152 },
    { id: 'wrong-domain', url: `${localhost}/gen/1024/14`, size: 1024 },
    { id: 'small-extra', url: `${CDN}/gen/65536/15`, size: 65536 },
    // Behind a 401: the handler answers the first challenge, declines the second.
    { id: 'authed', url: `${CDN}/gen/4096/19?auth=secret`, size: 4096 },
    { id: 'auth-declined', url: `${CDN}/gen/4096/20?auth=other`, size: 4096 },
  ];
}

BackgroundAssets.extension({
  skipWaiting: true,
  clientsClaim: true,
  async didInstall(info) {
    await record('didInstall', info);
    return extras();
  },
  async didUpdate(info) {
    await record('didUpdate', info);
    return [];
  },
  async checkForUpdates(info) {
    const earlier = await count('checkForUpdates');
    await record('checkForUpdates', info);
    // 2 MiB: refused before the first launch, allowed once a page launched. Each check asks for
    // a new download: `after-launch-<trigger>`, then `-1`, `-2`...
    const id = `after-launch-${info.trigger}${earlier ? `-${earlier}` : ''}`;
    return [{ id, url: `${CDN}/gen/2097152/16?check=${earlier}`, size: 2097152 }];
  },
  async authenticationChallenge(id, challenge) {
    await record('authenticationChallenge', id, challenge);
    return id === 'authed' ? { Authorization: 'Bearer secret' } : null;
  },
  didBegin: (id) => record('didBegin', id),
  didPause: (id) => record('didPause', id),
  didFinish: (id, finished) => record('didFinish', id, finished),
  didFail: (id, error) => record('didFail', id, error),
  didRequeueAsNonEssential: (id) => record('didRequeueAsNonEssential', id),
  eventFailed: (event, error) => record('eventFailed', event, { name: error && error.name, message: String(error && (error.stack || error.message) || error) }),
});

// The worker's own wasm answers `hello` (version, global, SHA-256 of a CDN body it fetched).
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (port && event.data && event.data.type === 'reports') {
    port.postMessage(JSON.parse(JSON.stringify(BackgroundAssets.reports, (k, v) => (v instanceof Error ? { name: v.name, message: v.message } : v))));
    return;
  }
  if (!port || !event.data || event.data.type !== 'hello') return;
  event.waitUntil(
    (async () => {
      const wasm = await BackgroundAssets.loadWasm();
      const reply = { version: wasm.version(), context: wasm.globalContext(), fixture: FIXTURE_VERSION, started: STARTED };
      if (event.data.probe) {
        const response = await fetch(event.data.probe);
        const bytes = new Uint8Array(await response.arrayBuffer());
        reply.probe = { bytes: bytes.length, sha256: wasm.sha256Hex(bytes) };
      }
      return reply;
    })().then(
      (reply) => port.postMessage(reply),
      (error) => port.postMessage({ error: String(error) }),
    ),
  );
});
