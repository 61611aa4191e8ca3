import { expect } from "chai";
import fc from "fast-check";
import canonicalizePackage from "canonicalize";
import {
  AbstractSigner,
  Wallet,
  type Provider,
  type TransactionRequest,
  type TypedDataDomain,
  type TypedDataField,
} from "ethers";
import { canonicalize } from "../../src/protocol/canonical";
import { headOf } from "../../src/protocol/pages";
import {
  PROTOCOL_SIGNATURE_TYPES,
  protocolDomain,
  protocolMessage,
  recoverProtocolSigner,
  signProtocol,
} from "../../src/protocol/signing";
import { type UnsignedProtocol } from "../../src/protocol/schema";
import { StatetrailError } from "../../src/errors";

const reference = canonicalizePackage as (value: unknown) => string | undefined;

/** A signer that is not an ethers Wallet: it signs typed data only through signTypedData (as a hardware or remote signer). */
class TypedDataOnlySigner extends AbstractSigner {
  constructor(private readonly wallet: Wallet) {
    super();
  }
  async getAddress(): Promise<string> {
    return this.wallet.address;
  }
  connect(_provider: Provider | null): TypedDataOnlySigner {
    return this;
  }
  signMessage(_message: string | Uint8Array): Promise<string> {
    throw new Error("not supported");
  }
  signTransaction(_tx: TransactionRequest): Promise<string> {
    throw new Error("not supported");
  }
  signTypedData(
    domain: TypedDataDomain,
    types: Record<string, TypedDataField[]>,
    value: Record<string, unknown>,
  ): Promise<string> {
    return this.wallet.signTypedData(domain, types, value);
  }
}

const H = "a".repeat(64);
const PROTOCOL: UnsignedProtocol = {
  protocol_version: 4,
  chain_id: 31337,
  registries: { model: "0x" + "1".repeat(40), certificate: "0x" + "2".repeat(40), instance: "0x" + "3".repeat(40) },
  issuer: {
    address: "0x" + "4".repeat(40),
    ens_name: "acme.eth",
    url: "https://issuer.test",
    certificate_fingerprint: H,
  },
  model_hash: H,
  model_data: "https://issuer.test/models/x",
  instance_hash: H,
  instance_data: "https://issuer.test/instances/x/input",
  instance_nonce: H,
  input_digest: H,
  created: { block_nr: 1, transaction_hash: "0x" + "5".repeat(64) },
  status: "running",
  instance_protocol: [],
  head: { seq: -1, state_hash: H },
  terminated: null,
};

describe("canonical JSON and protocol signatures", function () {
  describe("canonicalize", function () {
    it("is byte for byte the `canonicalize` package (RFC 8785) for any JSON value", function () {
      fc.assert(
        fc.property(fc.jsonValue(), (value) => {
          expect(canonicalize(value)).to.equal(reference(value));
        }),
        { numRuns: 300 },
      );
    });

    it("follows the package on what JSON.parse never yields: undefined members, toJSON, symbols, -0, unicode keys", function () {
      const values: unknown[] = [
        { b: undefined, a: [undefined, 1, Symbol("s")], c: { toJSON: () => ({ z: 1, y: [2] }) } },
        { é: 1, e: 2, "\u{1F600}": 3, "\u00e8": 4, E: 5, "": 6 },
        [-0, 1e21, 1e-7, 0.1 + 0.2, -1.5e-300, Number.MAX_SAFE_INTEGER],
        { nested: { date: new Date(0) } },
        'line\nbreak \u2028 "quoted" \\ \u0001',
      ];
      for (const value of values) expect(canonicalize(value)).to.equal(reference(value));
    });

    it("refuses NaN and Infinity anywhere, and a top-level value that is not JSON", function () {
      for (const value of [NaN, [1, Infinity], { a: -Infinity }]) expect(() => canonicalize(value)).to.throw();
      for (const value of [undefined, () => 1]) {
        expect(() => canonicalize(value))
          .to.throw(StatetrailError)
          .with.property("code", "INVALID_JSON");
      }
    });

    it("joins long outputs from chunks (many pieces) with the same bytes", function () {
      const value = { entries: Array.from({ length: 5_000 }, (_, i) => ({ seq: i, name: `s${i}`, ok: i % 2 === 0 })) };
      expect(canonicalize(value)).to.equal(reference(value));
    });
  });

  describe("signing", function () {
    const wallet = new Wallet(Wallet.createRandom().privateKey);

    it("a Wallet's protocol signature is its EIP-712 signTypedData of the head, and recovers to it", async function () {
      const signed = await signProtocol(PROTOCOL, wallet);
      const head = headOf(signed);
      expect(signed.signature).to.equal(
        await wallet.signTypedData(protocolDomain(head), PROTOCOL_SIGNATURE_TYPES, protocolMessage(head)),
      );
      expect(recoverProtocolSigner(signed)).to.equal(wallet.address);
      expect(recoverProtocolSigner(head)).to.equal(wallet.address);
    });

    it("a signer that only signs typed data makes the same signature", async function () {
      const signed = await signProtocol(PROTOCOL, new TypedDataOnlySigner(wallet));
      expect(signed.signature).to.equal((await signProtocol(PROTOCOL, wallet)).signature);
      expect(recoverProtocolSigner(signed)).to.equal(wallet.address);
    });

    it("recovers another address when any member of the head changed, and null for a malformed signature", async function () {
      const head = headOf(await signProtocol(PROTOCOL, wallet));
      const changed = [
        { ...head, status: "succeeded" as const },
        { ...head, entries: 1 },
        { ...head, accumulator: "b".repeat(64) },
        { ...head, page_size: 7 },
        { ...head, chain_id: 1 },
        { ...head, registries: { ...head.registries, instance: "0x" + "6".repeat(40) } },
        { ...head, issuer: { ...head.issuer, url: "https://other.test" } },
        { ...head, terminated: { block_nr: 9, transaction_hash: "0x" + "7".repeat(64) } },
      ];
      for (const other of changed) expect(recoverProtocolSigner(other)).to.not.equal(wallet.address);
      expect(recoverProtocolSigner({ ...head, signature: "0x1234" })).to.equal(null);
    });

    it("costs the same whatever the number of entries: the head alone is signed", async function () {
      const entry = {
        event_type: "Register State" as const,
        seq: 0,
        state_name: "S",
        state_type: "Pass" as const,
        state_hash: H,
        prev_state_hash: H,
        timestamp: 1,
        block_nr: 1,
        client_address: "0x" + "4".repeat(40),
        transaction_hash: "0x" + "5".repeat(64),
        state_data: "https://issuer.test/states/" + H,
        proof: null,
      };
      const many = Array.from({ length: 2_000 }, (_, seq) => ({ ...entry, seq }));
      const signed = await signProtocol({ ...PROTOCOL, instance_protocol: many }, wallet);
      expect(signed.entries).to.equal(2_000);
      expect(recoverProtocolSigner(headOf(signed))).to.equal(wallet.address);
      // Another entry list under the same head does not change what the signature covers: the accumulator does.
      expect(recoverProtocolSigner({ ...signed, instance_protocol: [] })).to.equal(wallet.address);
    });
  });
});
