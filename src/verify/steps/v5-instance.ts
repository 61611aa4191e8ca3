import { type Step } from "../context";
import { Findings, short } from "../findings";
import { explainTransaction, instanceChain } from "./shared";

/**
 * V5: the trusted InstanceRegistry holds an InstanceCreated by the issuer for this instance hash, in the
 * block and transaction the protocol's `created` names, for `model_hash`; the instance data is served.
 * The instance hash commits to the input through a record salted with a nonce that is not published, so
 * the input bytes can't be checked against it here: only that they are served.
 */
export const instanceStep: Step = {
  id: "V5",
  async run(context) {
    const { protocol, chain, web, settings } = context;
    const findings = new Findings();
    const issuer = protocol.issuer.address;
    let location = "";
    try {
      const { created } = await instanceChain(context);
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
    let served = "";
    try {
      const { bytes } = await web.get(protocol.instance_data, settings.maxBytes.instanceData);
      served = `instance_data served (${bytes.length} bytes; not recomputable into the nonce-salted instance hash)`;
    } catch (error) {
      findings.error(error, `fetching instance_data ${protocol.instance_data}`);
    }
    return findings.outcome(`created by the issuer in ${location} for model ${short(protocol.model_hash)}; ${served}`);
  },
};
