// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IMarket} from "./IMarket.sol";

/// @notice What the loans contract uses of its Market: registration, roles, parameters and internal balances.
interface IMarketLedger {
    function isParticipant(address account) external view returns (bool);
    function hasRole(bytes32 role, address account) external view returns (bool);
    function params()
        external
        view
        returns (uint32 reportWindow, uint32 disputeWindow, uint16 toleranceBps, uint16 penaltyBps);
    function treasury() external view returns (address);
    function loanTransfer(address from, address to, uint256 amount) external;
}

/// @title MarketLoans
/// @notice Energy loans of the residential cooperative model: the lender gives q Wh now, the borrower returns them
///         by `returnBy`. The borrower's token collateral is locked when both sign. Each party reports two figures,
///         lent and returned; the lender is owed collateral x (lent - returned) / q, the borrower the rest. So a
///         lender that lends nothing and a borrower that returns nothing both lose, and silence gains nothing: a
///         party that does not report accepts the other's figures; with no report at all the collateral goes back.
///         Diverging reports go to the community; a dispute it leaves unresolved pays each side only what the
///         other concedes and the disputed rest to the market's operator, so neither a liar nor an idle community
///         rewards anyone. A dispute can only be opened once the return is due.
/// @dev Deployed beside its Market (which has no room left): collateral stays in the Market's internal balances,
///      moved by `Market.loanTransfer` from the borrower to this contract's account and back out, which only this
///      contract may call. Loan ids are EIP-712 digests under the domain ("gridpact Market", "1", this address).
contract MarketLoans is IMarket, EIP712, ReentrancyGuardTransient {
    bytes32 private constant COMMUNITY_ROLE = keccak256("COMMUNITY_ROLE");

    /// @dev The same error as the Market's role checks, so callers decode one name.
    error AccessControlUnauthorizedAccount(address account, bytes32 neededRole);

    /// @notice The Market whose participants, parameters and balances the loans use.
    IMarketLedger public immutable market;

    bytes32 private constant LOAN_TYPEHASH = keccak256(
        "Loan(address lender,address borrower,uint64 quantityWh,uint128 collateral,uint40 returnBy,uint64 nonce,uint40 expiry)"
    );

    /// @dev A loan's state and both parties' (lent, returned) reports.
    struct LoanRecord {
        LoanStatus status;
        uint40 deadline;
        bool lenderReported;
        bool borrowerReported;
        uint64 lenderLentWh;
        uint64 lenderReturnedWh;
        uint64 borrowerLentWh;
        uint64 borrowerReturnedWh;
    }

    mapping(bytes32 id => LoanRecord) private _loans;

    /// @param market_ The Market this contract serves (it must then name this contract in `setLoans`).
    constructor(address market_) EIP712("gridpact Market", "1") {
        if (market_ == address(0)) revert ZeroAddress();
        market = IMarketLedger(market_);
    }

    modifier onlyMember() {
        if (!market.isParticipant(msg.sender) && !market.hasRole(COMMUNITY_ROLE, msg.sender)) {
            revert NotRegistered(msg.sender);
        }
        _;
    }

    function _window(bool dispute) private view returns (uint32) {
        (uint32 reportWindow, uint32 disputeWindow,,) = market.params();
        return dispute ? disputeWindow : reportWindow;
    }

    function _toleranceBps() private view returns (uint256) {
        (,, uint16 tol,) = market.params();
        return tol;
    }

    function _checkSig(bytes32 digest, Sig calldata sig, address expected) private pure {
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, sig.r, sig.vs);
        if (err != ECDSA.RecoverError.NoError || recovered != expected) {
            revert BadSignature(digest, expected, recovered);
        }
    }

    /// @notice The loan id: EIP-712 digest of `l` under this market's domain.
    function loanId(Loan calldata l) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(LOAN_TYPEHASH, l)));
    }

    /// @notice State and deadline of the loan `id` (the EIP-712 digest of its terms).
    function loans(bytes32 id) external view returns (LoanStatus status, uint40 deadline) {
        LoanRecord storage r = _loans[id];
        return (r.status, r.deadline);
    }

    /// @notice Record a loan signed by both parties and lock the borrower's collateral.
    /// @return id The loan id.
    function submitLoan(Loan calldata l, Sig calldata lenderSig, Sig calldata borrowerSig)
        external
        nonReentrant
        onlyMember
        returns (bytes32 id)
    {
        id = loanId(l);
        LoanRecord storage r = _loans[id];
        if (r.status != LoanStatus.None) revert WrongStatus(id, uint8(r.status));
        if (block.timestamp > l.expiry) revert TermsExpired(l.expiry, block.timestamp);
        if (l.lender == l.borrower) revert InvalidTerms(id, 1);
        if (l.quantityWh == 0) revert InvalidTerms(id, 2);
        uint256 deadline = uint256(l.returnBy) + _window(false);
        if (l.returnBy <= block.timestamp || deadline > type(uint40).max) revert InvalidTerms(id, 3);
        _checkSig(id, lenderSig, l.lender);
        _checkSig(id, borrowerSig, l.borrower);
        if (!market.isParticipant(l.lender)) revert NotRegistered(l.lender);
        if (!market.isParticipant(l.borrower)) revert NotRegistered(l.borrower);
        r.status = LoanStatus.Open;
        r.deadline = uint40(deadline);
        emit LoanOpened(id, l.lender, l.borrower, l.quantityWh, l.collateral, uint40(deadline));
        if (l.collateral != 0) market.loanTransfer(l.borrower, address(this), l.collateral);
    }

    /// @notice Withdraw signed loan terms before anyone submits them (lender or borrower).
    function cancelLoan(Loan calldata l) external {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower) revert NotParty(id, msg.sender);
        LoanRecord storage r = _loans[id];
        if (r.status != LoanStatus.None) revert WrongStatus(id, uint8(r.status));
        r.status = LoanStatus.Cancelled;
        emit LoanCancelled(id, msg.sender);
    }

    /// @notice Lender or borrower reports the metered quantities lent and returned (open or disputed loan, before
    ///         its deadline). When both have reported and agree within tolerance the loan closes; else it is
    ///         (or stays) disputed.
    function reportReturn(Loan calldata l, uint64 lentWh, uint64 returnedWh) external nonReentrant {
        bytes32 id = loanId(l);
        LoanRecord memory m = _loans[id];
        if (m.status != LoanStatus.Open && m.status != LoanStatus.Disputed) revert WrongStatus(id, uint8(m.status));
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
        if (msg.sender == l.lender) {
            if (m.lenderReported) revert AlreadyReported(id, msg.sender);
            (m.lenderReported, m.lenderLentWh, m.lenderReturnedWh) = (true, lentWh, returnedWh);
        } else if (msg.sender == l.borrower) {
            if (m.borrowerReported) revert AlreadyReported(id, msg.sender);
            (m.borrowerReported, m.borrowerLentWh, m.borrowerReturnedWh) = (true, lentWh, returnedWh);
        } else {
            revert NotParty(id, msg.sender);
        }
        emit ReturnReported(id, msg.sender, lentWh, returnedWh);
        _loans[id] = m;
        if (!(m.lenderReported && m.borrowerReported)) return;
        uint64 q = l.quantityWh;
        uint256 tol = uint256(q) * _toleranceBps();
        if (_gap(m.lenderLentWh, m.borrowerLentWh, q) * 10_000 > tol
                || _gap(m.lenderReturnedWh, m.borrowerReturnedWh, q) * 10_000 > tol) {
            if (m.status == LoanStatus.Open) _disputeLoan(id, l, m);
        } else {
            uint64 lent = _min(m.lenderLentWh, m.borrowerLentWh, q);
            uint64 ret = _min(m.lenderReturnedWh, m.borrowerReturnedWh, q);
            uint256 owed = _owed(l, lent, ret);
            _closeLoan(id, l, lent, ret, owed, owed);
        }
    }

    /// @notice Lender or borrower escalates to the community, once the return is due.
    function openLoanDispute(Loan calldata l) external {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower) revert NotParty(id, msg.sender);
        LoanRecord memory m = _loans[id];
        if (m.status != LoanStatus.Open) revert WrongStatus(id, uint8(m.status));
        if (block.timestamp < l.returnBy) revert TooEarly(id, block.timestamp, l.returnBy);
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
        _disputeLoan(id, l, m);
    }

    /// @notice The community decides the quantities lent and returned of a disputed loan before its deadline.
    function resolveLoan(Loan calldata l, uint64 lentWh, uint64 returnedWh)
        external
        nonReentrant
    {
        if (!market.hasRole(COMMUNITY_ROLE, msg.sender)) {
            revert AccessControlUnauthorizedAccount(msg.sender, COMMUNITY_ROLE);
        }
        bytes32 id = loanId(l);
        LoanRecord storage r = _loans[id];
        if (r.status != LoanStatus.Disputed) revert WrongStatus(id, uint8(r.status));
        if (block.timestamp > r.deadline) revert TooLate(id, block.timestamp, r.deadline);
        uint64 q = l.quantityWh;
        (uint64 lent, uint64 ret) = (_min(lentWh, q, q), _min(returnedWh, q, q));
        uint256 owed = _owed(l, lent, ret);
        _closeLoan(id, l, lent, ret, owed, owed);
    }

    /// @notice After the deadline (callable by lender, borrower or the community): a silent party accepts the
    ///         reporting party's figures; nobody reported: the collateral goes back; an unresolved dispute pays
    ///         each side what the other conceded and the disputed rest to the market's operator.
    function expireLoan(Loan calldata l) external nonReentrant {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower && !market.hasRole(COMMUNITY_ROLE, msg.sender)) {
            revert NotParty(id, msg.sender);
        }
        LoanRecord memory m = _loans[id];
        if (m.status != LoanStatus.Open && m.status != LoanStatus.Disputed) revert WrongStatus(id, uint8(m.status));
        if (block.timestamp <= m.deadline) revert TooEarly(id, block.timestamp, uint256(m.deadline) + 1);
        uint64 q = l.quantityWh;
        if (m.lenderReported && m.borrowerReported) {
            uint256 byLender = _owed(l, _min(m.lenderLentWh, q, q), _min(m.lenderReturnedWh, q, q));
            uint256 byBorrower = _owed(l, _min(m.borrowerLentWh, q, q), _min(m.borrowerReturnedWh, q, q));
            (uint256 lo, uint256 hi) = byLender < byBorrower ? (byLender, byBorrower) : (byBorrower, byLender);
            _closeLoan(id, l, 0, 0, lo, hi);
        } else if (m.lenderReported || m.borrowerReported) {
            (uint64 lent, uint64 ret) = m.lenderReported
                ? (m.lenderLentWh, m.lenderReturnedWh)
                : (m.borrowerLentWh, m.borrowerReturnedWh);
            (lent, ret) = (_min(lent, q, q), _min(ret, q, q));
            uint256 owed = _owed(l, lent, ret);
            _closeLoan(id, l, lent, ret, owed, owed);
        } else {
            _closeLoan(id, l, 0, 0, 0, 0);
        }
    }

    /// @dev Collateral owed to the lender: pro rata to what was lent and not returned.
    function _owed(Loan calldata l, uint64 lent, uint64 ret) private pure returns (uint256) {
        return lent > ret ? uint256(l.collateral) * (lent - ret) / l.quantityWh : 0;
    }

    function _min(uint64 a, uint64 b, uint64 cap) private pure returns (uint64) {
        uint64 m = a < b ? a : b;
        return m < cap ? m : cap;
    }

    function _gap(uint64 a, uint64 b, uint64 cap) private pure returns (uint256) {
        (a, b) = (a < cap ? a : cap, b < cap ? b : cap);
        return a > b ? a - b : b - a;
    }

    function _disputeLoan(bytes32 id, Loan calldata l, LoanRecord memory m) private {
        uint256 from = block.timestamp > l.returnBy ? block.timestamp : l.returnBy;
        m.status = LoanStatus.Disputed;
        m.deadline = uint40(from + _window(true));
        _loans[id] = m;
        emit LoanDisputed(id, msg.sender, m.deadline);
    }

    /// @dev Close: the lender gets `toLender`, the borrower collateral - `lenderCap`, the market's
    ///      operator (`treasury()`, the account named by `Market.setOperator`) the difference.
    function _closeLoan(bytes32 id, Loan calldata l, uint64 lent, uint64 ret, uint256 toLender, uint256 lenderCap)
        private
    {
        _loans[id].status = LoanStatus.Closed;
        uint256 toBorrower = l.collateral - lenderCap;
        uint256 toTreasury = lenderCap - toLender;
        emit LoanClosed(id, lent, ret, toBorrower, toLender, toTreasury);
        if (toBorrower != 0) market.loanTransfer(address(this), l.borrower, toBorrower);
        if (toLender != 0) market.loanTransfer(address(this), l.lender, toLender);
        if (toTreasury != 0) market.loanTransfer(address(this), market.treasury(), toTreasury);
    }
}
