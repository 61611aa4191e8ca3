import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import { Wallet, type JsonRpcProvider } from "ethers";
import { deployAll } from "../../src/chain/deploy";
import type { Deployment } from "../../src/chain/deployments";
import { devPrivateKey } from "../../src/chain/keys";
import { connect } from "../../src/chain/provider";
import { initIdentity, loadIdentitySigner, showIdentity } from "../../src/identity/identity";
import { rotateCertificate } from "../../src/identity/registration";
import { CertificateRegistry__factory } from "../../typechain-types";
import { useHardhatNode } from "../helpers/node-process";

/** The path the CLI takes: a `hardhat node` process, connect() with the EnsPlugin, the recorded deployment. */
describe("identity over JSON-RPC against a hardhat node process", function () {
  const chain = useHardhatNode();
  let dir: string;
  let deployment: Deployment;
  let provider: JsonRpcProvider;

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-identity-node-"));
    const plain = await connect({ rpcUrl: chain.url, expectedChainId: 31337 });
    ({ deployment } = await deployAll(new Wallet(devPrivateKey(0), plain), "identitytest", { dir }));
    plain.destroy();
    provider = await connect({ rpcUrl: chain.url, expectedChainId: 31337, ensRegistry: deployment.ens.registry });
  });

  after(function () {
    provider?.destroy();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("initialises, shows and rotates an identity that ethers' ENS lookups confirm", async function () {
    const home = path.join(dir, "home");
    const result = await initIdentity({
      home,
      provider,
      network: "localhost",
      chainId: 31337,
      registries: {
        certificate: deployment.contracts.CertificateRegistry.address,
        model: deployment.contracts.ModelRegistry.address,
        instance: deployment.contracts.InstanceRegistry.address,
      },
      ens: deployment.ens,
      ensLabel: "acme",
      password: "pw",
      env: { STATETRAIL_FAST_KEYSTORE: "1" },
      funder: new Wallet(devPrivateKey(1), provider),
    });
    expect(result.record.ens_name).to.equal("acme.test");
    expect(result.record.registries).to.deep.equal({
      certificate: deployment.contracts.CertificateRegistry.address,
      model: deployment.contracts.ModelRegistry.address,
      instance: deployment.contracts.InstanceRegistry.address,
    });
    expect(await provider.lookupAddress(result.address)).to.equal("acme.test");
    expect(await provider.resolveName("acme.test")).to.equal(result.address);

    let view = await showIdentity(home, provider);
    expect(view.problems).to.deep.equal([]);

    const signer = await loadIdentitySigner(home, provider, { password: "pw" });
    const registry = CertificateRegistry__factory.connect(deployment.contracts.CertificateRegistry.address, provider);
    const rotated = await rotateCertificate({ home, registry, signer, revokePrevious: true });
    view = await showIdentity(home, provider);
    expect(view.problems).to.deep.equal([]);
    expect(view.certificate.fingerprint).to.equal(rotated.certificate.fingerprint);
    expect(view.previousCertificates[0]).to.deep.include({ fingerprint: result.record.certificate_fingerprint });
    expect(view.previousCertificates[0].status?.revokedAt).to.be.a("number");
  });
});
