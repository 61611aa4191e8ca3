import { type HexHash } from "../chain/hash";
import { type InstanceStatus } from "../protocol/schema";
import { type EventLocation, type InstanceEvent } from "./logs";

/** A state as the chain records it, with its sequence number (its position in the instance's log order). */
export interface ChainState {
  seq: number;
  stateHash: HexHash;
  prevStateHash: HexHash;
  /** Its place in a `StatesRegistered` batch, or null for a `StateRegistered`. */
  batch: { index: number; size: number } | null;
  at: EventLocation;
}

/** One instance's history rebuilt from its events alone. */
export interface RebuiltChain {
  created: { modelHash: HexHash; at: EventLocation } | null;
  states: ChainState[];
  terminated: {
    finalHead: HexHash;
    status: InstanceStatus | "none";
    /** What an instance whose states were Merkle-anchored committed at its termination (terminateAnchored). */
    anchored: { stateCount: number; trail: HexHash } | null;
    at: EventLocation;
  } | null;
  /** The last state hash (committed by terminateAnchored for anchored states), or the instance hash before any. */
  head: HexHash;
  /** What does not fit the registry's rules (a correct registry and node never produce any). */
  anomalies: string[];
}

/**
 * Rebuilds an instance's chain from its decoded events, in the order given (chain order). Checks what the
 * contract enforces, so a node that drops or invents logs shows up as an anomaly rather than a wrong chain:
 * one creation first, every state linked to the head before it, nothing after termination.
 */
export function rebuildChain(instanceHash: HexHash, events: readonly InstanceEvent[]): RebuiltChain {
  const chain: RebuiltChain = { created: null, states: [], terminated: null, head: instanceHash, anomalies: [] };
  for (const event of events) {
    const where = `block ${event.at.blockNumber}, tx ${event.at.transactionHash}`;
    if (event.at.instanceHash !== instanceHash) {
      chain.anomalies.push(`event of instance ${event.at.instanceHash} in this instance's logs (${where})`);
      continue;
    }
    if (chain.terminated) {
      chain.anomalies.push(`${event.kind} event after the termination (${where})`);
      continue;
    }
    switch (event.kind) {
      case "created":
        if (chain.created) chain.anomalies.push(`second creation event (${where})`);
        else chain.created = { modelHash: event.modelHash, at: event.at };
        break;
      case "state":
        if (!chain.created) chain.anomalies.push(`state ${event.stateHash} before the creation event (${where})`);
        if (event.prevStateHash !== chain.head) {
          chain.anomalies.push(
            `state ${event.stateHash} links to ${event.prevStateHash}, but the head was ${chain.head} (${where})`,
          );
        }
        chain.states.push({
          seq: chain.states.length,
          stateHash: event.stateHash,
          prevStateHash: event.prevStateHash,
          batch: event.batch,
          at: event.at,
        });
        chain.head = event.stateHash;
        break;
      case "terminated":
        if (event.anchored) {
          // terminateAnchored accepts only an instance with no registered state; its final head is new.
          if (chain.states.length > 0) {
            chain.anomalies.push(`anchored termination of an instance with registered states (${where})`);
          }
          chain.head = event.finalHead;
        } else if (event.finalHead !== chain.head) {
          chain.anomalies.push(
            `termination names final head ${event.finalHead}, but the head was ${chain.head} (${where})`,
          );
        }
        chain.terminated = { finalHead: event.finalHead, status: event.status, anchored: event.anchored, at: event.at };
        break;
    }
  }
  return chain;
}
