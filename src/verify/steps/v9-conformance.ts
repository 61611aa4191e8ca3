import { LOCAL_CHAIN_ID } from "../../chain/keys";
import { loadModelFromBytes } from "../../model/load";
import { awsRefusals, formatProblems } from "../../model/validate";
import { decodeUtf8 } from "../../protocol/limits";
import { parseStrictJson } from "../../protocol/strict-json";
import { checkConformance, conformanceEntryOf, type ConformanceEntry, type ConformanceStats } from "../conformance";
import { nonReplayableReason, notCompared, replayNeeds, replayRun, type ReplayState } from "../conformance/replay";
import { type ReadyContext, type Step } from "../context";
import { type StepOutcome } from "../findings";
import { instancePass } from "./pass";

/**
 * V9: the recorded run is the model's run. Two checks, both on the data V4–V6 verified:
 *  - the walk ({@link checkConformance}): transitions along the ASL's edges, Map/Parallel nesting, Wait
 *    durations against block times, a terminal state consistent with the status — with messages that name
 *    the edge the record leaves;
 *  - the replay ({@link replayRun}): the model executed again from the verified execution input and the
 *    recorded Context Object, each Task attempt fed its recorded outcome; the replayed trace must equal the
 *    protocol entry by entry. A run that can't be replayed is never valid (an error, NOT_REPLAYABLE).
 *
 * Selective disclosure (protocol v4): it replays only what is disclosed. Without the execution input, entry 0's
 * Context Object or the outcome of a Task attempt or of the end, nothing is replayed (only the walk runs, on what is
 * disclosed) and V9 is `partial`, saying why; a state whose input or caught error is not disclosed is replayed but
 * not compared in those fields, also `partial`. Never `pass` unless every state was compared in full.
 *
 * It reads the model bytes V4 verified, the input bytes V5 verified and the state data V6 verified in the pass (kept
 * in the context within a byte budget; past it the run is not replayed and V9 errs: never valid unreplayed). Skipped when not requested
 * (`--no-conformance`), or when V4, V5 or V6 could not verify what it needs.
 */
export const conformanceStep: Step = {
  id: "V9",
  async run(context) {
    const { protocol, settings, artifacts } = context;
    if (!settings.conformance) return { status: "skip", detail: "not requested (--no-conformance)" };
    if (!artifacts.model) return { status: "skip", detail: "the model bytes were not verified (see V4)" };
    const tally = artifacts.disclosure;
    // V5 read an empty input document: the input is not disclosed, so the run can't be replayed (the walk still runs).
    const inputRedacted = !artifacts.input && tally.inputDisclosed === false;
    if (!artifacts.input && !inputRedacted) {
      return { status: "skip", detail: "the execution input was not verified (see V5)" };
    }
    let definition: unknown;
    try {
      definition = loadModelFromBytes(artifacts.model, {
        validate: false,
        maxBytes: settings.maxBytes.model,
      }).definition;
    } catch (error) {
      const message = `the model is not a state machine definition, so no run conforms to it: ${(error as Error).message}`;
      return { status: "fail", detail: message, problems: [message] };
    }
    // Structurally, as AWS Step Functions validates at CreateStateMachine (what "aws" strictness makes errors; not
    // asl-validator, whose schemas take a tenth of a second to compile): an invalid model never runs, so no recorded
    // run of it is true, whatever the interpreter makes of it.
    const structural = awsRefusals(definition);
    if (structural.length > 0) {
      const message = `the model is not a valid state machine, so no run of it exists:\n${formatProblems(structural)}`;
      return { status: "fail", detail: message, problems: [message] };
    }
    let input: unknown = null;
    if (artifacts.input) {
      let text: string;
      try {
        // Strictly: a lenient decoder would turn invalid bytes into U+FFFD and replay another input.
        text = decodeUtf8(artifacts.input, "the execution input");
        input = JSON.parse(text);
      } catch (error) {
        const message = `the execution input is not JSON, so no execution ran on it: ${(error as Error).message}`;
        return { status: "fail", detail: message, problems: [message] };
      }
      try {
        parseStrictJson(text, "the execution input");
      } catch (error) {
        // A member named twice: JSON.parse keeps the last, other readers the first, so which input the engine ran
        // on is unknown and a replay from either proves nothing (the tracker refuses such input; it isn't a lie).
        const message = `the execution input can't be replayed unambiguously: ${(error as Error).message}`;
        return { status: "error", detail: message, problems: [message], code: "NOT_REPLAYABLE" };
      }
    }

    const loaded = await stateData(context);
    if ("outcome" in loaded) return loaded.outcome;
    const walk: ConformanceEntry[] = loaded.states.map((data, index) => {
      const entry = artifacts.entry(index)!;
      return conformanceEntryOf(data, entry.timestamp, !entry.anchored && !entry.shared, data.redacted);
    });

    const result = await checkConformance(definition, walk, protocol.status);
    if (result.violation) {
      return {
        status: "fail",
        detail: result.violation.message,
        problems: [result.violation.message, ...result.notes],
      };
    }

    // What the replay needs and was not disclosed: then nothing is replayed, and V9 says so (never a pass).
    const missing: string[] = [];
    if (inputRedacted) missing.push("the execution input is not disclosed");
    const needs = replayNeeds(loaded.states);
    if (needs.context) missing.push("entry 0's Context Object ($$) is not disclosed");
    if (needs.outcomes.length > 0) {
      missing.push(
        `the outcomes of ${needs.outcomes.length === 1 ? "seq" : "seqs"} ${named(loaded.states, needs.outcomes)} ` +
          `(Task attempts or the execution's end) are not disclosed`,
      );
    }
    const walked = `${summary(result.stats)}; ${result.ending}`;
    if (missing.length > 0) {
      // A model no replay can follow is not established with everything disclosed either: could not verify, not
      // valid-as-disclosed (which says every check that could be made passed).
      const reason = nonReplayableReason(definition);
      if (reason) return notReplayable(reason);
      // Only Task outcomes withheld: the states entered before the first of them can't depend on it (they were
      // entered before that Task was), so they are replayed and compared as a running instance's prefix is. A lie in
      // what was disclosed there is a lie, withheld outcomes or not ("nothing you were shown is false").
      const cut = !inputRedacted && !needs.context && needs.outcomes.length > 0 ? Math.min(...needs.outcomes) : 0;
      if (cut > 0) {
        const prefix = await replayRun({
          definition,
          input,
          states: loaded.states.filter((data) => data.seq < cut),
          status: "running",
        });
        if (prefix.kind === "mismatch") {
          const message = `the replay of the model disagrees with the protocol before the first withheld outcome (seq ${cut}): ${prefix.message}`;
          return { status: "fail", detail: message, problems: [message, ...prefix.notes] };
        }
        if (prefix.kind === "not-replayable") return notReplayable(prefix.message);
      }
      const all = loaded.states.length;
      tally.replay = "none";
      tally.notReplayed = missing.join("; ");
      for (const data of loaded.states) tally.notCompared.add(data.seq);
      const message =
        `not replayed: ${missing.join("; ")}, so none of the ${plural(all, "state")} ` +
        `${all > 0 ? `(seq 0${all > 1 ? `-${all - 1}` : ""}) ` : ""}was replayed and compared with the model's run`;
      return {
        status: "partial",
        detail: [message, `the walk along the model's edges on what is disclosed: ${walked}`, ...result.notes].join(
          "; ",
        ),
        problems: [message],
      };
    }

    // The start time must fall between the instance's creation and entry 0 by block time. Not on the local
    // development chain: Hardhat's automine moves its block times ahead of the wall clock by a second a block.
    const localChain = protocol.chain_id === LOCAL_CHAIN_ID;
    const createdAt = await context.chain.blockTimestamp(protocol.created.block_nr).catch(() => null);
    const endedAt =
      protocol.status === "running" ? null : (artifacts.entry(loaded.states.length - 1)?.timestamp ?? null);
    const replay = await replayRun({
      definition,
      input,
      states: loaded.states,
      status: protocol.status,
      startWindow: localChain ? undefined : { from: createdAt, to: artifacts.entry(0)?.timestamp ?? null },
      // Automine runs block times ahead of the clock on the local chain: that only lengthens this bound.
      lastedAtMost: createdAt !== null && endedAt !== null ? endedAt - createdAt : null,
    });
    if (replay.kind === "not-replayable") return notReplayable(replay.message);
    if (replay.kind === "mismatch") {
      const message = `the replay of the model disagrees with the protocol: ${replay.message}`;
      return { status: "fail", detail: message, problems: [message, ...replay.notes] };
    }
    const replayed = `replayed from the verified input: ${plural(replay.summary.entries, "entry", "entries")} and ${plural(replay.summary.taskAttempts, "Task outcome")} agree`;
    const hidden = notCompared(loaded.states);
    if (hidden.length > 0) {
      // Replayed, but fields not disclosed (a state's input, a caught error) were not compared.
      tally.replay = "partial";
      for (const seq of hidden) tally.notCompared.add(seq);
      const message =
        `replayed, but ${plural(hidden.length, "state")} not compared in full, their fields not disclosed: ` +
        fieldsOf(loaded.states, hidden);
      const detail = [message, walked, replayed, ...replay.notes, ...result.notes].join("; ");
      return { status: "partial", detail, problems: [message] };
    }
    tally.replay = "full";
    const detail = [walked, replayed, ...replay.notes, ...result.notes].join("; ");
    return { status: "pass", detail, problems: [] };
  },
};

function plural(count: number, one: string, many = `${one}s`): string {
  return `${count} ${count === 1 ? one : many}`;
}

/** `4 "Charge", 9 "Ship"`: seqs with their state names, the first few (the rest counted). */
function named(states: readonly ReplayState[], seqs: readonly number[]): string {
  const shown = seqs.slice(0, LISTED).map((seq) => `${seq} "${states[seq]?.state_name ?? "?"}"`);
  return seqs.length > LISTED ? `${shown.join(", ")} and ${seqs.length - LISTED} more` : shown.join(", ");
}

/** `seq 3 "Prepare" (input), seq 7 "Recover" (caught)`: the states not compared in full, the first few. */
function fieldsOf(states: readonly ReplayState[], seqs: readonly number[]): string {
  const shown = seqs
    .slice(0, LISTED)
    .map((seq) => `seq ${seq} "${states[seq]?.state_name ?? "?"}" (${(states[seq]?.redacted ?? []).join(", ")})`);
  return seqs.length > LISTED ? `${shown.join(", ")} and ${seqs.length - LISTED} more` : shown.join(", ");
}

/** States named at most in V9's detail. */
const LISTED = 20;

function summary(stats: ConformanceStats): string {
  const parts = [`${plural(stats.states, "state")} follow the model's edges`];
  if (stats.choices > 0) {
    parts.push(
      `${stats.choicesChecked} of ${plural(stats.choices, "Choice decision")} re-evaluated from the recorded input`,
    );
  }
  if (stats.maps > 0) {
    parts.push(
      `${plural(stats.maps, "Map")} (${plural(stats.iterations, "iteration")}; ${stats.mapsCounted} counted against their items)`,
    );
  }
  if (stats.parallels > 0) parts.push(plural(stats.parallels, "Parallel"));
  if (stats.retries > 0) parts.push(plural(stats.retries, "retry", "retries"));
  if (stats.catches > 0) parts.push(plural(stats.catches, "caught error"));
  return parts.join(", ");
}

/**
 * The verified state data of every entry, as V6 kept it in the pass. A state V6 could not verify makes V9 skip (V6
 * fails or errs); states beyond the keep budget were not kept, and a run that is not replayed whole is never
 * reported as conforming: V9 then errs (could not verify), naming the budget.
 */
async function stateData(context: ReadyContext): Promise<{ states: ReplayState[] } | { outcome: StepOutcome }> {
  const { protocol, artifacts } = context;
  const pass = await instancePass(context);
  if (!pass.complete) {
    return { outcome: { status: "skip", detail: "the protocol's pages were not all read and verified (see V8)" } };
  }
  if (artifacts.dropped > 0) {
    const message =
      `${artifacts.dropped} of ${protocol.entries} states exceed the ${mib(artifacts.budgetBytes)} MiB ` +
      `the verifier keeps for the replay, so the run was not replayed (verify with --no-conformance, or on a machine ` +
      `given a larger budget)`;
    return { outcome: { status: "error", detail: message, problems: [message], code: "VERIFY_INCOMPLETE" } };
  }
  const states: ReplayState[] = [];
  for (let index = 0; index < protocol.entries; index += 1) {
    const kept = artifacts.state(index);
    if (!kept) return { outcome: { status: "skip", detail: `the state data of seq ${index} did not verify (see V6)` } };
    const redacted = artifacts.redactedOf(index);
    states.push(redacted.length > 0 ? { ...kept, redacted } : kept);
  }
  return { states };
}

function mib(bytes: number): string {
  return bytes >= 1024 * 1024 ? String(Math.round(bytes / 1024 / 1024)) : (bytes / 1024 / 1024).toFixed(3);
}

function notReplayable(reason: string): StepOutcome {
  const message = `the run can't be replayed, so its conformance to the model is not established: ${reason}`;
  return { status: "error", detail: message, problems: [message], code: "NOT_REPLAYABLE" };
}
