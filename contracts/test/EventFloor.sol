// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Test-only baselines for the gas benchmarks: the cheapest possible on-chain record
/// (an event carrying one bytes32) and the naive store-and-emit record.
contract EventFloor {
    event Anchored(bytes32 indexed hash);

    mapping(bytes32 hash => uint256 timestamp) public stored;

    function anchor(bytes32 hash) external {
        emit Anchored(hash);
    }

    function storeAndEmit(bytes32 hash) external {
        stored[hash] = block.timestamp;
        emit Anchored(hash);
    }
}
