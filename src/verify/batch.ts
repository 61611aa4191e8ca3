import { getAddress, zeroPadValue, type Provider } from "ethers";
import { type HexHash } from "../chain/hash";
import { ProofChecker, trailOf, verifyLeafProof } from "../protocol/anchoring";
import { type InstanceProtocol, type ProtocolEntry } from "../protocol/schema";
import { IInstanceRegistry__factory } from "../../typechain-types";
import { type ChainView } from "./chain";
import { type ReadyContext } from "./context";
import { type Findings, iso, short } from "./findings";
import { getLogsChunked } from "./logs";
import { type RebuiltChain } from "./rebuild";
import { instanceChain } from "./steps/shared";

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

/** Whether the protocol's entries are Merkle-anchored (any entry carries a proof). */
export function isAnchored(protocol: InstanceProtocol): boolean {
  return protocol.instance_protocol.some((entry) => entry.proof !== null);
}

/** A BatchAnchored of the issuer. */
export interface BatchAnchor {
  root: string;
  count: number;
  blockNumber: number;
  transactionHash: string;
  logIndex: number;
}

const memo = new WeakMap<ChainView, Map<string, Promise<Map<string, BatchAnchor[]>>>>();
const checkers = new WeakMap<ChainView, ProofChecker>();

/** One verification's proof checker (its memo of node pairs lives as long as the verification's ChainView). */
function proofChecker(chain: ChainView): ProofChecker {
  let checker = checkers.get(chain);
  if (!checker) checkers.set(chain, (checker = new ProofChecker()));
  return checker;
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
  const key = `${getAddress(issuer)}:${fromBlock}`;
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
      return anchors;
    })();
    perChain.set(key, loading);
  }
  return loading;
}

/**
 * V6's chain checks of one Merkle-anchored entry (the bytes, link and sender checks are V6's own). Reports
 * through `fail` (evidence against the entry) and `error` (could not be checked).
 */
export async function checkAnchoredEntry(
  context: ReadyContext,
  entry: ProtocolEntry,
  fail: (message: string) => void,
  error: (message: string) => void,
): Promise<void> {
  const { protocol, chain } = context;
  const proof = entry.proof;
  if (!proof) return;
  const issuer = protocol.issuer.address;
  const leaf = {
    issuer,
    instanceHash: protocol.instance_hash,
    seq: entry.seq,
    stateHash: entry.state_hash,
    prevStateHash: entry.prev_state_hash,
  };
  if (!proofChecker(chain).verify(leaf, proof)) {
    fail(
      `the Merkle proof does not lead from the leaf (issuer, instance, seq ${entry.seq}, state_hash, prev_state_hash) ` +
        `to root ${short(proof.root)}`,
    );
    return;
  }
  let anchors: Map<string, BatchAnchor[]>;
  let lifetime: RebuiltChain;
  try {
    [anchors, lifetime] = await Promise.all([
      issuerAnchors(chain, issuer, protocol.created.block_nr),
      instanceChain(context),
    ]);
  } catch (cause) {
    error(`reading the issuer's anchored roots: ${(cause as Error).message}`);
    return;
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
    return;
  }
  if (anchor.blockNumber !== entry.block_nr) {
    fail(`tx ${transaction} is in block ${anchor.blockNumber}, entry says block ${entry.block_nr}`);
  }
  if (proof.leaf_index >= anchor.count) {
    fail(`leaf_index ${proof.leaf_index} is outside the anchored batch of ${anchor.count} leaves`);
  }
  const created = lifetime.created?.at;
  if (created && before(anchor, created)) {
    fail(`root ${short(proof.root)} was anchored in block ${anchor.blockNumber}, before the instance was created`);
  }
  const terminated = lifetime.terminated?.at;
  if (terminated && before(terminated, anchor)) {
    fail(
      `root ${short(proof.root)} was anchored in block ${anchor.blockNumber}, after the instance was terminated ` +
        `in block ${terminated.blockNumber}`,
    );
  }
  try {
    const time = await chain.blockTimestamp(anchor.blockNumber);
    if (time === null) error(`block ${anchor.blockNumber} could not be read`);
    else if (time !== entry.timestamp) {
      fail(
        `timestamp ${entry.timestamp} (${iso(entry.timestamp)}) is not block ${anchor.blockNumber}'s time ${time} (${iso(time)})`,
      );
    }
  } catch (cause) {
    error((cause as Error).message);
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

/**
 * V7 for a Merkle-anchored protocol: the sequence and head checks (status and termination are V7's own).
 * Returns false when completeness can't be shown yet (the instance is still running on-chain).
 */
export function checkAnchoredCompleteness(
  protocol: InstanceProtocol,
  rebuilt: RebuiltChain,
  onchain: { head: HexHash | null; status: string },
  findings: Findings,
): boolean {
  const entries = protocol.instance_protocol;
  const unproven = entries.filter((entry) => entry.proof === null);
  if (unproven.length > 0) {
    findings.fail(
      `${unproven.length} entr${unproven.length === 1 ? "y has" : "ies have"} no Merkle proof in a Merkle-anchored ` +
        `protocol: ${unproven.map((entry) => `seq ${entry.seq}`).join(", ")}`,
    );
  }
  if (rebuilt.states.length > 0) {
    findings.fail(
      `${rebuilt.states.length} state(s) registered one by one on-chain for this instance are not what the ` +
        `Merkle-anchored protocol lists (withheld): ` +
        rebuilt.states.map((state) => `seq ${state.seq} ${state.stateHash}`).join(", "),
    );
  }
  const last = entries.length > 0 ? entries[entries.length - 1].state_hash : protocol.instance_hash;
  if (protocol.head.state_hash !== last || protocol.head.seq !== entries.length - 1) {
    findings.fail(
      `protocol head (seq ${protocol.head.seq}, ${protocol.head.state_hash}) is not its last entry ` +
        `(seq ${entries.length - 1}, ${last})`,
    );
  }
  const terminated = rebuilt.terminated;
  if (!terminated) return onchain.status !== "running";
  if (!terminated.anchored) {
    findings.fail(
      `the instance was terminated with terminateInstance (final head ${terminated.finalHead}), which commits no ` +
        `Merkle-anchored states: the chain says it has none, the protocol lists ${entries.length}`,
    );
    return true;
  }
  const { stateCount, trail } = terminated.anchored;
  if (stateCount !== entries.length) {
    const difference = Math.abs(stateCount - entries.length);
    findings.fail(
      stateCount > entries.length
        ? `the issuer committed ${stateCount} states at termination, the protocol lists ${entries.length}: ` +
            `${difference} withheld`
        : `the issuer committed ${stateCount} states at termination, the protocol lists ${entries.length}: ` +
            `${difference} added`,
    );
  }
  if (terminated.finalHead !== last) {
    findings.fail(`the committed final head is ${terminated.finalHead}, the protocol's last state is ${last}`);
  }
  if (onchain.head !== null && protocol.head.state_hash !== onchain.head) {
    findings.fail(`protocol head ${protocol.head.state_hash} is not the on-chain head ${onchain.head}`);
  }
  const recomputed = trailOf(
    protocol.instance_hash,
    entries.map((entry) => entry.state_hash),
  );
  if (recomputed !== trail) {
    findings.fail(
      `the trail of the protocol's ${entries.length} states is ${recomputed}, the issuer committed ${trail}: ` +
        `states were withheld, added, replaced or reordered`,
    );
  }
  return true;
}
