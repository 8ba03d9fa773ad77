// The bench service worker: runs one measure per message inside event.waitUntil and answers
// over the message's MessageChannel port. Engine measures call the bench wasm (which drives
// background_assets::web::transfer::run); the baselines are what PWAs do today, in plain JS.
importScripts('/bench-pkg/worker/background_assets_bench.js');

let wasmReady = null;
function loadWasm() {
  if (!wasmReady) {
    wasmReady = wasm_bindgen({ module_or_path: '/bench-pkg/worker/background_assets_bench_bg.wasm' });
  }
  return wasmReady;
}

self.addEventListener('install', (event) => {
  event.waitUntil(loadWasm().then(() => self.skipWaiting()));
});
self.addEventListener('activate', (event) => {
  event.waitUntil(loadWasm().then(() => self.clients.claim()));
});

function probe() {
  return Math.floor(Math.random() * 1e12);
}

/** fetch, body stream read and discarded. */
async function fetchDrain({ cdn, len, seed }) {
  const url = `${cdn}/gen/${len}/${seed}?probe=${probe()}`;
  const started = performance.now();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const reader = response.body.getReader();
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
  }
  const ms = performance.now() - started;
  if (bytes !== len) throw new Error(`drained ${bytes} bytes, expected ${len}`);
  return { ms };
}

function request(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function committed(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
  });
}

/** A fresh database `name` with one object store, `store`. */
async function openStore(name, store) {
  const open = indexedDB.open(name, 1);
  open.onupgradeneeded = () => open.result.createObjectStore(store);
  return request(open);
}

/** Closes `db` and deletes its database `name`. */
async function closeAndDelete(db, name) {
  db.close();
  await request(indexedDB.deleteDatabase(name));
}

/** IndexedDB put of `len` bytes from memory in chunks of `chunk` bytes, one transaction each. */
async function idbPut({ len, chunk }) {
  const name = `bench-idb-${probe()}`;
  const db = await openStore(name, 'chunks');
  const source = new Uint8Array(chunk);
  for (let i = 0; i < chunk; i += 4) source[i] = (i * 2654435761) >>> 24;
  const started = performance.now();
  for (let offset = 0, key = 0; offset < len; offset += chunk, key++) {
    const tx = db.transaction('chunks', 'readwrite', { durability: 'relaxed' });
    const piece = offset + chunk <= len ? source : source.subarray(0, len - offset);
    tx.objectStore('chunks').put(piece, key);
    await committed(tx);
  }
  const ms = performance.now() - started;
  await closeAndDelete(db, name);
  return { ms };
}

/** Workbox-style: fetch and cache.put of the whole Response. */
async function cachePut({ cdn, len, seed }) {
  const name = `bench-cache-${probe()}`;
  const cache = await caches.open(name);
  const url = `${cdn}/gen/${len}/${seed}?probe=${probe()}`;
  const started = performance.now();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  await cache.put(url, response);
  const ms = performance.now() - started;
  await caches.delete(name);
  return { ms };
}

/** The floor of any streamed store into IndexedDB: fetch, the body cut into `chunk`-byte
 * arrays, each stored as a Blob with an IndexedDB put (one relaxed transaction per chunk, two
 * commits in flight), with no verification and no record beside the chunk. */
async function fetchPut({ cdn, len, seed, chunk }) {
  const name = `bench-fetch-put-${probe()}`;
  const db = await openStore(name, 'chunks');
  const url = `${cdn}/gen/${len}/${seed}?probe=${probe()}`;
  const started = performance.now();
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const reader = response.body.getReader();
  const buffer = new Uint8Array(chunk);
  const commits = [];
  let filled = 0;
  let key = 0;
  let total = 0;
  async function put(bytes) {
    while (commits.length >= 2) await commits.shift();
    const tx = db.transaction('chunks', 'readwrite', { durability: 'relaxed' });
    tx.objectStore('chunks').put(new Blob([bytes]), key++);
    commits.push(committed(tx));
  }
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    for (let at = 0; at < value.byteLength;) {
      const n = Math.min(chunk - filled, value.byteLength - at);
      buffer.set(value.subarray(at, at + n), filled);
      filled += n;
      at += n;
      total += n;
      if (filled === chunk) {
        await put(buffer);
        filled = 0;
      }
    }
  }
  if (filled) await put(buffer.subarray(0, filled));
  await Promise.all(commits);
  const ms = performance.now() - started;
  await closeAndDelete(db, name);
  if (total !== len) throw new Error(`stored ${total} bytes, expected ${len}`);
  return { ms };
}

/** Workbox-style sequential precache: fetch + cache.put one file after another. */
function precache(args) {
  return precacheMany({ ...args, concurrency: 1 });
}

/** Runs `job(i)` for every `i` below `count`, `concurrency` at a time (each lane takes the next
 * `i` once its job before ends). */
async function inLanes(count, concurrency, job) {
  let next = 0;
  async function lane() {
    while (next < count) await job(next++);
  }
  await Promise.all(Array.from({ length: concurrency }, lane));
}

/** The floor of any way of storing many files: fetch them `concurrency` at a time, read each
 * body whole and drop it. */
async function fetchMany({ cdn, count, size, seed, concurrency }) {
  const tag = probe();
  const started = performance.now();
  await inLanes(count, concurrency, (i) => fetchWhole(`${cdn}/gen/${size}/${seed + i}?probe=${tag}`, size));
  return { ms: performance.now() - started };
}

/** Checks that `files` holds `count` files, then closes and deletes the database. */
async function dropFiles(db, name, count) {
  const check = db.transaction('files', 'readonly');
  const files = await request(check.objectStore('files').count());
  await closeAndDelete(db, name);
  if (files !== count) throw new Error(`stored ${files} files, expected ${count}`);
}

/** A generated file's body, read whole, as a `Uint8Array` of `size` bytes. */
async function fetchWhole(url, size) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
  const body = new Uint8Array(await response.arrayBuffer());
  if (body.byteLength !== size) throw new Error(`GET ${url}: ${body.byteLength} bytes`);
  return body;
}

/** The floor of any store of many files into IndexedDB: fetch them `concurrency` at a time, each
 * body read whole and put as one value in its own relaxed readwrite transaction, the commit
 * awaited before the lane takes the next file; nothing verified or recorded beside it. */
async function fetchPutMany({ cdn, count, size, seed, concurrency }) {
  const name = `bench-fetch-put-many-${probe()}`;
  const db = await openStore(name, 'files');
  const tag = probe();
  const started = performance.now();
  await inLanes(count, concurrency, async (i) => {
    const body = await fetchWhole(`${cdn}/gen/${size}/${seed + i}?probe=${tag}`, size);
    const tx = db.transaction('files', 'readwrite', { durability: 'relaxed' });
    tx.objectStore('files').put(body, i);
    await committed(tx);
  });
  const ms = performance.now() - started;
  await dropFiles(db, name, count);
  return { ms };
}

/** The floor of any store of many files into IndexedDB with group commit: fetch them
 * `concurrency` at a time, each body read whole; the bodies that arrive while a transaction
 * commits all go into the next one (one readwrite, relaxed transaction at a time). A lane takes
 * its next file at once, without waiting for the commit; every commit is awaited at the end. */
async function fetchPutGrouped({ cdn, count, size, seed, concurrency }) {
  const name = `bench-fetch-put-grouped-${probe()}`;
  const db = await openStore(name, 'files');
  const tag = probe();
  const started = performance.now();
  let waiting = [];
  let commit = null;
  let transactions = 0;
  const stored = [];
  function flush() {
    if (commit || waiting.length === 0) return;
    const batch = waiting;
    waiting = [];
    const tx = db.transaction('files', 'readwrite', { durability: 'relaxed' });
    const store = tx.objectStore('files');
    for (const file of batch) store.put(file.body, file.key);
    transactions++;
    commit = committed(tx);
    stored.push(commit);
    commit.finally(() => {
      commit = null;
      flush();
    }).catch(() => {});
  }
  await inLanes(count, concurrency, async (i) => {
    const body = await fetchWhole(`${cdn}/gen/${size}/${seed + i}?probe=${tag}`, size);
    waiting.push({ key: i, body });
    flush();
  });
  // Commits chain: each one's end starts the next, so wait until none is left.
  while (commit || waiting.length) {
    flush();
    await Promise.all(stored);
  }
  const ms = performance.now() - started;
  await dropFiles(db, name, count);
  return { ms, transactions };
}

/** A Workbox-style precache run `concurrency` at a time: fetch + cache.put in each lane. */
async function precacheMany({ cdn, count, size, seed, concurrency }) {
  const name = `bench-precache-${probe()}`;
  const cache = await caches.open(name);
  const tag = probe();
  const started = performance.now();
  await inLanes(count, concurrency, async (i) => {
    const url = `${cdn}/gen/${size}/${seed + i}?probe=${tag}`;
    const response = await fetch(url);
    if (!response.ok) throw new Error(`GET ${url}: ${response.status}`);
    await cache.put(url, response);
  });
  const ms = performance.now() - started;
  const stored = (await cache.keys()).length;
  await caches.delete(name);
  if (stored !== count) throw new Error(`precached ${stored} files, expected ${count}`);
  return { ms };
}

async function measure(data) {
  await loadWasm();
  const a = data.args;
  switch (data.measure) {
    case 'ping':
      return { ok: true };
    case 'engine':
      return JSON.parse(await wasm_bindgen.engineThroughput(a.cdn, a.len, a.seed, a.chunk, a.window || 0, !!a.chunkDigests));
    case 'engineMany':
      return JSON.parse(await wasm_bindgen.engineMany(a.cdn, a.count, a.size, a.seed, a.concurrency));
    case 'managerThroughput':
      return JSON.parse(await wasm_bindgen.managerThroughput(a.cdn, a.len, a.seed));
    case 'managerMany':
      return JSON.parse(await wasm_bindgen.managerMany(a.cdn, a.count, a.size, a.seed, a.concurrency));
    case 'engineMemory':
      return JSON.parse(await wasm_bindgen.engineMemory(a.cdn, a.len, a.seed, a.chunk));
    case 'killStart':
      return JSON.parse(await wasm_bindgen.killStart(a.cdn, a.len, a.seed, a.chunk, a.tag));
    case 'killFinish':
      return JSON.parse(await wasm_bindgen.killFinish(a.cdn, a.len, a.seed, a.chunk, a.tag));
    case 'engineResume':
      return JSON.parse(await wasm_bindgen.engineResume(a.cdn, a.len, a.seed, a.chunk, a.mode));
    case 'managerScale':
      return JSON.parse(await wasm_bindgen.managerScale(a.cdn, a.count, a.budgetMs));
    case 'smallProfile':
      return JSON.parse(await wasm_bindgen.smallProfile(a.cdn, a.count, a.size, a.seed));
    case 'sha256':
      return JSON.parse(wasm_bindgen.sha256Speed(a.len));
    case 'fetchDrain':
      return fetchDrain(a);
    case 'idbPut':
      return idbPut(a);
    case 'cachePut':
      return cachePut(a);
    case 'fetchPut':
      return fetchPut(a);
    case 'precache':
      return precache(a);
    case 'fetchMany':
      return fetchMany(a);
    case 'fetchPutMany':
      return fetchPutMany(a);
    case 'fetchPutGrouped':
      return fetchPutGrouped(a);
    case 'precacheMany':
      return precacheMany(a);
    default:
      throw new Error(`unknown measure ${data.measure}`);
  }
}

self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (!port) return;
  event.waitUntil(
    measure(event.data).then(
      (result) => port.postMessage({ result }),
      (error) => port.postMessage({ error: String(error && error.message ? error.message : error) }),
    ),
  );
});
