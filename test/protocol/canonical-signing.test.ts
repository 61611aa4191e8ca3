import { expect } from "chai";
import fc from "fast-check";
import canonicalizePackage from "canonicalize";
import {
  AbstractSigner,
  Wallet,
  hashMessage,
  type Provider,
  type TransactionRequest,
  type TypedDataDomain,
} from "ethers";
import { canonicalize } from "../../src/protocol/canonical";
import { messageDigest, recoverProtocolSigner, signProtocol, signingPayload } from "../../src/protocol/signing";
import { type UnsignedProtocol } from "../../src/protocol/schema";
import { StatetrailError } from "../../src/errors";

const reference = canonicalizePackage as (value: unknown) => string | undefined;

/** A signer that is not an ethers Wallet: it can only sign messages (as a hardware or remote signer). */
class MessageOnlySigner extends AbstractSigner {
  constructor(private readonly wallet: Wallet) {
    super();
  }
  async getAddress(): Promise<string> {
    return this.wallet.address;
  }
  connect(_provider: Provider | null): MessageOnlySigner {
    return this;
  }
  signMessage(message: string | Uint8Array): Promise<string> {
    return this.wallet.signMessage(message);
  }
  signTransaction(_tx: TransactionRequest): Promise<string> {
    throw new Error("not supported");
  }
  signTypedData(_domain: TypedDataDomain, _types: never, _value: never): Promise<string> {
    throw new Error("not supported");
  }
}

const H = "a".repeat(64);
const PROTOCOL: UnsignedProtocol = {
  protocol_version: 2,
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

    it("messageDigest is ethers' hashMessage of the UTF-8 text", function () {
      fc.assert(
        fc.property(fc.string({ unit: "binary", maxLength: 100 }), (text) => {
          expect(messageDigest(text)).to.equal(hashMessage(Buffer.from(text, "utf8")));
        }),
        { numRuns: 100 },
      );
    });

    it("a Wallet's protocol signature is its signMessage of the canonical payload, and recovers to it", async function () {
      const signed = await signProtocol(PROTOCOL, wallet);
      expect(signed.signature).to.equal(await wallet.signMessage(signingPayload(PROTOCOL)));
      expect(recoverProtocolSigner(signed)).to.equal(wallet.address);
    });

    it("a signer that only signs messages makes the same signature", async function () {
      const signed = await signProtocol(PROTOCOL, new MessageOnlySigner(wallet));
      expect(signed.signature).to.equal((await signProtocol(PROTOCOL, wallet)).signature);
      expect(recoverProtocolSigner(signed)).to.equal(wallet.address);
    });

    it("recovers another address when the protocol changed, and null for a malformed signature", async function () {
      const signed = await signProtocol(PROTOCOL, wallet);
      expect(recoverProtocolSigner({ ...signed, status: "succeeded" })).to.not.equal(wallet.address);
      expect(recoverProtocolSigner({ ...signed, signature: "0x1234" })).to.equal(null);
    });
  });
});
