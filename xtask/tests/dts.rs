//! The built package's TypeScript and JS glue (`cargo xtask build` output in `pkg/`): the `.d.ts`
//! of both flavours declares the JS face with precise types, and the generated JS parses.
//!
//! Ignored by default (it needs `pkg/`); `cargo xtask test` runs it after its build step:
//! `cargo test -p xtask --test dts -- --ignored`.

use std::path::PathBuf;
use std::process::Command;

fn pkg() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../pkg")
}

fn read(relative: &str) -> String {
    let path = pkg().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo xtask build` first)", path.display()))
}

/// Each declaration the JS face documents (README / CONTRACT), as wasm-bindgen writes it.
const DECLARED: &[&str] = &[
    // The classes.
    "export class DownloadManager {",
    "static shared(): DownloadManager;",
    "static open(options: DownloadManagerOptions): Promise<DownloadManager>;",
    "setDelegate(delegate: DownloadManagerDelegate | null): void;",
    "schedule(download: UrlDownload | UrlDownloadInit): Promise<void>;",
    "startForegroundDownload(target: string | UrlDownload | UrlDownloadInit): Promise<void>;",
    "fetchCurrentDownloads(): Promise<DownloadInfo[]>;",
    "cancel(download: string | UrlDownload | UrlDownloadInit): Promise<void>;",
    "pause(download: string | UrlDownload | UrlDownloadInit): Promise<void>;",
    "resume(download: string | UrlDownload | UrlDownloadInit): Promise<void>;",
    "withExclusiveControl(f: () => unknown): Promise<any>;",
    "withExclusiveControlBefore(deadline: Date | number, f: () => unknown): Promise<any>;",
    "packs(): Promise<PackInfo[]>;",
    "packStatus(pack: string): Promise<PackStatus>;",
    "statusUpdates(): PackStatusUpdates;",
    "ensureLocalAvailability(pack: string): Promise<void>;",
    "checkForUpdates(): Promise<PackUpdateSummary>;",
    "removePack(pack: string): Promise<void>;",
    "file(path: string): Promise<FinishedDownload | null>;",
    "ready(): Promise<void>;",
    "close(): Promise<void>;",
    "export class UrlDownload {",
    "constructor(descriptor: UrlDownloadInit);",
    "readonly headers: Record<string, string>;",
    "toJSON(): UrlDownloadInit;",
    "export class FinishedDownload {",
    "blob(): Promise<Blob>;",
    "response(): Promise<Response>;",
    "objectUrl(): Promise<string>;",
    "readonly sha256: string;",
    // The plain objects.
    "export interface UrlDownloadInit {",
    "export interface DownloadManagerOptions {",
    "export interface DownloadInfo {",
    "totalExpected: number | null;",
    "export type DownloadState = 'created' | 'waiting' | 'downloading' | 'paused' | 'finished' | 'failed';",
    "export interface DownloadManagerDelegate {",
    "didWriteData?(id: string, bytesWritten: number, totalWritten: number, totalExpected: number | null): void;",
    "didFail?(id: string, error: BackgroundAssetsError): void;",
    "didFinish?(id: string, finished: FinishedDownload): void;",
    "authenticationChallenge?(id: string, challenge: AuthChallenge):",
    "export interface AuthChallenge {",
    "export interface BackgroundAssetsError extends Error {",
    "name: BackgroundAssetsErrorName;",
    "code: number;",
    "transient: boolean;",
    "'DownloadAlreadyScheduled'",
    "'LockTimeout'",
    "'InvalidArgument'",
    "export type PackStatus = 'downloadAvailable' | 'updateAvailable' | 'downloading' | 'downloaded' | 'outdated' | 'obsolete';",
    "export interface PackInfo {",
    "export interface PackUpdateSummary {",
    "export interface PackStatusUpdates extends EventTarget, AsyncIterable<PackStatusUpdate> {",
    "listener: (event: CustomEvent<PackStatusUpdate>) => void",
    // The older exports www/ and bench use.
    "export function version(): string;",
    "export function globalContext(): string;",
    "export function sha256Hex(bytes: Uint8Array | number[]): string;",
];

#[test]
#[ignore = "needs pkg/ from `cargo xtask build`; cargo xtask test runs it after the build"]
fn both_dts_files_declare_the_documented_js_face() {
    for file in ["background_assets.d.ts", "worker/background_assets.d.ts"] {
        let dts = read(file);
        let missing: Vec<&str> = DECLARED
            .iter()
            .copied()
            .filter(|wanted| !dts.contains(wanted))
            .collect();
        assert!(
            missing.is_empty(),
            "{file} lacks:\n  {}",
            missing.join("\n  ")
        );
        // Every method of the manager class is typed (only the exclusive-control value is any).
        let class: Vec<&str> = dts
            .split("export class DownloadManager {")
            .nth(1)
            .expect("the DownloadManager class")
            .lines()
            .take_while(|l| l.trim() != "}")
            .collect();
        assert!(
            class.iter().any(|l| l.contains("schedule(")),
            "{file}: {class:?}"
        );
        let untyped: Vec<&str> = class
            .iter()
            .copied()
            .filter(|l| l.contains(": any") || l.contains("<any>"))
            .filter(|l| !l.contains("withExclusiveControl"))
            .collect();
        assert!(untyped.is_empty(), "{file}: untyped members: {untyped:?}");
    }
}

#[test]
#[ignore = "needs pkg/ from `cargo xtask build`; cargo xtask test runs it after the build"]
fn the_generated_js_parses() {
    // A `*/` in a doc comment once closed the generated JSDoc and broke both files.
    let node = Command::new("node").arg("--version").output();
    if node.map(|o| !o.status.success()).unwrap_or(true) {
        // Without node, check the one thing that broke before: doc comments stay closed.
        for file in ["background_assets.js", "worker/background_assets.js"] {
            let js = read(file);
            for (n, line) in js.lines().enumerate() {
                let trimmed = line.trim_start();
                if trimmed.starts_with("* ") {
                    assert!(!trimmed.contains("*/"), "{file}:{}: {line}", n + 1);
                }
            }
        }
        return;
    }
    for file in ["background_assets.js", "worker/background_assets.js"] {
        let status = Command::new("node")
            .arg("--check")
            .arg(pkg().join(file))
            .status()
            .expect("run node --check");
        assert!(status.success(), "node --check {file} failed");
    }
}
