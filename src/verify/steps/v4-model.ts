import { sha256Hex } from "../../chain/hash";
import { type Step } from "../context";
import { Findings, short } from "../findings";

/** V4: the bytes served at `model_data` hash to `model_hash`, and the trusted ModelRegistry has it. */
export const modelStep: Step = {
  id: "V4",
  async run({ protocol, web, chain, settings, artifacts }) {
    const findings = new Findings();
    const expected = protocol.model_hash;
    let size = 0;
    try {
      const { bytes } = await web.get(protocol.model_data, settings.maxBytes.model);
      size = bytes.length;
      const actual = sha256Hex(bytes);
      if (actual !== expected) {
        findings.fail(`model bytes at ${protocol.model_data} hash to ${actual}, not model_hash ${expected}`);
      } else {
        artifacts.model = bytes;
      }
    } catch (error) {
      findings.error(error, `fetching model_data ${protocol.model_data}`);
    }
    let registered = "";
    try {
      const model = await chain.modelOf(expected);
      if (!model.registrant) {
        findings.fail(`model ${expected} was never registered in the trusted ModelRegistry`, "MODEL_NOT_FOUND");
      } else {
        registered = `registered by ${model.registrant} in block ${model.blockNumber}`;
      }
    } catch (error) {
      findings.error(error);
    }
    return findings.outcome(`${size} model bytes hash to ${short(expected)}; ${registered}`);
  },
};
