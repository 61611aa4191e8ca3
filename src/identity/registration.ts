import fs from "node:fs";
import { isError, type Provider, type Signer } from "ethers";
import { StatetrailError, type ErrorCode } from "../errors";
import { fromBytes32, parseHexHash, toBytes32, type HexHash } from "../chain/hash";
import { certificateMessage, signCertificateBinding, type CertificateDomainInput } from "../chain/certificate";
import { writeAtomic, type Home } from "../store/home";
import type { CertificateRegistry } from "../../typechain-types";
import { CLOCK_SKEW_SECONDS, generateCertificate, importCertificate, type CertificateMaterial } from "./certificate";
import { writeSecret } from "./keystore";
import { readIdentity, toHome, writeIdentity, type IdentityRecord } from "./record";

/** What is registered: a fingerprint and its validity window (unix seconds). */
export interface RegistrationRequest {
  fingerprint: HexHash;
  notBefore: number;
  notAfter: number;
}

/** A registration signed by its holder, which anyone may relay. */
export interface SignedRegistration extends RegistrationRequest {
  holder: string;
  signature: string;
  chainId: bigint;
  registry: string;
}

/** A registration as mined. */
export interface CertificateRegistration extends SignedRegistration {
  relayer: string;
  transactionHash: string;
  blockNumber: number;
}

export interface RevocationResult {
  fingerprint: HexHash;
  holder: string;
  revokedAt: number;
  transactionHash: string;
  blockNumber: number;
}

/** What the chain says about a fingerprint and a presumed holder at time `at`. */
export interface CertificateStatus {
  fingerprint: HexHash;
  /** The fingerprint is registered (to anyone). */
  registered: boolean;
  /** The registered holder (null when not registered). */
  holder: string | null;
  /** The registered holder is the presumed holder. */
  holderMatches: boolean;
  notBefore: number | null;
  notAfter: number | null;
  /** Unix seconds of the revocation, null when not revoked. */
  revokedAt: number | null;
  /** The time the status was evaluated at (unix seconds; default: the latest block's time). */
  at: number;
  /** `at` lies in [notBefore, notAfter]. */
  inWindow: boolean;
  /** The registry's own `isValid(fingerprint, holder, at)`. */
  valid: boolean;
}

export interface SendOptions {
  /** Confirmations to wait for (default 1). */
  confirmations?: number;
}

/** The holder signs the EIP-712 registration for `registry`. */
export async function signRegistration(
  registry: CertificateRegistry,
  holder: Signer,
  request: RegistrationRequest,
): Promise<SignedRegistration> {
  const domain = await registryDomain(registry, holder);
  const holderAddress = await holder.getAddress();
  const binding = { ...request, fingerprint: parseHexHash(request.fingerprint, "fingerprint"), holder: holderAddress };
  certificateMessage(binding); // validates the ranges before anything is signed
  const signature = await signCertificateBinding(holder, binding, domain);
  return {
    ...binding,
    signature,
    chainId: BigInt(domain.chainId),
    registry: domain.verifyingContract,
  };
}

/** Sends a signed registration from `sender` (the holder or any relayer) and waits for it. */
export async function submitRegistration(
  registry: CertificateRegistry,
  sender: Signer,
  signed: SignedRegistration,
  options: SendOptions = {},
): Promise<CertificateRegistration> {
  const registryAddress = await registry.getAddress();
  if (registryAddress.toLowerCase() !== signed.registry.toLowerCase()) {
    throw new StatetrailError("INVALID_ARGUMENT", `the registration was signed for registry ${signed.registry}`);
  }
  const message = certificateMessage(signed);
  const relayer = await sender.getAddress();
  try {
    const tx = await registry
      .connect(sender)
      .registerCertificate(message.fingerprint, message.notBefore, message.notAfter, message.holder, signed.signature);
    const receipt = await tx.wait(options.confirmations ?? 1);
    if (receipt === null || receipt.status !== 1) {
      throw new StatetrailError("TX_FAILED", `registerCertificate was not mined successfully (${tx.hash})`);
    }
    return { ...signed, relayer, transactionHash: receipt.hash, blockNumber: receipt.blockNumber };
  } catch (error) {
    throw await registryError(registry, error, "register the certificate", relayer);
  }
}

/**
 * Binds the certificate to the holder on-chain: the holder signs, `relayer` (default: the holder) sends.
 * Already registered → CERT_INVALID (CERT_REVOKED when it was revoked); expired → CERT_EXPIRED.
 */
export async function registerCertificate(
  registry: CertificateRegistry,
  holder: Signer,
  request: RegistrationRequest,
  options: SendOptions & { relayer?: Signer } = {},
): Promise<CertificateRegistration> {
  const signed = await signRegistration(registry, holder, request);
  return submitRegistration(registry, options.relayer ?? holder, signed, options);
}

/** The holder revokes a certificate. A revoked certificate stays revoked. */
export async function revokeCertificate(
  registry: CertificateRegistry,
  holder: Signer,
  fingerprint: HexHash,
  options: SendOptions = {},
): Promise<RevocationResult> {
  const address = await holder.getAddress();
  const bytes32 = toBytes32(fingerprint);
  try {
    const tx = await registry.connect(holder).revokeCertificate(bytes32);
    const receipt = await tx.wait(options.confirmations ?? 1);
    if (receipt === null || receipt.status !== 1) {
      throw new StatetrailError("TX_FAILED", `revokeCertificate was not mined successfully (${tx.hash})`);
    }
    const [, revokedAt] = await registry.certificateOf(bytes32, address, { blockTag: receipt.blockNumber });
    return {
      fingerprint: fromBytes32(bytes32),
      holder: address,
      revokedAt: Number(revokedAt),
      transactionHash: receipt.hash,
      blockNumber: receipt.blockNumber,
    };
  } catch (error) {
    throw await registryError(registry, error, "revoke the certificate", address);
  }
}

/** Reads the registration of `fingerprint` and judges it for `holder` at `at` (default: the latest block). */
export async function certificateStatus(
  registry: CertificateRegistry,
  fingerprint: HexHash,
  holder: string,
  at?: number | bigint,
): Promise<CertificateStatus> {
  const bytes32 = toBytes32(fingerprint);
  const time = at === undefined ? await latestTimestamp(registryProvider(registry)) : Number(at);
  try {
    const [[certificate, revokedAt], valid] = await Promise.all([
      registry.certificateOf(bytes32, holder),
      registry.isValid(bytes32, holder, time),
    ]);
    const registered = certificate.holder !== "0x0000000000000000000000000000000000000000";
    const notBefore = registered ? Number(certificate.notBefore) : null;
    const notAfter = registered ? Number(certificate.notAfter) : null;
    return {
      fingerprint: fromBytes32(bytes32),
      registered,
      holder: registered ? certificate.holder : null,
      holderMatches: registered && certificate.holder.toLowerCase() === holder.toLowerCase(),
      notBefore,
      notAfter,
      revokedAt: revokedAt === 0n ? null : Number(revokedAt),
      at: time,
      inWindow: notBefore !== null && notAfter !== null && notBefore <= time && time <= notAfter,
      valid,
    };
  } catch (error) {
    throw await registryError(registry, error, "read the certificate registry");
  }
}

/** Throws the coded reason a status is not valid: CERT_NOT_REGISTERED, CERT_REVOKED or CERT_EXPIRED. */
export function assertCertificateValid(status: CertificateStatus, holder?: string): void {
  if (status.valid) return;
  const who = holder ?? "the issuer";
  if (!status.registered) {
    throw new StatetrailError("CERT_NOT_REGISTERED", `certificate ${status.fingerprint} is not registered`, {
      hint: "register a new certificate with: statetrail identity rotate (or, for a new identity, statetrail identity init --force)",
    });
  }
  if (!status.holderMatches) {
    throw new StatetrailError(
      "CERT_NOT_REGISTERED",
      `certificate ${status.fingerprint} is registered for ${status.holder}, not for ${who}`,
    );
  }
  if (status.revokedAt !== null) {
    throw new StatetrailError(
      "CERT_REVOKED",
      `certificate ${status.fingerprint} was revoked at ${iso(status.revokedAt)}`,
      { hint: "rotate to a new certificate: statetrail identity rotate" },
    );
  }
  throw new StatetrailError(
    "CERT_EXPIRED",
    `certificate ${status.fingerprint} is valid from ${iso(status.notBefore!)} to ${iso(status.notAfter!)}, ` +
      `not at ${iso(status.at)}`,
    { hint: "rotate to a new certificate: statetrail identity rotate" },
  );
}

export interface RotateOptions extends SendOptions {
  home: Home | string;
  registry: CertificateRegistry;
  /** The identity's key (must be the address in identity.json), connected to a provider. */
  signer: Signer;
  /** Sends the registration instead of the holder. */
  relayer?: Signer;
  /** The operator's new certificate and key; otherwise a new one is generated for the identity's host. */
  certPem?: string;
  keyPem?: string;
  validityDays?: number;
  /** Also revoke the previous certificate once the new one is registered and in place. */
  revokePrevious?: boolean;
  now?: Date;
}

export interface RotateResult {
  record: IdentityRecord;
  certificate: CertificateMaterial;
  registration: CertificateRegistration;
  previous: HexHash;
  revocation: RevocationResult | null;
}

/**
 * Replaces the identity's certificate: registers a new one, writes it to tls/, keeps the old one in
 * `previous_certificates` (and its PEM in tls/previous/). The old one stays registered and valid until
 * revoked; `revokePrevious` revokes it at the end.
 */
export async function rotateCertificate(options: RotateOptions): Promise<RotateResult> {
  const { registry, signer } = options;
  const home = toHome(options.home);
  const record = readIdentity(home);
  const address = await signer.getAddress();
  if (address.toLowerCase() !== record.address.toLowerCase()) {
    throw new StatetrailError("INVALID_ARGUMENT", `the key ${address} is not the identity's ${record.address}`);
  }
  const certificate = newCertificate(record.host, options, await referenceTime(registryProvider(registry)));
  if (certificate.fingerprint === record.certificate_fingerprint) {
    throw new StatetrailError("INVALID_ARGUMENT", "the new certificate is the current one", {
      hint: "give a different certificate, or omit --cert/--key to generate one",
    });
  }
  const registration = await registerCertificate(registry, signer, certificate, options);

  const previous = record.certificate_fingerprint;
  const archived = `tls/previous/${previous}.pem`;
  const currentCert = home.path(record.certificate);
  if (fs.existsSync(currentCert)) writeAtomic(home.path(archived), fs.readFileSync(currentCert));
  writeAtomic(home.path("tls", "cert.pem"), Buffer.from(certificate.certPem));
  writeSecret(home.path("tls", "key.pem"), certificate.keyPem);

  let updated: IdentityRecord = {
    ...record,
    certificate: "tls/cert.pem",
    certificate_key: "tls/key.pem",
    certificate_fingerprint: certificate.fingerprint,
    certificate_not_before: certificate.notBefore,
    certificate_not_after: certificate.notAfter,
    certificate_registration: registrationRecord(registration),
    previous_certificates: [
      ...record.previous_certificates,
      {
        fingerprint: previous,
        revoked: false,
        not_before: record.certificate_not_before,
        not_after: record.certificate_not_after,
        certificate: fs.existsSync(home.path(archived)) ? archived : undefined,
        replaced_at: Math.floor(Date.now() / 1000),
      },
    ],
    updated_at: new Date().toISOString(),
  };
  writeIdentity(home, updated);

  let revocation: RevocationResult | null = null;
  if (options.revokePrevious) {
    revocation = await revokeCertificate(registry, signer, previous, options);
    updated = markRevoked(updated, previous, revocation.revokedAt);
    writeIdentity(home, updated);
  }
  return { record: updated, certificate, registration, previous, revocation };
}

/** Revokes one of the identity's certificates (current or previous) and records it in identity.json. */
export async function revokeIdentityCertificate(options: {
  home: Home | string;
  registry: CertificateRegistry;
  signer: Signer;
  fingerprint: HexHash;
  confirmations?: number;
}): Promise<{ record: IdentityRecord; revocation: RevocationResult }> {
  const fingerprint = parseHexHash(options.fingerprint, "fingerprint");
  const revocation = await revokeCertificate(options.registry, options.signer, fingerprint, options);
  const home = toHome(options.home);
  const record = markRevoked(readIdentity(home), fingerprint, revocation.revokedAt);
  writeIdentity(home, record);
  return { record, revocation };
}

export function registrationRecord(registration: CertificateRegistration) {
  return {
    transaction_hash: registration.transactionHash,
    block_number: registration.blockNumber,
    relayer: registration.relayer,
    signature: registration.signature,
  };
}

function markRevoked(record: IdentityRecord, fingerprint: HexHash, revokedAt: number): IdentityRecord {
  const now = new Date().toISOString();
  if (record.certificate_fingerprint === fingerprint) {
    return { ...record, certificate_revoked_at: revokedAt, updated_at: now };
  }
  return {
    ...record,
    previous_certificates: record.previous_certificates.map((entry) =>
      entry.fingerprint === fingerprint ? { ...entry, revoked: true, revoked_at: revokedAt } : entry,
    ),
    updated_at: now,
  };
}

/**
 * "Now" for a new certificate's window: the wall clock, or the chain's clock when it runs ahead (a test chain
 * whose time was moved), so that the chain does not see a fresh certificate as expired.
 */
export async function referenceTime(provider: Provider): Promise<Date> {
  const chain = await latestTimestamp(provider);
  return new Date(Math.max(Date.now(), chain * 1000));
}

function newCertificate(host: string, options: RotateOptions, reference: Date): CertificateMaterial {
  if ((options.certPem === undefined) !== (options.keyPem === undefined)) {
    throw new StatetrailError("INVALID_ARGUMENT", "give both a certificate and its key, or neither");
  }
  if (options.certPem !== undefined && options.keyPem !== undefined) {
    return importCertificate(options.certPem, options.keyPem, { now: options.now });
  }
  return generateCertificate({
    host,
    validityDays: options.validityDays,
    notBefore: new Date(reference.getTime() - CLOCK_SKEW_SECONDS * 1000),
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Chain plumbing
// ---------------------------------------------------------------------------------------------------------------

async function registryDomain(registry: CertificateRegistry, signer: Signer): Promise<CertificateDomainInput> {
  const provider = registry.runner?.provider ?? signer.provider;
  if (!provider) throw new StatetrailError("INVALID_ARGUMENT", "the certificate registry has no provider");
  const { chainId } = await provider.getNetwork();
  return { chainId, verifyingContract: await registry.getAddress() };
}

function registryProvider(registry: CertificateRegistry): Provider {
  const provider = registry.runner?.provider;
  if (!provider) throw new StatetrailError("INVALID_ARGUMENT", "the certificate registry has no provider");
  return provider;
}

async function latestTimestamp(provider: Provider): Promise<number> {
  const block = await provider.getBlock("latest");
  if (!block) throw new StatetrailError("RPC_UNREACHABLE", "the latest block could not be read");
  return block.timestamp;
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

interface DecodedRevert {
  name: string;
  args: readonly unknown[];
}

/** The registry's custom error in `error`, if the revert data carries one. */
export function decodeRegistryRevert(registry: CertificateRegistry, error: unknown): DecodedRevert | null {
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current !== null && typeof current === "object" && !seen.has(current)) {
    seen.add(current);
    const candidate = current as { revert?: DecodedRevert | null; data?: unknown; error?: unknown; cause?: unknown };
    if (candidate.revert && typeof candidate.revert.name === "string") return candidate.revert;
    if (typeof candidate.data === "string" && candidate.data.length >= 10) {
      try {
        const parsed = registry.interface.parseError(candidate.data);
        if (parsed) return { name: parsed.name, args: [...parsed.args] };
      } catch {
        // not one of ours
      }
    }
    current = candidate.error ?? candidate.cause;
  }
  return null;
}

function isInsufficientFunds(error: unknown): boolean {
  if (isError(error, "INSUFFICIENT_FUNDS")) return true;
  const text = collectMessages(error);
  return /insufficient funds|doesn't have enough funds|sender doesn't have enough/i.test(text);
}

function collectMessages(error: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  let current: unknown = error;
  while (current !== null && typeof current === "object" && !seen.has(current) && parts.length < 8) {
    seen.add(current);
    const e = current as { message?: unknown; shortMessage?: unknown; error?: unknown; cause?: unknown };
    if (typeof e.message === "string") parts.push(e.message);
    if (typeof e.shortMessage === "string") parts.push(e.shortMessage);
    current = e.error ?? e.cause;
  }
  return parts.join(" | ");
}

/** Turns a failed registry call into a StatetrailError with a code and a clear message. */
export async function registryError(
  registry: CertificateRegistry,
  error: unknown,
  action: string,
  account?: string,
): Promise<StatetrailError> {
  if (error instanceof StatetrailError) return error;
  if (isInsufficientFunds(error)) {
    return new StatetrailError("INSUFFICIENT_FUNDS", `${account ?? "the account"} cannot pay to ${action}`, {
      cause: error,
      hint: "fund the account with ETH for gas, or let another account relay the registration",
    });
  }
  const revert = decodeRegistryRevert(registry, error);
  if (revert) {
    const [code, message, hint] = await describeRevert(registry, revert);
    return new StatetrailError(code, `could not ${action}: ${message}`, { cause: error, hint });
  }
  if (isError(error, "NETWORK_ERROR") || isError(error, "TIMEOUT") || /ECONNREFUSED/.test(collectMessages(error))) {
    return new StatetrailError("RPC_UNREACHABLE", `could not ${action}: the RPC endpoint did not answer`, {
      cause: error,
    });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new StatetrailError("TX_FAILED", `could not ${action}: ${message}`, { cause: error });
}

async function describeRevert(
  registry: CertificateRegistry,
  revert: DecodedRevert,
): Promise<[ErrorCode, string, string | undefined]> {
  const arg = (i: number) => String(revert.args[i]);
  const fp = (i: number) => fromBytes32(arg(i));
  switch (revert.name) {
    case "CertificateAlreadyRegistered": {
      const [, revokedAt] = await registry.certificateOf(arg(0), arg(1)).catch(() => [null, 0n] as const);
      if (revokedAt !== 0n) {
        return [
          "CERT_REVOKED",
          `certificate ${fp(0)} was registered for ${arg(1)} and revoked at ${iso(Number(revokedAt))}; ` +
            "a holder registers a fingerprint only once",
          "use a new certificate: statetrail identity rotate",
        ];
      }
      return [
        "CERT_INVALID",
        `certificate ${fp(0)} is already registered for ${arg(1)}; a holder registers a fingerprint only once`,
        "keep using the existing registration, or use a new certificate: statetrail identity rotate",
      ];
    }
    case "CertificateExpired":
      return ["CERT_EXPIRED", `certificate ${fp(0)} expired at ${iso(Number(arg(1)))}`, "use a current certificate"];
    case "InvalidSignature":
      return ["CERT_INVALID", `the registration signature is not ${arg(0)}'s`, undefined];
    case "InvalidFingerprint":
      return ["INVALID_ARGUMENT", "the fingerprint is zero", undefined];
    case "InvalidHolder":
      return ["INVALID_ARGUMENT", "the holder is the zero address", undefined];
    case "InvalidValidityWindow":
      return ["INVALID_ARGUMENT", `the validity window [${arg(0)}, ${arg(1)}] ends before it starts`, undefined];
    case "CertificateNotFound":
      return ["CERT_NOT_REGISTERED", `certificate ${fp(0)} is not registered for ${arg(1)}`, undefined];
    case "CertificateAlreadyRevoked":
      return ["CERT_REVOKED", `certificate ${fp(0)} is already revoked`, undefined];
    default:
      return ["TX_FAILED", `the registry reverted with ${revert.name}(${revert.args.join(", ")})`, undefined];
  }
}
