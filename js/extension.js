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
// worker also starts offline (it serves stored assets without network). On a worker's first
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

  // Network first (so an updated worker gets its own wasm), Cache Storage when offline.
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
   * Initialises the worker's wasm once; every event waits for it. `store`: also keep the wasm in
   * Cache Storage (install); a load already started without it stores a copy of its own.
   */
  function loadWasm(store) {
    if (!wasmReady) {
      wasmStored = Boolean(store);
      wasmReady = wasmResponse(wasmStored)
        .then((response) => bindgen()({ module_or_path: response }))
        .then(() => bindgen());
      wasmReady.catch(() => {
        wasmReady = null; // try again on the next event
      });
    } else if (store && !wasmStored) {
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
    return wasmReady;
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
   * `wasmLoadStarted: 'first evaluation'` when extension() started the wasm before install.
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
