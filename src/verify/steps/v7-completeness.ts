import { type Step } from "../context";
import { Findings, short } from "../findings";
import { checkAnchoredCompleteness } from "../batch";
import { explainDifferences, instancePass, type PassResult } from "./pass";
import { type ProtocolHead } from "../../protocol/schema";

/**
 * V7: the instance's chain rebuilt from the trusted registry's logs equals the protocol's entries position by
 * position (seq): the same state hash, registered in the transaction and block the entry names. Nothing
 * withheld, added or reordered, and a hash registered twice can't stand for both positions, nor can an entry
 * pick the later registration (and so its block and time). The protocol's head is the registry's head
 * (`instanceOf`, the final head once terminated), and its status and termination are the registry's.
 *
 * Both sides are streams (./pass.ts): entry i meets on-chain state i, nothing is kept per entry. When positions
 * differ, a second bounded look (the logs and pages read again, keeping only the hashes of the first differing
 * positions) says what happened: withheld, added, reordered, or another position's registration named.
 */
export const completenessStep: Step = {
  id: "V7",
  async run(context) {
    const { protocol, chain } = context;
    const findings = new Findings();
    try {
      const [pass, onchain] = await Promise.all([
        instancePass(context),
        chain.instanceOf(protocol.issuer.address, protocol.instance_hash),
      ]);
      const rebuilt = pass.chain;
      if (onchain.status === "none") {
        findings.fail(
          `the trusted InstanceRegistry has no instance ${protocol.instance_hash} of issuer ${protocol.issuer.address}`,
        );
        return findings.outcome("");
      }
      if (pass.chainError) {
        findings.error(pass.chainError, "reading the instance's events");
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
      if (pass.stoppedAt) {
        const { page, seq, error } = pass.stoppedAt;
        const message =
          `the protocol's entries from seq ${seq} on could not be compared with the chain: page ${page} ` +
          `${error ? "could not be read" : "is invalid"} (see V8)`;
        if (error) findings.error(message);
        else findings.fail(message, "PAGE_INVALID");
      }

      // Merkle-anchored states: the sequence is what terminateAnchored committed (count, final head, trail).
      const anchored = pass.proven > 0;
      let complete = true;
      if (anchored) {
        complete = checkAnchoredCompleteness(
          protocol,
          {
            entries: pass.entriesRead,
            unproven: pass.unproven,
            unprovenSeqs: pass.unprovenSeqs,
            last: pass.lastHash,
            trail: pass.trail,
          },
          { count: rebuilt.count, first: pass.chainFirst, terminated: rebuilt.terminated },
          onchain,
          findings,
        );
      } else {
        if (!pass.stoppedAt) await checkSequence(context, pass, findings);
        // Whatever the pages hold: a head counting more entries than the chain registered claims states it has not.
        if (protocol.entries > rebuilt.count) {
          findings.fail(
            `the head counts ${protocol.entries} entries, the chain holds ${rebuilt.count} states for this instance`,
          );
        }
        // A count and trail committed by terminateAnchored bind the run too, whatever the protocol's mode.
        if (rebuilt.terminated?.anchored) checkCommittedCount(protocol, pass, rebuilt.terminated, findings);

        // The head.
        const expectedHeadSeq = rebuilt.count - 1;
        if (protocol.head.state_hash !== onchain.head) {
          findings.fail(`protocol head ${protocol.head.state_hash} is not the on-chain head ${onchain.head}`);
        }
        if (protocol.head.seq !== expectedHeadSeq) {
          findings.fail(
            `protocol head seq is ${protocol.head.seq}, the on-chain chain's last seq is ${expectedHeadSeq}`,
          );
        }
        if (
          !pass.stoppedAt &&
          (protocol.head.state_hash !== pass.lastHash || protocol.head.seq !== pass.entriesRead - 1)
        ) {
          findings.fail(
            `protocol head (seq ${protocol.head.seq}, ${protocol.head.state_hash}) is not its last entry ` +
              `(seq ${pass.entriesRead - 1}, ${pass.lastHash})`,
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
        if (!complete && !findings.failed && findings.errorCount === 0) {
          return {
            status: "skip",
            detail:
              `${pass.entriesRead} Merkle-anchored states; the instance is still running: ` +
              `completeness is committed on-chain only at its termination (count, final head, trail)`,
          };
        }
        return findings.outcome(
          `${pass.entriesRead} Merkle-anchored states are exactly the ${rebuilt.terminated?.anchored?.stateCount ?? 0} ` +
            `committed at termination (count, final head ${short(onchain.head ?? "")}, trail); status ${onchain.status}${ended}`,
        );
      }
      return findings.outcome(
        `${rebuilt.count} states rebuilt from the logs equal the protocol's entries in order; ` +
          `head ${short(onchain.head ?? "")} (seq ${rebuilt.count - 1}); status ${onchain.status}${ended}`,
      );
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
  },
};

/** At most this many positions are named in one finding; the rest are counted. */
const NAMED = 10;

function named(items: readonly string[], total = items.length): string {
  return total > NAMED || items.length > NAMED
    ? `${items.slice(0, NAMED).join(", ")} and ${total - Math.min(NAMED, items.length)} more`
    : items.join(", ");
}

/**
 * The protocol's entries against the on-chain sequence, from the pass's positional comparison. Hashes missing on
 * either side are named first (what was withheld or added); with the same hashes on both sides, the counts (a hash
 * registered twice can't stand for both positions), then every position (seq): its hash, and the registration its
 * entry names. An entry naming a transaction that holds no such registration is V6's finding; one naming this
 * hash's registration at another position (a repeated hash, to pick its block and time) is this step's. Only the
 * first differing positions are explained (a bounded second look); the rest are counted.
 */
async function checkSequence(context: Parameters<Step["run"]>[0], pass: PassResult, findings: Findings): Promise<void> {
  for (const message of pass.seqMismatches) findings.fail(message);
  const chainCount = pass.chain.count;
  const entries = pass.entriesRead;
  const differ = pass.mismatchCount > 0 || pass.misplacedCount > 0 || chainCount !== entries;
  if (!differ) return;
  const explanation = await explainDifferences(context, pass);
  if (explanation.incomplete) findings.error(`explaining the differences with the chain: ${explanation.incomplete}`);
  const partial =
    pass.mismatchCount > pass.mismatches.length
      ? ` (of the first ${pass.mismatches.length} of ${pass.mismatchCount} positions that differ)`
      : "";
  const listed = (hash: string): boolean => explanation.listed.has(hash);
  const registered = (hash: string): boolean => explanation.registered.has(hash);
  const withheld = [
    ...pass.mismatches
      .filter((item) => !listed(item.chainHash))
      .map((item) => ({ seq: item.seq, hash: item.chainHash })),
    ...pass.extraStates.filter((item) => !listed(item.hash)),
  ];
  const added = [
    ...pass.mismatches
      .filter((item) => !registered(item.entryHash))
      .map((item) => ({ seq: item.seq, hash: item.entryHash })),
    ...pass.extraEntries.filter((item) => !registered(item.hash)),
  ];
  if (explanation.incomplete) return;
  if (withheld.length > 0) {
    findings.fail(
      `${withheld.length} state(s) registered on-chain are missing from the protocol (withheld): ` +
        named(withheld.map((state) => `seq ${state.seq} ${state.hash}`)) +
        partial,
    );
  }
  if (added.length > 0) {
    findings.fail(
      `${added.length} protocol entr${added.length === 1 ? "y is" : "ies are"} not registered on-chain for this ` +
        `instance: ${named(added.map((entry) => `seq ${entry.seq} ${entry.hash}`))}${partial}`,
    );
  }
  if (withheld.length > 0 || added.length > 0) return;
  if (chainCount > entries) {
    const extra = pass.extraStates.map((state) => `seq ${state.seq} ${state.hash}`);
    findings.fail(
      `${chainCount - entries} state(s) registered on-chain are missing from the protocol (withheld): ` +
        `${named(extra, chainCount - entries)} (their hashes are listed once, registered more than once)`,
    );
    return;
  }
  if (entries > chainCount) {
    const extra = pass.extraEntries.map((entry) => `seq ${entry.seq} ${entry.hash}`);
    findings.fail(
      `${entries - chainCount} protocol entr${entries - chainCount === 1 ? "y is" : "ies are"} not registered on-chain for this ` +
        `instance (the chain holds ${chainCount} states; these repeat registered hashes): ${named(extra, entries - chainCount)}`,
    );
    return;
  }
  const reordered = pass.mismatches.map((item) => {
    const at = (explanation.registered.get(item.entryHash) ?? []).map((other) => other.seq);
    return `${short(item.entryHash)} listed at seq ${item.seq}, registered at seq ${at.join(", ")}`;
  });
  const misplaced: string[] = [];
  for (const item of pass.misplaced) {
    const other = (explanation.registered.get(item.entryHash) ?? []).find((candidate) => candidate.tx === item.entryTx);
    if (other) {
      misplaced.push(
        `seq ${item.seq} names the registration of its state at seq ${other.seq} (tx ${item.entryTx}, block ` +
          `${other.block}), not its own (tx ${item.chainTx}, block ${item.chainBlock})`,
      );
    }
  }
  if (reordered.length > 0) findings.fail(`the protocol reorders states: ${named(reordered, pass.mismatchCount)}`);
  if (misplaced.length > 0) {
    findings.fail(
      `entries name another position's registration of a repeated hash: ${named(misplaced, pass.misplacedCount)}`,
    );
  }
}

/** What terminateAnchored committed (count, final head, trail) must be the protocol's entries. */
function checkCommittedCount(
  protocol: ProtocolHead,
  pass: PassResult,
  terminated: NonNullable<PassResult["chain"]["terminated"]>,
  findings: Findings,
): void {
  const { stateCount, trail } = terminated.anchored!;
  if (stateCount !== pass.entriesRead) {
    findings.fail(`the issuer committed ${stateCount} states at termination, the protocol lists ${pass.entriesRead}`);
  }
  if (terminated.finalHead !== pass.lastHash) {
    findings.fail(`the committed final head is ${terminated.finalHead}, the protocol's last state is ${pass.lastHash}`);
  }
  if (pass.trail !== trail) {
    findings.fail(`the trail the issuer committed at termination is not the trail of the protocol's states`);
  }
  void protocol;
}
