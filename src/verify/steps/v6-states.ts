import { sha256Hex } from "../../chain/hash";
import { canonicalBytes } from "../../protocol/canonical";
import { safeParseBounded } from "../../protocol/limits";
import { stateDataSchema, type ProtocolEntry } from "../../protocol/schema";
import { type ReadyContext, type Step } from "../context";
import { cap, Findings, iso, mapBounded, sameAddress } from "../findings";
import { type ChainState, type RebuiltChain } from "../rebuild";
import { checkAnchoredEntry } from "../batch";
import { explainTransaction, instanceChain } from "./shared";

interface EntryFindings {
  failures: string[];
  errors: string[];
  batched: boolean;
  /** Merkle-anchored: checked against a BatchAnchored root (src/verify/batch.ts). */
  anchored: boolean;
}

/**
 * V6: each entry on its own. The bytes served at `state_data` hash to `state_hash` and are the state data
 * of this entry (instance, seq, name, type); the registry event holding the hash is in `transaction_hash`
 * and `block_nr` (a StateRegistered, or inside a StatesRegistered), sent by the issuer; `timestamp` is that
 * block's time; `prev_state_hash` links to the previous entry (the instance hash for seq 0) and agrees with
 * the event. Bodies are fetched `concurrency` at a time and dropped once hashed; the events come from the
 * one logs read shared with V5 and V7.
 */
export const statesStep: Step = {
  id: "V6",
  async run(context) {
    const { protocol } = context;
    const entries = protocol.instance_protocol;
    const findings = new Findings();
    let chain: RebuiltChain | null = null;
    try {
      chain = await instanceChain(context);
    } catch (error) {
      findings.error(error, "reading the instance's events");
    }
    const byTransaction = new Map<string, ChainState[]>();
    for (const state of chain?.states ?? []) {
      const list = byTransaction.get(state.at.transactionHash) ?? [];
      list.push(state);
      byTransaction.set(state.at.transactionHash, list);
    }
    const budget = { diagnostics: context.settings.maxDiagnostics };
    const results = await mapBounded(entries, context.settings.concurrency, (entry, index) =>
      checkEntry(context, entry, index, chain ? byTransaction : null, budget),
    );
    let batched = 0;
    let anchored = 0;
    let failedStates = 0;
    for (const result of results) {
      if (result.batched) batched += 1;
      if (result.anchored) anchored += 1;
      if (result.failures.length > 0) failedStates += 1;
      result.failures.forEach((message) => findings.fail(message));
      result.errors.forEach((message) => findings.error(message));
    }
    const outcome = findings.outcome(
      entries.length === 0
        ? "the protocol lists no states"
        : `${entries.length} states: bytes hash to state_hash and are the entries' data; events in the named ` +
            `transactions and blocks (${entries.length - batched - anchored} StateRegistered, ${batched} in ` +
            `StatesRegistered${anchored > 0 ? `, ${anchored} Merkle-anchored in BatchAnchored roots` : ""}), ` +
            `sent by the issuer; timestamps are block times; linked from the instance hash`,
    );
    if (outcome.status === "fail") {
      outcome.detail = `${failedStates} of ${entries.length} states fail: ${outcome.detail}`;
      outcome.problems = cap(findings.failures.concat(findings.errors));
    }
    return outcome;
  },
};

async function checkEntry(
  context: ReadyContext,
  entry: ProtocolEntry,
  index: number,
  byTransaction: Map<string, ChainState[]> | null,
  budget: { diagnostics: number },
): Promise<EntryFindings> {
  const { protocol, chain, web, settings } = context;
  const result: EntryFindings = { failures: [], errors: [], batched: false, anchored: false };
  const label = `seq ${index} "${entry.state_name}"`;
  const fail = (message: string): void => void result.failures.push(`${label}: ${message}`);
  const error = (message: string): void => void result.errors.push(`${label}: ${message}`);
  const issuer = protocol.issuer.address;
  const entries = protocol.instance_protocol;

  if (entry.seq !== index) fail(`entry says seq ${entry.seq} at position ${index}`);
  const expectedPrev = index === 0 ? protocol.instance_hash : entries[index - 1].state_hash;
  if (entry.prev_state_hash !== expectedPrev) {
    fail(
      `prev_state_hash ${entry.prev_state_hash} does not link to ${index === 0 ? "the instance hash" : "the previous entry"} ${expectedPrev}`,
    );
  }
  if (!sameAddress(entry.client_address, issuer))
    fail(`client_address ${entry.client_address} is not the issuer ${issuer}`);

  try {
    const { bytes } = await web.get(entry.state_data, settings.maxBytes.state);
    const actual = sha256Hex(bytes);
    if (actual !== entry.state_hash) {
      fail(`bytes at ${entry.state_data} hash to ${actual}, not state_hash ${entry.state_hash}`);
    } else {
      let data: unknown;
      try {
        data = JSON.parse(bytes.toString("utf8"));
      } catch {
        data = undefined;
      }
      const parsed = safeParseBounded(stateDataSchema, data); // bounded: a hostile document can't make it slow
      if (!parsed.success) fail(`bytes at ${entry.state_data} are not state data`);
      else if (!canonicalBytes(data).equals(bytes)) {
        // Other bytes of the same data (a duplicate key with a decoy, which readers keeping the first occurrence
        // would show) would let one hash stand for different states to different readers.
        fail(
          `bytes at ${entry.state_data} are not the RFC 8785 canonical form of the data they hold (duplicate keys, ` +
            `whitespace or key order): state_hash commits to canonical bytes only`,
        );
      } else {
        const state = parsed.data;
        if (state.instance_hash !== protocol.instance_hash) {
          fail(`state data belongs to instance ${state.instance_hash} (replayed from another instance)`);
        }
        if (state.seq !== entry.seq) fail(`state data has seq ${state.seq}, entry has ${entry.seq}`);
        if (state.state_name !== entry.state_name) fail(`state data names "${state.state_name}"`);
        if (state.state_type !== entry.state_type)
          fail(`state data has type ${state.state_type}, entry ${entry.state_type}`);
        if (result.failures.length === 0) context.artifacts.keepState(index, state, bytes.length);
      }
    }
  } catch (cause) {
    error(`fetching ${entry.state_data}: ${(cause as Error).message}`);
  }

  if (entry.proof !== null) {
    result.anchored = true;
    await checkAnchoredEntry(context, entry, fail, error);
    return result;
  }
  if (!byTransaction) return result;
  const transaction = entry.transaction_hash.toLowerCase();
  const event = (byTransaction.get(transaction) ?? []).find((state) => state.stateHash === entry.state_hash);
  try {
    if (!event) {
      const why =
        budget.diagnostics-- > 0
          ? await explainTransaction(chain, transaction, {
              kind: "state",
              stateHash: entry.state_hash,
              issuer,
              instanceHash: protocol.instance_hash,
            })
          : "not looked up further";
      fail(`state ${entry.state_hash} is not registered by the issuer for this instance in tx ${transaction}: ${why}`);
      return result;
    }
    result.batched = event.batch !== null;
    if (event.at.blockNumber !== entry.block_nr) {
      fail(`tx ${transaction} is in block ${event.at.blockNumber}, entry says block ${entry.block_nr}`);
    }
    if (event.prevStateHash !== entry.prev_state_hash) {
      fail(`on-chain the state links to ${event.prevStateHash}, entry says ${entry.prev_state_hash}`);
    }
    const time = await chain.blockTimestamp(event.at.blockNumber);
    if (time === null) error(`block ${event.at.blockNumber} could not be read`);
    else if (time !== entry.timestamp) {
      fail(
        `timestamp ${entry.timestamp} (${iso(entry.timestamp)}) is not block ${event.at.blockNumber}'s time ${time} (${iso(time)})`,
      );
    }
  } catch (cause) {
    error((cause as Error).message);
  }
  return result;
}
