import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalBytes } from "../../src/protocol/canonical";
import {
  contentOf,
  discloseOnly,
  fieldDigest,
  readInputDocument,
  readStateDocument,
  sealInput,
  sealState,
} from "../../src/protocol/disclosure";
import { instanceHash } from "../../src/protocol/hashing";
import { STATE_DATA_VERSION, type StateContent } from "../../src/protocol/schema";

const INSTANCE = "ab".repeat(32);
const ISSUER = "0x" + "12".repeat(20);

function content(amount: number, approved: boolean): StateContent {
  return {
    statetrail_state: STATE_DATA_VERSION,
    instance_hash: INSTANCE,
    seq: 3,
    state_name: "Decide",
    state_type: "Task",
    iteration_path: [],
    attempt: 0,
    input: { amount },
    caught: null,
    outcome: { result: { approved } },
    context: null,
  };
}

describe("selective disclosure (state data v3, per-field salted digests)", function () {
  it("an attacker who knows everything but the salts can't recover a low-entropy amount or a yes/no from the state hash", function () {
    const secret = sealState(content(4_217, true));
    // The attacker has the registered hash and even the data line's structure; it tries every amount and both
    // answers. Without the salts no candidate reproduces a field digest, so no candidate reproduces the hash.
    const salts = ["", "00".repeat(16), "ff".repeat(16)];
    let matches = 0;
    for (let amount = 0; amount <= 10_000; amount += 1) {
      for (const salt of salts) {
        if (fieldDigest(salt, "input", { amount }) === secret.data.fields.input) matches += 1;
      }
    }
    for (const approved of [true, false]) {
      for (const salt of salts) {
        if (fieldDigest(salt, "outcome", { result: { approved } }) === secret.data.fields.outcome) matches += 1;
      }
      // Even a hash of the whole content (as if it were hashed unsalted) gives nothing away.
      for (let amount = 0; amount <= 10_000; amount += 1) {
        if (sha256Hex(canonicalBytes(content(amount, approved))) === secret.hash) matches += 1;
      }
    }
    expect(matches).to.equal(0);
    // The same value sealed twice gives other digests and another hash: equal values can't be linked either.
    const again = sealState(content(4_217, true));
    expect(again.data.fields.input).to.not.equal(secret.data.fields.input);
    expect(again.hash).to.not.equal(secret.hash);
  });

  it("a guessable execution input can't be recovered from the instance hash, though the head's nonce is known", function () {
    const nonce = "cd".repeat(32);
    const sealed = sealInput(Buffer.from('{"approved":true}'));
    const onChain = instanceHash({
      statetrail_instance: 2,
      model_hash: "ef".repeat(32),
      input_digest: sealed.digest,
      issuer: ISSUER,
      nonce,
    });
    const guesses = ['{"approved":true}', '{"approved":false}'];
    for (const guess of guesses) {
      // The version 3 construction (SHA-256 of the input bytes) is what a head holder could brute-force:
      const unsalted = sha256Hex(Buffer.from(guess));
      const attempt = instanceHash({
        statetrail_instance: 2,
        model_hash: "ef".repeat(32),
        input_digest: unsalted,
        issuer: ISSUER,
        nonce,
      });
      expect(attempt).to.not.equal(onChain);
      expect(fieldDigest("", "execution_input", guess)).to.not.equal(sealed.digest);
    }
    // With the disclosure, the input is read back exactly.
    expect(readInputDocument(sealed.document, sealed.digest)!.toString()).to.equal('{"approved":true}');
  });

  it("reads a partial disclosure: the disclosed fields' values, the others redacted (never a value, never null taken for one)", function () {
    const sealed = sealState(content(12, false));
    const partial = discloseOnly(sealed.document, new Set(["outcome"]));
    const text = partial.toString();
    expect(text.split("\n")).to.have.length(3); // data, outcome, and the final newline's empty tail
    expect(text).to.not.include('"amount"');
    const read = readStateDocument(partial);
    expect(sha256Hex(read.dataBytes)).to.equal(sealed.hash);
    expect(read.redacted).to.deep.equal(["caught", "context", "input"]);
    expect(read.disclosed).to.deep.equal({ outcome: { result: { approved: false } } });
    expect(contentOf(read).outcome).to.deep.equal({ result: { approved: false } });
    // Everything disclosed: the content back as sealed.
    expect(contentOf(readStateDocument(sealed.document))).to.deep.equal(content(12, false));
  });

  it("refuses a forged disclosure, a disclosure of another state, a field twice, an unknown field, a non-canonical line", function () {
    const sealed = sealState(content(12, false));
    const other = sealState(content(12, false));
    const [dataLine, ...disclosureLines] = sealed.document.toString().trimEnd().split("\n");
    const outcomeLine = disclosureLines.find((line) => line.includes('"field":"outcome"'))!;
    const otherOutcome = other.document
      .toString()
      .split("\n")
      .find((line) => line.includes('"field":"outcome"'))!;
    const document = (...lines: string[]) => Buffer.from(lines.map((line) => line + "\n").join(""));
    const forged = outcomeLine.replace('"approved":false', '"approved":true');
    const cases: Array<[string, Buffer, RegExp]> = [
      ["forged value", document(dataLine, forged), /forged disclosure/],
      ["another state's disclosure", document(dataLine, otherOutcome), /forged disclosure/],
      ["twice", document(dataLine, outcomeLine, outcomeLine), /disclosed twice/],
      ["unknown field", document(dataLine, outcomeLine.replace('"outcome"', '"secret"')), /unknown field/],
      ["not canonical", document(dataLine, outcomeLine.replace('{"field"', '{ "field"')), /canonical/],
      // The frame as the fast reader expects it, the value not canonical or the salt not lowercase: still refused.
      [
        "value spelt otherwise",
        document(dataLine, outcomeLine.replace('"approved":false', '"approved" :false')),
        /canonical/,
      ],
      [
        "salt in capitals",
        document(
          dataLine,
          outcomeLine.replace(/"salt":"([0-9a-f]{32})"/, (_m, salt: string) => `"salt":"${salt.toUpperCase()}"`),
        ),
        /salt/,
      ],
      ["no final newline", Buffer.from(dataLine), /newline/],
      ["extra member in the data", document(dataLine.replace('{"attempt"', '{"amount":1,"attempt"')), /state data/],
    ];
    for (const [name, bytes, message] of cases) {
      expect(() => readStateDocument(bytes), name).to.throw(message);
    }
  });

  it("reads back what was sealed, whatever the values (Unicode, escapes, nesting, large): the line digest is the field digest", function () {
    const values: unknown[] = [
      'é ☃ 𝄞 \u0000 " \\ \n',
      { ü: [1.5, -0, 1e21, 5e-324, null, true], "\u2028": { a: "\ud83d\ude00" } },
      Array.from({ length: 2_000 }, (_, index) => ({ index, text: "x".repeat(index % 17) })),
      [[[[[]]]]],
      0,
    ];
    for (const input of values) {
      const sealed = sealState({ ...content(1, true), input, outcome: { result: input } });
      const read = readStateDocument(sealed.document);
      expect(read.redacted).to.deep.equal([]);
      expect(contentOf(read).input).to.deep.equal(JSON.parse(JSON.stringify(input)));
      expect(read.data.fields.input).to.equal(fieldDigest(read.salts.input!, "input", input));
    }
  });
});
