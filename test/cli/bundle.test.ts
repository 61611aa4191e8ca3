import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { ethers } from "ethers";
import { StatetrailError } from "../../src/errors";
import * as stubs from "../../src/engine/interpreter-stubs";
import { bundleText } from "../helpers/bundle-text";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const BUNDLE = path.join(ROOT, "dist", "statetrail.cjs");
const VENDOR = path.join(ROOT, "dist", "vendor-ethers.cjs");

/** Runs `code` in a fresh Node with ethers' bundle loaded as `vendor` (its exports) and prints what it returns. */
function withVendor(code: string): unknown {
  const script = `const vendor = require(${JSON.stringify(path.join(ROOT, "dist", "src", "cli", "code-cache.js"))}).loadBundle(${JSON.stringify(VENDOR)});
process.stdout.write(JSON.stringify((() => { ${code} })()));`;
  const result = spawnSync(process.execPath, ["-e", script], {
    encoding: "utf8",
    env: { ...process.env, STATETRAIL_CODE_CACHE: "0" },
  });
  expect(result.status, result.stderr).to.equal(0);
  return JSON.parse(result.stdout);
}

describe("the bundled CLI (dist/statetrail.cjs, scripts/build-cli.js)", () => {
  it("holds the interpreter without the Lambda client, credential providers and ASL validator it never calls", function () {
    if (!fs.existsSync(BUNDLE)) this.skip(); // `npm run build` writes it (npm test builds first)
    const source = bundleText(BUNDLE);
    expect(source).to.contain("aws-local-stepfunctions/build/main.node.cjs");
    expect(source).to.not.contain("aws-local-stepfunctions/build/main.node.esm.js"); // one copy, the patched one
    for (const name of ["@aws-sdk/client-lambda", "@aws-sdk/credential-providers"]) {
      expect(source, name).to.not.match(new RegExp(`require\\("${name}"\\)`));
    }
    expect(source).to.not.contain("node_modules/asl-validator/");
  });

  it("the stubs fail with ENGINE_FAILED if anything reaches them", () => {
    for (const call of [
      () => new stubs.LambdaClient(),
      () => new stubs.InvokeCommand(),
      () => stubs.fromCognitoIdentityPool(),
      () => stubs.aslValidator(),
    ]) {
      expect(call).to.throw(StatetrailError).with.property("code", "ENGINE_FAILED");
    }
  });

  it("ethers' bundle hashes with the WebAssembly Keccak-256, which gives ethers' own values", function () {
    if (!fs.existsSync(VENDOR)) this.skip();
    const result = withVendor(`
      const { ethers } = vendor;
      const crypto = require("node:crypto");
      const noble = (data) => "0x" + Buffer.from(ethers.keccak256._(data)).toString("hex");
      if (!vendor.wasmKeccak()) return { registered: false };
      const lengths = [0, 1, 31, 32, 33, 135, 136, 137, 271, 272, 16383, 16384, 16385, 32768, 50000];
      for (let i = 0; i < 200; i++) lengths.push(crypto.randomInt(0, 70000));
      const differ = lengths.filter((n) => {
        const data = crypto.randomBytes(n);
        return ethers.keccak256(data) !== noble(data);
      });
      return { registered: true, differ, id: ethers.id("StateRegistered(bytes32)"), address: ethers.getAddress("0x4e59b44847b379578588920ca78fbf26c0b4956c") };
    `) as { registered: boolean; differ: number[]; id: string; address: string };
    expect(result.registered).to.equal(true);
    expect(result.differ).to.deep.equal([]);
    expect(result.address).to.equal(ethers.getAddress("0x4e59b44847b379578588920ca78fbf26c0b4956c"));
    expect(result.id).to.equal(ethers.id("StateRegistered(bytes32)"));
  });

  it("ethers' bundle publishes its ENS normaliser, the one ens-fast-path.ts patches, without resolving a module", function () {
    if (!fs.existsSync(VENDOR)) this.skip();
    const result = withVendor(`
      const module = globalThis[Symbol.for("statetrail.ethersEnsNormalize")];
      const full = module.ens_normalize;
      module.ens_normalize = (name) => "patched:" + full(name);
      return {
        normalized: vendor.ethers.ensNormalize("Acme.eth"),
        resolved: Object.keys(require.cache).filter((file) => file.includes("ens-normalize")),
      };
    `) as { normalized: string; resolved: string[] };
    expect(result).to.deep.equal({ normalized: "patched:acme.eth", resolved: [] });
  });

  it("ethers' bundle, loaded after ens-fast-path.ts asked for its normaliser, hands it over when it loads", function () {
    if (!fs.existsSync(VENDOR)) this.skip();
    const script = `globalThis[Symbol.for("statetrail.ensFastPath.whenLoaded")] = (module) => {
  const full = module.ens_normalize;
  module.ens_normalize = (name) => "fast:" + full(name);
};
const vendor = require(${JSON.stringify(path.join(ROOT, "dist", "src", "cli", "code-cache.js"))}).loadBundle(${JSON.stringify(VENDOR)});
process.stdout.write(JSON.stringify(vendor.ethers.ensNormalize("Acme.eth")));`;
    const result = spawnSync(process.execPath, ["-e", script], {
      encoding: "utf8",
      env: { ...process.env, STATETRAIL_CODE_CACHE: "0" },
    });
    expect(result.status, result.stderr).to.equal(0);
    expect(JSON.parse(result.stdout)).to.equal("fast:acme.eth");
  });

  it("the CLI's verify puts the fast path in front of ethers' bundle's normaliser", function () {
    if (!fs.existsSync(BUNDLE)) this.skip();
    // `verify` of a file that is not a protocol: the verifier's modules load (and ethers' bundle), nothing else.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-ens-"));
    try {
      const file = path.join(dir, "not-a-protocol.json");
      fs.writeFileSync(file, "{}");
      const check = path.join(dir, "check.js");
      fs.writeFileSync(
        check,
        `process.on("exit", () => {
  const module = globalThis[Symbol.for("statetrail.ethersEnsNormalize")];
  process.stderr.write("\\nENS " + JSON.stringify({
    published: Boolean(module),
    fast: Boolean(module && module.ens_normalize[Symbol.for("statetrail.ensFastPath")]),
  }));
});`,
      );
      const result = spawnSync(process.execPath, ["-r", check, BIN, "--home", dir, "verify", file], {
        encoding: "utf8",
        env: { ...process.env, XDG_CACHE_HOME: path.join(dir, "cache") },
      });
      const line = result.stderr.slice(result.stderr.lastIndexOf("\nENS ") + 5);
      expect(JSON.parse(line), result.stderr).to.deep.equal({ published: true, fast: true });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("ethers' bundle converts hex, bytes and text with Node's codecs, with ethers' own results and errors", function () {
    if (!fs.existsSync(VENDOR)) this.skip();
    // Through exports that use getBytes, hexlify and toUtf8String (scripts/build-cli.js, ETHERS_REWRITES), against
    // ethers' own: ABI strings are decoded from their bytes with toUtf8String.
    const probe = `(ethers, values) => values.map((value) => ["concat", "dataSlice", "keccak256", "zeroPadValue", "string"].map((name) => {
      try {
        if (name === "string") {
          const coder = ethers.AbiCoder.defaultAbiCoder();
          return String(coder.decode(["string"], coder.encode(["bytes"], [value]))[0]);
        }
        const args = name === "concat" ? [[value, value]] : name === "dataSlice" ? [value, 1] : name === "zeroPadValue" ? [value, 300] : [value];
        return String(ethers[name](...args));
      } catch (error) {
        // ABI decoding defers a value's error: its own is the cause.
        return "throws " + error.message + (error.error ? " / " + error.error.message : "");
      }
    }))`;
    const values = `(() => {
      const crypto = require("node:crypto");
      const values = ["0x", "0X", "0x0", "0xg0", "0xAbCd", "00", "x", "0x\\u0660\\u0661", "0xefbbbf41", "0xc0af", "0xeda080"];
      for (let n = 1; n < 200; n += 7) {
        const bytes = crypto.randomBytes(n);
        values.push("0x" + bytes.toString("hex"), "0x" + bytes.toString("hex").toUpperCase(), "0x" + bytes.toString("hex") + "z");
        values.push(new Uint8Array(bytes), Buffer.from("\\u00e9t\\u00e9 \\u{1f600} " + n, "utf8"));
      }
      return values;
    })()`;
    const result = withVendor(`
      const values = ${values};
      const probe = ${probe};
      return { bundled: probe(vendor.ethers, values), own: probe(require("ethers"), values) };
    `) as { bundled: string[][]; own: string[][] };
    expect(result.bundled).to.have.length.greaterThan(100);
    expect(result.bundled.flat().filter((outcome) => outcome.includes("\u{1f600}"))).to.not.be.empty;
    expect(result.bundled.flat().filter((outcome) => outcome.includes("invalid codepoint"))).to.not.be.empty;
    expect(result.bundled).to.deep.equal(result.own);
  });

  it("bundles asl-path-validator, the copy asl-validator requires", function () {
    if (!fs.existsSync(BUNDLE)) this.skip();
    const fromValidator = require.resolve("asl-path-validator", {
      paths: [path.dirname(require.resolve("asl-validator"))],
    });
    expect(fromValidator).to.equal(require.resolve("asl-path-validator"));
    expect(bundleText(BUNDLE)).to.contain("node_modules/asl-path-validator/dist/index.js");
  });

  it("runs through V8's code cache, written once per command into the cache folder", function () {
    if (!fs.existsSync(BUNDLE)) this.skip();
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-code-cache-"));
    try {
      const env = { ...process.env, XDG_CACHE_HOME: cache };
      for (let i = 0; i < 2; i++) {
        const result = spawnSync(process.execPath, [BIN, "verify", "--help"], { env, encoding: "utf8" });
        expect(result.status, result.stderr).to.equal(0);
        expect(result.stdout).to.contain("Usage: statetrail verify");
      }
      const files = fs.readdirSync(path.join(cache, "statetrail", "code"));
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^statetrail\.cjs\.verify-help\.[0-9a-f]{24}\.v8$/);
      const off = spawnSync(process.execPath, [BIN, "--help"], {
        env: { ...env, STATETRAIL_CODE_CACHE: "0" },
        encoding: "utf8",
      });
      expect(off.status, off.stderr).to.equal(0);
      expect(fs.readdirSync(path.join(cache, "statetrail", "code"))).to.have.length(1);
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});
