// The bench page: measures worker cold start, registers the bench service worker, asks it for
// each measure in turn (one message each, answered over a MessageChannel), runs the memory
// measure itself (performance.memory exists in Chromium pages, not in workers), and writes every
// raw result as JSON into <output id="status" data-result>. cargo xtask bench reads it over
// WebDriver and computes the medians.
import init, * as bench from '/bench-pkg/web/background_assets_bench.js';

const status = document.getElementById('status');
const config = JSON.parse(new URLSearchParams(location.search).get('config'));
const results = { errors: [], managerOne: [], engine: [], fetchDrain: [], idbPut: [], cachePut: [], fetchPut: [], engineMany: [],
  managerMany: [], fetchMany: [], fetchPutMany: [], precacheMany: [], fetchPutGrouped: [],
  precache: [], smallProfile: [], sha256: [], managerScale: [], engineMemory: [], engineMemorySmall: [], resumeKill: [], resumeWorkerKill: [], resumePause: [],
  engineWindow: [], engineChunks: [], resumeKillWindow: [], coldOurs: [], coldEmpty: [], coldScript: [], coldWasm: [], wasmCompile: [],
  restartOurs: [], restartEmpty: [] };

/** The pause before each cold start and each compile, in ms. */
const COLD_START_PAUSE_MS = 1000;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function progress(text) {
  status.textContent = text;
  status.dataset.progress = text;
}

function activated(worker) {
  return new Promise((resolve, reject) => {
    if (worker.state === 'activated') return resolve();
    worker.addEventListener('statechange', () => {
      if (worker.state === 'activated') resolve();
      if (worker.state === 'redundant') reject(new Error(`${worker.scriptURL} became redundant`));
    });
  });
}

function ask(worker, message) {
  return new Promise((resolve, reject) => {
    const limit = (config && config.measureTimeoutMs) || 300000;
    setTimeout(() => reject(new Error(`no answer within ${limit} ms`)), limit);
    const channel = new MessageChannel();
    channel.port1.onmessage = (event) => {
      if (event.data && event.data.error) reject(new Error(event.data.error));
      else resolve(event.data);
    };
    worker.postMessage(message, [channel.port2]);
  });
}

/** register → activated → first message answered, in ms; the registration is removed after. */
async function coldStart(script, scope) {
  const started = performance.now();
  const registration = await navigator.serviceWorker.register(script, { scope });
  const worker = registration.installing || registration.waiting || registration.active;
  await activated(worker);
  await ask(worker, {});
  const ms = performance.now() - started;
  await registration.unregister();
  return ms;
}

/**
 * A stopped worker started again by a message: the message posted → its answer, in ms. The worker
 * is installed and answers once, then cargo xtask bench stops it (`stopWorkers`); each answer
 * carries its worker's `performance.timeOrigin`, so a worker that was not stopped is an error,
 * not a fast start. The registration is removed after.
 */
async function restart(script, scope, token) {
  const registration = await navigator.serviceWorker.register(script, { scope });
  try {
    const worker = registration.installing || registration.waiting || registration.active;
    await activated(worker);
    const before = await ask(worker, {});
    status.dataset.killArmed = token; // cargo xtask bench watches closely until the stop
    try {
      await stopWorkers(token);
    } finally {
      delete status.dataset.killArmed;
    }
    await sleep(COLD_START_PAUSE_MS);
    const started = performance.now();
    const after = await ask(registration.active, {});
    const ms = performance.now() - started;
    if (typeof after.boot !== 'number' || after.boot === before.boot) {
      throw new Error(`${script}: the worker answered without a restart (boot ${before.boot}, then ${after.boot})`);
    }
    return ms;
  } finally {
    await registration.unregister();
  }
}

/**
 * Asks cargo xtask bench to stop every service worker (DevTools' ServiceWorker.stopAllWorkers, a
 * real kill) and waits until it says it did.
 */
async function stopWorkers(token) {
  status.dataset.killRequest = token;
  const limit = performance.now() + 30000;
  while (status.dataset.killDone !== token) {
    if (performance.now() > limit) throw new Error('the workers were not stopped within 30 s');
    await sleep(10);
  }
}

async function record(list, label, job) {
  progress(label);
  try {
    list.push(await job());
  } catch (error) {
    results.errors.push(`${label}: ${error && error.message ? error.message : error}`);
    list.push(null);
  }
}

// config.only (from BA_BENCH_ONLY): a list of sections to run, for quick iterations.
function wanted(section) {
  return !config.only || config.only.includes(section);
}

async function main() {
  const c = config;
  // The release wasm's compile alone, in this page (its bytes fetched before the clock starts):
  // what the engine spends on the module itself before the worker can run it.
  const wasmBytes = wanted('cold')
    ? await (await fetch('/pkg/background_assets_bg.wasm', { cache: 'no-store' })).arrayBuffer()
    : null;
  // Each worker in turn, the order rotated per run so no worker always follows another, and a
  // pause before each start: the browser's work for what ran just before (a wasm compile going
  // on in the background, an unregistered worker's teardown) slowed the next start in Firefox.
  const workers = [
    [results.coldOurs, 'ours', 'ours-sw.js'],
    [results.coldEmpty, 'empty', 'empty-sw.js'],
    // Diagnostics: the library's worker script alone, and its wasm's fetch and compile alone.
    [results.coldScript, 'the worker script alone', 'script-only-sw.js'],
    [results.coldWasm, 'the wasm compiled alone', 'wasm-only-sw.js'],
  ];
  for (let i = 0; wanted('cold') && i < c.coldRuns; i++) {
    const tag = `${Date.now()}-${i}`;
    for (let k = 0; k < workers.length; k++) {
      const [list, label, script] = workers[(i + k) % workers.length];
      await sleep(COLD_START_PAUSE_MS);
      await record(list, `cold start (${label}) ${i + 1}/${c.coldRuns}`,
        () => coldStart(`/bench/${script}?cold=${tag}`, `/bench/cold/${k}-${tag}/`));
    }
  }
  // A stopped worker woken by an event, the start every background wake pays (Chromium, where
  // the bench can stop a worker through DevTools): ours and the empty worker in turn.
  const restarted = [
    [results.restartOurs, 'ours', 'ours-sw.js'],
    [results.restartEmpty, 'empty', 'empty-sw.js'],
  ];
  for (let i = 0; wanted('cold') && c.realKill && i < c.coldRuns; i++) {
    const tag = `${Date.now()}-${i}`;
    for (let k = 0; k < restarted.length; k++) {
      const [list, label, script] = restarted[(i + k) % restarted.length];
      await record(list, `restart after a stop (${label}) ${i + 1}/${c.coldRuns}`,
        () => restart(`/bench/${script}?restart=${tag}`, `/bench/restart/${k}-${tag}/`, `restart-${k}-${tag}`));
    }
  }
  // The release wasm's compile alone, in this page, after every start (see the pause above).
  for (let i = 0; wanted('cold') && i < c.coldRuns; i++) {
    await sleep(COLD_START_PAUSE_MS);
    await record(results.wasmCompile, `WebAssembly.compile ${i + 1}/${c.coldRuns}`, async () => {
      const started = performance.now();
      await WebAssembly.compile(wasmBytes);
      return performance.now() - started;
    });
  }

  progress('registering the bench worker');
  const registration = await navigator.serviceWorker.register('/bench/bench-sw.js', { scope: '/bench/' });
  const worker = registration.installing || registration.waiting || registration.active;
  await activated(worker);
  await ask(worker, { measure: 'ping', args: {} });
  const run = (measure, args) => async () => (await ask(worker, { measure, args })).result;

  for (let i = 0; wanted('throughput') && i < c.runs; i++) {
    const seed = 1000 + i;
    const n = `${i + 1}/${c.runs}`;
    const big = { cdn: c.cdn, len: c.len, seed, chunk: c.chunk };
    await record(results.managerOne, `manager throughput (one-file asset pack) ${n}`,
      run('managerThroughput', { ...big, seed: seed + 500 }));
    await record(results.engine, `engine throughput ${n}`, run('engine', big));
    await record(results.engineChunks, `engine throughput, declared chunk digests ${n}`,
      run('engine', { ...big, chunkDigests: true }));
    await record(results.engineWindow, `engine throughput, 1-chunk Range windows ${n}`,
      run('engine', { ...big, window: 1 }));
    await record(results.fetchDrain, `fetch drain ${n}`, run('fetchDrain', big));
    await record(results.idbPut, `IndexedDB put ${n}`, run('idbPut', big));
    await record(results.cachePut, `cache.put ${n}`, run('cachePut', big));
    await record(results.fetchPut, `fetch + IndexedDB put, plain JS ${n}`, run('fetchPut', big));
    await record(results.sha256, `SHA-256 in wasm ${n}`, run('sha256', { len: c.len }));
  }
  for (let i = 0; wanted('small') && i < c.runs; i++) {
    const n = `${i + 1}/${c.runs}`;
    const small = { cdn: c.cdn, count: c.smallCount, size: c.smallSize, seed: 100000 + i * c.smallCount,
      concurrency: c.concurrency };
    await record(results.managerMany, `small files (manager, one asset pack) ${n}`,
      run('managerMany', { ...small, seed: small.seed + 20000 }));
    await record(results.engineMany, `small files (engine) ${n}`, run('engineMany', small));
    await record(results.precache, `small files (sequential precache) ${n}`,
      run('precache', { ...small, seed: small.seed + 50000 }));
    await record(results.fetchMany, `small files (fetch only, ${c.concurrency} at a time) ${n}`,
      run('fetchMany', { ...small, seed: small.seed + 70000 }));
    await record(results.fetchPutMany, `small files (fetch + IndexedDB put, plain JS, ${c.concurrency} at a time) ${n}`,
      run('fetchPutMany', { ...small, seed: small.seed + 80000 }));
    await record(results.fetchPutGrouped,
      `small files (fetch + IndexedDB put, plain JS, ${c.concurrency} at a time, group-committed) ${n}`,
      run('fetchPutGrouped', { ...small, seed: small.seed + 95000 }));
    await record(results.precacheMany, `small files (precache, ${c.concurrency} at a time) ${n}`,
      run('precacheMany', { ...small, seed: small.seed + 90000 }));
  }
  if (wanted('profile')) {
    await record(results.smallProfile, 'small files, phases one by one',
      run('smallProfile', { cdn: c.cdn, count: 100, size: c.smallSize, seed: 900000 }));
  }
  for (let i = 0; wanted('resume') && i < c.runs; i++) {
    const n = `${i + 1}/${c.runs}`;
    const args = { cdn: c.cdn, len: c.resumeLen, seed: 2000 + i, chunk: c.chunk };
    if (c.realKill) {
      await record(results.resumeWorkerKill, `resume after a worker kill ${n}`, async () => {
        const tag = `${Date.now()}-${i}`;
        const killArgs = { ...args, seed: args.seed + 100, tag };
        status.dataset.killArmed = tag; // cargo xtask bench watches closely until the kill
        try {
          await run('killStart', killArgs)();
          await stopWorkers(tag);
          return await run('killFinish', killArgs)();
        } finally {
          delete status.dataset.killArmed;
        }
      });
    }
    await record(results.resumeKill, `resume after kill ${n}`, run('engineResume', { ...args, mode: 'kill' }));
    await record(results.resumePause, `resume after pause ${n}`, run('engineResume', { ...args, mode: 'pause' }));
    await record(results.resumeKillWindow, `resume after kill, 1-chunk Range windows ${n}`,
      run('engineResume', { ...args, mode: 'kill-window' }));
  }
  if (wanted('scale')) await record(results.managerScale, `schedule ${c.scaleCount} downloads (DownloadManager)`,
    run('managerScale', { cdn: c.cdn, count: c.scaleCount, budgetMs: c.scaleBudgetMs }));
  await registration.unregister();

  // Memory: in the page, where performance.memory exists (Chromium); wasm memory either way.
  await init({ module_or_path: '/bench-pkg/web/background_assets_bench_bg.wasm' });
  // The smaller size first: wasm memory only grows, so what the larger downloads add to the
  // instance's high-water mark is what their size costs.
  for (let i = 0; wanted('memory') && i < c.memoryRuns; i++) {
    await record(results.engineMemorySmall, `memory, ${c.len} bytes ${i + 1}/${c.memoryRuns}`,
      async () => JSON.parse(await bench.engineMemory(c.cdn, c.len, 3500 + i, c.chunk)));
  }
  for (let i = 0; wanted('memory') && i < c.memoryRuns; i++) {
    await record(results.engineMemory, `memory, ${c.memLen} bytes ${i + 1}/${c.memoryRuns}`,
      async () => JSON.parse(await bench.engineMemory(c.cdn, c.memLen, 3000 + i, c.chunk)));
  }
  results.heapAvailable = Boolean(performance.memory);
  status.dataset.result = JSON.stringify(results);
  status.dataset.state = 'done';
  progress('done');
}

main().catch((error) => {
  status.dataset.error = String(error && error.stack ? error.stack : error);
  status.dataset.state = 'error';
});
