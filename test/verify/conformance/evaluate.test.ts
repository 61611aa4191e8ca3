import { expect } from "chai";
import { type AslState } from "../../../src/model/types";
import { evaluateChoice, mapIterations, waitRequirement } from "../../../src/verify/conformance";

describe("conformance: ASL semantics asked of the interpreter", function () {
  describe("evaluateChoice", function () {
    const route: AslState = {
      Type: "Choice",
      InputPath: "$.order",
      Choices: [
        { Variable: "$.total", NumericGreaterThan: 100, Next: "Review" },
        {
          And: [
            { Variable: "$.country", IsPresent: true },
            { Variable: "$.country", StringEquals: "DE" },
          ],
          Next: "Ship",
        },
        { Not: { Variable: "$.express", BooleanEquals: false }, Next: "Ship" },
      ],
      Default: "Route",
    };

    it("applies the Choice's InputPath, then its rules in order, then Default; names the deciding rule", async function () {
      expect(await evaluateChoice("Route", route, { order: { total: 150, country: "DE" } })).to.deep.equal({
        kind: "target",
        target: "Review",
        via: "rule 0",
      });
      expect(await evaluateChoice("Route", route, { order: { total: 10, country: "DE" } })).to.deep.include({
        target: "Ship",
        via: "rule 1",
      });
      expect(await evaluateChoice("Route", route, { order: { total: 10, express: true } })).to.deep.include({
        target: "Ship",
        via: "rule 2",
      });
      // Default back to the Choice itself (a loop) is a target like any other.
      expect(await evaluateChoice("Route", route, { order: { total: 10, express: false } })).to.deep.include({
        target: "Route",
        via: "Default",
      });
    });

    it("answers no-match without Default, and unchecked (with the reason) for what it cannot evaluate", async function () {
      const strict: AslState = { Type: "Choice", Choices: [{ Variable: "$.n", NumericEquals: 1, Next: "One" }] };
      expect(await evaluateChoice("Strict", strict, { n: 2 })).to.deep.equal({ kind: "no-match" });
      const missing = await evaluateChoice("Strict", strict, { m: 1 });
      expect(missing.kind).to.equal("unchecked");
      expect((missing as { reason: string }).reason).to.contain("States.Runtime");
      const context: AslState = {
        Type: "Choice",
        Choices: [{ Variable: "$$.Execution.Name", StringEquals: "x", Next: "A" }],
        Default: "B",
      };
      expect(await evaluateChoice("Context", context, {})).to.deep.equal({
        kind: "unchecked",
        reason: 'reads the Context Object ("$$.Execution.Name"), which the verifier does not have',
      });
      const jsonata: AslState = { Type: "Choice", Choices: [{ Condition: "{% true %}", Next: "A" }], Default: "B" };
      const result = await evaluateChoice("J", jsonata, {}, "JSONata");
      expect(result.kind).to.equal("unchecked");
    });
  });

  describe("mapIterations", function () {
    it("counts the array at ItemsPath of the effective input (after InputPath); ItemSelector changes nothing", async function () {
      const map: AslState = {
        Type: "Map",
        InputPath: "$.batch",
        ItemsPath: "$.lines",
        ItemSelector: { "line.$": "$$.Map.Item.Value" },
        ItemProcessor: { StartAt: "P", States: { P: { Type: "Pass", End: true } } },
      };
      expect(await mapIterations("M", map, { batch: { lines: [1, 2, 3, 4] } })).to.deep.equal({ ok: true, value: 4 });
      const whole: AslState = { Type: "Map", ItemProcessor: map.ItemProcessor };
      expect(await mapIterations("W", whole, ["a", "b"])).to.deep.equal({ ok: true, value: 2 });
      expect(await mapIterations("W", whole, { not: "an array" })).to.deep.equal({
        ok: false,
        reason: "ItemsPath $ of its effective input is not an array",
      });
    });

    it("does not count items read by an ItemReader or a Distributed Map's", async function () {
      const reader: AslState = { Type: "Map", ItemReader: { Resource: "arn:aws:states:::s3:getObject" } };
      expect(await mapIterations("R", reader, {})).to.deep.equal({
        ok: false,
        reason: "its items are read by an ItemReader",
      });
      const distributed: AslState = {
        Type: "Map",
        ItemProcessor: { ProcessorConfig: { Mode: "DISTRIBUTED" }, StartAt: "P", States: {} },
      };
      expect((await mapIterations("D", distributed, [])).ok).to.equal(false);
    });
  });

  describe("waitRequirement", function () {
    it("reads Seconds, SecondsPath, Timestamp and TimestampPath (after InputPath)", async function () {
      expect(await waitRequirement("W", { Type: "Wait", Seconds: 30 }, {})).to.deep.equal({
        ok: true,
        value: { seconds: 30 },
      });
      expect(
        await waitRequirement("W", { Type: "Wait", InputPath: "$.cfg", SecondsPath: "$.pause" }, { cfg: { pause: 7 } }),
      ).to.deep.equal({ ok: true, value: { seconds: 7 } });
      expect(await waitRequirement("W", { Type: "Wait", Timestamp: "2026-01-01T00:00:00Z" }, {})).to.deep.equal({
        ok: true,
        value: { until: 1_767_225_600, timestamp: "2026-01-01T00:00:00Z" },
      });
      expect(
        await waitRequirement("W", { Type: "Wait", TimestampPath: "$.at" }, { at: "2026-01-01T00:00:01Z" }),
      ).to.deep.equal({ ok: true, value: { until: 1_767_225_601, timestamp: "2026-01-01T00:00:01Z" } });
      const bad = await waitRequirement("W", { Type: "Wait", SecondsPath: "$.pause" }, { pause: "soon" });
      expect(bad).to.deep.equal({ ok: false, reason: 'its duration "soon" is not a number of seconds' });
    });
  });
});
