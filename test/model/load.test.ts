import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { type ErrorCode, StatetrailError } from "../../src/errors";
import { DEFAULT_MAX_MODEL_BYTES, loadModel, loadModelFromBytes, modelHashOfFile } from "../../src/model/load";
import { parseStrictJson, positionOf } from "../../src/protocol/strict-json";

const MODEL = { StartAt: "Hello", States: { Hello: { Type: "Pass", Result: "world", End: true } } };

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function caught(fn: () => unknown, code: ErrorCode): StatetrailError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal(code, (error as Error).message);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

async function rejected(promise: Promise<unknown>, code: ErrorCode): Promise<StatetrailError> {
  try {
    await promise;
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal(code, (error as Error).message);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

describe("model loading", function () {
  let dir: string;

  before(function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-load-"));
  });

  after(function () {
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function write(name: string, content: string | Uint8Array): string {
    const file = path.join(dir, name);
    fs.writeFileSync(file, content);
    return file;
  }

  describe("hash of the exact bytes", function () {
    it("is the SHA-256 of the file's bytes, as sha256sum computes it", async function () {
      const text = JSON.stringify(MODEL, null, 2) + "\n";
      const file = write("hello.asl.json", text);
      const model = await loadModel(file);
      expect(model.hash).to.equal(sha256(Buffer.from(text, "utf8")));
      expect(model.bytes.equals(Buffer.from(text, "utf8"))).to.equal(true);
      expect(model.definition).to.deep.equal(MODEL);
      expect(model.source).to.equal(file);
      expect(await modelHashOfFile(file)).to.equal(model.hash);
    });

    it("changes when only whitespace changes, although the definition is the same", function () {
      const compact = loadModelFromBytes(Buffer.from(JSON.stringify(MODEL)));
      const pretty = loadModelFromBytes(Buffer.from(JSON.stringify(MODEL, null, 2)));
      const trailingNewline = loadModelFromBytes(Buffer.from(JSON.stringify(MODEL) + "\n"));
      expect(pretty.definition).to.deep.equal(compact.definition);
      expect(new Set([compact.hash, pretty.hash, trailingNewline.hash]).size).to.equal(3);
    });

    it("keeps its own copy of the bytes", function () {
      const bytes = Buffer.from(JSON.stringify(MODEL));
      const model = loadModelFromBytes(bytes);
      bytes[0] = 0x20;
      expect(model.bytes[0]).to.equal("{".charCodeAt(0));
      expect(model.hash).to.equal(sha256(model.bytes));
    });
  });

  describe("invalid JSON", function () {
    it("reports the line and column of a syntax error", function () {
      const text = '{\n  "StartAt": "A",\n  "States": { "A": { "Type": "Pass", "End": true }, }\n}';
      const error = caught(() => loadModelFromBytes(Buffer.from(text), { source: "m.json" }), "INVALID_JSON");
      expect(error.message).to.contain("m.json");
      expect(error.message).to.contain("line 3, column 53");
      expect(error.hint).to.be.a("string");
    });

    it("reports positions for other syntax errors", function () {
      const cases: [string, string][] = [
        ["", "line 1, column 1"],
        ['{"a": 1', "line 1, column 8"],
        ['{"a": tru}', "line 1, column 7"],
        ['{"a": "x\ny"}', "line 1, column 9"],
        ['{"a": 01}', "line 1, column 7"],
        ['{"a": 1}\n\n  x', "line 3, column 3"],
        ['{"a": "\\q"}', "line 1, column 8"],
      ];
      for (const [text, where] of cases) {
        const error = caught(() => parseStrictJson(text), "INVALID_JSON");
        expect(error.message, JSON.stringify(text)).to.contain(where);
      }
    });

    it("refuses duplicate keys (parsers disagree on which one wins)", function () {
      const text = '{"StartAt": "A",\n "States": {"A": {"Type": "Pass", "End": true}},\n "StartAt": "B"}';
      const error = caught(() => loadModelFromBytes(Buffer.from(text)), "INVALID_JSON");
      expect(error.message).to.contain('duplicate key "StartAt"');
      expect(error.message).to.contain("line 3, column 2");
    });

    it("parses what it accepts exactly as JSON.parse does", function () {
      const text = '{"a": [1, -2.5e3, true, false, null, "\\u00e9\\n"], "b": {"": {}}, "c": "é"}';
      expect(parseStrictJson(text)).to.deep.equal(JSON.parse(text));
    });

    it("computes 1-based positions", function () {
      expect(positionOf("ab\ncd", 0)).to.deep.equal({ line: 1, column: 1 });
      expect(positionOf("ab\ncd", 4)).to.deep.equal({ line: 2, column: 2 });
    });
  });

  describe("size limit", function () {
    it("refuses a file larger than 1 MiB by default, before reading it", async function () {
      const file = write("big.json", Buffer.alloc(DEFAULT_MAX_MODEL_BYTES + 1, 0x20));
      const error = await rejected(loadModel(file), "INPUT_TOO_LARGE");
      expect(error.message).to.contain(String(DEFAULT_MAX_MODEL_BYTES));
      await rejected(modelHashOfFile(file), "INPUT_TOO_LARGE");
    });

    it("takes a configured limit, for files and for bytes, and accepts exactly the limit", async function () {
      const text = JSON.stringify(MODEL);
      const file = write("limit.json", text);
      await rejected(loadModel(file, { maxBytes: text.length - 1 }), "INPUT_TOO_LARGE");
      caught(() => loadModelFromBytes(Buffer.from(text), { maxBytes: text.length - 1 }), "INPUT_TOO_LARGE");
      expect((await loadModel(file, { maxBytes: text.length })).bytes.length).to.equal(text.length);
      const big = Buffer.from(JSON.stringify({ ...MODEL, Comment: "x".repeat(2 * DEFAULT_MAX_MODEL_BYTES) }));
      expect(loadModelFromBytes(big, { maxBytes: 3 * DEFAULT_MAX_MODEL_BYTES }).hash).to.equal(sha256(big));
    });
  });

  describe("UTF-8", function () {
    const head = Buffer.from('{"Comment": "');
    const tail = Buffer.from('", "StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}}}');

    it("accepts multi-byte UTF-8 and keeps it byte for byte", function () {
      const bytes = Buffer.concat([head, Buffer.from("Grüße, 世界, 🚀"), tail]);
      const model = loadModelFromBytes(bytes);
      expect(model.definition.Comment).to.equal("Grüße, 世界, 🚀");
      expect(model.hash).to.equal(sha256(bytes));
    });

    it("refuses invalid byte sequences and names the offset", function () {
      const invalid: [string, number[]][] = [
        ["a stray continuation byte", [0x80]],
        ["a byte that never occurs", [0xff]],
        ["an overlong encoding of '/'", [0xc0, 0xaf]],
        ["an encoded UTF-16 surrogate", [0xed, 0xa0, 0x80]],
        ["a truncated sequence", [0xe2, 0x82]],
        ["Latin-1 text", [0x47, 0x72, 0xfc, 0xdf, 0x65]],
      ];
      for (const [what, seq] of invalid) {
        const bytes = Buffer.concat([head, Buffer.from(seq), tail]);
        const error = caught(() => loadModelFromBytes(bytes), "INVALID_JSON");
        expect(error.message, what).to.contain("not valid UTF-8");
        expect(error.message, what).to.match(/at byte 1[3-5]\b/);
      }
    });

    it("refuses a byte order mark", function () {
      const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(JSON.stringify(MODEL))]);
      const error = caught(() => loadModelFromBytes(bytes), "INVALID_JSON");
      expect(error.message).to.contain("byte order mark");
    });
  });

  describe("shape and validation", function () {
    it("refuses JSON that is not an object", function () {
      for (const text of ["[]", "42", '"x"', "null"])
        caught(() => loadModelFromBytes(Buffer.from(text)), "ASL_INVALID");
    });

    it("validates the ASL by default, and only the JSON with validate: false", function () {
      const text = JSON.stringify({ StartAt: "Nowhere", States: { A: { Type: "Pass", End: true } } });
      const error = caught(() => loadModelFromBytes(Buffer.from(text)), "ASL_INVALID");
      expect(error.message).to.contain("/StartAt");
      const unchecked = loadModelFromBytes(Buffer.from(text), { validate: false });
      expect(unchecked.definition.StartAt).to.equal("Nowhere");
    });

    it("names a file that can't be read", async function () {
      const error = await rejected(loadModel(path.join(dir, "missing.asl.json")), "INVALID_ARGUMENT");
      expect(error.message).to.contain("missing.asl.json");
      await rejected(loadModel(dir), "INVALID_ARGUMENT");
    });
  });
});
