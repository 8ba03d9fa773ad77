// e2e fixture: Background Fetch from the page (window.fixture.bgf*), observed by /bgf-sw.js.
// (The library is imported only when a test asks, so the other e2e tests load nothing more.)

const SCOPE = '/bgf/';
const progress = {};

async function bgfRegistration(timeoutMs = 30000) {
  await navigator.serviceWorker.register('/bgf-sw.js', { scope: SCOPE });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const registration = await navigator.serviceWorker.getRegistration(SCOPE);
    if (registration && registration.active && registration.active.state === 'activated') return registration;
    if (Date.now() > deadline) throw new Error('the /bgf/ worker did not activate in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function failure(error) {
  return { error: { name: error.name, message: error.message } };
}

Object.assign(window.fixture, {
  async bgfSupport() {
    const wasm = await import('/pkg/background_assets.js');
    await wasm.default();
    return { support: wasm.backgroundFetchSupport(), api: typeof BackgroundFetchManager !== 'undefined' };
  },
  async bgfRegister() {
    const registration = await bgfRegistration();
    return { backgroundFetch: 'backgroundFetch' in registration };
  },
  // Asks the /bgf/ worker to start a background fetch itself.
  async bgfStartInWorker(id, url, total) {
    const registration = await bgfRegistration();
    return new Promise((resolve, reject) => {
      const channel = new MessageChannel();
      const timer = setTimeout(() => reject(new Error('the /bgf/ worker did not answer')), 20000);
      channel.port1.onmessage = (event) => {
        clearTimeout(timer);
        resolve(event.data);
      };
      registration.active.postMessage({ type: 'bgf-start', id, url, total }, [channel.port2]);
    });
  },
  // Starts a background fetch from this page; its progress events are kept for bgfState.
  async bgfStart(id, url, total) {
    const registration = await bgfRegistration();
    try {
      const fetch = await registration.backgroundFetch.fetch(id, [url], { downloadTotal: total });
      progress[id] = [];
      fetch.addEventListener('progress', () => progress[id].push({ downloaded: fetch.downloaded, result: fetch.result }));
      return { ok: { id: fetch.id, downloadTotal: fetch.downloadTotal } };
    } catch (error) {
      return failure(error);
    }
  },
  // The running fetch `id` (null once it ended), its progress events and the worker's records of it.
  async bgfState(id) {
    const registration = await bgfRegistration();
    const running = await registration.backgroundFetch.get(id);
    const cache = await caches.open('bgf-log');
    const log = [];
    for (const request of await cache.keys()) {
      const entry = await (await cache.match(request)).json();
      if (entry.id === id) log.push(entry);
    }
    log.sort((a, b) => a.at - b.at);
    return {
      running: running && { downloaded: running.downloaded, result: running.result, failureReason: running.failureReason },
      progress: progress[id] || [],
      log,
    };
  },
});
