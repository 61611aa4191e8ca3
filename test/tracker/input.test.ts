import { expect } from "chai";
import { parseInput } from "../../src/tracker/tracker";
import { StatetrailError } from "../../src/errors";

function refusal(bytes: Buffer): StatetrailError {
  try {
    parseInput(bytes);
  } catch (error) {
    return error as StatetrailError;
  }
  throw new Error("the input was accepted");
}

describe("the execution input a run starts from (parseInput)", function () {
  it("is the JSON value of the exact bytes", function () {
    expect(parseInput(Buffer.from('{"orderId":1,"items":[{"sku":"a"}]}'))).to.deep.equal({
      orderId: 1,
      items: [{ sku: "a" }],
    });
  });

  it("refuses a member named twice, at any depth (an auditor could not tell which value the run used)", function () {
    for (const text of ['{"a":1,"a":2}', '{"items":[{"sku":"a","sku":"b"}]}']) {
      const error = refusal(Buffer.from(text));
      expect(error.code).to.equal("INVALID_JSON");
      expect(error.message).to.match(/^input: duplicate key "(a|sku)" at line 1, column \d+$/);
    }
  });

  it("refuses bytes that are not UTF-8 and text that is not JSON, with coded errors", function () {
    expect(refusal(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d])).message).to.equal(
      "input is not valid UTF-8",
    );
    const error = refusal(Buffer.from("{orderId: 1}"));
    expect(error.code).to.equal("INVALID_JSON");
    expect(error.message).to.match(/^input is not valid JSON/);
  });
});
