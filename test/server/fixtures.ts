import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import forge from "node-forge";
import { sha256Hex, type HexHash } from "../../src/chain/hash";
import { writeIdentity, type IdentityRecord } from "../../src/identity/record";
import { sealInput, sealState, type Disclosure, type SealedInput } from "../../src/protocol/disclosure";
import { sealedFields } from "../../src/protocol/pages";
import {
  PROTOCOL_VERSION,
  STATE_DATA_VERSION,
  type InstanceProtocol,
  type ProtocolEntry,
  type StateContent,
  type UnsignedProtocol,
} from "../../src/protocol/schema";
import { Home } from "../../src/store/home";

/** Shared fixtures of the server tests: a self-signed certificate and a data directory with one instance. */

export interface TestCertificate {
  certPem: string;
  keyPem: string;
  fingerprint: HexHash;
}

/** RSA 2048 self-signed certificate for localhost / 127.0.0.1 (about half a second: make one per file). */
export function makeCertificate(commonName = "localhost"): TestCertificate {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = "01" + forge.util.bytesToHex(forge.random.getBytesSync(8));
  cert.validity.notBefore = new Date(Date.now() - 24 * 3600 * 1000);
  cert.validity.notAfter = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const attrs = [{ name: "commonName", value: commonName }];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: false },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true },
    { name: "extKeyUsage", serverAuth: true },
    {
      name: "subjectAltName",
      altNames: [
        { type: 2, value: "localhost" },
        { type: 7, ip: "127.0.0.1" },
      ],
    },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  const der = Buffer.from(forge.asn1.toDer(forge.pki.certificateToAsn1(cert)).getBytes(), "binary");
  return {
    certPem: forge.pki.certificateToPem(cert),
    keyPem: forge.pki.privateKeyToPem(keys.privateKey),
    fingerprint: sha256Hex(der),
  };
}

export const ISSUER = "0x70997970C51812dc3A010C7d01b50e0dd17dc79C";
export const REGISTRIES = {
  model: "0x5FbDB2315678afecb367f032d93F642f64180aa3",
  certificate: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
  instance: "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
};
const ZERO_HASH = "0".repeat(64);

export interface TestHome {
  home: Home;
  modelBytes: Buffer;
  modelHash: HexHash;
  /** The execution input's raw bytes (home.inputFile: the tracker's copy, never served). */
  inputBytes: Buffer;
  /** The execution input sealed: its digest (the head's input_digest) and its input document (input.jsonl). */
  input: SealedInput;
  instanceHash: HexHash;
  /**
   * The states, seq 0..n-1 (more than the protocol holds, to append later): `bytes` the whole state document (what
   * the store holds and an open server serves), `dataBytes` its data line (SHA-256: `hash`), `disclosures` its lines
   * after the first (one per field, DATA_FIELDS order), `content` the clear fields.
   */
  states: { bytes: Buffer; hash: HexHash; dataBytes: Buffer; disclosures: Disclosure[]; content: StateContent }[];
  /**
   * The protocol (version 3, sealed: `entries` and `accumulator` from its entries; the signature is not checked by the
   * server) with the first `count` entries, the given status, and `pageSize` entries per page (default 1,024).
   */
  protocol(count: number, status?: InstanceProtocol["status"], pageSize?: number): InstanceProtocol;
  /** Another instance of the same model (a different hash), for list tests. */
  otherProtocol(instanceHash: HexHash, createdBlock: number): InstanceProtocol;
  cleanup(): void;
}

export function makeHome(baseUrl = "https://127.0.0.1:8443", stateCount = 6): TestHome {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-server-"));
  const home = new Home(root).ensure();
  const modelBytes = Buffer.from(
    JSON.stringify({ StartAt: "A", States: { A: { Type: "Pass", Next: "B" }, B: { Type: "Succeed" } } }, null, 2),
  );
  const modelHash = sha256Hex(modelBytes);
  home.writeModel(modelHash, modelBytes);
  const inputBytes = Buffer.from('{"order": 42}\n');
  const instanceHash = sha256Hex("instance-" + modelHash);
  home.writeInput(instanceHash, inputBytes);
  const input = sealInput(inputBytes);
  home.writeInputDocument(instanceHash, input.document);

  // Every field holds a value of its own (no two alike), so a test can look for each one's bytes in a body.
  const states = Array.from({ length: stateCount }, (_, seq) => {
    const content: StateContent = {
      statetrail_state: STATE_DATA_VERSION,
      instance_hash: instanceHash,
      seq,
      state_name: seq % 2 === 0 ? "A" : "B",
      state_type: seq % 2 === 0 ? "Pass" : "Succeed",
      iteration_path: [],
      attempt: 0,
      input: { order: 42, step: seq, secret_input: `input-secret-${seq}` },
      caught: { error: `CaughtSecret${seq}`, cause: `caught-secret-${seq}` },
      outcome: { result: `outcome-secret-${seq}` },
      context: { Execution: { Input: { order: 42 }, Name: `context-secret-${seq}` } },
    };
    const sealed = sealState(content);
    home.writeState(sealed.hash, sealed.document);
    return {
      bytes: sealed.document,
      hash: sealed.hash,
      dataBytes: sealed.dataBytes,
      disclosures: sealed.disclosures,
      content,
    };
  });

  const entry = (seq: number): ProtocolEntry => ({
    event_type: "Register State",
    seq,
    state_name: seq % 2 === 0 ? "A" : "B",
    state_type: seq % 2 === 0 ? "Pass" : "Succeed",
    state_hash: states[seq].hash,
    prev_state_hash: seq === 0 ? ZERO_HASH : states[seq - 1].hash,
    timestamp: 1_700_000_000 + seq,
    block_nr: 10 + seq,
    client_address: ISSUER,
    transaction_hash: "0x" + sha256Hex(`tx-${seq}`),
    state_data: `${baseUrl}/states/${states[seq].hash}`,
    proof: null,
  });

  const seal = (protocol: UnsignedProtocol): InstanceProtocol => ({
    ...sealedFields(protocol),
    signature: "0xnot-checked-by-the-server",
  });
  const base = (instance: HexHash, createdBlock: number, pageSize = 1024): UnsignedProtocol => ({
    protocol_version: PROTOCOL_VERSION,
    chain_id: 31337,
    registries: REGISTRIES,
    issuer: { address: ISSUER, ens_name: "acme.statetrail.test", url: baseUrl, certificate_fingerprint: ZERO_HASH },
    model_hash: modelHash,
    model_data: `${baseUrl}/models/${modelHash}`,
    instance_hash: instance,
    instance_data: `${baseUrl}/instances/${instance}/input`,
    instance_nonce: ZERO_HASH,
    input_digest: input.digest,
    created: { block_nr: createdBlock, transaction_hash: "0x" + sha256Hex(`create-${instance}`) },
    status: "running",
    instance_protocol: [],
    head: { seq: -1, state_hash: ZERO_HASH },
    terminated: null,
    page_size: pageSize,
  });

  return {
    home,
    modelBytes,
    modelHash,
    inputBytes,
    input,
    instanceHash,
    states,
    protocol(count, status = "running", pageSize = 1024) {
      const entries = Array.from({ length: count }, (_, seq) => entry(seq));
      return seal({
        ...base(instanceHash, 9, pageSize),
        status,
        instance_protocol: entries,
        head: count === 0 ? { seq: -1, state_hash: ZERO_HASH } : { seq: count - 1, state_hash: states[count - 1].hash },
        terminated:
          status === "running" ? null : { block_nr: 10 + count, transaction_hash: "0x" + sha256Hex("terminate") },
      });
    },
    otherProtocol(instance, createdBlock) {
      return seal(base(instance, createdBlock));
    },
    cleanup() {
      fs.rmSync(root, { recursive: true, force: true });
    },
  };
}

/** A fixture protocol sealed again after a test edited its entries (`entries` and `accumulator` recomputed). */
export function resealed(protocol: InstanceProtocol): InstanceProtocol {
  return { ...sealedFields(protocol as unknown as UnsignedProtocol), signature: protocol.signature };
}

/** Writes identity.json with the certificate stored under tls/ in the data directory. */
export function writeTestIdentity(home: Home, cert: TestCertificate, port: number): IdentityRecord {
  fs.writeFileSync(home.path("tls", "cert.pem"), cert.certPem);
  fs.writeFileSync(home.path("tls", "key.pem"), cert.keyPem);
  const record: IdentityRecord = {
    statetrail_identity: 1,
    network: "hardhat",
    chain_id: 31337,
    address: ISSUER,
    ens_name: "acme.statetrail.test",
    url: `https://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    certificate_fingerprint: cert.fingerprint,
    certificate_not_before: 1_700_000_000,
    certificate_not_after: 1_900_000_000,
    keystore: "keystore.json",
    certificate: "tls/cert.pem",
    certificate_key: "tls/key.pem",
    previous_certificates: [],
  };
  writeIdentity(home, record);
  return record;
}

const MIN_WAIT_MS = 30_000;

/**
 * Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`, but never before
 * {@link MIN_WAIT_MS}: the time is where a test gives up on a condition that never comes, not a budget a busy
 * machine could miss (what a test asserts about time, it asserts otherwise).
 */
export async function waitFor<T>(check: () => T | undefined | false, timeoutMs = 5000, what = "condition"): Promise<T> {
  const deadline = Date.now() + Math.max(timeoutMs, MIN_WAIT_MS);
  for (;;) {
    const value = check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
