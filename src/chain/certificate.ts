import {
  TypedDataEncoder,
  getAddress,
  isAddress,
  verifyTypedData,
  type Signer,
  type TypedDataDomain,
  type TypedDataField,
} from "ethers";
import { StatetrailError } from "../errors";
import { toBytes32 } from "./hash";

/**
 * The TypeScript twin of CertificateRegistry's EIP-712 registration (contracts/CertificateRegistry.sol):
 * domain {name, version, chainId, verifyingContract} and type
 * `Certificate(bytes32 fingerprint,uint48 notBefore,uint48 notAfter,address holder)`.
 * Tested to agree byte for byte with the contract's `certificateDigest` view.
 */
export const CERTIFICATE_DOMAIN_NAME = "statetrail CertificateRegistry";
export const CERTIFICATE_DOMAIN_VERSION = "1";
export const CERTIFICATE_PRIMARY_TYPE = "Certificate";
export const CERTIFICATE_TYPE_STRING =
  "Certificate(bytes32 fingerprint,uint48 notBefore,uint48 notAfter,address holder)";

export const CERTIFICATE_TYPES: Record<string, TypedDataField[]> = {
  Certificate: [
    { name: "fingerprint", type: "bytes32" },
    { name: "notBefore", type: "uint48" },
    { name: "notAfter", type: "uint48" },
    { name: "holder", type: "address" },
  ],
};

const UINT48_MAX = (1n << 48n) - 1n;

/** A registration as the holder signs it. `fingerprint` may be the wire form (64 hex) or a `0x` bytes32. */
export interface CertificateBinding {
  fingerprint: string;
  /** Unix seconds. */
  notBefore: number | bigint;
  /** Unix seconds. */
  notAfter: number | bigint;
  holder: string;
}

/** Where the registration is valid: the chain and the CertificateRegistry's address. */
export interface CertificateDomainInput {
  chainId: number | bigint;
  verifyingContract: string;
}

/** The binding normalised to the values the contract sees. */
export interface CertificateMessage {
  fingerprint: string;
  notBefore: bigint;
  notAfter: bigint;
  holder: string;
}

export interface CertificateTypedData {
  domain: TypedDataDomain;
  types: Record<string, TypedDataField[]>;
  primaryType: typeof CERTIFICATE_PRIMARY_TYPE;
  message: CertificateMessage;
}

export function certificateDomain(input: CertificateDomainInput): TypedDataDomain {
  return {
    name: CERTIFICATE_DOMAIN_NAME,
    version: CERTIFICATE_DOMAIN_VERSION,
    chainId: BigInt(input.chainId),
    verifyingContract: checkedAddress(input.verifyingContract, "verifying contract"),
  };
}

export function certificateMessage(binding: CertificateBinding): CertificateMessage {
  return {
    fingerprint: toBytes32(binding.fingerprint),
    notBefore: uint48(binding.notBefore, "notBefore"),
    notAfter: uint48(binding.notAfter, "notAfter"),
    holder: checkedAddress(binding.holder, "holder"),
  };
}

/** The full EIP-712 typed data, ready for `eth_signTypedData_v4` or `signer.signTypedData`. */
export function certificateTypedData(
  binding: CertificateBinding,
  domain: CertificateDomainInput,
): CertificateTypedData {
  return {
    domain: certificateDomain(domain),
    types: CERTIFICATE_TYPES,
    primaryType: CERTIFICATE_PRIMARY_TYPE,
    message: certificateMessage(binding),
  };
}

/** The EIP-712 struct hash of the binding (`keccak256(abi.encode(CERTIFICATE_TYPEHASH, …))`). */
export function certificateStructHash(binding: CertificateBinding): string {
  return TypedDataEncoder.hashStruct(CERTIFICATE_PRIMARY_TYPE, CERTIFICATE_TYPES, certificateMessage(binding));
}

/** The digest the holder signs; equals the contract's `certificateDigest(...)`. */
export function certificateDigest(binding: CertificateBinding, domain: CertificateDomainInput): string {
  const data = certificateTypedData(binding, domain);
  return TypedDataEncoder.hash(data.domain, data.types, data.message);
}

/** The holder's EIP-712 signature over the binding. */
export async function signCertificateBinding(
  signer: Signer,
  binding: CertificateBinding,
  domain: CertificateDomainInput,
): Promise<string> {
  const data = certificateTypedData(binding, domain);
  return signer.signTypedData(data.domain, data.types, data.message);
}

/** The address an ECDSA signature over the binding recovers to (EOAs; contract wallets need ERC-1271). */
export function recoverCertificateSigner(
  binding: CertificateBinding,
  domain: CertificateDomainInput,
  signature: string,
): string {
  const data = certificateTypedData(binding, domain);
  return verifyTypedData(data.domain, data.types, data.message, signature);
}

function uint48(value: number | bigint, what: string): bigint {
  if (typeof value === "number" && !Number.isSafeInteger(value)) {
    throw new StatetrailError("INVALID_ARGUMENT", `${what} must be an integer number of seconds, got ${value}`);
  }
  const big = BigInt(value);
  if (big < 0n || big > UINT48_MAX) {
    throw new StatetrailError("INVALID_ARGUMENT", `${what} does not fit uint48: ${value}`);
  }
  return big;
}

function checkedAddress(value: string, what: string): string {
  if (!isAddress(value)) throw new StatetrailError("INVALID_ARGUMENT", `${what} is not an address: ${value}`);
  return getAddress(value);
}
