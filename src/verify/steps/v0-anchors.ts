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
    const keys = Object.keys(REGISTRY_NAMES) as (keyof Registries)[];
    // Every read of this step asked for at once (one round trip); each is awaited where it is checked, in order.
    const codes = keys.map((key) => chain.codeAt(trusted.registries[key]));
    const linked = chain.linkedModelRegistry();
    for (const read of [...codes, linked]) read.catch(() => undefined);
    for (const [index, key] of keys.entries()) {
      const claimed = protocol.registries[key];
      const expected = trusted.registries[key];
      if (!isAddress(claimed) || getAddress(claimed) !== getAddress(expected)) {
        findings.fail(
          `protocol names ${REGISTRY_NAMES[key]} ${claimed}, the trusted one (${trusted.source}) is ${expected}: look-alike registry`,
        );
      }
      let code: string;
      try {
        code = await codes[index];
      } catch (error) {
        findings.error(error);
        continue;
      }
      if (code === "0x") {
        findings.error(`no contract at the trusted ${REGISTRY_NAMES[key]} ${expected} on chain ${snapshot.chainId}`);
        continue;
      }
      const committed = committedCodeHash(REGISTRY_NAMES[key], expected, snapshot.chainId);
      if (committed === null) {
        pinned.push(`${REGISTRY_NAMES[key]} code hash not pinned (not its canonical address on this chain)`);
        continue;
      }
      const codeHash = keccak256(code);
      if (codeHash !== committed) {
        findings.fail(
          `the code at the trusted ${REGISTRY_NAMES[key]} ${expected} hashes to ${codeHash}, the committed runtime code hash (deployments/canonical.json, chain ${snapshot.chainId}) is ${committed}: look-alike contract; this chain's registries are not statetrail's, so nothing recorded there can be trusted (check the RPC endpoint serves the real chain; \`npm run addresses -- --check\` confirms the committed hashes)`,
          "DEPLOYMENT_CODE_MISMATCH",
        );
      }
    }
    if (!findings.failed && findings.errors.length === 0) {
      try {
        const model = await linked;
        if (model !== getAddress(trusted.registries.model)) {
          findings.error(
            `the trusted InstanceRegistry checks models against ${model}, not the trusted ModelRegistry ${trusted.registries.model}`,
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
