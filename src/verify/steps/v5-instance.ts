import { getAddress } from "ethers";
import { readInputDocument } from "../../protocol/disclosure";
import { instanceHash } from "../../protocol/hashing";
import { type Step } from "../context";
import { Findings, short } from "../findings";
import { instancePass } from "./pass";
import { explainTransaction } from "./shared";

/**
 * V5: the trusted InstanceRegistry holds an InstanceCreated by the issuer for this instance hash, in the
 * block and transaction the protocol's `created` names, for `model_hash`; the head's `input_digest` and nonce
 * recompute the instance hash (model_hash, input_digest, issuer, nonce), so the input can't be swapped after the fact;
 * the served input document either discloses the input, whose salted digest must be `input_digest` (a forged input
 * fails), or is empty: the input is not disclosed to this auditor (the verdict is then at best valid-as-disclosed).
 */
export const instanceStep: Step = {
  id: "V5",
  async run(context) {
    const { protocol, chain, web, settings } = context;
    const findings = new Findings();
    const issuer = protocol.issuer.address;
    let location = "";
    try {
      // The instance's events are read once, in the pass shared with V6-V8 (an InstanceCreated can exist only once
      // per issuer and instance, so if it is in the block the protocol names nothing of the instance lies before it).
      const pass = await instancePass(context);
      const created = pass.chain.created;
      if (!created && pass.chainError) throw pass.chainError;
      if (!created) {
        const why = await explainTransaction(chain, protocol.created.transaction_hash, {
          kind: "created",
          issuer,
          instanceHash: protocol.instance_hash,
        });
        findings.fail(
          `no InstanceCreated by ${issuer} for instance ${protocol.instance_hash} from block ${protocol.created.block_nr} on: ${why}`,
        );
      } else {
        location = `block ${created.at.blockNumber}`;
        if (
          created.at.blockNumber !== protocol.created.block_nr ||
          created.at.transactionHash !== protocol.created.transaction_hash.toLowerCase()
        ) {
          findings.fail(
            `instance was created in block ${created.at.blockNumber} tx ${created.at.transactionHash}, ` +
              `protocol says block ${protocol.created.block_nr} tx ${protocol.created.transaction_hash}`,
          );
        }
        if (created.modelHash !== protocol.model_hash) {
          findings.fail(`instance was created for model ${created.modelHash}, not model_hash ${protocol.model_hash}`);
        }
      }
    } catch (error) {
      findings.error(error);
    }
    // The instance hash commits to the input's salted digest (input_digest), so an auditor the input is not disclosed
    // to still checks it; the input document then discloses (or withholds) the input itself.
    const recomputed = instanceHash({
      statetrail_instance: 2,
      model_hash: protocol.model_hash,
      input_digest: protocol.input_digest,
      issuer: getAddress(protocol.issuer.address),
      nonce: protocol.instance_nonce,
    });
    let served = "";
    if (recomputed !== protocol.instance_hash) {
      findings.fail(
        `input_digest ${protocol.input_digest} with model_hash, issuer and nonce recomputes instance hash ${recomputed}, not ${protocol.instance_hash}`,
      );
    } else {
      try {
        const { bytes } = await web.get(protocol.instance_data, settings.maxBytes.instanceData);
        let input: Buffer | null = null;
        let forged = false;
        try {
          input = readInputDocument(bytes, protocol.input_digest);
        } catch (error) {
          // Anything but an empty document or a disclosure matching input_digest: never taken for a redaction.
          forged = true;
          findings.fail(`instance_data ${protocol.instance_data}: ${(error as Error).message}`);
        }
        if (!forged) {
          if (input) {
            // The bytes the instance hash commits to: the execution input V9 replays the model from.
            context.artifacts.input = input;
            context.artifacts.disclosure.inputDisclosed = true;
            served = `input_digest and nonce recompute the instance hash; the execution input (${input.length} bytes) is disclosed and matches input_digest`;
          } else {
            context.artifacts.disclosure.inputDisclosed = false;
            served = `input_digest and nonce recompute the instance hash; the execution input is not disclosed (only its digest)`;
          }
        }
      } catch (error) {
        findings.error(error, `fetching instance_data ${protocol.instance_data}`);
      }
    }
    return findings.outcome(`created by the issuer in ${location} for model ${short(protocol.model_hash)}; ${served}`);
  },
};
