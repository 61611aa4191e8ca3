import { type Step } from "../context";
import { Findings, short } from "../findings";
import { checkAnchoredCompleteness, isAnchored } from "../batch";
import { instanceChain } from "./shared";

/**
 * V7: the instance's chain rebuilt from the trusted registry's logs equals the protocol's entries, state by
 * state: nothing withheld, nothing added, nothing reordered. The protocol's head is the registry's head
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
        // The sequences, compared as a whole so that one dropped state is reported once, not at every later seq.
        const listed = protocol.instance_protocol.map((entry) => entry.state_hash);
        const registered = rebuilt.states.map((state) => state.stateHash);
        const listedAt = new Map(listed.map((hash, index) => [hash, index]));
        const registeredAt = new Map(registered.map((hash, index) => [hash, index]));
        const withheld = registered.filter((hash) => !listedAt.has(hash));
        const unregistered = listed.filter((hash) => !registeredAt.has(hash));
        if (withheld.length > 0) {
          findings.fail(
            `${withheld.length} state(s) registered on-chain are missing from the protocol (withheld): ` +
              withheld.map((hash) => `seq ${registeredAt.get(hash)} ${hash}`).join(", "),
          );
        }
        if (unregistered.length > 0) {
          findings.fail(
            `${unregistered.length} protocol entr${unregistered.length === 1 ? "y is" : "ies are"} not registered on-chain for this instance: ` +
              unregistered.map((hash) => `seq ${listedAt.get(hash)} ${hash}`).join(", "),
          );
        }
        const common = listed.filter((hash) => registeredAt.has(hash));
        const commonOnChain = registered.filter((hash) => listedAt.has(hash));
        const moved = common.filter((hash, index) => commonOnChain[index] !== hash);
        if (moved.length > 0) {
          findings.fail(
            `the protocol reorders states: ` +
              moved
                .map(
                  (hash) =>
                    `${short(hash)} listed at seq ${listedAt.get(hash)}, registered at seq ${registeredAt.get(hash)}`,
                )
                .join(", "),
          );
        } else if (withheld.length === 0 && unregistered.length === 0) {
          protocol.instance_protocol.forEach((entry, index) => {
            const state = rebuilt.states[index];
            if (entry.seq !== state.seq)
              findings.fail(`entry ${index} says seq ${entry.seq}, on-chain seq ${state.seq}`);
          });
        }

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
        if (protocol.head.state_hash !== lastListed) {
          findings.fail(`protocol head ${protocol.head.state_hash} is not its last entry ${lastListed}`);
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
