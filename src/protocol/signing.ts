import { BaseWallet, keccak256, recoverAddress, type Signer } from "ethers";
import { canonicalize } from "./canonical";
import { type InstanceProtocol, type UnsignedProtocol } from "./schema";

/** The bytes the issuer signs (EIP-191): the RFC 8785 canonical form of the protocol without `signature`. */
export function signingPayload(protocol: UnsignedProtocol | InstanceProtocol): string {
  const { signature: _omit, ...unsigned } = protocol as InstanceProtocol;
  return canonicalize(unsigned);
}

const EIP191_PREFIX = "\x19Ethereum Signed Message:\n";

/**
 * The EIP-191 digest of `message` (UTF-8), exactly ethers' `hashMessage`, computed over one buffer: ethers joins
 * the prefix and the message through hex strings, which for a protocol of 100,000 entries took seconds and
 * hundreds of megabytes.
 */
export function messageDigest(message: string): string {
  const length = Buffer.byteLength(message, "utf8");
  const prefix = `${EIP191_PREFIX}${length}`;
  const bytes = Buffer.allocUnsafe(prefix.length + length);
  bytes.write(prefix, 0, "utf8");
  bytes.write(message, prefix.length, "utf8");
  return keccak256(bytes);
}

export async function signProtocol(protocol: UnsignedProtocol, signer: Signer): Promise<InstanceProtocol> {
  const payload = signingPayload(protocol);
  // A key in hand signs the digest (what its signMessage does); any other signer gets the message.
  const signature =
    signer instanceof BaseWallet
      ? signer.signingKey.sign(messageDigest(payload)).serialized
      : await signer.signMessage(Buffer.from(payload, "utf8"));
  return { ...protocol, signature };
}

/** The address that signed the protocol, or null when the signature is malformed. */
export function recoverProtocolSigner(protocol: InstanceProtocol): string | null {
  try {
    return recoverAddress(messageDigest(signingPayload(protocol)), protocol.signature);
  } catch {
    return null;
  }
}
