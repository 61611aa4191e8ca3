import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ModelRegistry } from "../../typechain-types";
import { MODEL_HASH, MODEL_URI, deployModelRegistryFixture, hashOf } from "../helpers/contracts-fixtures";

async function expectModel(
  models: ModelRegistry,
  modelHash: string,
  expected: { registrant: string; timestamp: bigint; blockNumber: bigint },
): Promise<void> {
  const model = await models.modelOf(modelHash);
  expect(model.registrant).to.equal(expected.registrant, "registrant");
  expect(model.timestamp).to.equal(expected.timestamp, "timestamp");
  expect(model.blockNumber).to.equal(expected.blockNumber, "blockNumber");
  expect(await models.isRegistered(modelHash)).to.equal(expected.registrant !== ethers.ZeroAddress);
}

async function registeredModelFixture() {
  const f = await deployModelRegistryFixture();
  const receipt = await (await f.models.connect(f.issuer).registerModel(MODEL_HASH, MODEL_URI)).wait();
  const block = await ethers.provider.getBlock(receipt!.blockNumber);
  const record = {
    registrant: f.issuer.address,
    timestamp: BigInt(block!.timestamp),
    blockNumber: BigInt(receipt!.blockNumber),
  };
  return { ...f, record };
}

describe("ModelRegistry", function () {
  describe("registerModel", function () {
    it("records the registrant, block time and block number and emits ModelRegistered with the URI", async function () {
      const { models, issuer } = await loadFixture(deployModelRegistryFixture);
      await models.connect(issuer).registerModel.staticCall(MODEL_HASH, MODEL_URI);

      const tx = await models.connect(issuer).registerModel(MODEL_HASH, MODEL_URI);
      await expect(tx).to.emit(models, "ModelRegistered").withArgs(MODEL_HASH, issuer.address, MODEL_URI);
      const receipt = await tx.wait();
      const block = await ethers.provider.getBlock(receipt!.blockNumber);
      await expectModel(models, MODEL_HASH, {
        registrant: issuer.address,
        timestamp: BigInt(block!.timestamp),
        blockNumber: BigInt(receipt!.blockNumber),
      });
    });

    it("accepts an empty URI: the URI is event data, not state", async function () {
      const { models, issuer } = await loadFixture(deployModelRegistryFixture);
      await expect(models.connect(issuer).registerModel(MODEL_HASH, ""))
        .to.emit(models, "ModelRegistered")
        .withArgs(MODEL_HASH, issuer.address, "");
      expect(await models.isRegistered(MODEL_HASH)).to.equal(true);
    });

    it("registers distinct models independently, from any account", async function () {
      const { models, issuer, other } = await loadFixture(registeredModelFixture);
      const second = hashOf("model: second.asl.json");
      await expect(models.connect(other).registerModel(second, "ipfs://second"))
        .to.emit(models, "ModelRegistered")
        .withArgs(second, other.address, "ipfs://second");
      expect((await models.modelOf(second)).registrant).to.equal(other.address);
      expect((await models.modelOf(MODEL_HASH)).registrant).to.equal(issuer.address);
    });

    it("reverts with InvalidModelHash for the zero hash", async function () {
      const { models, issuer } = await loadFixture(deployModelRegistryFixture);
      await expect(models.connect(issuer).registerModel(ethers.ZeroHash, MODEL_URI)).to.be.revertedWithCustomError(
        models,
        "InvalidModelHash",
      );
      expect(await models.isRegistered(ethers.ZeroHash)).to.equal(false);
    });

    it("reverts with ModelAlreadyRegistered when another account registers the same hash: the first registrant wins", async function () {
      const { models, issuer, other, record } = await loadFixture(registeredModelFixture);
      await expect(models.connect(other).registerModel(MODEL_HASH, "https://attacker.example/model"))
        .to.be.revertedWithCustomError(models, "ModelAlreadyRegistered")
        .withArgs(MODEL_HASH, issuer.address);
      await expectModel(models, MODEL_HASH, record);
    });

    it("reverts with ModelAlreadyRegistered when the registrant registers the same hash again", async function () {
      const { models, issuer, record } = await loadFixture(registeredModelFixture);
      await expect(models.connect(issuer).registerModel(MODEL_HASH, MODEL_URI))
        .to.be.revertedWithCustomError(models, "ModelAlreadyRegistered")
        .withArgs(MODEL_HASH, issuer.address);
      await expectModel(models, MODEL_HASH, record);
    });
  });

  describe("modelOf", function () {
    it("returns an empty record for a model that was never registered", async function () {
      const { models } = await loadFixture(registeredModelFixture);
      await expectModel(models, hashOf("model: unknown"), {
        registrant: ethers.ZeroAddress,
        timestamp: 0n,
        blockNumber: 0n,
      });
    });

    it("returns the registration record of a registered model", async function () {
      const { models, record } = await loadFixture(registeredModelFixture);
      await expectModel(models, MODEL_HASH, record);
    });
  });

  describe("isRegistered", function () {
    it("is true only for registered models", async function () {
      const { models } = await loadFixture(registeredModelFixture);
      expect(await models.isRegistered(MODEL_HASH)).to.equal(true);
      expect(await models.isRegistered(hashOf("model: unknown"))).to.equal(false);
      expect(await models.isRegistered(ethers.ZeroHash)).to.equal(false);
    });
  });

  describe("version", function () {
    it("is 1.0.0", async function () {
      const { models } = await loadFixture(deployModelRegistryFixture);
      expect(await models.version()).to.equal("1.0.0");
    });
  });
});
