import { verifyMessage, type Signer } from "ethers";
import { canonicalize } from "./canonical";
import { type InstanceProtocol, type UnsignedProtocol } from "./schema";

/** The bytes the issuer signs (EIP-191): the RFC 8785 canonical form of the protocol without `signature`. */
export function signingPayload(protocol: UnsignedProtocol | InstanceProtocol): string {
  const { signature: _omit, ...unsigned } = protocol as InstanceProtocol;
  return canonicalize(unsigned);
}

export async function signProtocol(protocol: UnsignedProtocol, signer: Signer): Promise<InstanceProtocol> {
  const signature = await signer.signMessage(signingPayload(protocol));
  return { ...protocol, signature };
}

/** The address that signed the protocol, or null when the signature is malformed. */
export function recoverProtocolSigner(protocol: InstanceProtocol): string | null {
  try {
    return verifyMessage(signingPayload(protocol), protocol.signature);
  } catch {
    return null;
  }
}
