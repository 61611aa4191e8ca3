// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IModelRegistry} from "./interfaces/IModelRegistry.sol";

/// @title ModelRegistry
/// @notice See {IModelRegistry}.
contract ModelRegistry is IModelRegistry {
    mapping(bytes32 modelHash => Model model) private _models;

    /// @inheritdoc IModelRegistry
    function registerModel(bytes32 modelHash, string calldata uri) external {
        if (modelHash == bytes32(0)) revert InvalidModelHash();
        address registrant = _models[modelHash].registrant;
        if (registrant != address(0)) revert ModelAlreadyRegistered(modelHash, registrant);
        _models[modelHash] = Model({
            registrant: msg.sender,
            timestamp: uint48(block.timestamp),
            blockNumber: uint48(block.number)
        });
        emit ModelRegistered(modelHash, msg.sender, uri);
    }

    /// @inheritdoc IModelRegistry
    function modelOf(bytes32 modelHash) external view returns (Model memory model) {
        return _models[modelHash];
    }

    /// @inheritdoc IModelRegistry
    function isRegistered(bytes32 modelHash) external view returns (bool registered) {
        return _models[modelHash].registrant != address(0);
    }

    /// @inheritdoc IModelRegistry
    function version() external pure returns (string memory) {
        return "1.0.0";
    }
}
