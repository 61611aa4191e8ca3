import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { chromium, type BrowserContext } from "playwright-core";

/** Debian's Chromium, used when it is installed (`apt-get install -y chromium`). */
export const DEBIAN_CHROMIUM = "/usr/bin/chromium";

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

/** What to do when no browser starts: said by every error of this module. */
const HELP =
  "The browser tests need Chromium. By default they use Debian's /usr/bin/chromium when it is installed and " +
  "otherwise the headless Chromium of the @sparticuz/chromium devDependency (run `npm ci` to install it). " +
  "STATETRAIL_CHROMIUM=bundled forces that one; STATETRAIL_CHROMIUM=<path> uses another Chromium executable.";

/** A Chromium executable and the environment it is started with. */
export interface ChromiumBrowser {
  /** "STATETRAIL_CHROMIUM", "debian" or "bundled". */
  source: "STATETRAIL_CHROMIUM" | "debian" | "bundled";
  executablePath: string;
  /** The child's whole environment; undefined: the test process's. */
  env?: NodeJS.ProcessEnv;
}

/**
 * The Chromium the browser tests use: `STATETRAIL_CHROMIUM` (a path, or `bundled`) when it is set, else Debian's
 * /usr/bin/chromium when it is present, else the bundled one (see {@link bundledChromium}).
 */
export async function resolveChromium(): Promise<ChromiumBrowser> {
  const wanted = process.env.STATETRAIL_CHROMIUM?.trim();
  if (wanted === "bundled") return bundledChromium();
  if (wanted) {
    if (!isExecutable(wanted)) {
      throw new Error(`STATETRAIL_CHROMIUM=${wanted} is not an executable file. ${HELP}`);
    }
    return { source: "STATETRAIL_CHROMIUM", executablePath: path.resolve(wanted) };
  }
  if (isExecutable(DEBIAN_CHROMIUM)) return { source: "debian", executablePath: DEBIAN_CHROMIUM };
  return bundledChromium();
}

let bundled: Promise<ChromiumBrowser> | undefined;

/**
 * The headless Chromium shipped in the @sparticuz/chromium npm package, for machines without Debian's. Its
 * archives (the browser, the NSS/NSPR/expat libraries of Amazon Linux 2023, SwiftShader, a font) are inflated
 * once into a directory of os.tmpdir() named after the package's version and the user, and reused by later
 * runs. The libraries are given to the browser alone through LD_LIBRARY_PATH in its environment; with them it
 * needs nothing from the system but glibc and libgcc_s.
 */
export function bundledChromium(): Promise<ChromiumBrowser> {
  if (process.platform !== "linux" || process.arch !== "x64") {
    return Promise.reject(
      new Error(
        `the bundled Chromium is a Linux x64 program, this is ${process.platform} ${process.arch}: ` +
          `set STATETRAIL_CHROMIUM to the path of a Chromium or Chrome executable. ${HELP}`,
      ),
    );
  }
  bundled ??= inflateBundled().catch((error: unknown) => {
    bundled = undefined;
    throw error;
  });
  return bundled;
}

/** The directory the bundled Chromium is inflated into. */
export function bundledChromiumDir(): string {
  // The test run's own temporary folder is removed when it ends (hardhat.config.ts): inflate into the shared one.
  const shared = process.env.STATETRAIL_SHARED_TMPDIR ?? os.tmpdir();
  return path.join(shared, `statetrail-chromium-${sparticuzVersion()}-${os.userInfo().uid}`);
}

function sparticuzRoot(): string {
  let entry: string;
  try {
    entry = require.resolve("@sparticuz/chromium");
  } catch (error) {
    throw new Error(`@sparticuz/chromium is not installed (${(error as Error).message}). ${HELP}`);
  }
  return path.resolve(path.dirname(entry), "..");
}

function sparticuzVersion(): string {
  const manifest = JSON.parse(fs.readFileSync(path.join(sparticuzRoot(), "package.json"), "utf8")) as {
    version: string;
  };
  return manifest.version;
}

const COMPLETE = ".statetrail-complete";
const ARCHIVES = ["chromium.br", "al2023.tar.br", "fonts.tar.br", "swiftshader.tar.br"];

async function inflateBundled(): Promise<ChromiumBrowser> {
  const dir = bundledChromiumDir();
  if (!fs.existsSync(path.join(dir, COMPLETE))) {
    // Inflated in a directory of its own and renamed into place when complete, so that a run killed halfway
    // or another test process inflating at the same time never leaves a partial browser behind.
    const staging = fs.mkdtempSync(`${dir}.partial-`);
    try {
      await inflateInto(staging);
      fs.writeFileSync(path.join(staging, "fonts.conf"), fontsConf(dir));
      fs.writeFileSync(path.join(staging, COMPLETE), `${new Date().toISOString()}\n`);
      try {
        fs.renameSync(staging, dir);
      } catch (error) {
        // Another process finished first (its directory is complete too), or a broken leftover is in the way.
        if (!fs.existsSync(path.join(dir, COMPLETE))) {
          throw new Error(`cannot move the inflated Chromium to ${dir} (${(error as Error).message}); delete ${dir}`);
        }
      }
    } finally {
      fs.rmSync(staging, { recursive: true, force: true });
    }
  }
  checkOwnDirectory(dir);
  const executablePath = path.join(dir, "chromium");
  if (!isExecutable(executablePath)) {
    throw new Error(`the bundled Chromium in ${dir} is incomplete: delete that directory and run again. ${HELP}`);
  }
  const libraries = path.join(dir, "al2023", "lib");
  const env = {
    ...process.env,
    LD_LIBRARY_PATH: [libraries, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":"),
    FONTCONFIG_FILE: path.join(dir, "fonts.conf"),
  };
  const files = [executablePath, ...fs.readdirSync(libraries).filter((name) => name.endsWith(".so"))];
  const missing = await missingLibraries(
    files.map((file) => path.resolve(libraries, file)),
    env,
  );
  if (missing.length > 0) {
    throw new Error(
      `the bundled Chromium needs ${missing.join(", ")} from the system, which is missing: ` +
        (missing.some((name) => name.startsWith("libsqlite3"))
          ? "install it (Debian/Ubuntu: apt-get install libsqlite3-0; Amazon Linux/Fedora: dnf install sqlite-libs). "
          : "install it. ") +
        HELP,
    );
  }
  return { source: "bundled", executablePath, env };
}

/** The dynamic loader of x86-64 glibc, which the bundled Chromium is built for. */
const LOADER = "/lib64/ld-linux-x86-64.so.2";

/**
 * The shared libraries `files` need that the dynamic loader cannot find with `env` (its first missing one per
 * file). The bundled Chromium's NSS (libsoftokn3.so, loaded when the first HTTPS page is opened) needs the
 * system's libsqlite3.so.0, which Amazon Linux, Debian's full images and Ubuntu have and -slim images do not;
 * without it the browser aborts mid-test ("Target page, context or browser has been closed"). Checked before it
 * is started, so the test says what is missing instead.
 */
async function missingLibraries(files: string[], env: NodeJS.ProcessEnv): Promise<string[]> {
  if (!fs.existsSync(LOADER)) return [];
  const missing = new Set<string>();
  await Promise.all(
    files.map(async (file) => {
      try {
        await promisify(execFile)(LOADER, ["--list", file], { env });
      } catch (error) {
        const stderr = String((error as { stderr?: unknown }).stderr ?? "");
        const match = /error while loading shared libraries: ([^:\s]+): cannot open shared object file/.exec(stderr);
        if (match) missing.add(match[1]);
      }
    }),
  );
  return [...missing].sort();
}

/**
 * Runs the package's own `inflate` in a child Node whose TMPDIR is `target`: it writes every archive to
 * os.tmpdir() (chromium, al2023/lib, fonts, SwiftShader's libraries beside the binary), and os.tmpdir() is
 * shared by everyone here. The package is an ES module, imported there.
 */
async function inflateInto(target: string): Promise<void> {
  const root = sparticuzRoot();
  const entry = pathToFileURL(require.resolve("@sparticuz/chromium")).href;
  const files = ARCHIVES.map((name) => path.join(root, "bin", name));
  const script =
    `import(${JSON.stringify(entry)}).then(({ inflate }) => ` +
    `Promise.all(${JSON.stringify(files)}.map((file) => inflate(file))))` +
    `.catch((error) => { console.error(error); process.exit(1); });`;
  try {
    await promisify(execFile)(process.execPath, ["-e", script], {
      env: { ...process.env, TMPDIR: target, TMP: target, TEMP: target },
      timeout: 120_000,
    });
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? "";
    throw new Error(`inflating @sparticuz/chromium failed: ${(error as Error).message} ${stderr}. ${HELP}`);
  }
}

/** Only the bundled font (Open Sans): pages render the same here as on a machine without any font. */
function fontsConf(dir: string): string {
  return [
    '<?xml version="1.0"?>',
    '<!DOCTYPE fontconfig SYSTEM "fonts.dtd">',
    "<fontconfig>",
    `  <dir>${path.join(dir, "fonts")}</dir>`,
    `  <cachedir>${path.join(dir, "fonts-cache")}</cachedir>`,
    "</fontconfig>",
    "",
  ].join("\n");
}

/** os.tmpdir() is shared: run no browser from a directory someone else made or can write to. */
function checkOwnDirectory(dir: string): void {
  const stat = fs.lstatSync(dir);
  const uid = process.getuid?.();
  if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid) || (stat.mode & 0o022) !== 0) {
    throw new Error(`${dir} is not a directory of this user that only it can write to: delete it and run again`);
  }
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/**
 * Launches headless Chromium (see {@link resolveChromium}) with a fresh profile. Throws when no Chromium is found
 * or it does not start: the browser tests fail then, they are never skipped.
 */
export async function launchChromium(
  options: { offline?: boolean; javaScriptEnabled?: boolean; browser?: ChromiumBrowser } = {},
): Promise<BrowserContext> {
  const browser = options.browser ?? (await resolveChromium());
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-chromium-profile-"));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: browser.executablePath,
      env: browser.env,
      headless: true,
      args: ARGS,
      // The issuer's certificate is self-signed: its binding is proven on-chain, not by a CA.
      ignoreHTTPSErrors: true,
      offline: options.offline ?? false,
      javaScriptEnabled: options.javaScriptEnabled ?? true,
      viewport: { width: 1280, height: 900 },
    });
  } catch (error) {
    fs.rmSync(userDataDir, { recursive: true, force: true });
    throw new Error(
      `Chromium (${browser.source}, ${browser.executablePath}) did not start: ${(error as Error).message}\n${HELP}`,
    );
  }
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
