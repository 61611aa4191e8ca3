import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { bundleText } from "../helpers/bundle-text";

// How the CLI starts (issue 14): what scripts/build-cli.js writes, src/cli/code-cache.ts and bin/statetrail.js.
// No timings here: scripts/bench-startup.ts measures them.
const ROOT = path.resolve(__dirname, "..", "..");
const DIST = path.join(ROOT, "dist");
const CODE_CACHE = path.join(DIST, "src", "cli", "code-cache.js");
const HEADER = "// statetrail bundle sha256:";

/** Runs `script` from a file in `dir` (`node -e` itself loads node:crypto). */
function node(
  dir: string,
  script: string,
  env: NodeJS.ProcessEnv = {},
): { status: number | null; stdout: string; stderr: string } {
  const file = path.join(dir, "script.js");
  fs.writeFileSync(file, script);
  const result = spawnSync(process.execPath, [file], { encoding: "utf8", env: { ...process.env, ...env } });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe("CLI startup (bin/statetrail.js, src/cli/code-cache.ts, scripts/build-cli.js)", () => {
  it("the bundles are ASCII, their first line the SHA-256 of the rest", function () {
    if (!fs.existsSync(path.join(DIST, "statetrail.cjs"))) this.skip(); // `npm run build` writes them
    for (const name of ["statetrail.cjs", "vendor-ethers.cjs"]) {
      const bytes = fs.readFileSync(path.join(DIST, name));
      expect(
        bytes.every((byte) => byte < 0x80),
        `${name} is ASCII`,
      ).to.equal(true);
      const text = bytes.toString("latin1");
      const newline = text.indexOf("\n");
      expect(text.slice(0, HEADER.length), name).to.equal(HEADER);
      const sha256 = crypto
        .createHash("sha256")
        .update(text.slice(newline + 1))
        .digest("hex");
      expect(text.slice(HEADER.length, newline), name).to.equal(sha256);
    }
  });

  it("the interpreter is embedded as text, compiled on its own; child_process loads on first use, ws never", function () {
    if (!fs.existsSync(path.join(DIST, "statetrail.cjs"))) this.skip();
    const cli = bundleText(path.join(DIST, "statetrail.cjs"));
    // The bundles are minified (no comments; names kept): modules are told apart by the names they define.
    const embedded = /name: ?"aws-local-stepfunctions", ?source: ?[`'"]/.exec(cli);
    expect(embedded, "the interpreter's text").to.not.equal(null);
    const end = cli.indexOf("hash:", embedded!.index);
    expect(end).to.be.greaterThan(embedded!.index);
    expect(cli.slice(embedded!.index, end)).to.contain("aws-local-stepfunctions/build/main.node.cjs");
    expect(cli.slice(embedded!.index, end)).to.match(/\bStateMachine = class\b/);
    expect(cli).to.contain('"on-first-use:node:child_process"');
    // Only in the interpreter's text: not a module of the CLI's bundle (its closure would see every binding).
    const outside = cli.slice(0, embedded!.index) + cli.slice(end);
    expect(outside).to.not.contain("node_modules/aws-local-stepfunctions/");
    expect(outside).to.not.match(/\bStateMachine = class\b/);
    // ethers' bundle holds what the CLI uses of ethers (tree-shaken): no WebSocketProvider, so no ws.
    const ethers = bundleText(path.join(DIST, "vendor-ethers.cjs"));
    expect(ethers).to.not.match(/\b(WebSocketProvider|SocketProvider|WebSocketServer)\b/);
    expect(ethers).to.not.contain('require("ws")');
    expect(ethers).to.not.match(/\bAlchemyProvider\b/);
    // …where ethers' own build defines them (the names above would be found if they were bundled).
    const providers = path.join(path.dirname(require.resolve("ethers")), "..", "lib.esm", "providers");
    expect(fs.readFileSync(path.join(providers, "provider-websocket.js"), "utf8")).to.contain("WebSocketProvider");
    expect(fs.readFileSync(path.join(providers, "provider-alchemy.js"), "utf8")).to.contain("AlchemyProvider");
    // --help needs neither.
    const help = spawnSync(
      process.execPath,
      [
        "-e",
        `process.on("exit", () => process.stderr.write("\\nLOADED " + JSON.stringify(process.moduleLoadList)));
         process.argv = [process.argv[0], ${JSON.stringify(path.join(ROOT, "bin", "statetrail.js"))}, "--help"];
         require(process.argv[1]);`,
      ],
      { encoding: "utf8" },
    );
    expect(help.status, help.stderr).to.equal(0);
    const loaded = JSON.parse(help.stderr.slice(help.stderr.lastIndexOf("\nLOADED ") + 8)) as string[];
    expect(loaded).to.not.include("NativeModule child_process");
  });

  describe("loadBundle", () => {
    let dir: string;
    beforeEach(() => {
      dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-startup-"));
    });
    afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

    it("reads the hash from the header (no node:crypto), caches per bundle and command, runs the same twice", function () {
      if (!fs.existsSync(CODE_CACHE)) this.skip();
      const body = `"use strict";\nmodule.exports = { answer: 6 * 7, filename: __filename };\n`;
      const sha256 = crypto.createHash("sha256").update(body).digest("hex");
      const bundle = path.join(dir, "b.cjs");
      fs.writeFileSync(bundle, `${HEADER}${sha256}\n${body}`);
      const script = `const cache = require(${JSON.stringify(CODE_CACHE)});
        const out = cache.loadBundle(${JSON.stringify(bundle)}, "verify");
        console.log(JSON.stringify({ ...out, crypto: process.moduleLoadList.includes("NativeModule crypto") }));`;
      const env = { XDG_CACHE_HOME: path.join(dir, "cache") };
      for (let i = 0; i < 2; i++) {
        const run = node(dir, script, env);
        expect(run.status, run.stderr).to.equal(0);
        expect(JSON.parse(run.stdout)).to.deep.equal({ answer: 42, filename: bundle, crypto: false });
      }
      const files = fs.readdirSync(path.join(dir, "cache", "statetrail", "code"));
      expect(files).to.have.length(1);
      expect(files[0]).to.match(new RegExp(`^b\\.cjs\\.verify\\.${sha256.slice(0, 16)}[0-9a-f]{8}\\.v8$`));
    });

    it("an embedded bundle: its own name, its own modules, the rest resolved from the file's folder", function () {
      if (!fs.existsSync(CODE_CACHE)) this.skip();
      const source = `module.exports = { stub: require("my-stub").value, path: typeof require("node:path").join, file: __filename };`;
      const script = `const cache = require(${JSON.stringify(CODE_CACHE)});
        const out = cache.loadBundle(${JSON.stringify(path.join(dir, "host.cjs"))}, {
          name: "inner", source: ${JSON.stringify(source)}, modules: { "my-stub": { value: "stubbed" } }, command: "verify",
        });
        console.log(JSON.stringify(out));`;
      const run = node(dir, script, { XDG_CACHE_HOME: path.join(dir, "cache") });
      expect(run.status, run.stderr).to.equal(0);
      expect(JSON.parse(run.stdout)).to.deep.equal({
        stub: "stubbed",
        path: "function",
        file: `${path.join(dir, "host.cjs")}#inner`,
      });
      const files = fs.readdirSync(path.join(dir, "cache", "statetrail", "code"));
      expect(files).to.have.length(1);
      expect(files[0]).to.match(/^host\.cjs\.inner\.verify\.[0-9a-f]{24}\.v8$/);
    });
  });

  describe("bin/statetrail.js", () => {
    let root: string;
    beforeEach(() => {
      // A clone in miniature: bin/, dist/ with an entry point and no bundle, src/ with a file newer than the build.
      root = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-bin-"));
      fs.mkdirSync(path.join(root, "bin"));
      fs.copyFileSync(path.join(ROOT, "bin", "statetrail.js"), path.join(root, "bin", "statetrail.js"));
      fs.mkdirSync(path.join(root, "dist", "src", "cli"), { recursive: true });
      fs.writeFileSync(
        path.join(root, "dist", "src", "cli", "main.js"),
        `exports.main = async (argv) => { process.stdout.write("ran " + argv.slice(2).join(" ") + "\\n"); return 3; };`,
      );
      fs.writeFileSync(path.join(root, "dist", ".built"), "");
      const old = new Date(Date.now() - 60_000);
      fs.utimesSync(path.join(root, "dist", ".built"), old, old);
      fs.mkdirSync(path.join(root, "src", "verify"), { recursive: true });
      fs.writeFileSync(path.join(root, "src", "verify", "edited.ts"), "");
    });
    afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

    for (const args of [
      ["verify", "x"],
      ["--home", "verify", "watch", "x"],
    ]) {
      it(`still warns of sources edited after the build, and exits with main's code (${args.join(" ")})`, () => {
        const run = spawnSync(process.execPath, [path.join(root, "bin", "statetrail.js"), ...args], {
          cwd: root,
          encoding: "utf8",
        });
        expect(run.status, run.stderr).to.equal(3);
        expect(run.stdout).to.equal(`ran ${args.join(" ")}\n`);
        expect(run.stderr).to.contain(
          `warning: ${path.join("src", "verify", "edited.ts")} changed after the last build`,
        );
      });
    }
  });

  it("stops with 141 (never 0) when its reader closes the pipe (`statetrail --help | head -1`), no unhandled error", async () => {
    const child = spawn(process.execPath, [path.join(ROOT, "bin", "statetrail.js"), "--help"], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout!.destroy(); // the reader is gone before the CLI writes
    let stderr = "";
    child.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.on("exit", (exit) => resolve(exit)));
    expect(code).to.equal(141);
    expect(stderr).to.not.match(/Unhandled|EPIPE/);
  });
});
