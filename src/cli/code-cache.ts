import { isAscii } from "node:buffer";
import fs from "node:fs";
import Module from "node:module";
import os from "node:os";
import path from "node:path";
import vm from "node:vm";

/** How {@link loadBundle} reads a bundle that is not simply its file. */
export interface BundleOptions {
  /** The bundle's text, when it is embedded in another bundle (`file`) instead of read from `file`. */
  source?: string;
  /** The name of an embedded bundle: its cache file's and its stack frames' (`<file>#<name>`). */
  name?: string;
  /** Modules the bundle's `require` answers itself, before resolving anything in node_modules. */
  modules?: Record<string, unknown>;
  /** The SHA-256 of an embedded bundle's text, computed when it was built (a file's is its first line). */
  hash?: string;
  /** The command (part of the cache file's name); default the one bin/statetrail.js set. */
  command?: string;
}

/**
 * The first line of a bundle written by scripts/build-cli.js: the SHA-256 of the rest of its text, so that a start
 * neither hashes a megabyte nor loads node:crypto to name the cache file.
 */
export const BUNDLE_HEADER = "// statetrail bundle sha256:";

/**
 * Loads a CommonJS bundle of the CLI (dist/statetrail.cjs, dist/vendor-ethers.cjs, the interpreter embedded in
 * dist/statetrail.cjs) as `require` would, with V8's code cache: the machine code V8 compiled for it in an earlier
 * run of the same command, kept in the user's cache folder (`$XDG_CACHE_HOME/statetrail/code` or
 * `~/.cache/statetrail/code`; `STATETRAIL_CODE_CACHE=0` turns it off). Only compiled code is kept, never a result:
 * every run still does all of its work. A cache file is named after the bundle, the command (what V8 compiled
 * depends on what ran), the Node version, architecture and flags, the SHA-256 of the bundle's text (from its first
 * line, {@link BUNDLE_HEADER}, or computed) and the file's size and modification time, so a rebuilt or edited bundle
 * or another Node never reads another's; V8 also rejects data that does not match the source and flags, and the
 * bundle is then compiled as without a cache. A missing or rejected cache is written when the process exits, with
 * the functions compiled during the run in it (replacing that bundle and command's cache for another build or
 * Node). Nothing here fails the command: a cache that cannot be read or written is skipped.
 */
export function loadBundle(file: string, options: BundleOptions | string = {}): unknown {
  const {
    source: embedded,
    name,
    modules,
    hash,
    command = currentCommand(),
  } = typeof options === "string" ? { command: options } : options;
  let bytes: string | Buffer;
  let identity: string;
  if (embedded === undefined) {
    const fd = fs.openSync(file, "r");
    try {
      const stat = fs.fstatSync(fd);
      bytes = fs.readFileSync(fd);
      identity = `${contentHash(bytes)} ${bytes.length} ${stat.mtimeMs}`;
    } finally {
      fs.closeSync(fd);
    }
  } else {
    bytes = embedded;
    identity = `${hash ?? contentHash(embedded)} ${embedded.length}`;
  }
  const source = typeof bytes === "string" ? bytes : decode(bytes);
  const filename = name ? `${file}#${name}` : file;
  const cacheFile = codeCacheFile(filename, identity, command);
  let cachedData: Buffer | undefined;
  if (cacheFile) {
    try {
      cachedData = fs.readFileSync(cacheFile);
    } catch {
      cachedData = undefined;
    }
  }
  const script = new vm.Script(Module.wrap(source), { filename, cachedData });
  if (cacheFile && (!cachedData || script.cachedDataRejected)) {
    process.once("exit", () => writeCache(cacheFile, script));
  }
  const exports = {};
  const module = { exports, filename, id: filename, loaded: false, children: [], paths: [] as string[] };
  const compiled = script.runInThisContext() as (...args: unknown[]) => void;
  compiled.call(exports, exports, requireFor(file, modules), module, filename, path.dirname(file));
  module.loaded = true;
  return module.exports;
}

/**
 * The bundles are ASCII (scripts/build-cli.js escapes the rest): decoded as Latin-1 then, the same characters
 * without UTF-8 decoding (a few milliseconds a bundle), and V8 keeps them one byte a character.
 */
function decode(bytes: Buffer): string {
  return isAscii(bytes) ? bytes.toString("latin1") : bytes.toString("utf8");
}

/** `require` for a bundle's code: `modules` first, then Node's resolution from the bundle's folder. */
function requireFor(file: string, modules: Record<string, unknown> | undefined): NodeJS.Require {
  const require = Module.createRequire(file);
  if (!modules) return require;
  const own = (id: string): unknown => (Object.hasOwn(modules, id) ? modules[id] : require(id));
  return Object.assign(own, {
    resolve: require.resolve,
    cache: require.cache,
    extensions: require.extensions,
    main: require.main,
  }) as NodeJS.Require;
}

// Shared by the copies of this module in dist/src/ (bin/statetrail.js's) and in the bundle.
const COMMAND = Symbol.for("statetrail.codeCacheCommand");

function currentCommand(): string {
  return ((globalThis as Record<symbol, unknown>)[COMMAND] as string | undefined) ?? "none";
}

/** Which command this process runs (part of the cache file's name); set by bin/statetrail.js from its arguments. */
export function setCodeCacheCommand(command: string): void {
  (globalThis as Record<symbol, unknown>)[COMMAND] = command.replace(/[^a-z0-9-]/gi, "_").slice(0, 40) || "none";
}

/** The SHA-256 of a bundle's text: from its header when scripts/build-cli.js wrote one, else computed. */
function contentHash(source: string | Buffer): string {
  const end = BUNDLE_HEADER.length + 64;
  const head = typeof source === "string" ? source.slice(0, end) : source.toString("latin1", 0, end);
  const recorded = head.slice(BUNDLE_HEADER.length);
  if (head.startsWith(BUNDLE_HEADER) && /^[0-9a-f]{64}$/.test(recorded)) return recorded;
  /* eslint-disable-next-line @typescript-eslint/no-require-imports */
  const crypto = require("node:crypto") as typeof import("node:crypto");
  return crypto.createHash("sha256").update(source).digest("hex");
}

/** FNV-1a (32 bits) of a short text, in hex. */
function fnv1a(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), 0x01000193);
  return (hash >>> 0).toString(16).padStart(8, "0");
}

/** `identity`: the bundle's SHA-256, then its size and modification time (what was built, and that it is unchanged). */
function codeCacheFile(file: string, identity: string, command: string): string | null {
  if (process.env.STATETRAIL_CODE_CACHE === "0") return null;
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), ".cache");
  const hash =
    identity.slice(0, 16) + fnv1a(`${process.version} ${process.arch} ${process.execArgv.join(" ")} ${identity}`);
  const name = path.basename(file).replace(/[^\w.-]/g, ".");
  return path.join(base, "statetrail", "code", `${name}.${command}.${hash}.v8`);
}

function writeCache(cacheFile: string, script: vm.Script): void {
  try {
    const data = script.createCachedData();
    fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
    const temporary = `${cacheFile}.${process.pid}.tmp`;
    fs.writeFileSync(temporary, data);
    fs.renameSync(temporary, cacheFile);
    // The same bundle and command's cache for an earlier build or another Node: never read again.
    const name = path.basename(cacheFile);
    const prefix = name.slice(0, name.lastIndexOf(".", name.length - ".v8".length - 1) + 1);
    for (const other of fs.readdirSync(path.dirname(cacheFile))) {
      if (other !== name && other.startsWith(prefix) && other.endsWith(".v8")) {
        fs.rmSync(path.join(path.dirname(cacheFile), other), { force: true });
      }
    }
  } catch {
    // A read-only or full cache folder: the next run compiles again.
  }
}
