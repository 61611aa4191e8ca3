import { getAddress, isAddress, keccak256 } from "ethers";
import { committedCodeHash } from "../../chain/create2";
import { type Registries } from "../../protocol/schema";
import { type Step } from "../context";
import { Findings } from "../findings";

const REGISTRY_NAMES: Record<keyof Registries, "ModelRegistry" | "CertificateRegistry" | "InstanceRegistry"> = {
  model: "ModelRegistry",
  certificate: "CertificateRegistry",
  instance: "InstanceRegistry",
};

/**
 * V0: the RPC endpoint serves the trusted chain, the protocol claims that chain, and it names exactly the
 * trusted registries. A protocol pointing at other registries (look-alikes its author controls) fails
 * here; every chain step reads the trusted registries regardless of what the protocol names. At the canonical
 * CREATE2 addresses (deployments/canonical.json) the code's keccak256 must equal the committed runtime code hash
 * for the chain: other code at a trusted address (a look-alike placed there) fails too.
 */
export const anchorsStep: Step = {
  id: "V0",
  async run({ protocol, chain }) {
    const findings = new Findings();
    const trusted = chain.trusted;
    const pinned: string[] = [];
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
          continue;
        }
      } catch (error) {
        findings.error(error);
        continue;
      }
      const committed = committedCodeHash(REGISTRY_NAMES[key], expected, snapshot.chainId);
      if (committed === null) {
        pinned.push(`${REGISTRY_NAMES[key]} code hash not pinned (not its canonical address on this chain)`);
        continue;
      }
      try {
        const codeHash = keccak256(await chain.provider.getCode(expected, snapshot.blockNumber));
        if (codeHash !== committed) {
          findings.fail(
            `the code at the trusted ${REGISTRY_NAMES[key]} ${expected} hashes to ${codeHash}, the committed runtime code hash (deployments/canonical.json, chain ${snapshot.chainId}) is ${committed}: look-alike contract; this chain's registries are not statetrail's, so nothing recorded there can be trusted (check the RPC endpoint serves the real chain; \`npm run addresses -- --check\` confirms the committed hashes)`,
            "DEPLOYMENT_CODE_MISMATCH",
          );
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
    for (const line of pinned) findings.note(line);
    const codeHashes = pinned.length === 0 ? "; code hashes are the committed ones" : "";
    return findings.outcome(
      `chain ${snapshot.chainId} at block ${snapshot.blockNumber}; registries are the trusted ones (${trusted.source})${codeHashes}`,
    );
  },
};
