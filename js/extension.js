// background-assets: the service worker entry (Apple's BADownloaderExtension for the web).
//
// A classic script: load it with importScripts after the worker glue (or load
// background_assets_worker.js, the two in one file: one fetch fewer at install), then call
// BackgroundAssets.extension(handlers) at the top level of your sw.js:
//
//   importScripts('/pkg/worker/background_assets_worker.js');
//   // or: importScripts('/pkg/worker/background_assets.js', '/pkg/worker/extension.js');
//   BackgroundAssets.extension({
//     wasm: '/pkg/worker/background_assets_bg.wasm',   // the default
//     skipWaiting: false, clientsClaim: false,          // lifecycle options (default false)
//     async didInstall(info) { return undefined; },     // undefined: the declaration's packs
//     async didUpdate(info) {}, async checkForUpdates(info) {},
//     didBegin(id) {}, didWriteData(id, written, total, expected) {},
//     didFinish(id, finished) {}, didFail(id, error) {},
//     async authenticationChallenge(id, challenge) { return null; },
//     message(event) {},                                // messages that are not the library's
//     eventFailed(eventName, error) {},                 // an install/activate/... step failed
//   });
//
// Every listener is added synchronously inside extension(), during the script's first
// evaluation (browsers ignore listeners added later); the wasm loads asynchronously and each
// event waits for it inside waitUntil / respondWith. The wasm is kept in Cache Storage so the
// worker also starts offline (it serves stored assets without network). The glue `cargo xtask
// build` writes carries its wasm's SHA-256: the extension then loads only that wasm (a wrong one
// is refused with `WasmIntegrityMismatch`), keeps it per digest, and a worker started again reads
// its own copy without waiting for the network. On a worker's first
// evaluation (before its install event) extension() starts loading the wasm at once, so its fetch
// and compile overlap the install event's dispatch.
(function (global) {
  'use strict';

  const SERVE_PREFIX = '/background-assets/';
  const CONTROL = 'background-assets-extension';
  const ROUTED = 'background-assets';
  const PERIODIC_TAG = 'background-assets';
  const WASM_CACHE = 'background-assets-wasm';
  const FETCH_PREFIX = 'background-assets:';

  let options = null;
  let wasmReady = null;

  function bindgen() {
    // The no-modules glue declares `let wasm_bindgen` (a global binding, not a property of self).
    // eslint-disable-next-line no-undef
    const glue = typeof wasm_bindgen === 'function' ? wasm_bindgen : global.wasm_bindgen;
    if (typeof glue !== 'function') {
      throw new Error(
        'background-assets: import the worker glue first: ' +
          "importScripts('/pkg/worker/background_assets_worker.js') (the glue and this entry in one), or " +
          "importScripts('/pkg/worker/background_assets.js', '/pkg/worker/extension.js')",
      );
    }
    return glue;
  }

  function wasmUrl() {
    // BackgroundAssets.loadWasm() may run before (or without) extension(): the default URL then.
    const wasm = (options && options.wasm) || '/pkg/worker/background_assets_bg.wasm';
    return new URL(wasm, global.location.href).href;
  }

  // The SHA-256 of the wasm the glue was built with (`cargo xtask build` writes it into the
  // glue as `wasm_bindgen.wasmSha256`), or null: a glue built some other way, or none loaded.
  function pinnedDigest() {
    let digest;
    try {
      digest = bindgen().wasmSha256;
    } catch (error) {
      return null; // the load reports the missing glue
    }
    return typeof digest === 'string' && /^[0-9a-f]{64}$/.test(digest) ? digest : null;
  }

  // The Cache Storage cache that keeps this registration's wasm of `digest`.
  function pinnedCache(digest) {
    return `${WASM_CACHE}:${global.registration ? global.registration.scope : global.location.origin}:${digest}`;
  }

  function hex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
  }

  /**
   * The wasm of a pinned glue (a cached `Response`, or a compiled `WebAssembly.Module`): the one
   * with its digest, kept in Cache Storage per digest. A worker that starts again (every wake
   * after the first) reads its own copy and waits for no network: a server that already serves a
   * newer wasm (a deploy whose worker is not active yet) cannot hand it a wasm its glue does not
   * match. Missing there (a first install, an evicted cache), it is fetched, refused unless its
   * SHA-256 is the glue's, and stored.
   */
  async function pinnedWasm(digest) {
    const url = wasmUrl();
    const name = pinnedCache(digest);
    // A worker being installed for the first time has no copy to look for.
    const cached =
      global.caches && !firstEvaluation() ? await global.caches.match(url, { cacheName: name }) : null;
    if (cached) {
      reports.wasmSource = 'cache';
      return cached;
    }
    const response = await fetch(url, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
    const bytes = await response.arrayBuffer();
    const actual = hex(await global.crypto.subtle.digest('SHA-256', bytes));
    if (actual !== digest) {
      const error = new Error(
        `background-assets: ${url} is not the wasm this worker's glue was built with: its SHA-256 is ` +
          `${actual}, the glue's is ${digest} (serve the wasm from the same build as the glue)`,
      );
      error.name = 'WasmIntegrityMismatch';
      Object.assign(error, { url, expected: digest, actual });
      throw error;
    }
    reports.wasmSource = 'network';
    const module = await WebAssembly.compile(bytes);
    if (global.caches) {
      // Stored once compiled (the two compete for the same cores); install waits for it
      // (loadWasm(true)).
      const copy = new Response(bytes, { headers: { 'Content-Type': 'application/wasm' } });
      wasmKept = global.caches
        .open(name)
        .then((cache) => cache.put(url, copy))
        .catch(report('storing the wasm'));
    }
    return module;
  }

  // The store of a pinned wasm just fetched (settles once it is in Cache Storage, or reported).
  let wasmKept = Promise.resolve();

  /**
   * Once this worker is active the one before it is gone: this registration's copies of other
   * wasm digests are deleted (other registrations' caches are left alone).
   */
  async function pruneWasm() {
    const digest = pinnedDigest();
    if (!digest || !global.caches) return;
    const mine = pinnedCache(digest);
    const prefix = mine.slice(0, mine.length - digest.length);
    for (const name of await global.caches.keys()) {
      if (name.startsWith(prefix) && name !== mine) await global.caches.delete(name);
    }
  }

  // An unpinned glue: network first (so an updated worker gets its own wasm), Cache Storage when
  // offline.
  async function wasmResponse(store) {
    const url = wasmUrl();
    try {
      const response = await fetch(url, { cache: 'no-cache' });
      if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
      if (store && global.caches) {
        const cache = await global.caches.open(WASM_CACHE);
        await cache.put(url, response.clone());
      }
      return response;
    } catch (error) {
      const cached = global.caches ? await global.caches.match(url, { cacheName: WASM_CACHE }) : null;
      if (cached) return cached;
      throw error;
    }
  }

  // Whether the load in flight (or done) also put the wasm into Cache Storage.
  let wasmStored = false;

  /**
   * Initialises the worker's wasm once; every event waits for it. A pinned glue's wasm is always
   * kept (`pinnedWasm`); `store` (install) also waits until it is. An unpinned glue's: `store`
   * also keeps the wasm in Cache Storage; a load already started without it stores a copy of its
   * own.
   */
  function loadWasm(store) {
    const digest = pinnedDigest();
    if (!wasmReady) {
      wasmStored = Boolean(store);
      wasmReady = (digest ? pinnedWasm(digest) : wasmResponse(wasmStored))
        .then((response) => bindgen()({ module_or_path: response }))
        .then(() => bindgen());
      wasmReady.catch(() => {
        wasmReady = null; // try again on the next event
      });
    } else if (!digest && store && !wasmStored) {
      wasmStored = true;
      const loaded = wasmReady;
      return global.caches
        ? global.caches
            .open(WASM_CACHE)
            .then((cache) => cache.add(new Request(wasmUrl(), { cache: 'no-cache' })))
            .catch(report('storing the wasm'))
            .then(() => loaded)
        : loaded;
    }
    return digest && store ? wasmReady.then((glue) => wasmKept.then(() => glue)) : wasmReady;
  }

  /**
   * True during a worker's first evaluation: its install event comes next. `self.serviceWorker`
   * is the worker's own ServiceWorker, 'parsed' until install starts (Chromium). Without it
   * (Firefox 153 has none), only a first install is recognised: a registration that has no
   * worker at all yet is evaluating its first one.
   */
  function firstEvaluation() {
    const me = global.serviceWorker;
    if (me) return me.state === 'parsed';
    const registration = global.registration;
    return Boolean(
      registration && !registration.installing && !registration.waiting && !registration.active,
    );
  }

  // An extension event's step failed: the console, and `handlers.eventFailed(event, error)`.
  function report(what) {
    return (error) => {
      console.error(`background-assets extension: ${what}:`, error);
      if (options && typeof options.eventFailed === 'function') {
        try {
          options.eventFailed(what, error);
        } catch (e) {
          console.error('background-assets extension: eventFailed threw', e);
        }
      }
    };
  }

  function errorReply(error) {
    return {
      ok: false,
      error: {
        name: (error && error.name) || 'Error',
        code: error && error.code,
        message: (error && error.message) || String(error),
      },
    };
  }

  function isServed(request) {
    if (request.method !== 'GET' && request.method !== 'HEAD') return false;
    const url = new URL(request.url);
    if (url.origin !== global.location.origin) return false;
    return url.pathname.startsWith(SERVE_PREFIX + 'id/') || url.pathname.startsWith(SERVE_PREFIX + 'file/');
  }

  /**
   * The last install/activate/periodic-sync reports, for the app's own diagnostics;
   * `wasmLoadStarted: 'first evaluation'` when extension() started the wasm before install;
   * `wasmSource: 'cache' | 'network'`, where a pinned glue's wasm came from.
   */
  const reports = {};

  function extension(handlers) {
    if (options) throw new Error('background-assets: BackgroundAssets.extension() was already called');
    options = handlers || {};
    if (firstEvaluation()) {
      // Install needs the wasm: fetch and compile it while the install event is dispatched.
      reports.wasmLoadStarted = 'first evaluation';
      loadWasm(true).catch(() => {}); // a failure is reported by the event that waits for it
    }

    global.addEventListener('install', (event) => {
      event.waitUntil(
        loadWasm(true)
          .then((wasm) => wasm.extensionInstall(options))
          .then((r) => {
            reports.install = r;
          }, report('install'))
          .then(() => (options.skipWaiting ? global.skipWaiting() : undefined)),
      );
    });

    global.addEventListener('activate', (event) => {
      event.waitUntil(
        loadWasm()
          .then((wasm) => wasm.extensionActivate(options))
          .then((r) => {
            reports.activate = r;
          }, report('activate'))
          .then(() => pruneWasm().catch(report('deleting the wasm of earlier versions')))
          .then(() => (options.clientsClaim ? global.clients.claim() : undefined)),
      );
    });

    global.addEventListener('periodicsync', (event) => {
      if (event.tag !== PERIODIC_TAG) return;
      event.waitUntil(
        loadWasm()
          .then((wasm) => wasm.extensionPeriodicSync(options))
          .then((r) => {
            reports.periodicsync = r;
          }, report('periodicsync')),
      );
    });

    global.addEventListener('fetch', (event) => {
      if (!isServed(event.request)) return; // to the network (or the app's own listeners)
      event.respondWith(loadWasm().then((wasm) => wasm.extensionFetch(event.request)));
    });

    // Background Fetch (Chromium): a page handed a download to the browser (pkg.json
    // `backgroundFetch: true`); the worker stores what it delivers, or lets the normal transfer
    // take over after a failure. Fetches that are not the library's are left to the app.
    for (const name of ['backgroundfetchsuccess', 'backgroundfetchfail', 'backgroundfetchabort']) {
      global.addEventListener(name, (event) => {
        if (!String(event.registration.id).startsWith(FETCH_PREFIX)) return;
        event.waitUntil(
          loadWasm()
            .then((wasm) => wasm.extensionBackgroundFetch(event.registration, options))
            .then((r) => {
              reports[name] = r;
              if (name === 'backgroundfetchsuccess' && typeof event.updateUI === 'function') {
                return event.updateUI({ title: `${r.id.slice(r.id.lastIndexOf(':') + 1)}: downloaded` }).catch(() => {});
              }
              return undefined;
            }, report(name)),
        );
      });
    }

    global.addEventListener('backgroundfetchclick', (event) => {
      if (!String(event.registration.id).startsWith(FETCH_PREFIX)) return;
      // The user clicked the browser's download UI: show the app.
      event.waitUntil(
        global.clients
          .matchAll({ type: 'window', includeUncontrolled: true })
          .then((windows) => (windows.length ? windows[0].focus() : global.clients.openWindow(global.registration.scope)))
          .catch(report('backgroundfetchclick')),
      );
    });

    global.addEventListener('message', (event) => {
      const data = event.data;
      const port = event.ports && event.ports[0];
      if (data && (data.type === CONTROL || data.type === ROUTED)) {
        event.waitUntil(
          loadWasm()
            .then((wasm) => wasm.extensionMessage(data, options))
            .then(
              (value) => port && port.postMessage({ ok: true, value }),
              (error) => {
                if (port) port.postMessage(errorReply(error));
                else report('message')(error);
              },
            ),
        );
        return;
      }
      if (typeof options.message === 'function') options.message(event);
    });
  }

  global.BackgroundAssets = Object.assign(global.BackgroundAssets || {}, {
    extension,
    loadWasm: () => loadWasm(false),
    reports,
  });
})(self);
