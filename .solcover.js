// solidity-coverage: the contracts under contracts/test/ are test doubles, not part of the product.
module.exports = {
  skipFiles: ["test/"],
};
