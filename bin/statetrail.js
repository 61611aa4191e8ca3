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
warnIfStale();
loadCli()
  .main(process.argv)
  .then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      console.error(error);
      process.exitCode = 70;
    },
  );

function loadCli() {
  if (process.env.STATETRAIL_BUNDLE === "0" || !fs.existsSync(bundle)) return require(entry);
  const cache = require(path.join(dist, "src", "cli", "code-cache.js"));
  // The command names the code cache (what V8 compiled depends on what ran): `verify`, `watch`, `--help`, ...
  const commands = ["node", "identity", "model", "run", "serve", "verify", "watch", "publish", "demo"];
  const args = process.argv.slice(2);
  const command = args.find((arg) => commands.includes(arg)) ?? "none";
  const help = args.includes("--help") || args.includes("-h") || args.includes("help");
  cache.setCodeCacheCommand(help ? `${command}-help` : command);
  return cache.loadBundle(bundle);
}

/**
 * In a clone, sources edited after the last build would silently not run: say so (one stat per source file, about
 * a millisecond). An installed package has no src/ and skips this.
 */
function warnIfStale() {
  const root = path.join(__dirname, "..");
  let built;
  try {
    built = fs.statSync(path.join(root, "dist", ".built")).mtimeMs;
  } catch {
    return;
  }
  const newer = (dir) => {
    let entries;
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return null;
    }
    for (const entry of entries) {
      const file = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        const found = newer(file);
        if (found) return found;
      } else if (fs.statSync(file).mtimeMs > built) return file;
    }
    return null;
  };
  const changed = newer(path.join(root, "src"));
  if (changed) {
    process.stderr.write(
      `warning: ${path.relative(process.cwd(), changed)} changed after the last build; run \`npm run build\` to run it\n`,
    );
  }
}
