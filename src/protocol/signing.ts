import { BaseWallet, recoverAddress, TypedDataEncoder, type Signer, type TypedDataDomain } from "ethers";
import { sha256Hex } from "../chain/hash";
import { canonicalize } from "./canonical";
import { headOf, sealedFields } from "./pages";
import {
  PROTOCOL_VERSION,
  type InstanceProtocol,
  type ProtocolHead,
  type UnsignedHead,
  type UnsignedProtocol,
} from "./schema";

/*
 * The issuer signs the head of a protocol as EIP-712 typed data (docs/PROTOCOL.md, "Signature"). The head commits to
 * every entry through its accumulator, so the signature costs the same at any size. Typed data rather than EIP-191
 * over the document: a wallet shows the instance, status, entry count and accumulator field by field, and the domain
 * (chain id and InstanceRegistry) keeps a signature from being replayed on another chain or registry. `document`
 * binds the rest of the head (issuer url, ENS name, certificate, creation and termination, page size): the SHA-256
 * of the head's RFC 8785 canonical form without `signature`.
 */

export const PROTOCOL_SIGNATURE_TYPES = {
  InstanceProtocol: [
    { name: "instanceHash", type: "bytes32" },
    { name: "modelHash", type: "bytes32" },
    { name: "status", type: "string" },
    { name: "entries", type: "uint64" },
    { name: "accumulator", type: "bytes32" },
    { name: "headStateHash", type: "bytes32" },
    { name: "document", type: "bytes32" },
  ],
};

/** The EIP-712 domain of a protocol: statetrail version 3 on the head's chain and InstanceRegistry. */
export function protocolDomain(head: Pick<UnsignedHead, "chain_id" | "registries">): TypedDataDomain {
  return {
    name: "statetrail",
    version: String(PROTOCOL_VERSION),
    chainId: head.chain_id,
    verifyingContract: head.registries.instance,
  };
}

/** The typed value the issuer signs for a head. */
export function protocolMessage(head: UnsignedHead | ProtocolHead): Record<string, unknown> {
  const { signature: _omit, ...unsigned } = head as ProtocolHead;
  return {
    instanceHash: `0x${unsigned.instance_hash}`,
    modelHash: `0x${unsigned.model_hash}`,
    status: unsigned.status,
    entries: unsigned.entries,
    accumulator: `0x${unsigned.accumulator}`,
    headStateHash: `0x${unsigned.head.state_hash}`,
    document: `0x${sha256Hex(canonicalize(unsigned))}`,
  };
}

/** The EIP-712 digest of a head: what the issuer's key signs. */
export function headDigest(head: UnsignedHead | ProtocolHead): string {
  return TypedDataEncoder.hash(protocolDomain(head), PROTOCOL_SIGNATURE_TYPES, protocolMessage(head));
}

export async function signHead(head: UnsignedHead, signer: Signer): Promise<ProtocolHead> {
  // A key in hand signs the digest (what its signTypedData does); any other signer (a wallet) gets the typed data.
  const signature =
    signer instanceof BaseWallet
      ? signer.signingKey.sign(headDigest(head)).serialized
      : await signer.signTypedData(protocolDomain(head), PROTOCOL_SIGNATURE_TYPES, protocolMessage(head));
  return { ...head, signature };
}

/**
 * Seals and signs a whole protocol: `entries` and `accumulator` from its entries (anything stale replaced), then the
 * head's signature.
 */
export async function signProtocol(protocol: UnsignedProtocol, signer: Signer): Promise<InstanceProtocol> {
  const sealed = sealedFields(protocol);
  const { instance_protocol: entries, ...head } = sealed;
  const signed = await signHead(head, signer);
  return { ...signed, instance_protocol: entries };
}

/** The address that signed a head (or a whole protocol's head), or null when the signature is malformed. */
export function recoverProtocolSigner(head: ProtocolHead | InstanceProtocol): string | null {
  try {
    const only = "instance_protocol" in head ? headOf(head) : head;
    return recoverAddress(headDigest(only), only.signature);
  } catch {
    return null;
  }
}
