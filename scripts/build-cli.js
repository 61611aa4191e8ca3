// `npm run build`'s last step: bundles the CLI (src/cli/main.ts and what it loads) into one CommonJS file,
// dist/statetrail.cjs, which bin/statetrail.js runs when it is there (issue 14: startup). Node then reads one file
// instead of resolving and reading some thousand modules in node_modules. What the CLI loads lazily (a
// `require()` or `await import()` inside a function) stays lazy: esbuild wraps such a module in a function that
// runs on its first use, so `statetrail --help` evaluates no more than before.
//
// aws-local-stepfunctions (the interpreter V9 replays with) requires three packages when it is loaded that
// statetrail never uses; they are replaced here by src/engine/interpreter-stubs.ts (see there why they are never
// called), for that library only. The interpreter is bundled on its own and embedded in the bundle as text, compiled
// as a script of its own when it is first required (interpreterLoader). Node's built-in modules, native addons and
// what the CLI resolves at run time (Hardhat, handler modules, files found with require.resolve) stay outside the
// bundle.
const path = require("node:path");
const esbuild = require("esbuild");

const ROOT = path.resolve(__dirname, "..");
const STUBS = path.join(ROOT, "src", "engine", "interpreter-stubs.ts");
const INTERPRETER = `${path.sep}node_modules${path.sep}aws-local-stepfunctions${path.sep}`;
/**
 * The interpreter's bundle requires the stubs under this name; the CLI's bundle answers it with its own copy of
 * src/engine/interpreter-stubs.ts (one StatetrailError class for both).
 */
const STUBS_MODULE = "statetrail-interpreter-stubs";
const STUBBED = {
  "@aws-sdk/client-lambda": `module.exports = require(${JSON.stringify(STUBS_MODULE)});`,
  "@aws-sdk/credential-providers": `module.exports = require(${JSON.stringify(STUBS_MODULE)});`,
  "asl-validator": `module.exports = require(${JSON.stringify(STUBS_MODULE)}).aslValidator;`,
};

/**
 * Which packages go into the bundles: aws-local-stepfunctions (its CommonJS build, the one `require` loads: one
 * copy, the one src/engine/interpreter-patches.ts corrects) with its small dependencies, and in place of its three
 * unused ones the stubs, in the interpreter's; commander, zod and asl-path-validator (src/model/paths.ts; with it a
 * copy of jsonpath-plus) in the CLI's. Every other package stays external, required at run time from node_modules as
 * before.
 */
const BUNDLED = new Set([
  "jsonpath-plus",
  "wildcard-match",
  "p-limit",
  "yocto-queue",
  "commander",
  "zod",
  "asl-path-validator",
]);

const CODE_CACHE = path.join(ROOT, "src", "cli", "code-cache.ts");
/** src/cli/code-cache.ts's BUNDLE_HEADER. */
const BUNDLE_HEADER = "// statetrail bundle sha256:";

/**
 * ethers is bundled on its own (dist/vendor-ethers.cjs), loaded with the code cache the first time it is needed.
 *
 * Its secp256k1 (noble-curves) multiplies the base point through a table of multiples built on first use, 8 bits a
 * window: some 4,200 point additions, in code not yet optimised, before the first signature is checked or made (by
 * far the largest part of V8's time in a fresh `verify`), to save 32 additions on each one after. A `verify`
 * recovers one signature an instance: it builds the 4-bit table (520 additions, 32 more on each signature; the table
 * of 8 bits would pay for itself after some 120 instances), and builds it while the steps before V8 wait on the
 * network (src/verify/pipeline.ts, WHILE_WAITING) rather than when V8 first needs it. A different table gives the
 * same points; every other command keeps noble's 8 bits (`run` and `serve` sign as long as they run).
 */
const VENDOR_ETHERS = `const { ethers, baseWindow, baseTable, wasmKeccak } = require(${JSON.stringify(CODE_CACHE)}).loadBundle(require("node:path").join(__dirname, "vendor-ethers.cjs"));
if (globalThis[Symbol.for("statetrail.codeCacheCommand")] === "verify") {
  baseWindow(4);
  (globalThis[Symbol.for("statetrail.verify.whileWaiting")] ??= []).push(baseTable);
}
wasmKeccak();
module.exports = ethers;`;

/**
 * Keccak-256 for ethers' `keccak256` in the CLI: hash-wasm's WebAssembly build (the one src/chain/keccak.ts loads for
 * Merkle proofs), compiled synchronously when ethers' bundle loads and registered with `keccak256.register`, so
 * that every Keccak ethers computes (addresses' checksums, event topics, code hashes, ABI selectors) is the
 * WebAssembly one. ethers' own (noble's, JavaScript) is as fast once V8 has optimised it, but a fresh process runs it
 * unoptimised: some 15-20 ms of a `verify` went to Keccak. The same function: the build checks it against noble's on
 * inputs of every length up to a few WebAssembly buffers (keccakSelfTest), each start against two known answers
 * before it is registered, and test/cli/bundle.test.ts against ethers' on random inputs; where WebAssembly is not
 * available (--jitless) or anything fails, ethers keeps its own.
 */
const WASM_BUFFER = 16 * 1024; // hash-wasm's MAX_HEAP: the input window at Hash_GetBuffer()

function keccakWasmBase64() {
  const file = require.resolve("hash-wasm/dist/keccak.umd.min.js");
  const text = require("node:fs").readFileSync(file, "utf8");
  const match = /\{name:"sha3",data:"([A-Za-z0-9+/=]+)",hash:"[0-9a-f]+"\}/.exec(text);
  if (!match) throw new Error(`build-cli: no Keccak WebAssembly found in ${file}`);
  return match[1];
}

/** The vendor bundle's `wasmKeccak` (also run by the build on its own, keccakSelfTest). */
const WASM_KECCAK = `function makeWasmKeccak(base64) {
  const instance = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(base64, "base64")), {});
  const { memory, Hash_GetBuffer, Hash_Init, Hash_Update, Hash_Final } = instance.exports;
  const offset = Hash_GetBuffer();
  return (data) => {
    const input = new Uint8Array(memory.buffer, offset, ${WASM_BUFFER});
    Hash_Init(256);
    for (let read = 0; read < data.length; read += ${WASM_BUFFER}) {
      const chunk = data.subarray(read, read + ${WASM_BUFFER});
      input.set(chunk);
      Hash_Update(chunk.length);
    }
    Hash_Final(0x01); // Keccak's padding (SHA-3's is 0x06)
    return input.slice(0, 32);
  };
}`;

/**
 * ethers' bundle: ethers' ES build with only the exports the CLI's bundle uses (ethersNamesUsed), which esbuild
 * tree-shakes: about half of ethers' code, and of what a start deserialises and evaluates (providers of third-party
 * services, wordlists, JSON wallets' other formats, WebSocket...). Written as the object the CLI's `require("ethers")`
 * gets; a name the CLI's code uses and this object lacks fails the build (ethersNamesUsed).
 */
function vendorEntry(names) {
  return `import { ${names.join(", ")} } from "ethers";
import { secp256k1 } from "@noble/curves/secp256k1";
export const ethers = { ${names.join(", ")} };
/** The bits of a window of secp256k1's table of base point multiples (noble's default 8), before it is first used. */
export const baseWindow = (bits) => secp256k1.ProjectivePoint.BASE._setWindowSize(bits);
/**
 * Builds that table now, if it is not built yet: noble's utils.precompute without its resetting of the window (a
 * multiplication of the base point builds the table first).
 */
export const baseTable = () => {
  secp256k1.ProjectivePoint.BASE.multiply(3n);
};
${WASM_KECCAK}
const KNOWN = [
  ["", "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"],
  ["abc", "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"],
];
/** Registers the WebAssembly Keccak-256 with ethers once it gives the known answers; false if it was not. */
export const wasmKeccak = () => {
  try {
    const keccak = makeWasmKeccak(${JSON.stringify(keccakWasmBase64())});
    for (const [text, digest] of KNOWN) {
      if (Buffer.from(keccak(Buffer.from(text))).toString("hex") !== digest) return false;
    }
    keccak256.register(keccak);
    return true;
  } catch {
    return false; // no WebAssembly (--jitless), or keccak256 locked: ethers' own stays
  }
};`;
}

/** What ethers' bundle needs of ethers itself (vendorEntry). */
const VENDOR_OWN_NAMES = ["keccak256"];

/**
 * The names of ethers the CLI's bundle uses, read from esbuild's output: `import_ethers….X` (an `import { X }`), the
 * names destructured from a dynamic import, and `V.X` for a variable bound to `lazy(() => require("ethers"))`
 * (declared so, or assigned so in a lazily initialised module). Any
 * other use of ethers in the bundle fails the build (add it here), as does a name ethers does not export.
 */
function ethersNamesUsed(text) {
  const exported = new Set(Object.keys(require("ethers")));
  const names = new Set(VENDOR_OWN_NAMES);
  for (const match of text.matchAll(/\bimport_ethers\d*\.([A-Za-z_$][\w$]*)/g)) names.add(match[1]);
  let uses = 0;
  for (const match of text.matchAll(/require_ethers\(\)/g)) {
    uses += 1;
    const before = text.slice(Math.max(0, match.index - 200), match.index);
    if (/\bimport_ethers\d* = __toESM\($/.test(before)) continue;
    const destructured = /const \{([^}]*)\} = await Promise\.resolve\(\)\.then\(\(\) => __toESM\($/.exec(before);
    if (destructured) {
      for (const part of destructured[1].split(",")) names.add(part.split(":")[0].trim());
      continue;
    }
    // `var X = lazy(() => require("ethers"))`, or its assignment in a lazily initialised module (`X = lazy(…)`).
    const bound = /(?:\bvar |[;{}\n]\s*)([A-Za-z_$][\w$]*) = lazy\(\(\) => $/.exec(before);
    if (bound) {
      for (const use of text.matchAll(new RegExp(`\\b${bound[1]}\\.([A-Za-z_$][\\w$]*)`, "g"))) {
        if (exported.has(use[1])) names.add(use[1]);
      }
      continue;
    }
    throw new Error(
      `build-cli: a use of ethers the vendor bundle can't account for: …${before.slice(-120)}require_ethers()`,
    );
  }
  if (uses === 0) throw new Error("build-cli: the CLI's bundle does not use ethers where expected");
  for (const name of names) {
    if (!exported.has(name)) throw new Error(`build-cli: the CLI's bundle uses ethers.${name}, which ethers lacks`);
  }
  return [...names].sort();
}

/** The WebAssembly Keccak against noble's (ethers' own) on every length across a few buffers, and some more. */
function keccakSelfTest() {
  const crypto = require("node:crypto");
  const { keccak256 } = require("ethers");
  const keccak = new Function(`${WASM_KECCAK}; return makeWasmKeccak;`)()(keccakWasmBase64());
  const lengths = [];
  for (let n = 0; n <= 600; n++) lengths.push(n);
  for (const k of [1, 2, 3]) for (let d = -140; d <= 140; d++) lengths.push(k * WASM_BUFFER + d);
  lengths.push(100_000, 1_000_003);
  for (const n of lengths) {
    const data = crypto.randomBytes(n);
    if (`0x${Buffer.from(keccak(data)).toString("hex")}` !== keccak256(data)) {
      throw new Error(`build-cli: the WebAssembly Keccak-256 differs from ethers' on ${n} bytes`);
    }
  }
}

const packageName = (specifier) => specifier.split("/", specifier.startsWith("@") ? 2 : 1).join("/");

/**
 * The interpreter in the CLI's bundle: its own bundle's text (built first, interpreterBundle), compiled as a script
 * of its own on first use through the code cache. Not one more module of the CLI's bundle: a module there is nested
 * in the bundle's top-level scope, which holds every bundled module's bindings (thousands), and
 * src/engine/interpreter-patches.ts reads the interpreter's closure scopes through the inspector, which then
 * described all of them (about 60 ms at every `verify`, against 7 ms for the library loaded from node_modules).
 */
function interpreterLoader(source) {
  const hash = require("node:crypto").createHash("sha256").update(source).digest("hex");
  return `const path = require("node:path");
module.exports = require(${JSON.stringify(CODE_CACHE)}).loadBundle(path.join(__dirname, "statetrail.cjs"), {
  name: "aws-local-stepfunctions",
  source: ${JSON.stringify(source)},
  hash: ${JSON.stringify(hash)},
  modules: { ${JSON.stringify(STUBS_MODULE)}: require(${JSON.stringify(STUBS)}) },
});`;
}

/** Resolves the packages of the CLI's bundle (`interpreter`: the interpreter's loader) or of the interpreter's. */
function packages(interpreter) {
  return {
    name: "packages",
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        const name = packageName(args.path);
        if (args.importer.includes(INTERPRETER) && name in STUBBED) {
          return { path: name, namespace: "interpreter-stub" };
        }
        if (name === "aws-local-stepfunctions") {
          if (interpreter !== undefined) return { path: name, namespace: "interpreter" };
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
      build.onLoad({ filter: /.*/, namespace: "interpreter" }, () => ({
        contents: interpreterLoader(interpreter),
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
}

/**
 * esbuild turns each `import … from "ethers"` (42 of them) and each import of a Node built-in into
 * `__toESM(require(…))`, which copies every export of the module onto a new object: some 20 ms of copying at a
 * `verify`. These modules are complete when required (ethers' bundle is evaluated whole; built-ins are), and the
 * copy's getters read the module's live values, so one copy per module serves every importer.
 */
const ONCE = `function __toESMOnce(mod) {
  const copies = (__toESMOnce.copies ??= new WeakMap());
  let copy = copies.get(mod);
  if (copy === undefined) copies.set(mod, (copy = __toESM(mod)));
  return copy;
}
`;

function sharedInterop(text) {
  const rewritten = text.replace(/__toESM\((require_ethers\(\)|require\("node:[\w/]+"\))\)/g, "__toESMOnce($1)");
  if (rewritten === text) return text;
  if (!rewritten.startsWith('"use strict";\n') || !/^var __toESM = /m.test(rewritten)) {
    throw new Error("build-cli: esbuild's CommonJS interop helpers are not where expected");
  }
  return `"use strict";\n${ONCE}${rewritten.slice('"use strict";\n'.length)}`;
}

/**
 * A bundle in ASCII only: Node then reads it as Latin-1, and V8 keeps it one byte a character. esbuild escapes
 * every other character of the code; what is left are the characters of the comments it keeps, escaped the same
 * way (inert there).
 */
function ascii(text) {
  return text.replace(/\P{ASCII}/gu, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
}

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
 * Modules required when a bundled module is loaded but used only by what statetrail never does: loaded on their first
 * use instead. Commander requires node:child_process for executable subcommands, which statetrail has none of; it
 * reads the module's exports only when it uses them (`childProcess.spawn(…)`). (A CommonJS importer only: an ES module
 * importing one, as ethers' ES build does, copies its exports when loaded. ethers' bundle, tree-shaken, has no
 * WebSocketProvider and so no ws; its geturl.js loads zlib with it.)
 */
const ON_FIRST_USE = [
  { importer: `${path.sep}commander${path.sep}lib${path.sep}command.js`, module: "node:child_process" },
];

const onFirstUse = {
  name: "on-first-use",
  setup(build) {
    build.onResolve({ filter: /^node:child_process$/ }, (args) => {
      if (args.namespace === "on-first-use") return undefined;
      const match = ON_FIRST_USE.find((m) => m.module === args.path && args.importer.endsWith(m.importer));
      if (!match) return undefined;
      return { path: args.path, namespace: "on-first-use", pluginData: { resolveDir: args.resolveDir } };
    });
    build.onLoad({ filter: /.*/, namespace: "on-first-use" }, (args) => ({
      contents: `let loaded;
const load = () => (loaded ??= require(${JSON.stringify(args.path)}));
module.exports = new Proxy({}, {
  get: (_target, key) => load()[key],
  has: (_target, key) => key in load(),
  ownKeys: () => Reflect.ownKeys(load()),
  getOwnPropertyDescriptor: (_target, key) => {
    const descriptor = Reflect.getOwnPropertyDescriptor(load(), key);
    return descriptor && { ...descriptor, configurable: true };
  },
});`,
      loader: "js",
      resolveDir: args.pluginData.resolveDir,
    }));
  },
};

/**
 * ethers' ENS normaliser (@adraffy/ens-normalize), bundled into ethers' bundle (compiled through the code cache, not
 * from node_modules at every start) and evaluated on first use: its module decodes its Unicode data when it is
 * loaded (some 5 ms), which a verification whose names all take src/verify/ens-fast-path.ts's fast path never needs.
 * Its exports are stood in for by an object that ens-fast-path.ts (the CLI's bundle's copy) finds under
 * `Symbol.for("statetrail.ethersEnsNormalize")`, without resolving a module (it resolved @adraffy/ens-normalize from
 * ethers' folder, and this stand-in registered itself in `require.cache` under that file: some 5 ms of a `verify`
 * in package resolution), to put its fast path in front of `ens_normalize`, the one function ethers imports from it.
 * If ens-fast-path.ts was asked first, this bundle calls the function it left (`statetrail.ensFastPath.whenLoaded`)
 * when it loads. `ens_normalize` here is the library's, loaded when first called (and can be replaced, as
 * ens-fast-path.ts does), each other export the library's on first read.
 */
const ENS_NORMALIZE_FILE = require.resolve("@adraffy/ens-normalize", {
  paths: [path.dirname(require.resolve("ethers"))],
});
const ENS_NORMALIZE_EXPORTS = Object.keys(require(ENS_NORMALIZE_FILE));
if (!ENS_NORMALIZE_EXPORTS.includes("ens_normalize"))
  throw new Error("build-cli: @adraffy/ens-normalize has no ens_normalize");
const ENS_NORMALIZE = `let library;
const load = () => (library ??= require(${JSON.stringify(ENS_NORMALIZE_FILE)}));
let normalize = (name) => load().ens_normalize(name);
const normalizer = {};
for (const name of ${JSON.stringify(ENS_NORMALIZE_EXPORTS)}) {
  Object.defineProperty(normalizer, name, {
    enumerable: true,
    configurable: true,
    get: name === "ens_normalize" ? () => normalize : () => load()[name],
    set: (value) => {
      if (name === "ens_normalize") normalize = value;
      else Object.defineProperty(normalizer, name, { value, enumerable: true, configurable: true, writable: true });
    },
  });
}
globalThis[Symbol.for("statetrail.ethersEnsNormalize")] = normalizer;
const whenLoaded = globalThis[Symbol.for("statetrail.ensFastPath.whenLoaded")];
if (typeof whenLoaded === "function") whenLoaded(normalizer);
module.exports = normalizer;`;

const ensNormalize = {
  name: "ens-normalize",
  setup(build) {
    build.onResolve({ filter: /^@adraffy\/ens-normalize$/ }, () => ({
      path: "ens-normalize",
      namespace: "ens-normalize",
    }));
    build.onLoad({ filter: /.*/, namespace: "ens-normalize" }, () => ({
      contents: ENS_NORMALIZE,
      loader: "js",
      resolveDir: ROOT,
    }));
  },
};

/**
 * The bundles' text without comments and without the whitespace esbuild lays code out with, statements and
 * expressions written shorter (esbuild's `minifyWhitespace` and `minifySyntax`), names kept as they are (no
 * `minifyIdentifiers`: classes', functions' and modules' names stay what errors, stack traces and profiles show;
 * the ASL interpreter's text, embedded as a string, unchanged: src/engine/interpreter-patches.ts reads its scopes by
 * name). About 30% less for a start to read, decode, hold and wrap (1.7 MB and 0.7 MB before; the code cache is
 * about the same size). Lines of at most about 500 characters: an uncaught error prints the line it was thrown on.
 * Done after the rewrites and checks that read esbuild's laid-out output (ethersNamesUsed, sharedInterop).
 */
function minified(text) {
  return esbuild.transformSync(text, {
    loader: "js",
    platform: "node",
    target: "node20",
    minifyWhitespace: true,
    minifySyntax: true,
    lineLimit: 500,
    charset: "ascii",
    legalComments: "none",
  }).code;
}

/**
 * ethers converts between hex strings, bytes and text in JavaScript, a character or a byte at a time (utils/data.js:
 * `_getBytes`, behind getBytes, and `hexlify`; utils/utf8.js: `toUtf8String`, which decodes every RPC answer's body):
 * every RPC answer, code, log and ABI value a `verify` reads goes through them, in a fresh process before V8 has
 * optimised them (some 20 ms of a `verify`; the runtime code keccak256 hashes for V0 alone is tens of kilobytes of
 * hex, read as JSON text first). In ethers' bundle they use Node's codecs on the same bytes: a hex string is still
 * checked by ethers' own test first, invalid values still fail with ethers' own error, a result is still a new plain
 * Uint8Array or a lowercase `0x` string; text is decoded by a strict UTF-8 decoder (WHATWG's, which accepts exactly
 * the bytes ethers' own accepts, and keeps a byte order mark as ethers does), and anything it refuses, or a call
 * with ethers' `onError`, goes to ethers' own decoder as before. The build checks the three against ethers' on
 * random and invalid values (ethersCodecSelfTest), test/cli/bundle.test.ts through the bundle's exports.
 */
const ETHERS_REWRITES = {
  "data.js": [
    {
      what: "_getBytes's loop",
      from: `        const result = new Uint8Array((value.length - 2) / 2);
        let offset = 2;
        for (let i = 0; i < result.length; i++) {
            result[i] = parseInt(value.substring(offset, offset + 2), 16);
            offset += 2;
        }
        return result;`,
      to: `        const result = new Uint8Array((value.length - 2) / 2);
        Buffer.from(result.buffer, result.byteOffset, result.length).write(value.substring(2), "hex");
        return result;`,
    },
    {
      what: "hexlify's loop",
      from: `    let result = "0x";
    for (let i = 0; i < bytes.length; i++) {
        const v = bytes[i];
        result += HexCharacters[(v & 0xf0) >> 4] + HexCharacters[v & 0x0f];
    }
    return result;`,
      to: `    return "0x" + Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("hex");`,
    },
  ],
  "utf8.js": [
    {
      what: "toUtf8String",
      from: `export function toUtf8String(bytes, onError) {
    return _toUtf8String(getUtf8CodePoints(bytes, onError));
}`,
      to: `let strictUtf8;
export function toUtf8String(bytes, onError) {
    if (onError == null) {
        const data = getBytes(bytes, "bytes");
        try {
            strictUtf8 ??= new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
            return strictUtf8.decode(data);
        }
        catch {
            // refused (or no ICU for a strict decoder): ethers' own decoder, and its error
        }
    }
    return _toUtf8String(getUtf8CodePoints(bytes, onError));
}`,
    },
  ],
};

const ETHERS_UTILS = `${path.sep}ethers${path.sep}lib.esm${path.sep}utils${path.sep}`;

function rewriteEthers(file, text) {
  for (const { what, from, to } of ETHERS_REWRITES[file]) {
    if (text.split(from).length !== 2) throw new Error(`build-cli: ethers' utils/${file} has not ${what} as expected`);
    text = text.replace(from, () => to);
  }
  return text;
}

const ethersCodecs = {
  name: "ethers-codecs",
  setup(build) {
    build.onLoad({ filter: /[\\/]ethers[\\/]lib\.esm[\\/]utils[\\/](data|utf8)\.js$/ }, async (args) => {
      const file = path.basename(args.path);
      if (!args.path.endsWith(`${ETHERS_UTILS}${file}`)) return undefined;
      const fs = require("node:fs");
      return { contents: rewriteEthers(file, await fs.promises.readFile(args.path, "utf8")), loader: "js" };
    });
  },
};

/** The rewritten getBytes, hexlify and toUtf8String against ethers' own, on random and invalid values. */
function ethersCodecSelfTest() {
  const crypto = require("node:crypto");
  const fs = require("node:fs");
  const ethers = require("ethers");
  const utils = path.join(path.dirname(require.resolve("ethers")), "..", "lib.esm", "utils");
  const load = (file, names, imports) => {
    const body = rewriteEthers(file, fs.readFileSync(path.join(utils, file), "utf8"))
      .replace(/^import .*$/gm, "")
      .replace(/^export /gm, "")
      .concat(`\nreturn { ${names.join(", ")} };`);
    return new Function(...Object.keys(imports), body)(...Object.values(imports));
  };
  const errors = { assert: ethers.assert, assertArgument: ethers.assertArgument, assertNormalize: () => undefined };
  const ours = {
    ...load("data.js", ["getBytes", "getBytesCopy", "hexlify"], errors),
    ...load("utf8.js", ["toUtf8String"], { ...errors, getBytes: ethers.getBytes }),
  };
  const outcome = (f) => {
    try {
      const value = f();
      return value instanceof Uint8Array
        ? `${Object.getPrototypeOf(value) === Uint8Array.prototype} ${Buffer.from(value).toString("hex")}`
        : `${typeof value} ${value}`;
    } catch (error) {
      return `throws ${error.message}`;
    }
  };
  const check = (names, value, ...rest) => {
    for (const name of names) {
      if (outcome(() => ours[name](value, ...rest)) !== outcome(() => ethers[name](value, ...rest))) {
        throw new Error(`build-cli: the rewritten ${name} differs from ethers' on ${String(value).slice(0, 60)}`);
      }
    }
  };
  const hex = ["getBytes", "getBytesCopy", "hexlify", "toUtf8String"];
  for (const value of ["", "0x", "0X", "0x0", "0xg0", "0x 0", "00", "0xAbCd", "0x00ff", "x", 12, null, "0x\u0660"]) {
    check(hex, value);
  }
  for (let n = 0; n < 300; n++) {
    const bytes = crypto.randomBytes(n);
    const text = bytes.toString("hex");
    for (const value of [bytes, new Uint8Array(bytes), `0x${text}`, `0x${text.toUpperCase()}`, `0x${text}0`]) {
      check(hex, value);
    }
    check(hex, `0x${text}zz`);
  }
  const shared = crypto.randomBytes(64);
  check(hex, new Uint8Array(shared.buffer, shared.byteOffset + 5, 20));
  // Text: valid UTF-8 of every width, byte order marks, and the invalid sequences of each kind ethers names.
  const pieces = ["a", "\u00e9", "\u20ac", "\u{1f600}", "\ufeff", "\u0000", "\uffff", "\u{10ffff}", "\u07ff", "\u0800"];
  for (let n = 0; n < 2000; n++) {
    let text = "";
    for (let k = crypto.randomInt(0, 12); k > 0; k--) text += pieces[crypto.randomInt(0, pieces.length)];
    const bytes = Buffer.from(text, "utf8");
    check(["toUtf8String"], bytes);
    // One byte changed or cut: usually invalid, sometimes still valid.
    if (bytes.length > 0) {
      const changed = Buffer.from(bytes);
      changed[crypto.randomInt(0, changed.length)] = crypto.randomInt(0, 256);
      check(["toUtf8String"], changed);
      check(["toUtf8String"], bytes.subarray(0, crypto.randomInt(0, bytes.length)));
      check(["toUtf8String"], changed, ethers.Utf8ErrorFuncs.ignore);
      check(["toUtf8String"], changed, ethers.Utf8ErrorFuncs.replace);
    }
  }
  const invalid = [
    "80",
    "bf",
    "c0af",
    "c1bf",
    "e080af",
    "eda080",
    "edbfbf",
    "f08080af",
    "f4908080",
    "f5808080",
    "f8",
    "ff",
    "c3",
    "e282",
    "efbbbf",
  ];
  for (const bytes of invalid) check(["toUtf8String"], Buffer.from(bytes, "hex"));
  for (let n = 0; n < 3000; n++) check(["toUtf8String"], crypto.randomBytes(crypto.randomInt(1, 8)));
}

/**
 * Writes a bundle (esbuild's output, `write: false`) after the rewrites above, minified, its first line the SHA-256
 * of the rest (src/cli/code-cache.ts names the code cache after it: a start does not hash the bundle).
 */
function write(result, rewrite = (text) => text) {
  const fs = require("node:fs");
  const crypto = require("node:crypto");
  for (const file of result.outputFiles) {
    const text = ascii(minified(rewrite(file.text)));
    const hash = crypto.createHash("sha256").update(text).digest("hex");
    fs.mkdirSync(path.dirname(file.path), { recursive: true });
    fs.writeFileSync(file.path, `${BUNDLE_HEADER}${hash}\n${text}`);
  }
}

async function main() {
  keccakSelfTest();
  ethersCodecSelfTest();
  const interpreter = await esbuild.build({
    stdin: {
      contents: 'module.exports = require("aws-local-stepfunctions");',
      resolveDir: ROOT,
      sourcefile: "interpreter.js",
    },
    outfile: path.join(ROOT, "dist", "interpreter.cjs"),
    write: false,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    plugins: [packages()],
    logOverride: { "require-resolve-not-external": "silent" },
    legalComments: "none",
    logLevel: "warning",
  });
  const interpreterSource = ascii(interpreter.outputFiles[0].text);
  const result = await esbuild.build({
    entryPoints: [path.join(ROOT, "src", "cli", "main.ts")],
    outfile: path.join(ROOT, "dist", "statetrail.cjs"),
    write: false,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // Run-time resolutions (Hardhat for `statetrail node`, the TypeScript compiler never) and native addons.
    plugins: [onFirstUse, packages(interpreterSource), sourceDirname],
    // `await import("x")` becomes a require() as tsc compiles it (an ES import would load a package's ES build).
    supported: { "dynamic-import": false },
    // src/verify/ens-fast-path.ts finds ethers' bundle's ENS normaliser without resolving a module.
    define: { STATETRAIL_CLI_BUNDLE: "true" },
    // require.resolve() of a bundled package still resolves the installed one (its files, its version).
    logOverride: { "require-resolve-not-external": "silent" },
    legalComments: "none",
    logLevel: "warning",
    metafile: true,
  });
  const ethers = await esbuild.build({
    stdin: {
      contents: vendorEntry(ethersNamesUsed(result.outputFiles[0].text)),
      // ethers' own folder: its secp256k1 (the noble-curves ethers uses), and ethers itself.
      resolveDir: path.dirname(require.resolve("ethers")),
      sourcefile: "vendor-ethers.js",
    },
    outfile: path.join(ROOT, "dist", "vendor-ethers.cjs"),
    write: false,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    // ws's optional native speed-ups, required in a try/catch.
    external: ["bufferutil", "utf-8-validate"],
    plugins: [ensNormalize, onFirstUse, ethersCodecs],
    logOverride: { "require-resolve-not-external": "silent" },
    legalComments: "none",
    logLevel: "warning",
  });
  write(ethers);
  write(result, sharedInterop);
  if (process.argv.includes("--analyze")) console.log(await esbuild.analyzeMetafile(result.metafile));
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
