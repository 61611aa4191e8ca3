import { getAddress, zeroPadValue, type Provider } from "ethers";
import { type HexHash } from "../chain/hash";
import { keccakIsFast, prepareKeccak } from "../chain/keccak";
import { verifyLeafProof } from "../protocol/anchoring";
import { type ProtocolEntry, type ProtocolHead } from "../protocol/schema";
import { IInstanceRegistry__factory } from "../../typechain-types";
import { type ChainView } from "./chain";
import { type ReadyContext } from "./context";
import { type Findings, iso, short } from "./findings";
import { getLogsChunked } from "./logs";
import { type RebuiltChain } from "./rebuild";

/**
 * Verification of Merkle-anchored instances (`statetrail run --anchor batch`), called from V6 and V7.
 *
 * V6, per entry: the leaf (issuer, instance_hash, seq, state_hash, prev_state_hash) with the entry's own values
 * and the proof's siblings lead to `proof.root`; that root was anchored (BatchAnchored) by the issuer in the
 * entry's transaction and block, within the instance's lifetime; `timestamp` is that block's time.
 *
 * V7: the chain never saw the states one by one, so completeness rests on what `terminateAnchored` committed:
 * the protocol lists exactly `stateCount` entries, its last state is the committed final head, and the trail
 * recomputed from its state hashes (see src/protocol/anchoring.ts) is the committed trail. A withheld, added,
 * replaced or reordered state changes the trail. Until the instance is terminated there is no commitment, and
 * completeness can't be shown: V7 is skipped (the verdict is then "could not verify").
 */

const registryInterface = IInstanceRegistry__factory.createInterface();
const BATCH_ANCHORED = registryInterface.getEvent("BatchAnchored").topicHash;

/** A BatchAnchored of the issuer. */
export interface BatchAnchor {
  root: string;
  count: number;
  blockNumber: number;
  transactionHash: string;
  logIndex: number;
}

const memo = new WeakMap<ChainView, Map<string, Promise<Map<string, BatchAnchor[]>>>>();
/** The anchors issuerAnchors last read for a chain view, once read: by issuer as written and first block. */
const loaded = new WeakMap<ChainView, { issuer: string; fromBlock: number; anchors: Map<string, BatchAnchor[]> }>();
/** The block time of each anchor read (an anchor belongs to one chain view, read at its pinned block). */
const anchorTimes = new WeakMap<BatchAnchor, number>();

/** What {@link issuerAnchors} resolved to, when it has (else null): taken without awaiting. */
function loadedAnchors(chain: ChainView, issuer: string, fromBlock: number): Map<string, BatchAnchor[]> | null {
  const last = loaded.get(chain);
  return last && last.issuer === issuer && last.fromBlock === fromBlock ? last.anchors : null;
}

/**
 * Every root the issuer anchored in the trusted InstanceRegistry from `fromBlock` to the pinned block, by root
 * (0x lowercase): one chunked `eth_getLogs` filtered on the issuer, read once per verification.
 */
export async function issuerAnchors(
  chain: ChainView,
  issuer: string,
  fromBlock: number,
): Promise<Map<string, BatchAnchor[]>> {
  const { blockNumber } = await chain.snapshot();
  // Called for every entry: the key is the address as the protocol writes it (a checksum costs a Keccak-256).
  const key = `${issuer.toLowerCase()}:${fromBlock}`;
  let perChain = memo.get(chain);
  if (!perChain) memo.set(chain, (perChain = new Map()));
  let loading = perChain.get(key);
  if (!loading) {
    loading = (async () => {
      const anchors = new Map<string, BatchAnchor[]>();
      if (fromBlock > blockNumber) return anchors;
      const counting = {
        getLogs: (filter: Parameters<Provider["getLogs"]>[0]) => {
          chain.requests += 1;
          return chain.provider.getLogs(filter);
        },
      };
      const query = {
        address: chain.trusted.registries.instance,
        topics: [BATCH_ANCHORED, zeroPadValue(getAddress(issuer), 32)],
      };
      const logs = await getLogsChunked(counting, query, fromBlock, blockNumber, chain.logOptions);
      for (const log of logs) {
        const parsed = registryInterface.parseLog({ topics: [...log.topics], data: log.data });
        if (!parsed) continue;
        const root = (parsed.args.root as string).toLowerCase();
        const list = anchors.get(root) ?? [];
        list.push({
          root,
          count: Number(parsed.args.count as bigint),
          blockNumber: log.blockNumber,
          transactionHash: log.transactionHash.toLowerCase(),
          logIndex: log.index,
        });
        anchors.set(root, list);
      }
      loaded.set(chain, { issuer, fromBlock, anchors });
      return anchors;
    })();
    perChain.set(key, loading);
  }
  return loading;
}

/**
 * V6's chain checks of one Merkle-anchored entry (the bytes, link and sender checks are V6's own). Reports
 * through `fail` (evidence against the entry) and `error` (could not be checked). Returns where its root was
 * anchored, for the lifetime check done once the instance's creation and termination are known
 * ({@link checkAnchorLifetime}), or null.
 */
export async function checkAnchoredEntry(
  context: ReadyContext,
  entry: ProtocolEntry,
  fail: (message: string) => void,
  error: (message: string) => void,
): Promise<BatchAnchor | null> {
  const { protocol, chain } = context;
  const proof = entry.proof;
  if (!proof) return null;
  const issuer = protocol.issuer.address;
  const leaf = {
    issuer,
    instanceHash: protocol.instance_hash,
    seq: entry.seq,
    stateHash: entry.state_hash,
    prevStateHash: entry.prev_state_hash,
  };
  if (!keccakIsFast()) await prepareKeccak();
  if (!verifyLeafProof(leaf, proof)) {
    fail(
      `the Merkle proof does not lead from the leaf (issuer, instance, seq ${entry.seq}, state_hash, prev_state_hash) ` +
        `to root ${short(proof.root)}`,
    );
    return null;
  }
  // The anchors once read and a block time once known are taken without awaiting again (issue 16: the awaits of
  // a million entries): the same values issuerAnchors and chain.blockTimestamp give.
  let anchors = loadedAnchors(chain, issuer, protocol.created.block_nr);
  if (!anchors) {
    try {
      anchors = await issuerAnchors(chain, issuer, protocol.created.block_nr);
    } catch (cause) {
      error(`reading the issuer's anchored roots: ${(cause as Error).message}`);
      return null;
    }
  }
  const transaction = entry.transaction_hash.toLowerCase();
  const candidates = anchors.get(proof.root) ?? [];
  const anchor = candidates.find((candidate) => candidate.transactionHash === transaction);
  if (!anchor) {
    fail(
      candidates.length === 0
        ? `root ${short(proof.root)} was never anchored by the issuer in the trusted InstanceRegistry ` +
            `(from block ${protocol.created.block_nr} on)`
        : `root ${short(proof.root)} is anchored by the issuer in tx ${candidates[0].transactionHash} ` +
            `(block ${candidates[0].blockNumber}), not in tx ${transaction}`,
    );
    return null;
  }
  if (anchor.blockNumber !== entry.block_nr) {
    fail(`tx ${transaction} is in block ${anchor.blockNumber}, entry says block ${entry.block_nr}`);
  }
  if (proof.leaf_index >= anchor.count) {
    fail(`leaf_index ${proof.leaf_index} is outside the anchored batch of ${anchor.count} leaves`);
  }
  try {
    let time: number | null | undefined = anchorTimes.get(anchor);
    if (time === undefined) {
      time = await chain.blockTimestamp(anchor.blockNumber);
      if (time !== null) anchorTimes.set(anchor, time);
    }
    if (time === null) error(`block ${anchor.blockNumber} could not be read`);
    else if (time !== entry.timestamp) {
      fail(
        `timestamp ${entry.timestamp} (${iso(entry.timestamp)}) is not block ${anchor.blockNumber}'s time ${time} (${iso(time)})`,
      );
    }
  } catch (cause) {
    error((cause as Error).message);
  }
  return anchor;
}

/** The earliest and latest anchor the entries' roots were found in, with the entry that named each. */
export interface AnchorSpan {
  earliest: { anchor: BatchAnchor; seq: number; name: string } | null;
  latest: { anchor: BatchAnchor; seq: number; name: string } | null;
}

/** Widens `span` by the anchor an entry's root was found in. */
export function widenSpan(span: AnchorSpan, anchor: BatchAnchor, seq: number, name: string): void {
  if (!span.earliest || before(anchor, span.earliest.anchor)) span.earliest = { anchor, seq, name };
  if (!span.latest || before(span.latest.anchor, anchor)) span.latest = { anchor, seq, name };
}

/**
 * Every root was anchored within the instance's lifetime: the earliest anchor not before its creation, the latest
 * not after its termination (the two ends decide for every anchor between).
 */
export function checkAnchorLifetime(
  span: AnchorSpan,
  lifetime: Pick<RebuiltChain, "created" | "terminated">,
  fail: (message: string) => void,
): void {
  const created = lifetime.created?.at;
  if (created && span.earliest && before(span.earliest.anchor, created)) {
    const { anchor, seq, name } = span.earliest;
    fail(
      `seq ${seq} "${name}": root ${short(anchor.root)} was anchored in block ${anchor.blockNumber}, before the instance was created`,
    );
  }
  const terminated = lifetime.terminated?.at;
  if (terminated && span.latest && before(terminated, span.latest.anchor)) {
    const { anchor, seq, name } = span.latest;
    fail(
      `seq ${seq} "${name}": root ${short(anchor.root)} was anchored in block ${anchor.blockNumber}, after the instance ` +
        `was terminated in block ${terminated.blockNumber}`,
    );
  }
}

/**
 * The block in which `entry`'s Merkle proof reaches a root the issuer anchored in the entry's transaction, or
 * null (for `statetrail watch`, which follows a running instance: the full checks are V6's).
 */
export function anchoredAt(
  anchors: Map<string, BatchAnchor[]>,
  issuer: string,
  instanceHash: HexHash,
  entry: ProtocolEntry,
): number | null {
  const proof = entry.proof;
  if (!proof) return null;
  const leaf = {
    issuer,
    instanceHash,
    seq: entry.seq,
    stateHash: entry.state_hash,
    prevStateHash: entry.prev_state_hash,
  };
  if (!verifyLeafProof(leaf, proof)) return null;
  const transaction = entry.transaction_hash.toLowerCase();
  const anchor = (anchors.get(proof.root) ?? []).find((candidate) => candidate.transactionHash === transaction);
  return anchor ? anchor.blockNumber : null;
}

function before(a: { blockNumber: number; logIndex: number }, b: { blockNumber: number; logIndex: number }): boolean {
  return a.blockNumber < b.blockNumber || (a.blockNumber === b.blockNumber && a.logIndex < b.logIndex);
}

/** What V7 needs of a Merkle-anchored protocol's entries, gathered by the pass (nothing per entry). */
export interface AnchoredSummary {
  entries: number;
  /** Entries without a proof: how many, and the first few seqs. */
  unproven: number;
  unprovenSeqs: number[];
  /** The last entry's state hash (the instance hash when there is none). */
  last: HexHash;
  /** The trail of the entries' state hashes (anchoring.ts). */
  trail: HexHash;
}

/**
 * V7 for a Merkle-anchored protocol: the sequence and head checks (status and termination are V7's own).
 * Returns false when completeness can't be shown yet (the instance is still running on-chain).
 */
export function checkAnchoredCompleteness(
  protocol: ProtocolHead,
  summary: AnchoredSummary,
  rebuilt: { count: number; first: string[]; terminated: RebuiltChain["terminated"] },
  onchain: { head: HexHash | null; status: string },
  findings: Findings,
): boolean {
  const { entries, last } = summary;
  if (summary.unproven > 0) {
    findings.fail(
      `${summary.unproven} entr${summary.unproven === 1 ? "y has" : "ies have"} no Merkle proof in a Merkle-anchored ` +
        `protocol: ${summary.unprovenSeqs.map((seq) => `seq ${seq}`).join(", ")}${summary.unproven > summary.unprovenSeqs.length ? ", …" : ""}`,
    );
  }
  if (rebuilt.count > 0) {
    findings.fail(
      `${rebuilt.count} state(s) registered one by one on-chain for this instance are not what the ` +
        `Merkle-anchored protocol lists (withheld): ` +
        rebuilt.first.join(", ") +
        (rebuilt.count > rebuilt.first.length ? `, …` : ""),
    );
  }
  if (protocol.head.state_hash !== last || protocol.head.seq !== entries - 1) {
    findings.fail(
      `protocol head (seq ${protocol.head.seq}, ${protocol.head.state_hash}) is not its last entry ` +
        `(seq ${entries - 1}, ${last})`,
    );
  }
  const terminated = rebuilt.terminated;
  if (!terminated) return onchain.status !== "running";
  if (!terminated.anchored) {
    findings.fail(
      `the instance was terminated with terminateInstance (final head ${terminated.finalHead}), which commits no ` +
        `Merkle-anchored states: the chain says it has none, the protocol lists ${entries}`,
    );
    return true;
  }
  const { stateCount, trail } = terminated.anchored;
  if (stateCount !== entries) {
    const difference = Math.abs(stateCount - entries);
    findings.fail(
      stateCount > entries
        ? `the issuer committed ${stateCount} states at termination, the protocol lists ${entries}: ` +
            `${difference} withheld`
        : `the issuer committed ${stateCount} states at termination, the protocol lists ${entries}: ` +
            `${difference} added`,
    );
  }
  if (terminated.finalHead !== last) {
    findings.fail(`the committed final head is ${terminated.finalHead}, the protocol's last state is ${last}`);
  }
  if (onchain.head !== null && protocol.head.state_hash !== onchain.head) {
    findings.fail(`protocol head ${protocol.head.state_hash} is not the on-chain head ${onchain.head}`);
  }
  if (summary.trail !== trail) {
    findings.fail(
      `the trail of the protocol's ${entries} states is ${summary.trail}, the issuer committed ${trail}: ` +
        `states were withheld, added, replaced or reordered`,
    );
  }
  return true;
}
