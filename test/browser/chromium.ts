import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's Chromium (`apt-get install -y chromium`; .ci/run installs it when test/browser exists). */
export const CHROMIUM = process.env.STATETRAIL_CHROMIUM ?? "/usr/bin/chromium";

/** Screenshots and reports the browser tests leave behind (gitignored). */
export const ARTIFACTS = path.resolve(__dirname, "..", "..", "test-artifacts");

const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/**
 * Launches headless Chromium with a fresh profile. Throws when Chromium is missing or does not start: the
 * browser tests fail then, they are never skipped.
 */
export async function launchChromium(
  options: { offline?: boolean; javaScriptEnabled?: boolean } = {},
): Promise<BrowserContext> {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium is not installed at ${CHROMIUM}: apt-get install -y chromium`);
  }
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    // The issuer's certificate is self-signed: its binding is proven on-chain, not by a CA.
    ignoreHTTPSErrors: true,
    offline: options.offline ?? false,
    javaScriptEnabled: options.javaScriptEnabled ?? true,
    viewport: { width: 1280, height: 900 },
  });
  context.once("close", () => {
    try {
      fs.rmSync(userDataDir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    } catch {
      // Chromium may still be writing its profile: a leftover temporary directory is harmless
    }
  });
  return context;
}

export function artifact(name: string): string {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return path.join(ARTIFACTS, name);
}
