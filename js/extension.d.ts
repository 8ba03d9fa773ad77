// Types of the service worker entry (extension.js): `BackgroundAssets.extension(handlers)`.
// Reference it from a TypeScript service worker with
//   /// <reference path="./pkg/worker/extension.d.ts" />

declare namespace BackgroundAssets {
  /** What `didInstall`, `didUpdate` and `checkForUpdates` receive. */
  interface ExtensionInfo {
    event: 'install' | 'update' | 'checkForUpdates';
    /** Bytes still allowed before the app's first launch (after the declared packs); null once launched. */
    remainingAllowance: { total: number; essential: number } | null;
    /** Packs whose declared version changed. */
    updated: string[];
    /** Packs no longer declared. */
    removed: string[];
    /** Packs declared for the first time. */
    added: string[];
    /** checkForUpdates only: what ran it. */
    trigger?: 'periodicsync' | 'launch';
  }

  /** A download to schedule (the same fields as the JS face's `UrlDownload`). */
  interface DownloadDescriptor {
    id: string;
    url: string;
    essential?: boolean;
    /** Exact size in bytes (required for essential downloads and before the first launch). */
    size?: number;
    /** 0..100, default 50. */
    priority?: number;
    headers?: Record<string, string>;
  }

  /** A typed error: `name` is the library's error name, `code` its stable number. */
  interface BackgroundAssetsError extends Error {
    code: number;
    transient: boolean;
  }

  interface FinishedDownload {
    id: string;
    size: number;
    sha256: string;
    /** Where the worker serves it (with Range). */
    url: string;
    blob(): Promise<Blob>;
    response(): Promise<Response>;
  }

  type Downloads = DownloadDescriptor[] | void | null | undefined;

  interface ExtensionHandlers {
    /** The worker's wasm (default '/pkg/worker/background_assets_bg.wasm'). */
    wasm?: string;
    /** Call skipWaiting() when install ends (default false). */
    skipWaiting?: boolean;
    /** Call clients.claim() when activate ends (default false). */
    clientsClaim?: boolean;
    /** Extra downloads to schedule at install (the declared packs are always scheduled). */
    didInstall?(info: ExtensionInfo): Downloads | Promise<Downloads>;
    /** A new version activated. */
    didUpdate?(info: ExtensionInfo): Downloads | Promise<Downloads>;
    /** A periodic sync or a page launch asked for a check. */
    checkForUpdates?(info: ExtensionInfo): Downloads | Promise<Downloads>;
    didBegin?(id: string): void;
    didPause?(id: string): void;
    didWriteData?(id: string, bytesWritten: number, totalWritten: number, totalExpected: number | null): void;
    didFinish?(id: string, finished: FinishedDownload): void;
    didFail?(id: string, error: BackgroundAssetsError): void;
    didRequeueAsNonEssential?(id: string): void;
    authenticationChallenge?(
      id: string,
      challenge: { url: string; status: number; wwwAuthenticate: string | null },
    ): Record<string, string> | null | Promise<Record<string, string> | null>;
    /** Messages that are not the library's. */
    message?(event: ExtendableMessageEvent): void;
    /** An install/activate/periodicsync/message step failed. */
    eventFailed?(event: string, error: unknown): void;
  }

  /** Adds every listener; call it once, at the top level of the service worker script. */
  function extension(handlers?: ExtensionHandlers): void;
  /** Loads (once) and returns the worker's wasm glue. */
  function loadWasm(): Promise<unknown>;
  /**
   * The last install / activate / periodicsync reports (`install`, `activate`, ...), and
   * `wasmLoadStarted: 'first evaluation'` when extension() started loading the wasm during the
   * worker's first evaluation (before its install event), and `wasmSource: 'cache' | 'network'`
   * where a pinned glue's wasm came from (the glue `cargo xtask build` writes carries its wasm's
   * SHA-256; a wasm with another digest is refused with `WasmIntegrityMismatch`).
   */
  const reports: Record<string, unknown>;
}
