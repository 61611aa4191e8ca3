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

/** At most this many anomalies are described; the rest are counted. */
const MAX_ANOMALIES = 50;

/**
 * Rebuilds an instance's chain incrementally from its decoded events, fed in chain order: {@link push} returns
 * the state an event adds (with its seq), which the caller compares and drops; the builder keeps only the
 * creation, termination, head, count and anomalies, so memory does not grow with the instance. Checks what the
 * contract enforces, so a node that drops or invents logs shows up as an anomaly rather than a wrong chain: one
 * creation first, every state linked to the head before it, nothing after termination.
 */
export class ChainBuilder {
  created: RebuiltChain["created"] = null;
  terminated: RebuiltChain["terminated"] = null;
  head: HexHash;
  /** States pushed so far (the next state's seq). */
  count = 0;
  readonly anomalies: string[] = [];
  anomalyCount = 0;

  constructor(readonly instanceHash: HexHash) {
    this.head = instanceHash;
  }

  private anomaly(message: string): void {
    this.anomalyCount += 1;
    if (this.anomalies.length < MAX_ANOMALIES) this.anomalies.push(message);
    else if (this.anomalies.length === MAX_ANOMALIES) this.anomalies.push("… more anomalies not listed");
  }

  /** Applies one event; returns the state it registers, or null. */
  push(event: InstanceEvent): ChainState | null {
    const where = `block ${event.at.blockNumber}, tx ${event.at.transactionHash}`;
    if (event.at.instanceHash !== this.instanceHash) {
      this.anomaly(`event of instance ${event.at.instanceHash} in this instance's logs (${where})`);
      return null;
    }
    if (this.terminated) {
      this.anomaly(`${event.kind} event after the termination (${where})`);
      return null;
    }
    switch (event.kind) {
      case "created":
        if (this.created) this.anomaly(`second creation event (${where})`);
        else this.created = { modelHash: event.modelHash, at: event.at };
        return null;
      case "state": {
        if (!this.created) this.anomaly(`state ${event.stateHash} before the creation event (${where})`);
        if (event.prevStateHash !== this.head) {
          this.anomaly(
            `state ${event.stateHash} links to ${event.prevStateHash}, but the head was ${this.head} (${where})`,
          );
        }
        const state: ChainState = {
          seq: this.count,
          stateHash: event.stateHash,
          prevStateHash: event.prevStateHash,
          batch: event.batch,
          at: event.at,
        };
        this.count += 1;
        this.head = event.stateHash;
        return state;
      }
      case "terminated":
        if (event.anchored) {
          // terminateAnchored accepts only an instance with no registered state; its final head is new.
          if (this.count > 0) this.anomaly(`anchored termination of an instance with registered states (${where})`);
          this.head = event.finalHead;
        } else if (event.finalHead !== this.head) {
          this.anomaly(`termination names final head ${event.finalHead}, but the head was ${this.head} (${where})`);
        }
        this.terminated = { finalHead: event.finalHead, status: event.status, anchored: event.anchored, at: event.at };
        return null;
    }
  }
}

/**
 * Rebuilds an instance's whole chain from its decoded events, in the order given (chain order), keeping every
 * state: for small instances and the tracker's resume. The verifier streams through {@link ChainBuilder}.
 */
export function rebuildChain(instanceHash: HexHash, events: readonly InstanceEvent[]): RebuiltChain {
  const builder = new ChainBuilder(instanceHash);
  const states: ChainState[] = [];
  for (const event of events) {
    const state = builder.push(event);
    if (state) states.push(state);
  }
  return {
    created: builder.created,
    states,
    terminated: builder.terminated,
    head: builder.head,
    anomalies: builder.anomalies,
  };
}
