// The empty service worker the cold-start measure compares against: it only activates and
// answers messages. The answer's `boot` (this evaluation's time origin) tells a restarted worker
// from one that kept running.
self.addEventListener('install', (event) => {
  event.waitUntil(self.skipWaiting());
});
self.addEventListener('activate', (event) => {
  event.waitUntil(self.clients.claim());
});
self.addEventListener('message', (event) => {
  const port = event.ports[0];
  if (port) port.postMessage({ type: 'hello', boot: performance.timeOrigin });
});
