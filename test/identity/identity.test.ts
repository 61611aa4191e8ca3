import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { X509Certificate } from "node:crypto";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import { BrowserProvider, Wallet, type Eip1193Provider } from "ethers";
import { StatetrailError } from "../../src/errors";
import { Home } from "../../src/store/home";
import { deployLocalEns } from "../../src/chain/deploy";
import { devPrivateKey } from "../../src/chain/keys";
import { makeNetwork } from "../../src/chain/provider";
import { generateCertificate } from "../../src/identity/certificate";
import {
  initIdentity,
  loadIdentitySigner,
  originOf,
  showIdentity,
  type InitIdentityOptions,
} from "../../src/identity/identity";
import { loadKeystore } from "../../src/identity/keystore";
import { readIdentity } from "../../src/identity/record";
import { revokeIdentityCertificate, rotateCertificate } from "../../src/identity/registration";
import { CertificateRegistry__factory } from "../../typechain-types";

const KEYSTORE_ENV = { STATETRAIL_FAST_KEYSTORE: "1" } as NodeJS.ProcessEnv;

async function expectCode(promise: Promise<unknown>, code: string): Promise<StatetrailError> {
  try {
    await promise;
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code, (error as Error).message).to.equal(code);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

/** Registries and a local ENS on the in-process Hardhat network. */
async function chainFixture() {
  const [deployer, funder, relayer] = await ethers.getSigners();
  const registry = await ethers.deployContract("CertificateRegistry");
  const ens = await deployLocalEns(deployer);
  return { deployer, funder, relayer, registry, registryAddress: await registry.getAddress(), ens };
}

/**
 * A JSON-RPC provider over the in-process network whose Network carries the local ENS (as connect() makes).
 * ethers' 250 ms request cache is off: with instant automining it would hand out a stale nonce.
 */
function ensProvider(ensRegistry: string | null): BrowserProvider {
  const net = makeNetwork(31337, ensRegistry);
  return new BrowserProvider(network.provider as unknown as Eip1193Provider, net, {
    staticNetwork: net,
    pollingInterval: 50,
    cacheTimeout: -1,
  });
}

function tempHome(): Home {
  return new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-identity-")));
}

/** Chain fixture plus a fresh data directory and the options for a local initIdentity. */
async function setup(overrides: Partial<InitIdentityOptions> = {}) {
  const fixture = await loadFixture(chainFixture);
  const provider = ensProvider(fixture.ens.registry);
  const home = tempHome();
  const options: InitIdentityOptions = {
    home,
    provider,
    network: "localhost",
    chainId: 31337,
    registries: { certificate: fixture.registryAddress },
    ens: fixture.ens,
    host: "localhost",
    port: 8443,
    ensLabel: "acme",
    password: "pw",
    env: KEYSTORE_ENV,
    funder: fixture.funder,
    ...overrides,
  };
  return { ...fixture, provider, home, options };
}

describe("identity/identity", function () {
  describe("initIdentity", function () {
    it("makes key, certificate, registration and ENS records, and writes identity.json", async function () {
      const { home, provider, options, registry, ens } = await setup();
      const lines: string[] = [];
      const result = await initIdentity({ ...options, log: (line) => lines.push(line) });
      const record = readIdentity(home);
      expect(record).to.deep.equal(result.record);
      expect(record).to.include({
        statetrail_identity: 1,
        network: "localhost",
        chain_id: 31337,
        address: result.address,
        ens_name: "acme.test",
        url: "https://localhost:8443",
        host: "localhost",
        port: 8443,
        keystore: "keystore.json",
        certificate: "tls/cert.pem",
        certificate_key: "tls/key.pem",
        ens_registry: ens.registry,
      });
      expect(record.registries?.certificate).to.equal(await registry.getAddress());
      expect(record.previous_certificates).to.deep.equal([]);
      expect(lines.join("\n")).to.contain("acme.test");

      // files: the certificate on disk is the registered one; the key is private
      const certPem = fs.readFileSync(home.path("tls", "cert.pem"), "utf8");
      expect(new X509Certificate(certPem).fingerprint256.replace(/:/g, "").toLowerCase()).to.equal(
        record.certificate_fingerprint,
      );
      expect(fs.statSync(home.path("tls", "key.pem")).mode & 0o777).to.equal(0o600);
      expect(fs.statSync(home.path("keystore.json")).mode & 0o777).to.equal(0o600);
      expect(fs.readdirSync(home.path("tls")).filter((f) => f.endsWith(".pending"))).to.deep.equal([]);

      // chain: registered for the identity's address, signed by it, sent by it
      expect(
        await registry.isValid("0x" + record.certificate_fingerprint, result.address, await time.latest()),
      ).to.equal(true);
      expect(record.certificate_registration?.relayer).to.equal(result.address);

      // ENS, read the way a verifier does (ethers' EnsPlugin provider)
      expect(await provider.resolveName("acme.test")).to.equal(result.address);
      expect(await provider.lookupAddress(result.address)).to.equal("acme.test");
      expect(await (await provider.getResolver("acme.test"))!.getText("url")).to.equal("https://localhost:8443");
      expect(result.ens).to.deep.include({ name: "acme.test", address: result.address, reverseName: "acme.test" });
      expect(result.warnings).to.deep.equal([]);
    });

    it("shows the identity with its live status, and the keystore unlocks to the same key", async function () {
      const { home, provider, options } = await setup();
      const { address } = await initIdentity(options);
      const view = await showIdentity(home, provider);
      expect(view.problems).to.deep.equal([]);
      expect(view.chain).to.deep.equal({ chainId: 31337, matches: true });
      expect(view.certificate.fileMatches).to.equal(true);
      expect(view.certificate.status).to.include({ registered: true, holderMatches: true, valid: true });
      expect(view.ens).to.include({ name: "acme.test", address, url: "https://localhost:8443", consistent: true });
      const signer = await loadIdentitySigner(home, provider, { password: "pw" });
      expect(signer.address).to.equal(address);
      await expectCode(loadIdentitySigner(home, provider, { password: "nope" }), "KEYSTORE_PASSWORD");
    });

    it("reports revocation, rotation and ENS drift in showIdentity", async function () {
      const { home, provider, options, registryAddress } = await setup();
      const { signer, record } = await initIdentity(options);
      const registry = CertificateRegistry__factory.connect(registryAddress, provider);
      await revokeIdentityCertificate({ home, registry, signer, fingerprint: record.certificate_fingerprint });
      let view = await showIdentity(home, provider);
      expect(view.certificate.status?.valid).to.equal(false);
      expect(view.problems.join("\n")).to.match(/was revoked at/);

      const rotated = await rotateCertificate({ home, registry, signer });
      view = await showIdentity(home, provider);
      expect(view.certificate.fingerprint).to.equal(rotated.certificate.fingerprint);
      expect(view.certificate.status?.valid).to.equal(true);
      expect(view.previousCertificates).to.have.length(1);
      expect(view.previousCertificates[0].status?.revokedAt).to.be.a("number");
      expect(view.problems).to.deep.equal([]);

      // someone (the owner) points the url elsewhere: show notices
      const resolver = new ethers.Contract(
        options.ens!.publicResolver!,
        ["function setText(bytes32,string,string)"],
        signer,
      );
      await (await resolver.setText(ethers.namehash("acme.test"), "url", "https://evil.example")).wait();
      view = await showIdentity(home, provider);
      expect(view.ens?.consistent).to.equal(false);
      expect(view.problems.join("\n")).to.contain("https://evil.example");
    });

    it("imports the operator's certificate and key, and an existing private key", async function () {
      const { home, options } = await setup();
      const now = await time.latest();
      const operator = generateCertificate({
        host: "issuer.example.org",
        keyBits: 1024,
        notBefore: new Date((now - 60) * 1000),
      });
      const key = Wallet.createRandom().privateKey;
      const result = await initIdentity({
        ...options,
        host: "issuer.example.org",
        port: 443,
        certPem: operator.certPem,
        keyPem: operator.keyPem,
        privateKey: key,
        ensLabel: "operator",
      });
      expect(result.record.certificate_fingerprint).to.equal(operator.fingerprint);
      expect(result.address).to.equal(new Wallet(key).address);
      expect(result.record.url).to.equal("https://issuer.example.org");
      expect(result.record.ens_name).to.equal("operator.test");
      expect(fs.readFileSync(home.path("tls", "cert.pem"), "utf8")).to.equal(operator.certPem);
    });

    it("lets a relayer pay for the registration", async function () {
      const { options, relayer } = await setup();
      const result = await initIdentity({ ...options, relayer });
      expect(result.registration.relayer).to.equal(relayer.address);
      expect(result.registration.holder).to.equal(result.address);
    });

    it("refuses a second init for the same certificate with a clear coded error, leaving no identity", async function () {
      const { options } = await setup();
      const first = await initIdentity(options);
      const second = tempHome();
      const error = await expectCode(
        initIdentity({
          ...options,
          home: second,
          certPem: first.certificate.certPem,
          keyPem: first.certificate.keyPem,
          privateKey: first.signer.privateKey,
          ensLabel: "second",
        }),
        "CERT_INVALID",
      );
      expect(error.message).to.contain(
        `certificate ${first.certificate.fingerprint} is already registered for ${first.address}`,
      );
      expect(fs.existsSync(second.path("identity.json"))).to.equal(false);
      expect(fs.readdirSync(second.path("tls"))).to.deep.equal([]);
    });

    it("refuses to replace an identity unless forced, and then keeps the key and the old certificate", async function () {
      const { options, home } = await setup();
      const first = await initIdentity(options);
      await expectCode(initIdentity(options), "INVALID_ARGUMENT");
      const second = await initIdentity({ ...options, force: true });
      expect(second.address).to.equal(first.address);
      expect(second.record.certificate_fingerprint).to.not.equal(first.record.certificate_fingerprint);
      expect(second.record.previous_certificates.map((p) => p.fingerprint)).to.deep.equal([
        first.record.certificate_fingerprint,
      ]);
      expect(fs.existsSync(home.path(second.record.previous_certificates[0].certificate!))).to.equal(true);
    });

    it("refuses an ENS name that someone else holds with ENS_FAILED before sending anything", async function () {
      const { options, home, provider, funder } = await setup({ funder: undefined });
      await initIdentity({ ...options, home: tempHome(), funder }); // takes acme.test
      const error = await expectCode(initIdentity(options), "ENS_FAILED");
      expect(error.message).to.match(/acme\.test is already registered/);
      expect(error.hint).to.match(/--ens-label/);
      expect(fs.existsSync(home.path("identity.json"))).to.equal(false);
      expect(fs.readdirSync(home.path("tls"))).to.deep.equal([]);
      const { address } = await loadKeystore(home, { password: "pw" });
      expect(await provider.getTransactionCount(address)).to.equal(0);
    });

    it("leaves an existing identity's files untouched when a forced re-init fails at ENS", async function () {
      const { options, home } = await setup();
      const first = await initIdentity(options);
      const before = ["identity.json", "tls/cert.pem", "tls/key.pem"].map((f) => fs.readFileSync(home.path(f), "utf8"));
      // A name this key may not write: owned by another identity, pointing elsewhere.
      await initIdentity({ ...options, home: tempHome(), ensLabel: "other" });
      await expectCode(
        initIdentity({ ...options, force: true, ensLabel: undefined, ensName: "other.test" }),
        "ENS_FAILED",
      );
      const after = ["identity.json", "tls/cert.pem", "tls/key.pem"].map((f) => fs.readFileSync(home.path(f), "utf8"));
      expect(after).to.deep.equal(before);
      expect(readIdentity(home).certificate_fingerprint).to.equal(first.record.certificate_fingerprint);
      expect(fs.readdirSync(home.path("tls")).filter((f) => f.endsWith(".pending"))).to.deep.equal([]);
    });

    it("checks an existing name it does not own, and fails with ENS_FAILED when it does not point here", async function () {
      const { options } = await setup();
      // acme.test belongs to another identity; this one may name it but cannot write its records
      await initIdentity({ ...options, home: tempHome() });
      const error = await expectCode(
        initIdentity({ ...options, ensLabel: undefined, ensName: "acme.test" }),
        "ENS_FAILED",
      );
      expect(error.message).to.contain("does not link");
      expect(error.hint).to.contain("from the account that owns acme.test");
    });

    it("works without ENS, recording no name", async function () {
      const { options } = await setup({ ens: null, ensLabel: undefined });
      const result = await initIdentity(options);
      expect(result.record.ens_name).to.equal(null);
      expect(result.warnings.join()).to.match(/no ENS/);
      const view = await showIdentity(options.home, options.provider);
      expect(view.ens).to.equal(null);
      expect(view.problems).to.deep.equal([]);
    });

    it("needs funds: without a funder or relayer a new key gets INSUFFICIENT_FUNDS", async function () {
      const { options, home } = await setup({ funder: undefined });
      await expectCode(initIdentity(options), "INSUFFICIENT_FUNDS");
      expect(fs.existsSync(home.path("identity.json"))).to.equal(false);
    });

    it("refuses a provider on another chain than expected with WRONG_CHAIN", async function () {
      const { options, home } = await setup();
      await expectCode(initIdentity({ ...options, chainId: 11155111 }), "WRONG_CHAIN");
      expect(fs.existsSync(home.path("keystore.json"))).to.equal(false);
    });

    it("refuses a development key off the local chain with KEY_REFUSED before storing it", async function () {
      const { options, home, ens } = await setup();
      // A provider that says it is Sepolia (the refusal happens before anything is sent).
      const sepolia = makeNetwork(11155111, ens.registry);
      const lying: Eip1193Provider = {
        request: async (request) =>
          request.method === "eth_chainId" ? "0xaa36a7" : network.provider.request(request as never),
      };
      const provider = new BrowserProvider(lying, sepolia, { staticNetwork: sepolia, cacheTimeout: -1 });
      await expectCode(
        initIdentity({ ...options, provider, network: "sepolia", chainId: undefined, privateKey: devPrivateKey(5) }),
        "KEY_REFUSED",
      );
      expect(fs.existsSync(home.path("keystore.json"))).to.equal(false);
    });

    it("accepts a development key on the local chain", async function () {
      const { options } = await setup();
      const dev = await initIdentity({ ...options, privateKey: devPrivateKey(5), ensLabel: "dev" });
      expect(dev.address).to.equal(new Wallet(devPrivateKey(5)).address);
    });

    it("uses an existing name the key owns (as on Sepolia): sets its resolver and records", async function () {
      const { options, ens, deployer } = await setup();
      const key = Wallet.createRandom().privateKey;
      const holder = new Wallet(key).address;
      const fifs = new ethers.Contract(ens.fifsRegistrars.test, ["function register(bytes32,address)"], deployer);
      await (await fifs.register(ethers.id("owned"), holder)).wait(); // owned by the holder, no resolver yet
      const result = await initIdentity({ ...options, privateKey: key, ensLabel: undefined, ensName: "Owned.test" });
      expect(result.record.ens_name).to.equal("owned.test");
      expect(result.ens).to.deep.include({ address: holder, url: "https://localhost:8443", reverseName: "owned.test" });
      expect(result.warnings).to.deep.equal([]);
    });

    it("accepts a name it does not own whose owner pointed it here, and sets its own primary name", async function () {
      const { options, ens, deployer, provider } = await setup();
      const key = Wallet.createRandom().privateKey;
      const holder = new Wallet(key).address;
      // The team's name, owned by another account that sets addr and url for the issuer.
      const node = ethers.namehash("team.test");
      const fifs = new ethers.Contract(ens.fifsRegistrars.test, ["function register(bytes32,address)"], deployer);
      await (await fifs.register(ethers.id("team"), deployer.address)).wait();
      const registry = new ethers.Contract(ens.registry, ["function setResolver(bytes32,address)"], deployer);
      await (await registry.setResolver(node, ens.publicResolver)).wait();
      const resolver = new ethers.Contract(
        ens.publicResolver!,
        ["function setAddr(bytes32,address)", "function setText(bytes32,string,string)"],
        deployer,
      );
      await (await resolver.setAddr(node, holder)).wait();
      await (await resolver.setText(node, "url", "https://localhost:8443")).wait();

      const result = await initIdentity({ ...options, privateKey: key, ensLabel: undefined, ensName: "team.test" });
      expect(result.warnings.join()).to.match(/owned by .*checked, not written/);
      expect(await provider.lookupAddress(holder)).to.equal("team.test");
    });

    it("needs a password: no password and no TTY gives KEYSTORE_PASSWORD", async function () {
      const { options } = await setup({ password: undefined, env: KEYSTORE_ENV });
      const { PassThrough } = await import("node:stream");
      await expectCode(initIdentity({ ...options, input: new PassThrough() }), "KEYSTORE_PASSWORD");
    });
  });

  describe("originOf", function () {
    it("builds the URL origin, leaving out the default port and bracketing IPv6", function () {
      expect(originOf("localhost", 8443)).to.equal("https://localhost:8443");
      expect(originOf("Issuer.Example", 443)).to.equal("https://issuer.example");
      expect(originOf("::1", 8443)).to.equal("https://[::1]:8443");
      expect(() => originOf("localhost", 0)).to.throw(StatetrailError);
    });
  });
});
