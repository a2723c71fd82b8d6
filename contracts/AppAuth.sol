// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.20;

/// @title AppAuth
/// @notice A minimal stand-in for dstack's app-auth contract (DstackApp), for tests on a local
///         chain: only the part of its interface that registering a compose hash uses.
contract AppAuth {
    /// @notice The account allowed to add compose hashes: the deployer.
    address public owner;

    /// @notice Compose hashes the owner has allowed.
    mapping(bytes32 => bool) public allowedComposeHashes;

    /// @notice Emitted when the owner allows a compose hash (not indexed, as in DstackApp).
    event ComposeHashAdded(bytes32 composeHash);

    /// @notice The caller is not the owner (the same error as OpenZeppelin's Ownable, which
    ///         DstackApp uses, so a client decodes both alike).
    error OwnableUnauthorizedAccount(address account);

    modifier onlyOwner() {
        if (msg.sender != owner) revert OwnableUnauthorizedAccount(msg.sender);
        _;
    }

    constructor() {
        owner = msg.sender;
    }

    /// @notice Allows `composeHash`.
    function addComposeHash(bytes32 composeHash) external onlyOwner {
        allowedComposeHashes[composeHash] = true;
        emit ComposeHashAdded(composeHash);
    }
}
