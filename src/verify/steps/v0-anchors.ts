import { getAddress, isAddress } from "ethers";
import { type Registries } from "../../protocol/schema";
import { type Step } from "../context";
import { Findings } from "../findings";

const REGISTRY_NAMES: Record<keyof Registries, string> = {
  model: "ModelRegistry",
  certificate: "CertificateRegistry",
  instance: "InstanceRegistry",
};

/**
 * V0: the RPC endpoint serves the trusted chain, the protocol claims that chain, and it names exactly the
 * trusted registries. A protocol pointing at other registries (look-alikes its author controls) fails
 * here; every chain step reads the trusted registries regardless of what the protocol names.
 */
export const anchorsStep: Step = {
  id: "V0",
  async run({ protocol, chain }) {
    const findings = new Findings();
    const trusted = chain.trusted;
    let snapshot;
    try {
      snapshot = await chain.snapshot();
    } catch (error) {
      findings.error(error);
      return findings.outcome("");
    }
    if (protocol.chain_id !== snapshot.chainId) {
      findings.fail(
        `protocol claims chain ${protocol.chain_id}, the trusted chain is ${snapshot.chainId}`,
        "WRONG_CHAIN",
      );
    }
    for (const key of Object.keys(REGISTRY_NAMES) as (keyof Registries)[]) {
      const claimed = protocol.registries[key];
      const expected = trusted.registries[key];
      if (!isAddress(claimed) || getAddress(claimed) !== getAddress(expected)) {
        findings.fail(
          `protocol names ${REGISTRY_NAMES[key]} ${claimed}, the trusted one (${trusted.source}) is ${expected}: look-alike registry`,
        );
      }
      try {
        if (!(await chain.hasCode(expected))) {
          findings.error(`no contract at the trusted ${REGISTRY_NAMES[key]} ${expected} on chain ${snapshot.chainId}`);
        }
      } catch (error) {
        findings.error(error);
      }
    }
    if (!findings.failed && findings.errors.length === 0) {
      try {
        const linked = await chain.linkedModelRegistry();
        if (linked !== getAddress(trusted.registries.model)) {
          findings.error(
            `the trusted InstanceRegistry checks models against ${linked}, not the trusted ModelRegistry ${trusted.registries.model}`,
          );
        }
      } catch (error) {
        findings.error(error);
      }
    }
    return findings.outcome(
      `chain ${snapshot.chainId} at block ${snapshot.blockNumber}; registries are the trusted ones (${trusted.source})`,
    );
  },
};
