// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

/// @title UtilityToken
/// @notice The community's settlement token: money enters through the community's minter (the on-ramp) and
///         leaves by burning (the off-ramp). Every standard piece is OpenZeppelin's: ERC-20, EIP-2612 permit
///         (so a household can approve and deposit into a market in one transaction) and AccessControl.
contract UtilityToken is ERC20, ERC20Burnable, ERC20Permit, AccessControl {
    /// @notice Role allowed to mint: held by the community consortium.
    bytes32 public constant MINTER_ROLE = keccak256("MINTER_ROLE");

    /// @param name_ Token name, also the EIP-712 domain name of `permit`.
    /// @param symbol_ Token symbol.
    /// @param admin The community: receives DEFAULT_ADMIN_ROLE and MINTER_ROLE.
    constructor(string memory name_, string memory symbol_, address admin) ERC20(name_, symbol_) ERC20Permit(name_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MINTER_ROLE, admin);
    }

    /// @notice Mint `amount` base units to `to` (the on-ramp).
    /// @param to Recipient.
    /// @param amount Base units (18 decimals).
    function mint(address to, uint256 amount) external onlyRole(MINTER_ROLE) {
        _mint(to, amount);
    }
}
