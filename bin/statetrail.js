#!/usr/bin/env node
// The statetrail CLI. Runs the compiled JavaScript in dist/ (built by `npm run build`, which `npm install` runs
// through `prepare`); never the TypeScript sources.
const fs = require("node:fs");
const path = require("node:path");

const entry = path.join(__dirname, "..", "dist", "src", "cli", "main.js");
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
require(entry)
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
