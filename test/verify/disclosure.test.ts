import fs from "node:fs";
import { expect } from "chai";
import { sha256Hex } from "../../src/chain/hash";
import { canonicalBytes } from "../../src/protocol/canonical";
import { discloseOnly, fieldDigest, sealInput, type Disclosure } from "../../src/protocol/disclosure";
import { type DataField } from "../../src/protocol/schema";
import {
  FetchRecorder,
  renderReport,
  renderReportsHtml,
  type StepResult,
  type VerificationReport,
} from "../../src/verify";
import { SeqRanges } from "../../src/verify/conformance/artifacts";
import {
  finishRun,
  forgeEnv,
  forgeScenario,
  publish,
  publishState,
  registerRun,
  resign,
  startRun,
  stateUrl,
  verifyForged,
  discloseOnlyFields,
  withholdInput,
  type ForgeEnv,
  type ForgedRun,
  type PendingRun,
} from "../helpers/forge";
import { conformanceEnv, forgeRecorded, verifyRecorded } from "./conformance/forge-recorded";
import { example, runLocal, type LocalRun } from "./conformance/helpers";

/*
 * Selective disclosure (protocol v4, issue 17). A state document is the state data (what the registered hash covers)
 * then one disclosure line per disclosed field; the input document discloses the execution input or is empty. Every
 * line that is not a genuine disclosure of this state's field is evidence against the issuer (invalid), never taken
 * for a redaction; anything genuinely withheld makes the verdict valid-as-disclosed (exit 3), never valid.
 */

const ALL: readonly DataField[] = ["caught", "context", "input", "outcome"];

function step(report: VerificationReport, id: string): StepResult {
  return report.steps.find((candidate) => candidate.id === id)!;
}

function failing(report: VerificationReport): string[] {
  return report.steps.filter((candidate) => candidate.status === "fail").map((candidate) => candidate.id);
}

/** The lines of a document (without their newlines). */
function linesOf(document: Buffer): string[] {
  return document.toString("utf8").split("\n").slice(0, -1);
}

function documentOf(lines: readonly string[]): Buffer {
  return Buffer.from(lines.map((line) => `${line}\n`).join(""), "utf8");
}

/** The disclosure line of `field` in a whole state document. */
function disclosureLine(document: Buffer, field: string): string {
  const line = linesOf(document).find((candidate) => candidate.startsWith(`{"field":"${field}"`));
  if (!line) throw new Error(`no disclosure of ${field}`);
  return line;
}

describe("selective disclosure: forged, moved or malformed disclosures are invalid (V5, V6)", function () {
  this.timeout(60_000);

  async function verifyWithDocument(edit: (env: ForgeEnv, run: ForgedRun) => void): Promise<VerificationReport> {
    const { env, run } = await forgeScenario();
    edit(env, run);
    return verifyForged(env, { url: run.url });
  }

  function expectInvalidAt(report: VerificationReport, id: string, says: RegExp): void {
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("invalid");
    expect(report.exit_code).to.equal(1);
    expect(failing(report), shown).to.deep.equal([id]);
    expect(step(report, id).problems.join("\n"), shown).to.match(says);
  }

  it("a forged disclosure (the value changed, the digest kept) → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const lines = linesOf(run.sealed[2].document);
      const index = lines.findIndex((line) => line.startsWith('{"field":"input"'));
      const disclosure = JSON.parse(lines[index]) as Disclosure;
      lines[index] = canonicalBytes({ ...disclosure, value: { label: "run", seq: 2, amount: 1_000_000 } }).toString();
      env.server.serve(stateUrl(run.hashes[2]), documentOf(lines));
    });
    expectInvalidAt(report, "V6", /seq 2 "Step2": .*line 4: the disclosure of input does not match its digest/);
  });

  it("a disclosure moved from another state (a genuine salt and value of seq 3's input) → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const lines = linesOf(run.sealed[2].document);
      const index = lines.findIndex((line) => line.startsWith('{"field":"input"'));
      lines[index] = disclosureLine(run.sealed[3].document, "input");
      env.server.serve(stateUrl(run.hashes[2]), documentOf(lines));
    });
    expectInvalidAt(report, "V6", /seq 2 "Step2": .*the disclosure of input does not match its digest/);
  });

  it("a disclosure of an unknown field → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const extra = canonicalBytes({ field: "amount", salt: "ab".repeat(16), value: 7 }).toString();
      env.server.serve(stateUrl(run.hashes[1]), documentOf([...linesOf(run.sealed[1].document), extra]));
    });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*disclosure of unknown field "amount"/);
  });

  it("a field disclosed twice (the genuine line repeated) → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const lines = linesOf(run.sealed[1].document);
      env.server.serve(
        stateUrl(run.hashes[1]),
        documentOf([...lines, disclosureLine(run.sealed[1].document, "input")]),
      );
    });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*field input is disclosed twice/);
  });

  it("a disclosure line not in canonical form (whitespace) → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const lines = linesOf(run.sealed[1].document);
      const index = lines.findIndex((line) => line.startsWith('{"field":"input"'));
      lines[index] = JSON.stringify(JSON.parse(lines[index]), null, 1).replace(/\n/g, "");
      env.server.serve(stateUrl(run.hashes[1]), documentOf(lines));
    });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*not in RFC 8785 canonical form/);
  });

  it("a disclosure whose salt is not 32 hex characters (its digest recomputed for it) → invalid", async function () {
    const report = await verifyWithDocument((env, run) => {
      const lines = linesOf(run.sealed[1].document);
      const index = lines.findIndex((line) => line.startsWith('{"field":"input"'));
      const disclosure = JSON.parse(lines[index]) as Disclosure;
      lines[index] = canonicalBytes({ ...disclosure, salt: "" }).toString();
      env.server.serve(stateUrl(run.hashes[1]), documentOf(lines));
    });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*salt must be 32 lowercase hex/);
  });

  /** Registers a run whose data line of seq 1 is edited (and registered as it is): only the document reader judges. */
  async function verifyWithDataLine(edit: (data: Record<string, unknown>) => unknown): Promise<VerificationReport> {
    const env = await forgeEnv();
    const run: PendingRun = await startRun(env, { label: "data line" });
    const sealed = run.sealed[1];
    const line = canonicalBytes(edit(JSON.parse(sealed.dataBytes.toString()) as Record<string, unknown>));
    run.hashes[1] = sha256Hex(line);
    run.urls[1] = env.server.serve(
      stateUrl(run.hashes[1]),
      Buffer.concat([line, sealed.document.subarray(sealed.dataBytes.length)]),
    );
    await registerRun(run, { perState: run.hashes.length });
    const forged = await finishRun(env, run);
    return verifyForged(env, { url: forged.url });
  }

  it("state data with an extra member (registered as it is) → invalid", async function () {
    const report = await verifyWithDataLine((data) => ({ ...data, input: { hidden: true } }));
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*line 1 is not state data of version 3/);
  });

  it("state data of version 2 (a salt and clear fields, registered as it is) → invalid", async function () {
    const report = await verifyWithDataLine((data) => {
      const { fields: _fields, ...rest } = data;
      return {
        ...rest,
        statetrail_state: 2,
        salt: "5a".repeat(32),
        input: null,
        caught: null,
        outcome: null,
        context: null,
      };
    });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*state data version 2, not 3/);
  });

  it("a disclosed value the schema refuses (an outcome that is no outcome, its digest genuine) → invalid", async function () {
    const env = await forgeEnv();
    const run: PendingRun = await startRun(env, { label: "bad value" });
    // The issuer seals and registers a Task outcome that is not {result} or {error}: its disclosure matches the digest.
    const content = { ...run.stateData[1], outcome: "garbage" as unknown as null };
    const published = publishState(env.server, content);
    run.sealed[1] = published.sealed;
    run.hashes[1] = published.hash;
    run.urls[1] = published.url;
    await registerRun(run, { perState: run.hashes.length });
    const forged = await finishRun(env, run);
    const report = await verifyForged(env, { url: forged.url });
    expectInvalidAt(report, "V6", /seq 1 "Step1": .*the disclosed outcome is not a valid outcome/);
  });

  it("the input document forged (another input, the digest kept) → invalid (V5)", async function () {
    const report = await verifyWithDocument((env, run) => {
      const forged = sealInput(Buffer.from('{"order":"other"}'), run.sealedInput.disclosure.salt);
      env.server.serve(run.protocol.instance_data, forged.document);
    });
    expectInvalidAt(report, "V5", /does not match input_digest \(a forged input\)/);
  });

  it("an input document with a line that is not the execution input's disclosure → invalid (V5)", async function () {
    const report = await verifyWithDocument((env, run) => {
      env.server.serve(run.protocol.instance_data, Buffer.from('{"order":"run","items":[1,2,3]}'));
    });
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(failing(report)).to.deep.equal(["V5"]);
  });

  it("a head whose input_digest was changed (and signed again) → invalid: the instance hash does not recompute", async function () {
    const { env, run } = await forgeScenario();
    const other = sealInput(Buffer.from('{"order":"other"}'));
    const protocol = await resign({ ...structuredClone(run.protocol), input_digest: other.digest }, run.signer);
    env.server.serve(run.protocol.instance_data, other.document);
    const url = publish(env.server, protocol);
    const report = await verifyForged(env, { url });
    expectInvalidAt(
      report,
      "V5",
      /input_digest [0-9a-f]{64} with model_hash, issuer and nonce recomputes instance hash/,
    );
  });

  it("a field digest that is not the digest of the disclosed value is never read as a redaction", async function () {
    // The genuine documents read; sanity of the forge: every field's digest is the salted digest of its value.
    const { run } = await forgeScenario();
    for (const sealed of run.sealed) {
      for (const disclosure of sealed.disclosures) {
        expect(fieldDigest(disclosure.salt, disclosure.field, disclosure.value)).to.equal(
          sealed.data.fields[disclosure.field as DataField],
        );
      }
    }
  });
});

describe("selective disclosure: what is withheld makes the verdict valid-as-disclosed (exit 3), never valid", function () {
  this.timeout(120_000);

  it("the execution input not disclosed (conformance off) → valid-as-disclosed, the disclosure summary says so", async function () {
    const { env, run } = await forgeScenario();
    withholdInput(env.server, run);
    const report = await verifyForged(env, { url: run.url });
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(report.exit_code).to.equal(3);
    expect(step(report, "V5").status, shown).to.equal("pass");
    expect(step(report, "V5").detail).to.contain("the execution input is not disclosed");
    expect(report.disclosure).to.include({ execution_input: "redacted", states_with_redactions: 0, complete: false });
    expect(shown).to.contain("VALID AS DISCLOSED").and.contain("execution input: redacted");
  });

  it("fields of a state withheld (conformance off) → valid-as-disclosed, counted per field and listed by seq", async function () {
    const { env, run } = await forgeScenario();
    discloseOnlyFields(env.server, run, 2, ["caught", "context", "outcome"]);
    discloseOnlyFields(env.server, run, 3, []);
    const report = await verifyForged(env, { url: run.url });
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(report.exit_code).to.equal(3);
    expect(step(report, "V6").status).to.equal("pass");
    expect(step(report, "V6").detail).to.contain("2 of 6 states have fields not disclosed");
    expect(report.disclosure).to.deep.include({
      execution_input: "disclosed",
      states: 6,
      states_with_redactions: 2,
      redacted_fields: { input: 2, caught: 1, outcome: 1, context: 1 },
      redacted_states: ["2-3"],
    });
  });

  it("the HTML report's evidence: each state document read by its data line's hash, redacted fields shown as such", async function () {
    const { env, run } = await forgeScenario();
    discloseOnlyFields(env.server, run, 2, ["caught", "context", "outcome"]);
    const recorder = new FetchRecorder();
    const report = await verifyForged(env, { url: run.url }, { fetcher: recorder.wrap(env.server.fetcher) });
    expect(report.verdict, renderReport(report)).to.equal("valid-as-disclosed");
    const evidence = recorder.evidenceFor(report);
    expect(evidence.states?.size).to.equal(6);
    expect(evidence.states?.get(run.hashes[2])?.redacted).to.deep.equal(["input"]);
    expect(evidence.states?.get(run.hashes[1])?.redacted).to.deep.equal([]);
    const html = renderReportsHtml([evidence]);
    expect(html).to.include('data-redacted="input"').and.include(run.sealed[2].data.fields.input.slice(0, 16));
    expect(html).to.include("VALID AS DISCLOSED");
  });

  it("everything disclosed (conformance off) → valid, exit 0, the summary complete", async function () {
    const { env, run } = await forgeScenario();
    const report = await verifyForged(env, { url: run.url });
    expect(report.verdict, renderReport(report)).to.equal("valid");
    expect(report.exit_code).to.equal(0);
    expect(report.disclosure).to.deep.include({
      execution_input: "disclosed",
      states: 6,
      states_with_redactions: 0,
      replay: "not-run",
      complete: true,
    });
  });
});

describe("selective disclosure: V9 replays only what is disclosed", function () {
  this.timeout(180_000);

  const ORDER_INPUT = JSON.parse(fs.readFileSync(example("order-fulfilment.input.json"), "utf8")) as unknown;

  async function orderRun(): Promise<LocalRun> {
    const input = { ...(ORDER_INPUT as object), orderId: `o-${Math.random().toString(36).slice(2, 8)}` };
    return runLocal(example("order-fulfilment.asl.json"), input, {
      handlersModule: example("order-fulfilment.handlers.js"),
    });
  }

  async function forged(): Promise<{ env: ForgeEnv; run: LocalRun; recorded: ForgedRun }> {
    const run = await orderRun();
    const env = await conformanceEnv();
    const recorded = (await forgeRecorded(env, run.model, run.input, run.states, "succeeded")) as ForgedRun;
    return { env, run, recorded };
  }

  it("everything disclosed → valid (exit 0), V9 passes, the replay full", async function () {
    const { env, recorded } = await forged();
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid");
    expect(report.exit_code).to.equal(0);
    expect(step(report, "V9").status, shown).to.equal("pass");
    expect(report.disclosure).to.include({ replay: "full", complete: true });
  });

  it("the execution input not disclosed → valid-as-disclosed, V9 partial: not replayed, all states named", async function () {
    const { env, recorded } = await forged();
    withholdInput(env.server, recorded);
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    const count = recorded.hashes.length;
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(report.exit_code).to.equal(3);
    const v9 = step(report, "V9");
    expect(v9.status, shown).to.equal("partial");
    expect(v9.detail).to.contain("not replayed: the execution input is not disclosed");
    expect(v9.detail).to.contain(`none of the ${count} states (seq 0-${count - 1}) was replayed`);
    expect(report.disclosure).to.deep.include({
      execution_input: "redacted",
      replay: "none",
      not_replayed: "the execution input is not disclosed",
      not_compared: [`0-${count - 1}`],
    });
  });

  it("one Task outcome not disclosed → valid-as-disclosed, V9 partial naming that seq, nothing replayed", async function () {
    const { env, run, recorded } = await forged();
    const task = run.states.findIndex((state) => state.state_type === "Task");
    discloseOnlyFields(env.server, recorded, task, ["caught", "context", "input"]);
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(report.exit_code).to.equal(3);
    const v9 = step(report, "V9");
    expect(v9.status, shown).to.equal("partial");
    expect(v9.detail).to.contain(
      `not replayed: the outcomes of seq ${task} "${run.states[task].state_name}" (Task attempts or the execution's end) are not disclosed`,
    );
    expect(report.disclosure).to.deep.include({ replay: "none", redacted_states: [String(task)] });
    expect(report.disclosure!.redacted_fields.outcome).to.equal(1);
  });

  it("entry 0's Context Object not disclosed → valid-as-disclosed, V9 partial: not replayed, saying why", async function () {
    const { env, recorded } = await forged();
    discloseOnlyFields(env.server, recorded, 0, ["caught", "input", "outcome"]);
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(step(report, "V9").status, shown).to.equal("partial");
    expect(step(report, "V9").detail).to.contain("not replayed: entry 0's Context Object ($$) is not disclosed");
    expect(report.disclosure).to.deep.include({ replay: "none", redacted_states: ["0"] });
  });

  it("only the input of a Pass state not disclosed → valid-as-disclosed, replayed, that state listed as not compared", async function () {
    const { env, run, recorded } = await forged();
    const pass = run.states.findIndex((state) => state.state_type === "Pass");
    expect(pass, "the order run enters a Pass state").to.be.greaterThan(0);
    discloseOnlyFields(
      env.server,
      recorded,
      pass,
      ALL.filter((field) => field !== "input"),
    );
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(report.exit_code).to.equal(3);
    const v9 = step(report, "V9");
    expect(v9.status, shown).to.equal("partial");
    expect(v9.detail).to.contain(`seq ${pass} "${run.states[pass].state_name}" (input)`);
    expect(v9.detail).to.contain("replayed from the verified input");
    expect(report.disclosure).to.deep.include({ replay: "partial", not_compared: [String(pass)] });
  });

  it("a caught error not disclosed (the Catch into a Fail state) → replayed, that state not compared in its caught error", async function () {
    const base = ORDER_INPUT as object;
    const run = await runLocal(
      example("order-fulfilment.asl.json"),
      {
        ...base,
        orderId: `o-${Math.random().toString(36).slice(2, 8)}`,
        payment: { method: "card", card: "4000000000000002" },
      },
      { handlersModule: example("order-fulfilment.handlers.js") },
    );
    expect(run.status).to.equal("failed");
    const env = await conformanceEnv();
    const recorded = (await forgeRecorded(env, run.model, run.input, run.states, "failed")) as ForgedRun;
    const caught = run.states.findIndex((state) => state.caught !== null);
    expect(caught, "the declined card is caught").to.be.greaterThan(0);
    discloseOnlyFields(
      env.server,
      recorded,
      caught,
      ALL.filter((field) => field !== "caught"),
    );
    const report = await verifyRecorded(env, recorded);
    const shown = renderReport(report);
    expect(report.verdict, shown).to.equal("valid-as-disclosed");
    expect(step(report, "V9").status, shown).to.equal("partial");
    expect(step(report, "V9").detail).to.contain(`seq ${caught} "${run.states[caught].state_name}" (caught)`);
    expect(report.disclosure).to.deep.include({ replay: "partial", not_compared: [String(caught)] });
  });

  it("a lie in a disclosed field is still found when another field is withheld (the replay compares the rest)", async function () {
    const run = await orderRun();
    const env = await conformanceEnv();
    const states = structuredClone(run.states);
    const task = states.findIndex((state) => state.state_type === "Task");
    const pass = states.findIndex((state) => state.state_type === "Pass");
    // The Task's recorded input is a lie; the Pass state's input is withheld.
    states[task] = { ...states[task], input: { lie: true } };
    const recorded = (await forgeRecorded(env, run.model, run.input, states, "succeeded")) as ForgedRun;
    discloseOnlyFields(
      env.server,
      recorded,
      pass,
      ALL.filter((field) => field !== "input"),
    );
    const report = await verifyRecorded(env, recorded);
    expect(report.verdict, renderReport(report)).to.equal("invalid");
    expect(step(report, "V9").status).to.equal("fail");
  });

  it("discloseOnly keeps the data line byte for byte (the registered hash still covers it)", async function () {
    const { recorded } = await forged();
    const document = discloseOnly(recorded.sealed[0].document, new Set<string>());
    expect(sha256Hex(document.subarray(0, document.length - 1))).to.equal(recorded.hashes[0]);
  });
});

describe("selective disclosure: seq ranges of the disclosure summary", function () {
  it("joins seqs arriving out of order into ranges, bounded, the rest counted", function () {
    const ranges = new SeqRanges();
    for (const seq of [1, 0, 3, 2, 5, 4, 9, 7, 8, 20]) ranges.add(seq);
    expect(ranges.list()).to.deep.equal(["0-5", "7-9", "20"]);
    expect(ranges.count).to.equal(10);
    const many = new SeqRanges();
    for (let seq = 0; seq < 300; seq += 2) many.add(seq);
    const listed = many.list();
    expect(listed).to.have.length(51);
    expect(listed[50]).to.equal("… and 100 more seqs");
  });
});
