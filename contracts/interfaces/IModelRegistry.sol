// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title IModelRegistry
/// @notice Registers the SHA-256 hash of an executable model (the exact bytes of an Amazon States
/// Language file) once, with the URI where its bytes are published. The first registrant wins.
interface IModelRegistry {
    /// @notice A registered model: who registered it and when. Fits one storage slot.
    struct Model {
        address registrant;
        uint48 timestamp;
        uint48 blockNumber;
    }

    /// @notice Emitted once per model. `uri` is only in the event: it is data, not state.
    event ModelRegistered(bytes32 indexed modelHash, address indexed registrant, string uri);

    /// @notice The model hash is zero.
    error InvalidModelHash();
    /// @notice The model hash was already registered by `registrant`.
    error ModelAlreadyRegistered(bytes32 modelHash, address registrant);

    /// @notice Registers `modelHash` for the caller and emits {ModelRegistered} with `uri`.
    /// @param modelHash SHA-256 of the model bytes.
    /// @param uri Where the model bytes are published (content-addressed by `modelHash`).
    function registerModel(bytes32 modelHash, string calldata uri) external;

    /// @notice The registration of `modelHash`; `registrant` is zero when it was never registered.
    function modelOf(bytes32 modelHash) external view returns (Model memory model);

    /// @notice Whether `modelHash` is registered.
    function isRegistered(bytes32 modelHash) external view returns (bool registered);

    /// @notice The contract's semantic version.
    function version() external pure returns (string memory);
}
