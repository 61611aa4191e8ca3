import { expect } from "chai";
import { ethers } from "hardhat";
import { JsonRpcProvider, Network } from "ethers";
import { connect, publicRpcUrl, REDACTED, rpcUrlOf } from "../../src/chain/provider";
import { type CheckedAgainst } from "../../src/verify";
import { forgeScenario, verifyForged } from "../helpers/forge";
import { startHttpRpcBridge } from "../helpers/http-rpc";

describe("report.checked_against: what a verification trusted", function () {
  describe("publicRpcUrl: an RPC URL without its credentials", function () {
    const cases: [string, string][] = [
      ["http://127.0.0.1:8545", "http://127.0.0.1:8545"],
      ["https://ethereum-sepolia-rpc.publicnode.com", "https://ethereum-sepolia-rpc.publicnode.com"],
      ["https://sepolia.infura.io/v3/0123456789abcdef0123456789abcdef", `https://sepolia.infura.io/v3/${REDACTED}`],
      [
        "https://eth-sepolia.g.alchemy.com/v2/Ab3dE_fGh1jKlMnOpQrStUvWxYz9",
        `https://eth-sepolia.g.alchemy.com/v2/${REDACTED}`,
      ],
      ["https://rpc.ankr.com/eth_sepolia/" + "f".repeat(64), `https://rpc.ankr.com/eth_sepolia/${REDACTED}`],
      ["https://x-y.quiknode.pro/a1b2c3d4e5f6a7b8c9d0/", `https://x-y.quiknode.pro/${REDACTED}/`],
      ["https://user:hunter2@node.example.org:8545/rpc", "https://node.example.org:8545/rpc"],
      [
        "https://node.example.org/rpc?apikey=s3cr3t&x=1#frag",
        `https://node.example.org/rpc?apikey=${REDACTED}&x=${REDACTED}`,
      ],
    ];
    for (const [given, shown] of cases) {
      it(`${given.slice(0, 48)}… → ${shown.slice(0, 48)}`, function () {
        expect(publicRpcUrl(given)).to.equal(shown);
      });
    }

    it("never keeps a secret it was given in any of these forms", function () {
      for (const [given] of cases) {
        const shown = publicRpcUrl(given)!;
        for (const secret of [
          "0123456789abcdef",
          "Ab3dE_fGh1",
          "ffffffff",
          "a1b2c3d4",
          "hunter2",
          "user",
          "s3cr3t",
          "frag",
        ]) {
          if (given.includes(secret)) expect(shown, given).not.to.contain(secret);
        }
      }
    });

    it("is null for what is not a URL", function () {
      expect(publicRpcUrl("not a url")).to.equal(null);
    });
  });

  describe("rpcUrlOf", function () {
    it("is the URL of a JSON-RPC provider and null for Hardhat's in-process one", function () {
      const url = "https://sepolia.infura.io/v3/0123456789abcdef0123456789abcdef";
      const net = Network.from(11155111);
      const provider = new JsonRpcProvider(url, net, { staticNetwork: net });
      try {
        expect(rpcUrlOf(provider)).to.equal(url);
      } finally {
        provider.destroy();
      }
      expect(rpcUrlOf(ethers.provider)).to.equal(null);
      expect(rpcUrlOf({})).to.equal(null);
    });
  });

  describe("verifyProtocol fills it", function () {
    it("from the trusted setup and the pinned block (in-process chain: no RPC URL)", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url });
      expect(report.verdict).to.equal("valid");
      const checked = report.checked_against!;
      const block = await ethers.provider.getBlock(report.block_number!);
      expect(checked).to.deep.equal({
        chain_id: env.trusted.chainId,
        registries: env.trusted.registries,
        registries_source: env.trusted.source,
        ens_registry: null,
        rpc_url: null,
        block_number: report.block_number,
        block_hash: block!.hash,
      } satisfies CheckedAgainst);
      expect(checked.block_hash).to.match(/^0x[0-9a-f]{64}$/);
    });

    it("names the RPC endpoint it read without the API key in its path and query", async function () {
      const { env, run } = await forgeScenario();
      const bridge = await startHttpRpcBridge();
      const key = "0123456789abcdef0123456789abcdef";
      const provider = await connect({
        rpcUrl: `${bridge.base}/v3/${key}?apikey=s3cr3t-token`,
        expectedChainId: env.trusted.chainId,
        ensRegistry: null,
      });
      try {
        const report = await verifyForged(env, { url: run.url }, { provider });
        expect(report.verdict).to.equal("valid");
        expect(
          bridge.paths.some((p) => p.includes(key)),
          "the key was used to read",
        ).to.equal(true);
        const checked = report.checked_against!;
        expect(checked.rpc_url).to.equal(`${bridge.base}/v3/${REDACTED}?apikey=${REDACTED}`);
        expect(JSON.stringify(report)).not.to.contain(key).and.not.to.contain("s3cr3t");
        expect(checked.block_number).to.equal(report.block_number);
        expect(checked.block_hash).to.equal((await ethers.provider.getBlock(report.block_number!))!.hash);
      } finally {
        provider.destroy();
        await bridge.close();
      }
    });

    it("is there, with no block, when the chain can't be read", async function () {
      const { env, run } = await forgeScenario();
      const report = await verifyForged(env, { url: run.url }, { trusted: { ...env.trusted, chainId: 5 } });
      expect(report.verdict).not.to.equal("valid");
      expect(report.checked_against).to.include({ chain_id: 5, block_number: null, block_hash: null });
    });
  });
});
