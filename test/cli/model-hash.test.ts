import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { runCli } from "../helpers/cli-run";

/**
 * Issue 12, finding 10: `statetrail model hash <file>` prints the SHA-256 of the file's exact bytes for any file
 * (an auditor hashes what it was given); whether the bytes are a valid model is a separate warning, exit 0.
 */

const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-model-hash-"));
const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

function file(name: string, bytes: Uint8Array | string): string {
  const at = path.join(dir, name);
  fs.writeFileSync(at, bytes);
  return at;
}

describe("statetrail model hash", function () {
  this.timeout(60_000);

  for (const [label, name, bytes, code] of [
    [
      "invalid ASL",
      "bad.asl.json",
      JSON.stringify({ StartAt: "A", States: { A: { Type: "Task", Next: "B" } } }),
      "ASL_INVALID",
    ],
    ["bytes that are not UTF-8", "binary.bin", Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x41]), "INVALID_JSON"],
    ["text that is not JSON", "notes.txt", "not json at all\n", "INVALID_JSON"],
    ["an empty file", "empty.json", "", "INVALID_JSON"],
    ["a JSON array", "array.json", "[1,2,3]", "ASL_INVALID"],
  ] as const) {
    it(`hashes ${label}, exit 0, and reports validation as a warning (${code})`, async function () {
      const at = file(name, bytes);
      const result = await runCli(["--json", "model", "hash", at]);
      expect(result.code, result.stderr).to.equal(0);
      const out = JSON.parse(result.stdout);
      expect(out.model_hash).to.equal(sha256(fs.readFileSync(at)));
      expect(out.bytes).to.equal(fs.readFileSync(at).length);
      expect(out.valid_model).to.equal(false);
      expect(out.validation.code).to.equal(code);
      expect(out.validation.hint).to.be.a("string");
      expect(result.stderr).to.contain(`warning ${code}`);
    });
  }

  it("prints the hash alone on stdout in text mode, the warning on stderr", async function () {
    const at = file("bad2.asl.json", JSON.stringify({ StartAt: "A", States: { A: { Type: "Task", Next: "B" } } }));
    const result = await runCli(["model", "hash", at]);
    expect(result.code).to.equal(0);
    expect(result.stdout.trim()).to.equal(sha256(fs.readFileSync(at)));
    expect(result.stderr).to.contain("ASL_INVALID").and.contain("/States/A");
  });

  it("hashes a file larger than the model size limit, warning INPUT_TOO_LARGE", async function () {
    const at = file("big.json", Buffer.alloc(2 * 1024 * 1024 + 3, 0x20));
    const result = await runCli(["--json", "model", "hash", at]);
    expect(result.code, result.stderr).to.equal(0);
    const out = JSON.parse(result.stdout);
    expect(out.model_hash).to.equal(sha256(fs.readFileSync(at)));
    expect(out.validation.code).to.equal("INPUT_TOO_LARGE");
  });

  it("says a valid model is one, with its warnings", async function () {
    const at = file(
      "ok.asl.json",
      JSON.stringify({ StartAt: "P", States: { P: { Type: "Pass", Parameters: { "v.$": "$.[0]" }, End: true } } }),
    );
    const result = await runCli(["--json", "model", "hash", at]);
    expect(result.code).to.equal(0);
    const out = JSON.parse(result.stdout);
    expect(out.model_hash).to.equal(sha256(fs.readFileSync(at)));
    expect(out.valid_model).to.equal(true);
    expect(out.validation).to.equal(null);
    expect(out.warnings.map((w: { code: string }) => w.code)).to.deep.equal(["RELAXED_PATH"]);
  });

  it("still fails with INVALID_ARGUMENT (exit 64) for a file that can't be read", async function () {
    const result = await runCli(["--json", "model", "hash", path.join(dir, "missing.json")]);
    expect(result.code).to.equal(64);
    expect(JSON.parse(result.stdout).error.code).to.equal("INVALID_ARGUMENT");
  });
});
