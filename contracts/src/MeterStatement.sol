// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title MeterStatement
/// @notice The hourly statement a meter node signs with its own device key (docs/wire/statement-v1.md):
///         cumulative import/export counters at an hour's end and a digest of that hour's readings.
/// @dev The node signs sha256 of the 100 packed bytes (MicroPython has sha256 in C, not keccak); the contract
///      rebuilds them with abi.encodePacked, hashes them with the sha256 precompile (108 gas) and recovers the
///      signer with ecrecover through OpenZeppelin's ECDSA, which refuses high-s (malleated) signatures.
library MeterStatement {
    /// @notice Format tag: no statement digest can stand for a transaction or another signed message.
    bytes8 internal constant MAGIC = "GPSTMTv1";

    struct Statement {
        bytes32 device; // device id, ASCII, zero-padded on the right
        uint64 windowEnd; // Unix time the window ends (hour-aligned)
        uint64 importWh; // cumulative import counter
        uint64 exportWh; // cumulative export counter
        uint32 readings; // readings published in the window
        bytes32 readingsDigest; // sha256 over the window's readings (u16 length || payload each)
    }

    /// @notice The digest the device key signed.
    function digest(Statement memory st) internal pure returns (bytes32) {
        return sha256(
            abi.encodePacked(MAGIC, st.device, st.windowEnd, st.importWh, st.exportWh, st.readings, st.readingsDigest)
        );
    }

    /// @notice The digest of a statement given by its fields: the 100 bytes are laid out in scratch memory (past the
    ///         free memory pointer, which stays where it is) and hashed by the sha256 precompile, so a settlement
    ///         loop allocates nothing per window.
    function digestOf(
        bytes32 device,
        uint64 windowEnd,
        uint64 importWh,
        uint64 exportWh,
        uint32 readings,
        bytes32 readingsDigest
    ) internal view returns (bytes32 d) {
        bytes8 magic = MAGIC;
        assembly ("memory-safe") {
            // each store writes 32 bytes; in rising order, each later one overwrites only the padding of the last
            let p := mload(0x40)
            mstore(p, magic)
            mstore(add(p, 8), device)
            mstore(add(p, 40), shl(192, windowEnd))
            mstore(add(p, 48), shl(192, importWh))
            mstore(add(p, 56), shl(192, exportWh))
            mstore(add(p, 64), shl(224, readings))
            mstore(add(p, 68), readingsDigest)
            if iszero(staticcall(gas(), 0x02, p, 100, 0x00, 0x20)) { revert(0, 0) }
            d := mload(0x00)
        }
    }

    /// @notice The address of the device key that signed `st` (65 bytes r || s || v); reverts on a malformed one.
    function signer(Statement memory st, bytes memory signature) internal pure returns (address) {
        return ECDSA.recover(digest(st), signature);
    }
}
