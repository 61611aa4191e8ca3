import { type Step } from "../context";
import { instancePass } from "./pass";

/**
 * V6: each entry on its own, checked as its page arrives in the one streaming pass (./pass.ts). The state document
 * served at `state_data` (the issuer's content-addressed URL): its first line hashes to `state_hash`, every line is
 * canonical, the data is this entry's (instance, seq, name, type) and each disclosure matches its field's digest (a
 * field not disclosed is counted: the verdict is then at best valid-as-disclosed); the registry event holding the hash is in `transaction_hash` and
 * `block_nr` (a StateRegistered, or inside a StatesRegistered; for a Merkle-anchored entry its proof leads to a root
 * the issuer anchored there), sent by the issuer; `timestamp` is that block's time; `prev_state_hash` links to the
 * previous entry (the instance hash for seq 0, across page boundaries) and agrees with the event. Bodies are fetched
 * `concurrency` at a time and dropped once checked.
 */
export const statesStep: Step = {
  id: "V6",
  async run(context) {
    const pass = await instancePass(context);
    const findings = pass.v6;
    const read = pass.entriesRead;
    if (pass.stoppedAt) {
      const { page, seq, reason, error } = pass.stoppedAt;
      const message = `entries from seq ${seq} on were not checked: page ${page} ${error ? "could not be read" : "is invalid"} (see V8): ${reason}`;
      if (error) findings.error(message);
      else findings.fail(message, "PAGE_INVALID");
    }
    const { single, batched, anchored, failedStates } = pass.v6Counts;
    const outcome = findings.outcome(
      read === 0
        ? "the protocol lists no states"
        : `${read} states: state data hash to state_hash and are the entries' data, disclosures match their digests; events in the named ` +
            `transactions and blocks (${single} StateRegistered, ${batched} in ` +
            `StatesRegistered${anchored > 0 ? `, ${anchored} Merkle-anchored in BatchAnchored roots` : ""}), ` +
            `sent by the issuer; timestamps are block times; linked from the instance hash`,
    );
    const tally = context.artifacts.disclosure;
    if (outcome.status === "pass" && tally.redactedStates.count > 0) {
      const fields = Object.entries(tally.redactedFields)
        .filter(([, count]) => count > 0)
        .map(([field, count]) => `${field} ${count}`)
        .join(", ");
      outcome.detail +=
        `; ${tally.redactedStates.count} of ${tally.states} states have fields not disclosed (${fields}), checked ` +
        `only by their digests: seq ${tally.redactedStates.list().join(", ")}`;
    }
    if (outcome.status === "fail" && failedStates > 0) {
      outcome.detail = `${failedStates} of ${read} states fail: ${outcome.detail}`;
    }
    return outcome;
  },
};
