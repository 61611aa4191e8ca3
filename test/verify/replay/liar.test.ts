/**
 * The liar campaign in `npm test`: a fixed, seeded sample (no time budget). Models and inputs come from the
 * grammar (grammar.ts), each runs genuinely on the local engine and must replay as "match"; lies about it
 * (lies.ts) must be refused by V9 (walk, then replay), and variants a genuine run could also have produced must
 * be accepted. scripts/bench-replay.ts runs the same campaign with ≥ 10,000 lies.
 */
import { expect } from "chai";
import fc from "fast-check";
import { compile, scenarioArb } from "./grammar";
import { runCampaign, type CampaignStats, type Problem } from "./campaign";
import { recordRun } from "./harness";
import { makeHandlers } from "./grammar";
import { LIE_KINDS, makeVariant, picker, type LieKind } from "./lies";
import { forgeReplayable, replayEnv, verifyReplayable } from "./forge-replayable";

const SEED = 20261203;

function show(problems: Problem[]): string {
  return problems
    .slice(0, 3)
    .map((problem) => JSON.stringify(problem))
    .join("\n");
}

describe("replay: the liar campaign (fixed sample)", function () {
  let stats: CampaignStats;

  before(async function () {
    stats = await runCampaign({ seed: SEED, models: 40, variantsPerModel: 12, validate: false });
  });

  it("every genuine run replays as match", function () {
    expect(stats.errors, show(stats.errors)).to.deep.equal([]);
    expect(stats.falseMismatches, show(stats.falseMismatches)).to.deep.equal([]);
    expect(stats.genuineRuns).to.equal(40);
    expect(stats.genuineMatched).to.equal(stats.genuineRuns);
    expect(stats.genuineSucceeded).to.be.greaterThan(0);
    expect(stats.genuineFailed).to.be.greaterThan(0);
  });

  it("no lie is accepted, every kind of lie is tried", function () {
    expect(stats.liesTried).to.be.at.least(300);
    expect(stats.liesAccepted, show(stats.liesAccepted)).to.deep.equal([]);
    const tried = Object.keys(stats.perKind);
    for (const kind of LIE_KINDS) expect(tried, `lies of kind ${kind}`).to.include(kind);
  });

  it("what a genuine run could also have produced (aborted truncations, interleavings, other Task outcomes) is accepted", function () {
    expect(stats.allowedTried).to.be.greaterThan(10);
    expect(stats.allowedRefused, show(stats.allowedRefused)).to.deep.equal([]);
  });

  it("the grammar's models are valid ASL (statetrail's validator, as LocalEngine checks it)", async function () {
    for (const scenario of fc.sample(scenarioArb(), { seed: SEED, numRuns: 6 })) {
      const model = compile(scenario.block);
      const run = await recordRun(model.definition, scenario.input, makeHandlers(model.handlers));
      expect(run.states.length).to.be.greaterThan(1);
    }
  });

  it("through verifyProtocol: genuine runs are valid; lies pass V0–V8 and fail V9", async function () {
    const env = await replayEnv();
    const kinds: LieKind[] = [
      "input",
      "execution-input",
      "branch",
      "drop",
      "caught",
      "end-output",
      "status",
      "aborted-cut",
    ];
    let lies = 0;
    for (const scenario of fc.sample(scenarioArb(), { seed: SEED + 1, numRuns: 4 })) {
      const model = compile(scenario.block);
      const genuine = await recordRun(model.definition, scenario.input, makeHandlers(model.handlers), {
        validate: false,
      });
      const valid = await verifyReplayable(env, await forgeReplayable(env, genuine));
      expect(valid.report.verdict, valid.v9).to.equal("valid");
      for (const [index, kind] of kinds.entries()) {
        const variant = await makeVariant(
          kind,
          { genuine, handlers: () => makeHandlers(model.handlers) },
          picker([index * 7 + 3, 11, 5, 2, 13, 1, 8, 4]),
        );
        if (!variant || variant.expect !== "lie") continue;
        const checked = await verifyReplayable(env, await forgeReplayable(env, variant.run));
        for (const id of ["V0", "V1", "V3", "V4", "V5", "V6", "V7", "V8"]) {
          expect(checked.steps[id], `${id} on ${variant.what}`).to.equal("pass");
        }
        expect(checked.steps.V9, `${variant.what}: ${checked.v9}`).to.equal("fail");
        lies += 1;
      }
    }
    expect(lies).to.be.at.least(10);
  });
});
