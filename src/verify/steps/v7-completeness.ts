import { type Step } from "../context";
import { type InstanceProtocol, type ProtocolEntry } from "../../protocol/schema";
import { trailOf } from "../../protocol/anchoring";
import { Findings, short } from "../findings";
import { checkAnchoredCompleteness, isAnchored } from "../batch";
import { type ChainState, type RebuiltChain } from "../rebuild";
import { instanceChain } from "./shared";

/**
 * V7: the instance's chain rebuilt from the trusted registry's logs equals the protocol's entries position by
 * position (seq): the same state hash, registered in the transaction and block the entry names. Nothing
 * withheld, added or reordered, and a hash registered twice can't stand for both positions, nor can an entry
 * pick the later registration (and so its block and time). The protocol's head is the registry's head
 * (`instanceOf`, the final head once terminated), and its status and termination are the registry's.
 */
export const completenessStep: Step = {
  id: "V7",
  async run(context) {
    const { protocol, chain } = context;
    const findings = new Findings();
    try {
      const [rebuilt, onchain] = await Promise.all([
        instanceChain(context),
        chain.instanceOf(protocol.issuer.address, protocol.instance_hash),
      ]);
      if (onchain.status === "none") {
        findings.fail(
          `the trusted InstanceRegistry has no instance ${protocol.instance_hash} of issuer ${protocol.issuer.address}`,
        );
        return findings.outcome("");
      }
      if (!rebuilt.created) {
        findings.fail(
          `the instance's creation is not at or after block ${protocol.created.block_nr}, where the protocol puts it`,
        );
        return findings.outcome("");
      }
      for (const anomaly of rebuilt.anomalies) findings.error(`the node's logs are inconsistent: ${anomaly}`);
      if (rebuilt.head !== onchain.head) {
        findings.error(
          `the logs rebuild head ${rebuilt.head}, but instanceOf says ${onchain.head}: the node returned incomplete logs`,
        );
      }

      // Merkle-anchored states: the sequence is what terminateAnchored committed (count, final head, trail).
      const anchored = isAnchored(protocol);
      let complete = true;
      if (anchored) complete = checkAnchoredCompleteness(protocol, rebuilt, onchain, findings);
      else {
        checkSequence(protocol.instance_protocol, rebuilt.states, findings);
        // A count and trail committed by terminateAnchored bind the run too, whatever the protocol's mode.
        if (rebuilt.terminated?.anchored) checkCommittedCount(protocol, rebuilt.terminated, findings);
        const listed = protocol.instance_protocol.map((entry) => entry.state_hash);

        // The head.
        const expectedHeadSeq = rebuilt.states.length - 1;
        if (protocol.head.state_hash !== onchain.head) {
          findings.fail(`protocol head ${protocol.head.state_hash} is not the on-chain head ${onchain.head}`);
        }
        if (protocol.head.seq !== expectedHeadSeq) {
          findings.fail(
            `protocol head seq is ${protocol.head.seq}, the on-chain chain's last seq is ${expectedHeadSeq}`,
          );
        }
        const lastListed = listed.length > 0 ? listed[listed.length - 1] : protocol.instance_hash;
        if (protocol.head.state_hash !== lastListed || protocol.head.seq !== listed.length - 1) {
          findings.fail(
            `protocol head (seq ${protocol.head.seq}, ${protocol.head.state_hash}) is not its last entry ` +
              `(seq ${listed.length - 1}, ${lastListed})`,
          );
        }
      }

      // Status and termination.
      if (protocol.status !== onchain.status) {
        findings.fail(`protocol status is ${protocol.status}, on-chain status is ${onchain.status}`);
      }
      if (onchain.status === "running") {
        if (protocol.terminated !== null)
          findings.fail("protocol says terminated, the instance is still running on-chain");
      } else if (!rebuilt.terminated) {
        findings.error(`instanceOf says ${onchain.status}, but the logs hold no InstanceTerminated`);
      } else {
        const event = rebuilt.terminated;
        if (event.status !== onchain.status) {
          findings.error(`InstanceTerminated says ${event.status}, instanceOf says ${onchain.status}`);
        }
        if (
          !protocol.terminated ||
          protocol.terminated.block_nr !== event.at.blockNumber ||
          protocol.terminated.transaction_hash.toLowerCase() !== event.at.transactionHash
        ) {
          findings.fail(
            `terminated on-chain in block ${event.at.blockNumber} tx ${event.at.transactionHash}; protocol says ` +
              (protocol.terminated
                ? `block ${protocol.terminated.block_nr} tx ${protocol.terminated.transaction_hash}`
                : "not terminated"),
          );
        }
      }
      const ended = rebuilt.terminated ? `, terminated in block ${rebuilt.terminated.at.blockNumber}` : "";
      if (anchored) {
        if (!complete && !findings.failed && findings.errors.length === 0) {
          return {
            status: "skip",
            detail:
              `${protocol.instance_protocol.length} Merkle-anchored states; the instance is still running: ` +
              `completeness is committed on-chain only at its termination (count, final head, trail)`,
          };
        }
        return findings.outcome(
          `${protocol.instance_protocol.length} Merkle-anchored states are exactly the ${rebuilt.terminated?.anchored?.stateCount ?? 0} ` +
            `committed at termination (count, final head ${short(onchain.head ?? "")}, trail); status ${onchain.status}${ended}`,
        );
      }
      return findings.outcome(
        `${rebuilt.states.length} states rebuilt from the logs equal the protocol's entries in order; ` +
          `head ${short(onchain.head ?? "")} (seq ${rebuilt.states.length - 1}); status ${onchain.status}${ended}`,
      );
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
  },
};

/** At most this many positions are named in one finding; the rest are counted. */
const NAMED = 10;

function named(items: readonly string[]): string {
  return items.length > NAMED
    ? `${items.slice(0, NAMED).join(", ")} and ${items.length - NAMED} more`
    : items.join(", ");
}

/**
 * The protocol's entries against the on-chain sequence. Hashes missing on either side are named first (what
 * was withheld or added); with the same hashes on both sides, the counts (a hash registered twice can't stand
 * for both positions), then every position (seq): its hash, and the registration its entry names. An entry
 * naming a transaction that holds no such registration is V6's finding; one naming this hash's registration
 * at another position (a repeated hash, to pick its block and time) is this step's.
 */
function checkSequence(entries: readonly ProtocolEntry[], states: readonly ChainState[], findings: Findings): void {
  const listedHashes = new Set(entries.map((entry) => entry.state_hash));
  const registered = new Map<string, ChainState[]>();
  for (const state of states) registered.set(state.stateHash, [...(registered.get(state.stateHash) ?? []), state]);
  const withheld = states.filter((state) => !listedHashes.has(state.stateHash));
  const added = entries.filter((entry) => !registered.has(entry.state_hash));
  if (withheld.length > 0) {
    findings.fail(
      `${withheld.length} state(s) registered on-chain are missing from the protocol (withheld): ` +
        named(withheld.map((state) => `seq ${state.seq} ${state.stateHash}`)),
    );
  }
  if (added.length > 0) {
    findings.fail(
      `${added.length} protocol entr${added.length === 1 ? "y is" : "ies are"} not registered on-chain for this ` +
        `instance: ${named(added.map((entry) => `seq ${entry.seq} ${entry.state_hash}`))}`,
    );
  }
  if (withheld.length > 0 || added.length > 0) return;
  if (states.length > entries.length) {
    const extra = states.slice(entries.length).map((state) => `seq ${state.seq} ${state.stateHash}`);
    findings.fail(
      `${extra.length} state(s) registered on-chain are missing from the protocol (withheld): ${named(extra)} ` +
        `(their hashes are listed once, registered more than once)`,
    );
    return;
  }
  if (entries.length > states.length) {
    const extra = entries
      .slice(states.length)
      .map((entry, index) => `seq ${states.length + index} ${entry.state_hash}`);
    findings.fail(
      `${extra.length} protocol entr${extra.length === 1 ? "y is" : "ies are"} not registered on-chain for this ` +
        `instance (the chain holds ${states.length} states; these repeat registered hashes): ${named(extra)}`,
    );
    return;
  }
  const reordered: string[] = [];
  const misplaced: string[] = [];
  entries.forEach((entry, seq) => {
    const state = states[seq];
    if (entry.seq !== seq) findings.fail(`entry ${seq} says seq ${entry.seq}, on-chain seq ${state.seq}`);
    if (entry.state_hash !== state.stateHash) {
      const at = registered.get(entry.state_hash)!.map((other) => other.seq);
      reordered.push(`${short(entry.state_hash)} listed at seq ${seq}, registered at seq ${at.join(", ")}`);
      return;
    }
    const transaction = entry.transaction_hash.toLowerCase();
    if (transaction === state.at.transactionHash.toLowerCase()) return;
    const other = registered
      .get(entry.state_hash)!
      .find((candidate) => candidate.at.transactionHash.toLowerCase() === transaction);
    if (other) {
      misplaced.push(
        `seq ${seq} names the registration of its state at seq ${other.seq} (tx ${transaction}, block ` +
          `${other.at.blockNumber}), not its own (tx ${state.at.transactionHash}, block ${state.at.blockNumber})`,
      );
    }
  });
  if (reordered.length > 0) findings.fail(`the protocol reorders states: ${named(reordered)}`);
  if (misplaced.length > 0) {
    findings.fail(`entries name another position's registration of a repeated hash: ${named(misplaced)}`);
  }
}

/** What terminateAnchored committed (count, final head, trail) must be the protocol's entries. */
function checkCommittedCount(
  protocol: InstanceProtocol,
  terminated: NonNullable<RebuiltChain["terminated"]>,
  findings: Findings,
): void {
  const { stateCount, trail } = terminated.anchored!;
  const hashes = protocol.instance_protocol.map((entry) => entry.state_hash);
  const last = hashes.length > 0 ? hashes[hashes.length - 1] : protocol.instance_hash;
  if (stateCount !== hashes.length) {
    findings.fail(`the issuer committed ${stateCount} states at termination, the protocol lists ${hashes.length}`);
  }
  if (terminated.finalHead !== last) {
    findings.fail(`the committed final head is ${terminated.finalHead}, the protocol's last state is ${last}`);
  }
  if (trailOf(protocol.instance_hash, hashes) !== trail) {
    findings.fail(`the trail the issuer committed at termination is not the trail of the protocol's states`);
  }
}
