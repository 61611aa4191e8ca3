import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { readInputArgument } from "../../src/cli/commands/run";
import { readFileLimited } from "../../src/protocol/limits";
import { runCli } from "../helpers/cli-run";
import { DEFAULT_MAX_INPUT_BYTES } from "../../src/tracker/tracker";

function codeOf(action: () => unknown): string | undefined {
  try {
    action();
  } catch (error) {
    return (error as { code?: string }).code ?? (error as Error).constructor.name;
  }
  return undefined;
}

describe("CLI inputs: --input and protocol files are bounded before they are read", function () {
  let dir: string;
  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cli-inputs-"));
  });
  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("inline input: exact bytes kept; 100k-deep nesting refused (INPUT_TOO_LARGE) before anything runs", function () {
    expect(readInputArgument('{"a": 1}').toString()).to.equal('{"a": 1}');
    expect(codeOf(() => readInputArgument("[".repeat(100_000) + "]".repeat(100_000)))).to.equal("INPUT_TOO_LARGE");
    expect(codeOf(() => readInputArgument("[".repeat(1000) + "]".repeat(1000)))).to.equal(undefined);
  });

  it("input files: too large, not regular, not UTF-8, missing", function () {
    const big = path.join(dir, "big.json");
    fs.writeFileSync(big, `"${"x".repeat(DEFAULT_MAX_INPUT_BYTES)}"`);
    expect(codeOf(() => readInputArgument(big))).to.equal("INPUT_TOO_LARGE");
    expect(codeOf(() => readInputArgument("/dev/zero"))).to.equal("INVALID_ARGUMENT");
    expect(codeOf(() => readInputArgument(dir))).to.equal("INVALID_ARGUMENT");
    const latin1 = path.join(dir, "latin1.json");
    fs.writeFileSync(latin1, Buffer.from([0x22, 0xe9, 0x22]));
    expect(codeOf(() => readInputArgument(latin1))).to.equal("INVALID_JSON");
    expect(codeOf(() => readInputArgument(path.join(dir, "missing.json")))).to.equal("INVALID_ARGUMENT");
    const ok = path.join(dir, "ok.json");
    fs.writeFileSync(ok, Buffer.from('{"ok": true}\n'));
    expect(readInputArgument(ok).equals(fs.readFileSync(ok))).to.equal(true);
  });

  it("readFileLimited: exact bytes up to the limit, one byte more is refused", function () {
    const file = path.join(dir, "limit.bin");
    const bytes = Buffer.alloc(3 * 1024 * 1024 + 7, 0x61);
    fs.writeFileSync(file, bytes);
    expect(readFileLimited(file, bytes.length, "file").equals(bytes)).to.equal(true);
    expect(codeOf(() => readFileLimited(file, bytes.length - 1, "file"))).to.equal("INPUT_TOO_LARGE");
    const empty = path.join(dir, "empty");
    fs.writeFileSync(empty, "");
    expect(readFileLimited(empty, 10, "file").length).to.equal(0);
  });
});

describe("CLI size limits are configurable", function () {
  it("model hash --max-model-bytes: any size is hashed; over the default a 1.5 MiB model is not one statetrail accepts (a warning), a larger limit accepts it", async function () {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cli-limits-"));
    try {
      const file = path.join(dir, "big.asl.json");
      const model = {
        Comment: "x".repeat(1.5 * 1024 * 1024),
        StartAt: "A",
        States: { A: { Type: "Succeed" } },
      };
      fs.writeFileSync(file, JSON.stringify(model));
      const tooLarge = await runCli(["--json", "model", "hash", file]);
      expect(tooLarge.code).to.equal(0);
      const report = JSON.parse(tooLarge.stdout) as {
        model_hash: string;
        valid_model: boolean;
        validation: { code: string };
      };
      expect(report.model_hash).to.equal(createHash("sha256").update(fs.readFileSync(file)).digest("hex"));
      expect(report.valid_model).to.equal(false);
      expect(report.validation.code).to.equal("INPUT_TOO_LARGE");
      const accepted = await runCli(["--json", "model", "hash", file, "--max-model-bytes", String(2 * 1024 * 1024)]);
      expect(accepted.code).to.equal(0);
      expect((JSON.parse(accepted.stdout) as { valid_model: boolean }).valid_model).to.equal(true);
      const usage = await runCli(["model", "hash", file, "--max-model-bytes", "lots"]);
      expect(usage.code).to.equal(64);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
