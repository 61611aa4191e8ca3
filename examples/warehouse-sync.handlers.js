// Task handlers of warehouse-sync.asl.json (local engine). The context tells a handler where it runs.

module.exports = {
  "Count bin": (input, context) => ({
    warehouse: input.warehouse,
    bin: input.bin,
    count: input.bin.charCodeAt(0) + Number(input.bin.slice(1)),
    // e.g. [{parent: "Sync", kind: "parallel", index: 0}, {parent: "Each warehouse", ...}, {parent: "Each bin", ...}]
    path: context.iterationPath.map((step) => `${step.parent}#${step.index}`).join(" > "),
  }),
  "Update catalogue": (input) => ({ warehouses: input.warehouses.length, updated: true }),
};
