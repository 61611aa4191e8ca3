import { verifyMessage, type Signer } from "ethers";
import { canonicalize } from "./canonical";
import { type InstanceProtocol, type UnsignedProtocol } from "./schema";

/** The bytes the issuer signs (EIP-191): the RFC 8785 canonical form of the protocol without `signature`. */
export function signingPayload(protocol: UnsignedProtocol | InstanceProtocol): string {
  const { signature: _omit, ...unsigned } = protocol as InstanceProtocol;
  return canonicalize(unsigned);
}

// The payload is handed to ethers as its UTF-8 bytes, which EIP-191 signs anyway: ethers' own UTF-8 encoder of a
// string is a JavaScript loop, slow for a protocol of many megabytes.

export async function signProtocol(protocol: UnsignedProtocol, signer: Signer): Promise<InstanceProtocol> {
  const signature = await signer.signMessage(Buffer.from(signingPayload(protocol), "utf8"));
  return { ...protocol, signature };
}

/** The address that signed the protocol, or null when the signature is malformed. */
export function recoverProtocolSigner(protocol: InstanceProtocol): string | null {
  try {
    return verifyMessage(Buffer.from(signingPayload(protocol), "utf8"), protocol.signature);
  } catch {
    return null;
  }
}
