// The demo page: a plain-JS client of background-assets, meant to be copied from.
//
// What it does, in order:
//   1. loads the wasm package (ES module) and registers the service worker (/sw.js), which runs
//      the extension: on install it schedules the packs pkg.json installs and waits for the
//      essential ones;
//   2. opens the shared DownloadManager, sets a delegate (so the page receives the callbacks) and
//      listens to pack status updates and to the worker's hook calls (BroadcastChannel);
//   3. waits for the essential packs (manager.ready()), then "launches" (lifts the initial
//      download restrictions) and lets the prefetch packs finish in the background;
//   4. shows every pack and download with progress, bytes and rate, storage use, online state and
//      an event log; the on-demand pack (a video) is fetched when asked and played from the
//      container through the worker, seeking with Range requests.
//
// Machine-readable state (read by `cargo xtask demo --headless` and the end-to-end tests):
//   <body data-state="loading|ready|error" data-error data-online data-worker data-controlled
//         data-ready data-launched>
//   <article data-pack=ID data-status data-bytes data-size data-rate>  one per pack
//   <tr data-download=ID data-state data-written data-expected>        one per current download
//   <output id="verify-result" data-state="idle|running|ok|failed" data-files data-bytes data-ms>
//   <div id="video-box" data-state="absent|fetching|ready|error" data-src>
//   <output id="worker-requests" data-count data-ranges data-last-range (every request for a
//           stored asset) data-video data-video-ranges data-last-video-range (the <video>'s own)>
//   <span id="storage" data-usage data-quota>
//   <ol id="log"> <li data-source="delegate|pack|hook|page" data-name> …
//   <output id="status" data-state data-page-version data-page-context data-worker-version
//           data-worker-context>  (the worker's own answer, from its wasm: see sw.js)
// and `window.demo` for a driver (or the console): state(), verify(), seekCheck(seconds),
// ensure(packId), manager().
import * as ba from '/pkg/background_assets.js';

const $ = (selector) => document.querySelector(selector);
const body = document.body;
const REFRESH_MS = 500;
const STORAGE_REFRESH_MS = 2000;
const LOG_LIMIT = 400;
const WORKER_REPLY_TIMEOUT_MS = 60000;
/** The channel sw.js posts its extension hook calls and observed requests on. */
const DEMO_CHANNEL = 'background-assets-demo';

/** State the page keeps between refreshes (everything shown is derived from the manager). */
const view = {
  manager: null,
  packs: [],
  downloads: [],
  /** id -> { t, bytes, rate } for the rate column. */
  rates: new Map(),
  /** id -> { written, expected } from the last didWriteData (fresher than the stored state). */
  progress: new Map(),
  /** id -> the <li> that aggregates didWriteData calls. */
  progressEntries: new Map(),
  workerRequests: { count: 0, ranges: 0, video: 0, videoRanges: 0, lastRange: '', lastVideoRange: '' },
};

// --- small helpers -------------------------------------------------------------------------------

function formatBytes(n) {
  if (!Number.isFinite(n)) return '?';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formatRate(bytesPerSecond) {
  return bytesPerSecond > 0 ? `${formatBytes(bytesPerSecond)}/s` : '—';
}

function describeError(error) {
  if (!error) return 'unknown error';
  const name = error.name && error.name !== 'Error' ? `${error.name}: ` : '';
  return `${name}${error.message || String(error)}`;
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Lower-case hex of an ArrayBuffer. */
function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The URL the worker serves a pack file at (see the library's served_file_url). */
function servedFileUrl(path) {
  return `${location.origin}/background-assets/file/${path.split('/').map(encodeURIComponent).join('/')}`;
}

// --- the event log -------------------------------------------------------------------------------

function log(source, name, text, extra = {}) {
  const list = $('#log');
  const item = document.createElement('li');
  item.dataset.source = source;
  item.dataset.name = name;
  for (const [key, value] of Object.entries(extra)) item.dataset[key] = String(value);
  const time = new Date().toISOString().slice(11, 23);
  item.innerHTML = '<time></time> <b></b> <span></span>';
  item.querySelector('time').textContent = time;
  item.querySelector('b').textContent = `${source} · ${name}`;
  item.querySelector('span').textContent = text;
  list.prepend(item);
  while (list.children.length > LOG_LIMIT) list.lastElementChild.remove();
  return item;
}

/** didWriteData is called for every chunk: one log line per download counts the calls. */
function logProgress(id, bytesWritten, totalWritten, totalExpected) {
  let item = view.progressEntries.get(id);
  if (!item || !item.isConnected) {
    item = log('delegate', 'didWriteData', '');
    item.dataset.calls = '0';
    view.progressEntries.set(id, item);
  }
  const calls = Number(item.dataset.calls) + 1;
  item.dataset.calls = String(calls);
  item.querySelector('span').textContent =
    `${id}: ×${calls}, last +${formatBytes(bytesWritten)} → ${formatBytes(totalWritten)} of ${formatBytes(totalExpected)}`;
}

// --- the delegate: every callback is logged ------------------------------------------------------

const delegate = {
  didBegin(id) {
    log('delegate', 'didBegin', id);
    scheduleRefresh();
  },
  didPause(id) {
    log('delegate', 'didPause', id);
    scheduleRefresh();
  },
  didWriteData(id, bytesWritten, totalWritten, totalExpected) {
    view.progress.set(id, { written: Number(totalWritten), expected: Number(totalExpected) });
    logProgress(id, Number(bytesWritten), Number(totalWritten), Number(totalExpected));
    scheduleRefresh();
  },
  didFail(id, error) {
    log('delegate', 'didFail', `${id}: ${describeError(error)}`, { error: error && error.name });
    scheduleRefresh();
  },
  didFinish(id, finished) {
    const size = finished && finished.size !== undefined ? formatBytes(Number(finished.size)) : '';
    log('delegate', 'didFinish', `${id} ${size} → ${finished && finished.url ? finished.url : ''}`);
    view.progressEntries.delete(id);
    scheduleRefresh();
  },
  didRequeueAsNonEssential(id) {
    log('delegate', 'didRequeueAsNonEssential', id);
    scheduleRefresh();
  },
  async authenticationChallenge(id, challenge) {
    // The demo CDN needs no credentials: decline, so the download fails with a typed error.
    log('delegate', 'authenticationChallenge', `${id}: ${challenge.status} ${challenge.url} (declined)`);
    return null;
  },
};

// --- rendering -----------------------------------------------------------------------------------

/** Updates the rate estimate of `key` from a new byte count (exponentially smoothed). */
function rateOf(key, bytes) {
  const now = performance.now();
  const previous = view.rates.get(key);
  if (!previous || bytes < previous.bytes) {
    view.rates.set(key, { t: now, bytes, rate: 0 });
    return 0;
  }
  const dt = (now - previous.t) / 1000;
  if (dt < 0.2) return previous.rate;
  const instant = (bytes - previous.bytes) / dt;
  const rate = previous.rate ? 0.5 * previous.rate + 0.5 * instant : instant;
  view.rates.set(key, { t: now, bytes, rate });
  return rate;
}

/** Bytes written so far: the stored state, or the delegate's last report when that is newer. */
function writtenOf(download) {
  const reported = view.progress.get(download.id);
  return Math.max(Number(download.totalWritten), reported ? reported.written : 0);
}

/** Bytes of `file` present: all of it once stored, else what its current download wrote. */
function fileBytes(pack, file) {
  if (file.stored || pack.status === 'downloaded') return Number(file.size);
  const current = view.downloads.find((d) => d.url === file.url);
  return current ? writtenOf(current) : 0;
}

function packElement(pack) {
  let element = document.querySelector(`article[data-pack="${CSS.escape(pack.id)}"]`);
  if (element) return element;
  element = $('#pack-template').content.firstElementChild.cloneNode(true);
  element.dataset.pack = pack.id;
  element.querySelector('.pack-id').textContent = pack.id;
  element.querySelector('[data-action="ensure"]').addEventListener('click', () => ensure(pack.id));
  element.querySelector('[data-action="remove"]').addEventListener('click', () => removePack(pack.id));
  $('#packs').append(element);
  return element;
}

function renderPacks() {
  for (const pack of view.packs) {
    const element = packElement(pack);
    let bytes = 0;
    const files = element.querySelector('.pack-files');
    files.textContent = '';
    for (const file of pack.files) {
      const have = fileBytes(pack, file);
      bytes += have;
      const item = document.createElement('li');
      item.dataset.path = file.path;
      item.textContent = `${file.path} — ${formatBytes(have)} / ${formatBytes(file.size)}`;
      files.append(item);
    }
    const size = Number(pack.size);
    const rate = pack.status === 'downloaded' ? 0 : rateOf(`pack:${pack.id}`, bytes);
    element.dataset.status = pack.status;
    element.dataset.bytes = String(bytes);
    element.dataset.size = String(size);
    element.dataset.rate = String(Math.round(rate));
    element.dataset.policy = pack.policy;
    element.dataset.version = pack.version;
    element.querySelector('.pack-policy').textContent = `${pack.policy} · v${pack.version}`;
    const status = element.querySelector('.pack-status');
    status.textContent = pack.status;
    status.dataset.status = pack.status;
    const progress = element.querySelector('progress');
    progress.max = size || 1;
    progress.value = Math.min(bytes, size);
    element.querySelector('.bytes').textContent = `${formatBytes(bytes)} of ${formatBytes(size)}`;
    element.querySelector('.rate').textContent = formatRate(rate);
    element.querySelector('[data-action="ensure"]').disabled = pack.status === 'downloaded' || pack.status === 'downloading';
    element.querySelector('[data-action="remove"]').disabled = pack.status !== 'downloaded' && pack.status !== 'outdated';
  }
}

function downloadRow(id) {
  let row = document.querySelector(`tr[data-download="${CSS.escape(id)}"]`);
  if (row) return row;
  row = document.createElement('tr');
  row.dataset.download = id;
  row.innerHTML = `<td class="id"></td><td class="state"></td><td><progress max="1" value="0"></progress></td>
    <td class="bytes"></td><td class="rate"></td>
    <td class="actions">
      <button type="button" data-action="pause">Pause</button>
      <button type="button" data-action="resume">Resume</button>
      <button type="button" data-action="cancel">Cancel</button>
      <button type="button" data-action="foreground">Download now</button>
    </td>`;
  row.querySelector('.id').textContent = id;
  const act = (name, call) => row.querySelector(`[data-action="${name}"]`).addEventListener('click', () => call(id));
  act('pause', (i) => command(`pause ${i}`, () => view.manager.pause(i)));
  act('resume', (i) => command(`resume ${i}`, () => view.manager.resume(i)));
  act('cancel', (i) => command(`cancel ${i}`, () => view.manager.cancel(i)));
  act('foreground', (i) => command(`startForegroundDownload ${i}`, () => view.manager.startForegroundDownload(i)));
  $('#downloads tbody').append(row);
  return row;
}

function renderDownloads() {
  const seen = new Set();
  for (const download of view.downloads) {
    seen.add(download.id);
    const row = downloadRow(download.id);
    const written = writtenOf(download);
    const expected = Number(download.totalExpected);
    const rate = download.state === 'running' || download.state === 'downloading' ? rateOf(download.id, written) : 0;
    row.dataset.state = download.state;
    row.dataset.written = String(written);
    row.dataset.expected = String(expected);
    row.dataset.foreground = String(Boolean(download.foreground));
    row.dataset.essential = String(Boolean(download.essential));
    row.querySelector('.state').textContent =
      `${download.state}${download.foreground ? ' · foreground' : ''}${download.essential ? ' · essential' : ''}`;
    const progress = row.querySelector('progress');
    progress.max = expected > 0 ? expected : 1;
    progress.value = expected > 0 ? Math.min(written, expected) : 0;
    row.querySelector('.bytes').textContent = `${formatBytes(written)} of ${expected > 0 ? formatBytes(expected) : '?'}`;
    row.querySelector('.rate').textContent = formatRate(rate);
    const paused = download.state === 'paused';
    row.querySelector('[data-action="pause"]').disabled = paused;
    row.querySelector('[data-action="resume"]').disabled = !paused;
    row.querySelector('[data-action="foreground"]').disabled = Boolean(download.foreground);
  }
  for (const row of document.querySelectorAll('tr[data-download]')) {
    if (!seen.has(row.dataset.download)) row.remove();
  }
  for (const id of view.progress.keys()) {
    if (!seen.has(id)) view.progress.delete(id);
  }
  $('#no-downloads').hidden = view.downloads.length > 0;
}

let refreshing = false;
let refreshAgain = false;

/** Reads the manager's downloads and packs and redraws; coalesces overlapping calls. */
async function refresh() {
  if (!view.manager) return;
  if (refreshing) { refreshAgain = true; return; }
  refreshing = true;
  try {
    do {
      refreshAgain = false;
      view.downloads = await view.manager.fetchCurrentDownloads();
      view.packs = await view.manager.packs();
      renderDownloads();
      renderPacks();
      renderVideoBox();
    } while (refreshAgain);
  } catch (error) {
    log('page', 'refresh', `failed: ${describeError(error)}`);
  } finally {
    refreshing = false;
  }
}

let refreshTimer = null;
function scheduleRefresh() {
  if (refreshTimer) return;
  refreshTimer = setTimeout(() => { refreshTimer = null; refresh(); }, 50);
}

async function refreshStorage() {
  const element = $('#storage');
  if (!navigator.storage || !navigator.storage.estimate) {
    element.textContent = 'storage: unknown';
    return;
  }
  try {
    const { usage, quota } = await navigator.storage.estimate();
    element.dataset.usage = String(usage);
    element.dataset.quota = String(quota);
    element.textContent = `storage: ${formatBytes(usage)} of ${formatBytes(quota)}`;
  } catch (error) {
    element.textContent = `storage: ${describeError(error)}`;
  }
}

function renderOnline() {
  const online = navigator.onLine;
  body.dataset.online = String(online);
  const badge = $('#online');
  badge.dataset.online = String(online);
  badge.textContent = online ? 'online' : 'offline';
}

// --- commands ------------------------------------------------------------------------------------

async function command(label, call) {
  log('page', 'call', label);
  try {
    const value = await call();
    scheduleRefresh();
    return value;
  } catch (error) {
    log('page', 'error', `${label}: ${describeError(error)}`, { error: error && error.name });
    scheduleRefresh();
    throw error;
  }
}

function ensure(packId) {
  return command(`ensureLocalAvailability ${packId}`, () => view.manager.ensureLocalAvailability(packId));
}

function removePack(packId) {
  return command(`removePack ${packId}`, () => view.manager.removePack(packId)).catch(() => {});
}

async function checkForUpdates() {
  const summary = await command('checkForUpdates', () => view.manager.checkForUpdates());
  log('page', 'checkForUpdates', `updated [${(summary.updated || []).join(', ')}], removed [${(summary.removed || []).join(', ')}]`);
}

/**
 * Reads every file of every downloaded pack back through the worker and checks its size and
 * SHA-256 against pkg.json, plus one Range request per file (206 with the right Content-Range).
 */
async function verify() {
  const output = $('#verify-result');
  output.dataset.state = 'running';
  output.textContent = 'verifying…';
  const started = performance.now();
  let files = 0;
  let bytes = 0;
  try {
    const packs = await view.manager.packs();
    for (const pack of packs.filter((p) => p.status === 'downloaded')) {
      for (const file of pack.files) {
        const url = servedFileUrl(file.path);
        const response = await fetch(url);
        if (!response.ok) throw new Error(`${file.path}: GET ${url} answered ${response.status}`);
        const data = await response.arrayBuffer();
        if (data.byteLength !== Number(file.size)) {
          throw new Error(`${file.path}: ${data.byteLength} bytes served, ${file.size} declared`);
        }
        const digest = hex(await crypto.subtle.digest('SHA-256', data));
        if (digest !== file.sha256.toLowerCase()) throw new Error(`${file.path}: SHA-256 ${digest}, declared ${file.sha256}`);
        const last = Number(file.size) - 1;
        const first = Math.max(0, last - 99);
        const ranged = await fetch(url, { headers: { Range: `bytes=${first}-${last}` } });
        const slice = new Uint8Array(await ranged.arrayBuffer());
        const expected = new Uint8Array(data, first, last - first + 1);
        if (ranged.status !== 206 || slice.length !== expected.length || slice.some((b, i) => b !== expected[i])) {
          throw new Error(`${file.path}: Range bytes=${first}-${last} answered ${ranged.status} with ${slice.length} bytes`);
        }
        files += 1;
        bytes += data.byteLength;
      }
    }
    output.dataset.state = files > 0 ? 'ok' : 'failed';
    if (files === 0) output.dataset.error = 'no downloaded pack to verify';
    else delete output.dataset.error;
  } catch (error) {
    output.dataset.state = 'failed';
    output.dataset.error = describeError(error);
  }
  const ms = Math.round(performance.now() - started);
  output.dataset.files = String(files);
  output.dataset.bytes = String(bytes);
  output.dataset.ms = String(ms);
  output.textContent = output.dataset.state === 'ok'
    ? `${files} files, ${formatBytes(bytes)} read from the container and verified in ${ms} ms`
    : `failed: ${output.dataset.error}`;
  log('page', 'verify', output.textContent);
  return { ...output.dataset };
}

// --- the on-demand video -------------------------------------------------------------------------

/** The on-demand pack holding the video, and the video file in it. */
function videoPack() {
  for (const pack of view.packs) {
    const file = pack.files.find((f) => /\.(webm|mp4)$/i.test(f.path));
    if (file) return { pack, file };
  }
  return null;
}

function renderVideoBox() {
  const box = $('#video-box');
  const found = videoPack();
  const button = $('#get-video');
  const video = $('#video');
  if (!found) { button.disabled = true; return; }
  const { pack, file } = found;
  if (pack.status === 'downloaded') {
    const src = servedFileUrl(file.path);
    if (box.dataset.src !== src) {
      box.dataset.src = src;
      video.src = src;
    }
    video.hidden = false;
    button.hidden = true;
    box.dataset.state = 'ready';
  } else {
    if (box.dataset.src) {
      delete box.dataset.src;
      video.removeAttribute('src');
      video.load();
    }
    video.hidden = true;
    button.hidden = false;
    button.disabled = pack.status === 'downloading';
    box.dataset.state = pack.status === 'downloading' ? 'fetching' : 'absent';
  }
}

async function getVideo() {
  const found = videoPack();
  if (!found) return;
  $('#video-box').dataset.state = 'fetching';
  try {
    await ensure(found.pack.id);
  } catch (_) {
    $('#video-box').dataset.state = 'error';
  }
  await refresh();
}

function once(target, name, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${name} event in ${ms} ms`)), ms);
    target.addEventListener(name, (event) => { clearTimeout(timer); resolve(event); }, { once: true });
  });
}

/**
 * Seeks the video to `seconds`, then plays it (muted) and reports where it got: the player asks
 * the worker for the bytes with Range requests. Used by the headless demo.
 */
async function seekCheck(seconds) {
  await refresh();
  const video = $('#video');
  const box = $('#video-box');
  if (box.dataset.state !== 'ready') throw new Error(`the video is not downloaded (state ${box.dataset.state})`);
  // A fresh URL (the worker ignores the query), so the engine cannot reuse bytes another element
  // already holds for the same URL (Firefox clones such media streams): every byte of this check
  // comes from the worker.
  const loaded = once(video, 'loadedmetadata', 10000);
  video.src = `${box.dataset.src}?check=${Date.now()}`;
  await loaded;
  const rangesBefore = view.workerRequests.ranges;
  const seeked = once(video, 'seeked', 10000);
  video.currentTime = seconds;
  await seeked;
  const afterSeek = video.currentTime;
  await video.play();
  const deadline = performance.now() + 8000;
  while (video.currentTime < afterSeek + 0.5 && performance.now() < deadline) await sleep(100);
  const afterPlay = video.currentTime;
  video.pause();
  const result = {
    duration: video.duration,
    target: seconds,
    afterSeek,
    afterPlay,
    rangesBefore,
    rangesAfter: view.workerRequests.ranges,
    lastRange: view.workerRequests.lastRange,
    readyState: video.readyState,
    error: video.error ? video.error.message || String(video.error.code) : null,
  };
  for (const [key, value] of Object.entries(result)) box.dataset[`seek${key[0].toUpperCase()}${key.slice(1)}`] = String(value);
  log('page', 'seek', `to ${seconds}s: at ${afterSeek.toFixed(2)}s after seeking, ${afterPlay.toFixed(2)}s after playing`);
  return result;
}

// --- the worker: registration, hook calls, its hello ---------------------------------------------

function listenToWorker() {
  if (!('BroadcastChannel' in self)) return;
  const channel = new BroadcastChannel(DEMO_CHANNEL);
  channel.onmessage = ({ data }) => {
    if (!data) return;
    if (data.kind === 'hook') {
      log(data.source || 'hook', data.name, data.text || '');
      scheduleRefresh();
    } else if (data.kind === 'request') {
      log('worker', 'request', `${data.destination || 'fetch'} ${data.path}${data.range ? ` Range: ${data.range}` : ''}`);
      const requests = view.workerRequests;
      requests.count += 1;
      if (data.range) { requests.ranges += 1; requests.lastRange = `${data.path} ${data.range}`; }
      const video = videoPack();
      // What the <video> element itself asked for (not verify()'s own fetches).
      if (data.destination === 'video' && video && data.path === new URL(servedFileUrl(video.file.path)).pathname) {
        requests.video += 1;
        if (data.range) { requests.videoRanges += 1; requests.lastVideoRange = data.range; }
      }
      const output = $('#worker-requests');
      output.dataset.count = String(requests.count);
      output.dataset.ranges = String(requests.ranges);
      output.dataset.video = String(requests.video);
      output.dataset.videoRanges = String(requests.videoRanges);
      output.dataset.lastVideoRange = requests.lastVideoRange;
      output.dataset.lastRange = requests.lastRange;
      output.textContent = `${requests.count} for stored assets, ${requests.ranges} with Range (last: ${requests.lastRange || '—'})`;
    }
  };
  // Ask a running worker for the hook calls it made before this page listened.
  channel.postMessage({ kind: 'history' });
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

function renderWorker(registration) {
  const worker = registration.active ? 'active' : registration.waiting ? 'waiting' : registration.installing ? 'installing' : 'none';
  body.dataset.worker = worker;
  body.dataset.controlled = String(Boolean(navigator.serviceWorker.controller));
  $('#worker').textContent = `worker: ${worker}${navigator.serviceWorker.controller ? ' · controls this page' : ''}`;
}

async function registerWorker() {
  if (!('serviceWorker' in navigator)) throw new Error('this browser has no service workers');
  const registration = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
  const tracked = new WeakSet();
  const track = (worker) => {
    if (!worker || tracked.has(worker)) return;
    tracked.add(worker);
    worker.addEventListener('statechange', () => {
      log('page', 'worker', `state ${worker.state}`);
      renderWorker(registration);
    });
  };
  track(registration.installing);
  registration.addEventListener('updatefound', () => track(registration.installing));
  navigator.serviceWorker.addEventListener('controllerchange', () => {
    log('page', 'worker', 'now controls this page');
    renderWorker(registration);
  });
  renderWorker(registration);
  return registration;
}

/** The worker's own answer (its wasm version and global), shown in #status. */
async function helloWorker(registration) {
  const status = $('#status');
  const ready = await navigator.serviceWorker.ready;
  renderWorker(registration);
  const reply = await ask(ready.active, { type: 'hello' });
  status.dataset.workerVersion = reply.version;
  status.dataset.workerContext = reply.context;
  $('#worker-version').textContent = reply.version;
  status.dataset.state = 'ready';
  status.textContent = `page wasm ${status.dataset.pageVersion}, service worker wasm ${reply.version} (${reply.context})`;
}

// --- launch: essentials present → lift restrictions → prefetch in the background ----------------

async function launchWhenReady() {
  await view.manager.ready();
  body.dataset.ready = 'true';
  log('page', 'ready', 'every essential pack is present');
  if (typeof ba.launch === 'function') {
    const launched = await ba.launch();
    const how = launched && launched.periodicSync ? `; periodic sync: ${launched.periodicSync}` : '';
    log('page', 'launch', `initial download restrictions lifted${how}`);
    if (launched && launched.checkError) {
      log('page', 'launch', `update check not run: ${launched.checkError.name}: ${launched.checkError.message}`);
    }
  } else {
    log('page', 'launch', 'this build has no launch(): restrictions stay until the worker lifts them');
  }
  body.dataset.launched = 'true';
  $('#launch').textContent = 'launched';
  // Prefetch packs the install did not schedule (e.g. over the pre-launch allowance) start now.
  for (const pack of await view.manager.packs()) {
    if (pack.policy === 'prefetch' && (pack.status === 'downloadAvailable' || pack.status === 'updateAvailable')) {
      ensure(pack.id).catch(() => {});
    }
  }
  scheduleRefresh();
}

async function watchStatusUpdates() {
  const updates = view.manager.statusUpdates();
  updates.addEventListener('status', (event) => {
    const { pack, status } = event.detail;
    log('pack', 'status', `${pack}: ${status}`, { pack, status });
    scheduleRefresh();
    refreshStorage();
  });
}

// --- start ---------------------------------------------------------------------------------------

window.demo = {
  /** Every data attribute the page exposes, as one JSON-able object. */
  state() {
    const data = (element) => (element ? { ...element.dataset } : null);
    return {
      body: data(body),
      status: data($('#status')),
      storage: data($('#storage')),
      verify: data($('#verify-result')),
      video: data($('#video-box')),
      workerRequests: data($('#worker-requests')),
      packs: Array.from(document.querySelectorAll('article[data-pack]'), data),
      downloads: Array.from(document.querySelectorAll('tr[data-download]'), data),
      log: Array.from(document.querySelectorAll('#log li'), (li) => ({ ...li.dataset, text: li.querySelector('span').textContent })).reverse(),
    };
  },
  verify: () => verify(),
  seekCheck: (seconds) => seekCheck(seconds),
  ensure: (packId) => ensure(packId),
  refresh: () => refresh(),
  /** The page's shared DownloadManager, to try the API from the console. */
  manager: () => view.manager,
};

async function main() {
  renderOnline();
  addEventListener('online', () => { renderOnline(); log('page', 'online', 'back online'); });
  addEventListener('offline', () => { renderOnline(); log('page', 'offline', 'the browser is offline'); });
  $('#clear-log').addEventListener('click', () => { $('#log').textContent = ''; view.progressEntries.clear(); });
  $('#verify').addEventListener('click', () => verify());
  $('#check-updates').addEventListener('click', () => checkForUpdates().catch(() => {}));
  $('#get-video').addEventListener('click', () => getVideo());
  listenToWorker();

  await ba.default();
  const status = $('#status');
  status.dataset.pageVersion = ba.version();
  status.dataset.pageContext = ba.globalContext();
  $('#page-version').textContent = ba.version();

  const registration = await registerWorker();
  const hello = helloWorker(registration).catch((error) => {
    status.dataset.state = 'error';
    status.dataset.error = describeError(error);
    status.textContent = `worker: ${status.dataset.error}`;
  });

  view.manager = await ba.DownloadManager.shared();
  view.manager.setDelegate(delegate);
  await watchStatusUpdates();
  body.dataset.state = 'ready';
  log('page', 'start', `page wasm ${ba.version()}; delegate set`);
  await refresh();
  setInterval(refresh, REFRESH_MS);
  refreshStorage();
  setInterval(refreshStorage, STORAGE_REFRESH_MS);
  launchWhenReady().catch((error) => log('page', 'error', `ready/launch: ${describeError(error)}`));
  await hello;
}

main().catch((error) => {
  body.dataset.state = 'error';
  body.dataset.error = describeError(error);
  log('page', 'error', body.dataset.error);
  console.error(error);
});
