// e2e fixture: a second service worker (scope /bgf/) that only observes Background Fetch. It
// records every backgroundfetch* event it gets (with the SHA-256 of each record's body) in Cache
// Storage for the page to read, and tries to start a fetch itself when the page asks (Chromium
// refuses that in a service worker).
const STARTED = Date.now();
const LOG = 'bgf-log';
let sequence = 0;

function record(entry) {
  const key = `/bgf-log/${Date.now()}-${sequence++}-${Math.random()}`;
  return caches
    .open(LOG)
    .then((cache) => cache.put(key, new Response(JSON.stringify({ ...entry, started: STARTED, at: Date.now() }))));
}

function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

self.addEventListener('install', () => self.skipWaiting());

self.addEventListener('backgroundfetchsuccess', (event) => {
  const registration = event.registration;
  event.waitUntil(
    (async () => {
      const records = [];
      for (const entry of await registration.matchAll()) {
        const response = await entry.responseReady;
        const body = await response.arrayBuffer();
        records.push({
          url: entry.request.url,
          status: response.status,
          length: body.byteLength,
          sha256: hex(await crypto.subtle.digest('SHA-256', body)),
        });
      }
      await record({ event: 'success', id: registration.id, downloaded: registration.downloaded, result: registration.result, records });
    })(),
  );
});

for (const name of ['backgroundfetchfail', 'backgroundfetchabort']) {
  self.addEventListener(name, (event) => {
    const registration = event.registration;
    event.waitUntil(record({ event: name, id: registration.id, failureReason: registration.failureReason }));
  });
}

self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (!port || !event.data || event.data.type !== 'bgf-start') return;
  const { id, url, total } = event.data;
  event.waitUntil(
    self.registration.backgroundFetch
      .fetch(id, [url], { downloadTotal: total })
      .then(
        (registration) => ({ ok: { id: registration.id } }),
        (error) => ({ error: { name: error.name, message: error.message } }),
      )
      .then((reply) => port.postMessage(reply)),
  );
});
