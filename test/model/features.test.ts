import path from "node:path";
import { expect } from "chai";
import { StatetrailError } from "../../src/errors";
import {
  analyzeLocalSupport,
  assertLocalSupported,
  localWarnings,
  unsupportedForLocal,
} from "../../src/model/features";
import { loadModel } from "../../src/model/load";

const EXAMPLES = path.join(__dirname, "..", "..", "examples");

const inner = { StartAt: "I", States: { I: { Type: "Pass", End: true } } };

describe("features the local engine refuses", function () {
  it("lists every JSONata, variable and Distributed Map feature with its JSON path", function () {
    const definition = {
      QueryLanguage: "JSONata",
      StartAt: "Call",
      States: {
        Call: {
          Type: "Task",
          QueryLanguage: "JSONata",
          Resource: "arn:aws:states:::lambda:invoke",
          Arguments: { FunctionName: "f", Payload: "{% $states.input %}" },
          Output: { "ok.$": "$" },
          Assign: { total: "{% $states.result.total %}" },
          Catch: [{ ErrorEquals: ["States.ALL"], Assign: { failed: true }, Output: "x", Next: "Route" }],
          Next: "Route",
        },
        Route: {
          Type: "Choice",
          Choices: [{ Condition: "{% $total > 10 %}", Next: "Big" }],
          Default: "Big",
        },
        Big: {
          Type: "Map",
          Items: [1, 2],
          ItemReader: { Resource: "arn:aws:states:::s3:getObject", Parameters: { Bucket: "b", Key: "k" } },
          ItemBatcher: { MaxItemsPerBatch: 10 },
          ResultWriter: { Resource: "arn:aws:states:::s3:putObject", Parameters: { Bucket: "b", Prefix: "p" } },
          ToleratedFailureCount: 1,
          ToleratedFailurePercentagePath: "$.pct",
          ItemProcessor: { ProcessorConfig: { Mode: "DISTRIBUTED", ExecutionType: "STANDARD" }, ...inner },
          End: true,
        },
      },
    };
    const found = unsupportedForLocal(definition);
    const at = found.map((f) => f.path);
    expect(at).to.include.members([
      "/QueryLanguage",
      "/States/Call/QueryLanguage",
      "/States/Call/Arguments",
      "/States/Call/Output",
      "/States/Call/Assign",
      "/States/Call/Catch/0/Assign",
      "/States/Call/Catch/0/Output",
      "/States/Call/Arguments/Payload",
      "/States/Call/Assign/total",
      "/States/Route/Choices/0/Condition",
      "/States/Big/Items",
      "/States/Big/ItemReader",
      "/States/Big/ItemBatcher",
      "/States/Big/ResultWriter",
      "/States/Big/ToleratedFailureCount",
      "/States/Big/ToleratedFailurePercentagePath",
      "/States/Big/ItemProcessor/ProcessorConfig/Mode",
    ]);
    expect(found.find((f) => f.path === "/States/Big/ItemProcessor/ProcessorConfig/Mode")?.feature).to.equal(
      "Distributed Map",
    );
    expect(found.find((f) => f.path === "/States/Call/Arguments/Payload")?.feature).to.equal("JSONata expression");
  });

  it("finds features nested in Parallel branches and Map iterators", function () {
    const definition = {
      StartAt: "P",
      States: {
        P: {
          Type: "Parallel",
          Branches: [
            {
              StartAt: "M",
              States: {
                M: {
                  Type: "Map",
                  ItemProcessor: {
                    StartAt: "T",
                    States: { T: { Type: "Pass", QueryLanguage: "JSONata", Output: "{% 1 %}", End: true } },
                  },
                  End: true,
                },
              },
            },
          ],
          End: true,
        },
      },
    };
    expect(unsupportedForLocal(definition).map((f) => f.path)).to.have.members([
      "/States/P/Branches/0/States/M/ItemProcessor/States/T/QueryLanguage",
      "/States/P/Branches/0/States/M/ItemProcessor/States/T/Output",
      "/States/P/Branches/0/States/M/ItemProcessor/States/T/Output",
    ]);
  });

  it("finds nothing in a plain JSONPath model, even with look-alike keys inside Parameters", function () {
    const definition = {
      QueryLanguage: "JSONPath",
      StartAt: "A",
      States: {
        A: {
          Type: "Pass",
          Parameters: { Output: "report.pdf", Assign: "nobody", Arguments: ["x"], Condition: "new" },
          Next: "M",
        },
        M: { Type: "Map", ItemProcessor: { ProcessorConfig: { Mode: "INLINE" }, ...inner }, End: true },
      },
    };
    expect(analyzeLocalSupport(definition)).to.deep.equal({ unsupported: [], warnings: [] });
  });

  it("warns about .waitForTaskToken without refusing it", function () {
    const definition = {
      StartAt: "Ask",
      States: {
        Ask: {
          Type: "Task",
          Resource: "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
          Parameters: { QueueUrl: "q", MessageBody: { "token.$": "$$.Task.Token" } },
          End: true,
        },
      },
    };
    expect(unsupportedForLocal(definition)).to.deep.equal([]);
    const warnings = localWarnings(definition);
    expect(warnings.map((w) => w.path)).to.deep.equal(["/States/Ask/Resource"]);
    expect(assertLocalSupported(definition)).to.deep.equal(warnings);
  });

  it("refuses with ASL_UNSUPPORTED, every finding listed, and points at --engine aws", async function () {
    const model = await loadModel(path.join(EXAMPLES, "jsonata-greeting.asl.json"));
    try {
      assertLocalSupported(model.definition, model.source);
      expect.fail("expected ASL_UNSUPPORTED");
    } catch (error) {
      expect(error).to.be.instanceOf(StatetrailError);
      const e = error as StatetrailError;
      expect(e.code).to.equal("ASL_UNSUPPORTED");
      expect(e.hint).to.contain("--engine aws");
      for (const finding of unsupportedForLocal(model.definition)) expect(e.message).to.contain(finding.path);
      expect(e.message).to.contain("jsonata-greeting.asl.json");
    }
  });

  it("refuses query languages it does not know", function () {
    expect(unsupportedForLocal({ QueryLanguage: "XPath", StartAt: "A", States: {} }).map((f) => f.path)).to.deep.equal([
      "/QueryLanguage",
    ]);
  });
});
