import { type HexHash } from "../../chain/hash";
import { type ChainView } from "../chain";
import { sameAddress } from "../findings";

/**
 * Explains why a transaction the protocol names does not hold the expected event in this instance's logs:
 * it does not exist, or it registered the state for another issuer or another instance.
 */
export async function explainTransaction(
  chain: ChainView,
  transactionHash: string,
  expected: { kind: "created" | "state"; stateHash?: HexHash; issuer: string; instanceHash: HexHash },
): Promise<string> {
  const tx = await chain.transactionEvents(transactionHash);
  if (!tx.found) return `transaction ${transactionHash} does not exist on this chain`;
  const candidates = tx.events.filter(
    (event) => event.kind === expected.kind && (event.kind !== "state" || event.stateHash === expected.stateHash),
  );
  for (const event of candidates) {
    if (!sameAddress(event.at.issuer, expected.issuer)) {
      return `transaction ${transactionHash} was sent by ${event.at.issuer}, not the issuer ${expected.issuer}`;
    }
    if (event.at.instanceHash !== expected.instanceHash) {
      return `transaction ${transactionHash} is for instance ${event.at.instanceHash}, not ${expected.instanceHash}`;
    }
  }
  const what = expected.kind === "created" ? "created no instance" : `registered no state ${expected.stateHash}`;
  return `transaction ${transactionHash} (block ${tx.blockNumber}, from ${tx.from}) ${what} for this instance in the trusted InstanceRegistry`;
}
