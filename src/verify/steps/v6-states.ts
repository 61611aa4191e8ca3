import { type Step } from "../context";
import { instancePass } from "./pass";

/**
 * V6: each entry on its own, checked as its page arrives in the one streaming pass (./pass.ts). The bytes served at
 * `state_data` (the issuer's content-addressed URL) hash to `state_hash`, are canonical and are the state data of
 * this entry (instance, seq, name, type); the registry event holding the hash is in `transaction_hash` and
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
        : `${read} states: bytes hash to state_hash and are the entries' data; events in the named ` +
            `transactions and blocks (${single} StateRegistered, ${batched} in ` +
            `StatesRegistered${anchored > 0 ? `, ${anchored} Merkle-anchored in BatchAnchored roots` : ""}), ` +
            `sent by the issuer; timestamps are block times; linked from the instance hash`,
    );
    if (outcome.status === "fail" && failedStates > 0) {
      outcome.detail = `${failedStates} of ${read} states fail: ${outcome.detail}`;
    }
    return outcome;
  },
};
