import fs from "node:fs";
import net from "node:net";
import { Wallet, ZeroAddress, getAddress, type Provider, type Signer } from "ethers";
import { StatetrailError } from "../errors";
import { assertKeyAllowed } from "../chain/keys";
import { Home, writeAtomic } from "../store/home";
import { CertificateRegistry__factory, type CertificateRegistry } from "../../typechain-types";
import {
  CLOCK_SKEW_SECONDS,
  certificateInfo,
  generateCertificate,
  importCertificate,
  type CertificateMaterial,
} from "./certificate";
import {
  LOCAL_TLD,
  canRegisterLocally,
  claimLocalName,
  ensureResolver,
  nameOwner,
  nameOwnership,
  normalizeEnsName,
  notOwnerError,
  publishRecords,
  readRecords,
  recordMismatches,
  setPrimary,
  type EnsAddresses,
  type EnsRecords,
} from "./ens-records";
import { keystoreFile, loadKeystore, openOrCreateKeystore, writeSecret, type PasswordOptions } from "./keystore";
import { identityFile, readIdentity, toHome, writeIdentity, type IdentityRecord } from "./record";
import {
  certificateStatus,
  referenceTime,
  registerCertificate,
  registrationRecord,
  type CertificateRegistration,
  type CertificateStatus,
} from "./registration";

export const DEFAULT_HOST = "localhost";
export const DEFAULT_PORT = 8443;
/** What a new local key is topped up to when a funder is given. */
export const DEFAULT_FUNDING = 10n ** 18n;

export interface InitIdentityOptions extends PasswordOptions {
  /** The data directory (or its path). */
  home: Home | string;
  /** Connected to the chain; for ENS writes it must speak JSON-RPC (`send`), e.g. from chain/provider connect(). */
  provider: Provider;
  /** Network name recorded in identity.json (`localhost`, `sepolia`, …). */
  network: string;
  /** Refuse the provider unless it serves this chain (WRONG_CHAIN). */
  chainId?: number;
  /** The registries; only `certificate` is needed here, the others are recorded. */
  registries: { certificate: string; model?: string; instance?: string };
  /** The network's ENS; null or absent: no ENS name (ens_name null). */
  ens?: EnsAddresses | null;
  /** Host name of the HTTPS server (default localhost). */
  host?: string;
  /** Port of the HTTPS server (default 8443). */
  port?: number;
  /** On a local ENS: claim `<ensLabel>.test` (default `issuer-<first 8 hex of the address>`). */
  ensLabel?: string;
  /** Elsewhere: an existing name; its records are written when the key owns it, else only checked. */
  ensName?: string;
  /** The operator's certificate and key (PEM). Otherwise a self-signed one is generated for `host`. */
  certPem?: string;
  keyPem?: string;
  /** Validity of a generated certificate in days (default 365). */
  validityDays?: number;
  /** Import this private key into the new keystore instead of generating one. */
  privateKey?: string;
  /** Sends the certificate registration instead of the identity's key (anyone may relay). */
  relayer?: Signer;
  /** Tops the identity's key up to `fundAmount` first (local chains: a development account). */
  funder?: Signer;
  fundAmount?: bigint;
  confirmations?: number;
  /** Replace an existing identity.json (the keystore is kept, never overwritten). */
  force?: boolean;
  /** Progress lines (stderr in the CLI). Warnings are not logged but returned in the result. */
  log?: (line: string) => void;
}

export interface InitIdentityResult {
  record: IdentityRecord;
  address: string;
  /** The identity's key, connected to the provider. */
  signer: Wallet;
  certificate: CertificateMaterial;
  registration: CertificateRegistration;
  /** What ENS said when read back (null without ENS). */
  ens: EnsRecords | null;
  warnings: string[];
}

/**
 * Flow step 2: key (encrypted keystore), TLS certificate, on-chain certificate registration signed by the key,
 * ENS name with `addr`, `url` and the primary name, all read back, then identity.json. Nothing is written to
 * identity.json until every step succeeded.
 */
export async function initIdentity(options: InitIdentityOptions): Promise<InitIdentityResult> {
  const home = toHome(options.home).ensure();
  const log = options.log ?? (() => undefined);
  // Returned, not logged: the caller decides how to show them.
  const warnings: string[] = [];
  const warn = (line: string) => void warnings.push(line);
  if (fs.existsSync(identityFile(home)) && !options.force) {
    throw new StatetrailError("INVALID_ARGUMENT", `an identity already exists in ${home.root}`, {
      hint: "show it with `statetrail identity show`, change its certificate with `statetrail identity rotate`, or pass --force",
    });
  }
  const previous = fs.existsSync(identityFile(home)) ? safeRead(home) : null;
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? DEFAULT_PORT;
  const url = originOf(host, port);
  const { provider } = options;
  const chainId = Number((await provider.getNetwork()).chainId);
  if (options.chainId !== undefined && options.chainId !== chainId) {
    throw new StatetrailError("WRONG_CHAIN", `the provider serves chain ${chainId}, expected ${options.chainId}`);
  }

  // 2.1 the key (a development key is refused off the local chain before it is stored)
  if (options.privateKey !== undefined) assertKeyAllowed(new Wallet(normalizeKey(options.privateKey)).address, chainId);
  const keystore = await openOrCreateKeystore(home, options);
  const signer = keystore.wallet.connect(provider);
  const address = signer.address;
  assertKeyAllowed(address, chainId);
  log(`${keystore.imported ? "imported" : "using"} key ${address} (${keystoreFile(home)})`);
  if (options.funder) await fund(options.funder, address, options.fundAmount ?? DEFAULT_FUNDING, log);

  // 2.2 the certificate
  const certificate = await certificateFor(options, host, provider);
  log(`certificate ${certificate.fingerprint} for ${host}, valid until ${iso(certificate.notAfter)}`);

  // The ENS name is settled before anything is paid for: a name someone else holds fails here.
  const ens = options.ens ?? null;
  const plannedName = await planName(signer, ens, options);

  // 2.3 the registration, signed by the key (relayed when a relayer is given), then 2.2 ENS. The TLS files stay
  // under pending names until both succeeded, so a failure leaves an existing identity's files untouched.
  const pendingCert = home.path("tls", "cert.pem.pending");
  const pendingKey = home.path("tls", "key.pem.pending");
  writeAtomic(pendingCert, Buffer.from(certificate.certPem));
  writeSecret(pendingKey, certificate.keyPem);
  const registry = CertificateRegistry__factory.connect(getAddress(options.registries.certificate), provider);
  let registration: CertificateRegistration;
  let ensName: string | null = null;
  let records: EnsRecords | null = null;
  try {
    registration = await registerCertificate(registry, signer, certificate, {
      relayer: options.relayer,
      confirmations: options.confirmations,
    });
    log(`registered the certificate in ${registration.transactionHash} (block ${registration.blockNumber})`);
    if (ens === null || plannedName === null) {
      warn(`no ENS on network "${options.network}": the identity has no name`);
    } else {
      ensName =
        plannedName.label === null ? plannedName.name : await claimName(signer, ens, plannedName.label, options);
      log(`${plannedName.label === null ? "using" : "claimed"} ${ensName}`);
      records = await linkName(signer, ens, ensName, url, options, log, warn);
    }
  } catch (error) {
    fs.rmSync(pendingCert, { force: true });
    fs.rmSync(pendingKey, { force: true });
    throw error;
  }
  if (previous !== null) archiveCertificate(home, previous);
  fs.renameSync(pendingCert, home.path("tls", "cert.pem"));
  fs.renameSync(pendingKey, home.path("tls", "key.pem"));

  const now = new Date().toISOString();
  const record: IdentityRecord = {
    statetrail_identity: 1,
    network: options.network,
    chain_id: chainId,
    address,
    ens_name: ensName,
    url,
    host,
    port,
    certificate_fingerprint: certificate.fingerprint,
    certificate_not_before: certificate.notBefore,
    certificate_not_after: certificate.notAfter,
    keystore: "keystore.json",
    certificate: "tls/cert.pem",
    certificate_key: "tls/key.pem",
    previous_certificates: previousCertificates(previous),
    certificate_registration: registrationRecord(registration),
    registries: {
      certificate: getAddress(options.registries.certificate),
      ...(options.registries.model ? { model: getAddress(options.registries.model) } : {}),
      ...(options.registries.instance ? { instance: getAddress(options.registries.instance) } : {}),
    },
    ens_registry: ens?.registry ?? null,
    created_at: now,
    updated_at: now,
  };
  writeIdentity(home, record);
  log(`wrote ${identityFile(home)}`);
  return { record: readIdentity(home), address, signer, certificate, registration, ens: records, warnings };
}

/** The live view of an identity: the record, and what the chain and ENS say about it now. */
export interface IdentityView {
  record: IdentityRecord;
  home: string;
  chain: { chainId: number; matches: boolean };
  certificate: {
    fingerprint: string;
    /** The fingerprint of tls/cert.pem as it is on disk (null: missing or unreadable). */
    fileFingerprint: string | null;
    fileMatches: boolean;
    /** On-chain status now (null: no certificate registry known). */
    status: CertificateStatus | null;
  };
  previousCertificates: Array<{ fingerprint: string; revoked: boolean; status: CertificateStatus | null }>;
  ens: (EnsRecords & { consistent: boolean; problems: string[] }) | null;
  /** Everything that is wrong, in words (empty: the identity is sound). */
  problems: string[];
}

export interface ShowIdentityOptions {
  /** The certificate registry (default: the one in identity.json). */
  certificateRegistry?: string;
  /** The ENS registry (default: the one in identity.json). */
  ensRegistry?: string | null;
  /** Judge the certificate at this time (default: the latest block). */
  at?: number;
}

/** Reads identity.json and checks it against the chain and ENS as they are now. */
export async function showIdentity(
  home: Home | string,
  provider: Provider,
  options: ShowIdentityOptions = {},
): Promise<IdentityView> {
  const dir = toHome(home);
  const record = readIdentity(dir);
  const problems: string[] = [];
  const chainId = Number((await provider.getNetwork()).chainId);
  const chainMatches = chainId === record.chain_id;
  if (!chainMatches) problems.push(`the provider serves chain ${chainId}, the identity is on chain ${record.chain_id}`);

  let fileFingerprint: string | null = null;
  try {
    fileFingerprint = certificateInfo(fs.readFileSync(dir.path(record.certificate), "utf8")).fingerprint;
  } catch {
    problems.push(`${record.certificate} is missing or unreadable`);
  }
  const fileMatches = fileFingerprint === record.certificate_fingerprint;
  if (fileFingerprint !== null && !fileMatches) {
    problems.push(
      `${record.certificate} has fingerprint ${fileFingerprint}, identity.json says ${record.certificate_fingerprint}`,
    );
  }

  const registryAddress = options.certificateRegistry ?? record.registries?.certificate;
  let registry: CertificateRegistry | null = null;
  let status: CertificateStatus | null = null;
  const previousCertificates: IdentityView["previousCertificates"] = [];
  if (!registryAddress) {
    problems.push("no certificate registry is known: the certificate's on-chain status was not checked");
  } else if (chainMatches) {
    registry = CertificateRegistry__factory.connect(registryAddress, provider);
    status = await certificateStatus(registry, record.certificate_fingerprint, record.address, options.at);
    if (!status.valid) problems.push(describeInvalid(status));
    for (const previous of record.previous_certificates) {
      const previousStatus = await certificateStatus(registry, previous.fingerprint, record.address, status.at);
      previousCertificates.push({
        fingerprint: previous.fingerprint,
        revoked: previous.revoked,
        status: previousStatus,
      });
    }
  }

  let ens: IdentityView["ens"] = null;
  const ensRegistry = options.ensRegistry === undefined ? (record.ens_registry ?? null) : options.ensRegistry;
  if (record.ens_name !== null) {
    if (!ensRegistry) {
      problems.push(`no ENS registry is known: ${record.ens_name} was not checked`);
    } else if (chainMatches) {
      const records = await readRecords(provider, ensRegistry, record.ens_name, record.address);
      const ensProblems = recordMismatches(records, { address: record.address, url: record.url });
      problems.push(...ensProblems);
      ens = { ...records, consistent: ensProblems.length === 0, problems: ensProblems };
    }
  }

  return {
    record,
    home: dir.root,
    chain: { chainId, matches: chainMatches },
    certificate: { fingerprint: record.certificate_fingerprint, fileFingerprint, fileMatches, status },
    previousCertificates,
    ens,
    problems,
  };
}

/** Unlocks the identity's key and connects it; refuses a keystore whose address is not the identity's. */
export async function loadIdentitySigner(
  home: Home | string,
  provider: Provider,
  options: PasswordOptions = {},
): Promise<Wallet> {
  const dir = toHome(home);
  const record = readIdentity(dir);
  const wallet = (await loadKeystore(dir, options)).connect(provider);
  if (wallet.address !== getAddress(record.address)) {
    throw new StatetrailError(
      "IDENTITY_MISSING",
      `the keystore holds ${wallet.address}, the identity is ${record.address}`,
    );
  }
  assertKeyAllowed(wallet.address, Number((await provider.getNetwork()).chainId));
  return wallet;
}

/** The URL origin of the issuer's HTTPS server (`https://host:port`, default port left out). */
export function originOf(host: string, port: number): string {
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a TCP port: ${port}`);
  }
  const hostPart = net.isIPv6(host) ? `[${host}]` : host;
  try {
    return new URL(`https://${hostPart}:${port}`).origin;
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a host name: "${host}"`, { cause: error });
  }
}

// ---------------------------------------------------------------------------------------------------------------

async function certificateFor(
  options: InitIdentityOptions,
  host: string,
  provider: Provider,
): Promise<CertificateMaterial> {
  if ((options.certPem === undefined) !== (options.keyPem === undefined)) {
    throw new StatetrailError("INVALID_ARGUMENT", "give both a certificate and its key (--cert and --key), or neither");
  }
  if (options.certPem !== undefined && options.keyPem !== undefined) {
    return importCertificate(options.certPem, options.keyPem);
  }
  const reference = await referenceTime(provider);
  return generateCertificate({
    host,
    validityDays: options.validityDays,
    notBefore: new Date(reference.getTime() - CLOCK_SKEW_SECONDS * 1000),
  });
}

async function fund(funder: Signer, address: string, amount: bigint, log: (line: string) => void): Promise<void> {
  const provider = funder.provider;
  if (!provider) throw new StatetrailError("INVALID_ARGUMENT", "the funding account is not connected to a provider");
  const balance = await provider.getBalance(address);
  if (balance >= amount) return;
  log(`funding ${address} with ${amount - balance} wei from ${await funder.getAddress()}`);
  try {
    const tx = await funder.sendTransaction({ to: address, value: amount - balance });
    await tx.wait();
  } catch (error) {
    throw new StatetrailError("INSUFFICIENT_FUNDS", `could not fund ${address}: ${(error as Error).message}`, {
      cause: error,
    });
  }
}

/**
 * Which ENS name the identity gets: the user's existing name (`label` null), or `<label>.test` to claim on a
 * local ENS (checked to be free or already the key's). Null without ENS.
 */
async function planName(
  signer: Wallet,
  ens: EnsAddresses | null,
  options: InitIdentityOptions,
): Promise<{ name: string; label: string | null } | null> {
  if (ens === null) {
    if (options.ensName || options.ensLabel) {
      throw new StatetrailError("ENS_FAILED", `no ENS is known for network "${options.network}"`, {
        hint: "deploy the local ENS (statetrail node) or leave out the ENS name",
      });
    }
    return null;
  }
  if (options.ensName) {
    const name = normalizeEnsName(options.ensName);
    // An unregistered (or expired) name fails here, before the certificate is paid for.
    const ownership = await nameOwnership(signer.provider!, ens, name);
    if (ownership.owner === ZeroAddress) throw notOwnerError(ownership, signer.address)!;
    if (ownership.owner !== signer.address) {
      // Another account's name is only checked: when its addr or url already disagree, nothing will make them agree
      // from this key, so that fails here too (the primary name is this key's own record, set later).
      const url = originOf(options.host ?? DEFAULT_HOST, options.port ?? DEFAULT_PORT);
      const records = await readRecords(signer.provider!, ens.registry, name, signer.address);
      const problems = recordMismatches(records, { address: signer.address, url }).filter(
        (problem) => !problem.startsWith("the primary name of "),
      );
      if (problems.length > 0) throw notLinkedError(signer.address, name, ownership.owner, url, problems);
    }
    return { name, label: null };
  }
  if (!canRegisterLocally(ens, LOCAL_TLD)) {
    throw new StatetrailError(
      "ENS_FAILED",
      `names cannot be registered by statetrail on network "${options.network}"`,
      {
        hint: "register a name in the ENS app (https://app.ens.domains) and pass it with --ens-name",
      },
    );
  }
  const label = options.ensLabel ?? `issuer-${signer.address.slice(2, 10).toLowerCase()}`;
  if (label.includes(".") || label === "") {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `the ENS label "${label}" must be one non-empty label, without dots`,
      {
        hint: `the name becomes <label>.${LOCAL_TLD}`,
      },
    );
  }
  const name = normalizeEnsName(`${label}.${LOCAL_TLD}`);
  const owner = await nameOwner(signer.provider!, ens, name);
  if (owner !== ZeroAddress && owner !== signer.address) {
    throw new StatetrailError("ENS_FAILED", `${name} is already registered to ${owner}`, {
      hint: "choose another label (--ens-label)",
    });
  }
  return { name, label };
}

async function claimName(signer: Wallet, ens: EnsAddresses, label: string, options: InitIdentityOptions) {
  return claimLocalName(signer, ens, label, LOCAL_TLD, { confirmations: options.confirmations });
}

/** Writes addr/url/primary name when the key owns the name, then reads everything back (ENS_FAILED on mismatch). */
async function linkName(
  signer: Wallet,
  ens: EnsAddresses,
  name: string,
  url: string,
  options: InitIdentityOptions,
  log: (line: string) => void,
  warn: (line: string) => void,
): Promise<EnsRecords> {
  const provider = signer.provider!;
  const write = { confirmations: options.confirmations };
  // A wrapped name (the ENS app's default today) is held in the registry by the NameWrapper: its owner is the
  // NameWrapper's ownerOf(node), and that is who may write its records.
  const ownership = await nameOwnership(provider, ens, name);
  const owner = ownership.owner;
  const wrapped = ownership.wrapper === null ? "" : ` (wrapped: the NameWrapper ${ownership.wrapper} holds it)`;
  if (owner === ZeroAddress) throw notOwnerError(ownership, signer.address)!;
  if (owner === signer.address) {
    await ensureResolver(signer, ens, name, write);
    await publishRecords(signer, ens, name, url, write);
    log(`set addr, url and the primary name of ${name}${wrapped}`);
  } else {
    warn(`${name} is owned by ${owner}${wrapped}, not by ${signer.address}: its records were checked, not written`);
    // The primary name is the address's own record: set it when the name already points here.
    const before = await readRecords(provider, ens.registry, name, signer.address);
    if (before.address === signer.address && before.reverseName !== name && ens.reverseRegistrar) {
      await setPrimary(signer, ens, name, write);
      log(`set the primary name of ${signer.address} to ${name}`);
    }
  }
  const records = await readRecords(provider, ens.registry, name, signer.address);
  const problems = recordMismatches(records, { address: signer.address, url });
  if (problems.length > 0) {
    if (owner !== signer.address) throw notLinkedError(signer.address, name, owner, url, problems);
    throw new StatetrailError("ENS_FAILED", `ENS does not link ${signer.address} to ${name}: ${problems.join("; ")}`, {
      hint: "the records did not read back as written; check the ENS contracts of this network",
    });
  }
  return records;
}

/** A name another account owns does not point at this key: what is wrong and what its owner must set. */
function notLinkedError(me: string, name: string, owner: string, url: string, problems: string[]): StatetrailError {
  return new StatetrailError("ENS_FAILED", `ENS does not link ${me} to ${name}: ${problems.join("; ")}`, {
    hint:
      `${name} is owned by ${owner}, not by this key: from the account that owns ${name} (${owner}), set addr to ${me} ` +
      `and the url text record to ${url}, and set ${name} as the primary name of ${me}; or use the owner's key`,
  });
}

function normalizeKey(key: string): string {
  const trimmed = key.trim();
  const hex = trimmed.startsWith("0x") ? trimmed : `0x${trimmed}`;
  if (!/^0x[0-9a-fA-F]{64}$/.test(hex))
    throw new StatetrailError("INVALID_ARGUMENT", "the private key must be 32 bytes of hex");
  return hex;
}

function safeRead(home: Home): IdentityRecord | null {
  try {
    return readIdentity(home);
  } catch {
    return null;
  }
}

/** With --force over an existing identity, its certificates become previous ones (they stay registered). */
function previousCertificates(previous: IdentityRecord | null): IdentityRecord["previous_certificates"] {
  if (previous === null) return [];
  return [
    ...previous.previous_certificates,
    {
      fingerprint: previous.certificate_fingerprint,
      revoked: previous.certificate_revoked_at !== undefined,
      ...(previous.certificate_revoked_at !== undefined ? { revoked_at: previous.certificate_revoked_at } : {}),
      not_before: previous.certificate_not_before,
      not_after: previous.certificate_not_after,
      certificate: `tls/previous/${previous.certificate_fingerprint}.pem`,
      replaced_at: Math.floor(Date.now() / 1000),
    },
  ];
}

/** Keeps the PEM of an identity's current certificate as tls/previous/<fingerprint>.pem. */
function archiveCertificate(home: Home, record: IdentityRecord): void {
  const current = home.path(record.certificate);
  if (fs.existsSync(current)) {
    writeAtomic(home.path("tls", "previous", `${record.certificate_fingerprint}.pem`), fs.readFileSync(current));
  }
}

function describeInvalid(status: CertificateStatus): string {
  if (!status.registered) return `certificate ${status.fingerprint} is not registered`;
  if (!status.holderMatches) return `certificate ${status.fingerprint} is registered for ${status.holder}`;
  if (status.revokedAt !== null) return `certificate ${status.fingerprint} was revoked at ${iso(status.revokedAt)}`;
  return `certificate ${status.fingerprint} is outside its validity window at ${iso(status.at)}`;
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
