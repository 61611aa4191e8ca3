import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import * as stubs from "../../src/engine/interpreter-stubs";

const ROOT = path.resolve(__dirname, "..", "..");
const BIN = path.join(ROOT, "bin", "statetrail.js");
const BUNDLE = path.join(ROOT, "dist", "statetrail.cjs");

describe("the bundled CLI (dist/statetrail.cjs, scripts/build-cli.js)", () => {
  it("holds the interpreter without the Lambda client, credential providers and ASL validator it never calls", function () {
    if (!fs.existsSync(BUNDLE)) this.skip(); // `npm run build` writes it (npm test builds first)
    const source = fs.readFileSync(BUNDLE, "utf8");
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
