// `npm run build`'s last step: bundles the CLI (src/cli/main.ts and what it loads) into one CommonJS file,
// dist/statetrail.cjs, which bin/statetrail.js runs when it is there (issue 14: startup). Node then reads one file
// instead of resolving and reading some thousand modules in node_modules. What the CLI loads lazily (a
// `require()` or `await import()` inside a function) stays lazy: esbuild wraps such a module in a function that
// runs on its first use, so `statetrail --help` evaluates no more than before.
//
// aws-local-stepfunctions (the interpreter V9 replays with) requires three packages when it is loaded that
// statetrail never uses; they are replaced here by src/engine/interpreter-stubs.ts (see there why they are never
// called), for that library only. Node's built-in modules, native addons and what the CLI resolves at run time
// (Hardhat, handler modules, files found with require.resolve) stay outside the bundle.
const path = require("node:path");
const esbuild = require("esbuild");

const ROOT = path.resolve(__dirname, "..");
const STUBS = path.join(ROOT, "src", "engine", "interpreter-stubs.ts");
const INTERPRETER = `${path.sep}node_modules${path.sep}aws-local-stepfunctions${path.sep}`;
const STUBBED = {
  "@aws-sdk/client-lambda": `module.exports = require(${JSON.stringify(STUBS)});`,
  "@aws-sdk/credential-providers": `module.exports = require(${JSON.stringify(STUBS)});`,
  "asl-validator": `module.exports = require(${JSON.stringify(STUBS)}).aslValidator;`,
};

/**
 * Which packages go into the bundle: aws-local-stepfunctions (its CommonJS build, the one `require` loads: one copy,
 * the one src/engine/interpreter-patches.ts corrects) with its small dependencies, and in place of its three unused
 * ones the stubs. Every other package stays external, required at run time from node_modules as before.
 */
const BUNDLED = new Set([
  "aws-local-stepfunctions",
  "jsonpath-plus",
  "wildcard-match",
  "p-limit",
  "yocto-queue",
  "commander",
  "zod",
]);

/** ethers is bundled on its own (dist/vendor-ethers.cjs), loaded with the code cache the first time it is needed. */
const CODE_CACHE = path.join(ROOT, "src", "cli", "code-cache.ts");
const VENDOR_ETHERS = `module.exports = require(${JSON.stringify(CODE_CACHE)}).loadBundle(require("node:path").join(__dirname, "vendor-ethers.cjs"));`;

const packageName = (specifier) => specifier.split("/", specifier.startsWith("@") ? 2 : 1).join("/");

const packages = {
  name: "packages",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      const name = packageName(args.path);
      if (args.importer.includes(INTERPRETER) && name in STUBBED) {
        return { path: name, namespace: "interpreter-stub" };
      }
      if (name === "aws-local-stepfunctions") {
        return { path: require.resolve(args.path, { paths: [args.resolveDir] }) };
      }
      if (args.path === "ethers") return { path: "ethers", namespace: "vendor" };
      if (BUNDLED.has(name)) return undefined;
      return { path: args.path, external: true };
    });
    build.onLoad({ filter: /.*/, namespace: "vendor" }, () => ({
      contents: VENDOR_ETHERS,
      loader: "js",
      resolveDir: ROOT,
    }));
    build.onLoad({ filter: /.*/, namespace: "interpreter-stub" }, (args) => ({
      contents: STUBBED[args.path],
      loader: "js",
      resolveDir: ROOT,
    }));
  },
};

/**
 * `__dirname` in statetrail's own sources means the folder of the compiled file in dist/src/ (the timeline's
 * assets, the stylesheet are copied there): in the bundle, which sits in dist/, it is rewritten to that folder.
 */
const sourceDirname = {
  name: "source-dirname",
  setup(build) {
    build.onLoad({ filter: /[/\\]src[/\\].*\.ts$/ }, async (args) => {
      if (args.path.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      const fs = require("node:fs");
      const source = await fs.promises.readFile(args.path, "utf8");
      if (!source.includes("__dirname")) return undefined;
      const relative = path.relative(ROOT, path.dirname(args.path)).split(path.sep).join("/");
      return {
        contents: source.replace(/\b__dirname\b/g, `require("node:path").join(__dirname, ${JSON.stringify(relative)})`),
        loader: "ts",
      };
    });
  },
};

/**
 * ethers' ENS normaliser (@adraffy/ens-normalize) stays the installed module, required as
 * src/verify/ens-fast-path.ts finds it (from ethers' folder): the fast path it puts in front of the module's
 * `ens_normalize` must be in front of the one the bundled ethers calls.
 */
const ENS_NORMALIZE = `const path = require("node:path");
module.exports = require(require.resolve("@adraffy/ens-normalize", { paths: [path.dirname(require.resolve("ethers"))] }));`;

const ensNormalize = {
  name: "ens-normalize",
  setup(build) {
    build.onResolve({ filter: /^@adraffy\/ens-normalize$/ }, () => ({
      path: "ens-normalize",
      namespace: "ens-normalize",
    }));
    build.onLoad({ filter: /.*/, namespace: "ens-normalize" }, () => ({ contents: ENS_NORMALIZE, loader: "js" }));
  },
};

async function main() {
  await esbuild.build({
    stdin: { contents: 'module.exports = require("ethers");', resolveDir: ROOT, sourcefile: "vendor-ethers.js" },
    outfile: path.join(ROOT, "dist", "vendor-ethers.cjs"),
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // ws's optional native speed-ups, required in a try/catch.
    external: ["bufferutil", "utf-8-validate"],
    plugins: [ensNormalize],
    logOverride: { "require-resolve-not-external": "silent" },
    legalComments: "none",
    logLevel: "warning",
  });
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, "src", "cli", "main.ts")],
    outfile: path.join(ROOT, "dist", "statetrail.cjs"),
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // Run-time resolutions (Hardhat for `statetrail node`, the TypeScript compiler never) and native addons.
    plugins: [packages, sourceDirname],
    // `await import("x")` becomes a require() as tsc compiles it (an ES import would load a package's ES build).
    supported: { "dynamic-import": false },
    // require.resolve() of a bundled package still resolves the installed one (its files, its version).
    logOverride: { "require-resolve-not-external": "silent" },
    legalComments: "none",
    logLevel: "warning",
    metafile: true,
  });
  if (process.argv.includes("--analyze")) console.log(await esbuild.analyzeMetafile(result.metafile));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
