#!/usr/bin/env node
// The statetrail CLI. Runs the compiled JavaScript in dist/ (built by `npm run build`, which `npm install` runs
// through `prepare`); never the TypeScript sources.
const fs = require("node:fs");
const path = require("node:path");

const dist = path.join(__dirname, "..", "dist");
// The bundle (dist/statetrail.cjs, written by `npm run build` after tsc: scripts/build-cli.js) starts faster than the
// modules of dist/src/ it is made of; it is run when present, through V8's code cache (src/cli/code-cache.ts).
const bundle = path.join(dist, "statetrail.cjs");
const entry = path.join(dist, "src", "cli", "main.js");
if (!fs.existsSync(entry)) {
  process.stderr.write(
    "error BUILD_MISSING: statetrail is not built (" +
      path.relative(process.cwd(), entry) +
      " is missing)\n  what to do: run `npm run build` in " +
      path.resolve(__dirname, "..") +
      " (`npm install` does it too)\n",
  );
  process.exit(70);
}
// A reader that stops early (`statetrail --help | head -1`) closes the pipe: the CLI stops there, as Unix tools do,
// with 141 (128 + SIGPIPE: never 0, since the command did not finish), instead of an unhandled 'error' event.
for (const stream of [process.stdout, process.stderr]) {
  stream.on("error", (error) => {
    if (error.code !== "EPIPE") throw error;
    process.exit(141);
  });
}
const args = process.argv.slice(2);
const command = commandOf(args);
const help = args.includes("--help") || args.includes("-h") || args.includes("help");
// `verify` checks for stale sources while it waits on the network, and warns when it is done (below); every other
// command while it loads.
if (command !== "verify") warnIfStale();
else staleCheckWhileWaiting();
loadCli()
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
      // `verify` has done everything when main() resolves: its reports are written and its connections closed (the
      // provider destroyed). It exits once the stale-build check and stdout and stderr are done, instead of waiting
      // for sockets to finish closing and for Node to tear the heap down. Commands that keep serving or watching
      // (serve, node, watch, demo --keep-serving) end as they always did.
      if (command === "verify") {
        warnIfStaleNow();
        exitWhenWritten(code);
      }
    },
    (error) => {
      console.error(error);
      process.exitCode = 70;
      if (command === "verify") warnIfStaleNow();
    },
  );

/** The command, as commander finds it: the first argument that is neither an option nor a global option's value. */
function commandOf(args) {
  const COMMANDS = ["node", "identity", "model", "run", "serve", "verify", "watch", "publish", "demo"];
  for (let i = 0; i < args.length; i++) {
    if (["--home", "--network", "--rpc"].includes(args[i])) i++;
    else if (!args[i].startsWith("-")) return COMMANDS.includes(args[i]) ? args[i] : "none";
  }
  return "none";
}

function loadCli() {
  if (process.env.STATETRAIL_BUNDLE === "0" || !fs.existsSync(bundle)) return require(entry);
  const cache = require(path.join(dist, "src", "cli", "code-cache.js"));
  // The command names the code cache (what V8 compiled depends on what ran): `verify`, `watch`, `--help`, ...
  cache.setCodeCacheCommand(help ? `${command}-help` : command);
  return cache.loadBundle(bundle);
}

/** process.exit(code) once what was written to stdout and stderr is flushed (pipes are asynchronous on macOS). */
function exitWhenWritten(code) {
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write("", done);
  process.stderr.write("", done);
}

/** When the last build finished (dist/.built), or null in an installed package (no src/) or an unbuilt clone. */
function builtAt() {
  const root = path.join(__dirname, "..");
  try {
    return fs.statSync(path.join(root, "dist", ".built")).mtimeMs;
  } catch {
    return null;
  }
}

function warnStale(changed) {
  if (changed) {
    process.stderr.write(
      `warning: ${path.relative(process.cwd(), changed)} changed after the last build; run \`npm run build\` to run it\n`,
    );
  }
}

/**
 * The stale-build check of `verify`, synchronous (a few milliseconds): while the CLI loads, its hundred-odd stats on
 * libuv's threads queued ahead of the verification's own work there (the DNS lookup of the issuer's server) and their
 * callbacks took turns of the event loop, some 20-40 ms of a `verify`. It runs as one of the pieces the verifier
 * initialises while its steps wait on the network (src/verify/pipeline.ts, WHILE_WAITING), or when the verification
 * is done if none ran; the warning comes at the end.
 */
let staleFound; // undefined: not checked yet; null: nothing newer than the build
function staleCheckWhileWaiting() {
  const key = Symbol.for("statetrail.verify.whileWaiting");
  (globalThis[key] ??= []).push(() => {
    staleFound ??= newestStale();
  });
}

function warnIfStaleNow() {
  staleFound ??= newestStale();
  warnStale(staleFound);
}

/**
 * A file's path in a folder of src/: the two joined with the separator, not path.join (whose normalisation, run
 * cold at each start for some 150 entries, took 5 of the check's 9 ms).
 */
function entryPath(dir, entry) {
  return dir + path.sep + entry.name;
}

/** The first source file changed after the last build, or null (also in an installed package). */
function newestStale() {
  const built = builtAt();
  if (built === null) return null;
  const newer = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return null;
    }
    for (const entry of entries) {
      const file = entryPath(dir, entry);
      if (entry.isDirectory()) {
        const found = newer(file);
        if (found) return found;
        continue;
      }
      let stat;
      try {
        stat = fs.statSync(file);
      } catch {
        continue;
      }
      if (stat.mtimeMs > built) return file;
    }
    return null;
  };
  return newer(path.join(__dirname, "..", "src"));
}

/**
 * In a clone, sources edited after the last build would silently not run: say so. One stat per source file, done
 * by libuv's threads while the CLI loads (synchronous, they held up every start by some 15 ms here); the warning
 * comes when the check ends. An installed package has no src/ and skips this. Resolves when the check is done.
 */
function warnIfStale() {
  const root = path.join(__dirname, "..");
  const built = builtAt();
  if (built === null) return Promise.resolve();
  const newer = async (dir) => {
    let entries;
    try {
      entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
      return null;
    }
    const found = await Promise.all(
      entries.map(async (entry) => {
        const file = entryPath(dir, entry);
        if (entry.isDirectory()) return newer(file);
        const stat = await fs.promises.stat(file).catch(() => null);
        return stat && stat.mtimeMs > built ? file : null;
      }),
    );
    return found.find((file) => file !== null) ?? null;
  };
  return newer(path.join(root, "src")).then(warnStale);
}
