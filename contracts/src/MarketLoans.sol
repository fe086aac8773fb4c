// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MarketBase} from "./MarketBase.sol";

/// @title MarketLoans
/// @notice Energy loans of the residential cooperative model: the lender gives q Wh now, the borrower returns them
///         by `returnBy`. The borrower's token collateral is locked when both sign, released (pro rata to the
///         metered return) when both gateways report the return, forfeited to the lender when nothing is reported
///         by the deadline; diverging reports go to the community.
abstract contract MarketLoans is MarketBase {
    bytes32 private constant LOAN_TYPEHASH = keccak256(
        "Loan(address lender,address borrower,uint64 quantityWh,uint128 collateral,uint40 returnBy,uint64 nonce,uint40 expiry)"
    );

    /// @dev One slot per loan, the same shape as an agreement's.
    struct LoanRecord {
        LoanStatus status;
        uint40 deadline;
        bool lenderReported;
        bool borrowerReported;
        uint64 lenderWh;
        uint64 borrowerWh;
    }

    /// @notice Loan records by id (the EIP-712 digest of the loan terms).
    mapping(bytes32 id => LoanRecord) public loans;

    constructor(address token_, string memory utility_, address community) MarketBase(token_, utility_, community) {}

    /// @notice The loan id: EIP-712 digest of `l` under this market's domain.
    function loanId(Loan calldata l) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(LOAN_TYPEHASH, l)));
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
        LoanRecord storage r = loans[id];
        if (r.status != LoanStatus.None) revert WrongStatus(id, uint8(r.status));
        if (block.timestamp > l.expiry) revert TermsExpired(l.expiry, block.timestamp);
        if (l.lender == l.borrower) revert InvalidTerms(id, 1);
        if (l.quantityWh == 0) revert InvalidTerms(id, 2);
        uint256 deadline = uint256(l.returnBy) + _params.reportWindow;
        if (l.returnBy <= block.timestamp || deadline > type(uint40).max) revert InvalidTerms(id, 3);
        _checkSig(id, lenderSig, l.lender);
        _checkSig(id, borrowerSig, l.borrower);
        if (!_accounts[l.lender].registered) revert NotRegistered(l.lender);
        Account storage borrower = _accounts[l.borrower];
        if (!borrower.registered) revert NotRegistered(l.borrower);
        _debit(borrower, l.borrower, l.collateral);
        r.status = LoanStatus.Open;
        r.deadline = uint40(deadline);
        emit LoanOpened(id, l.lender, l.borrower, l.quantityWh, l.collateral, uint40(deadline));
    }

    /// @notice Withdraw signed loan terms before anyone submits them (lender or borrower).
    function cancelLoan(Loan calldata l) external {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower) revert NotParty(id, msg.sender);
        LoanRecord storage r = loans[id];
        if (r.status != LoanStatus.None) revert WrongStatus(id, uint8(r.status));
        r.status = LoanStatus.Cancelled;
        emit LoanCancelled(id, msg.sender);
    }

    /// @notice Lender or borrower reports the metered return; the second report closes the loan or disputes it.
    function reportReturn(Loan calldata l, uint64 returnedWh) external nonReentrant {
        bytes32 id = loanId(l);
        LoanRecord memory m = _openLoan(id);
        if (msg.sender == l.lender) {
            if (m.lenderReported) revert AlreadyReported(id, msg.sender);
            (m.lenderReported, m.lenderWh) = (true, returnedWh);
        } else if (msg.sender == l.borrower) {
            if (m.borrowerReported) revert AlreadyReported(id, msg.sender);
            (m.borrowerReported, m.borrowerWh) = (true, returnedWh);
        } else {
            revert NotParty(id, msg.sender);
        }
        emit ReturnReported(id, msg.sender, returnedWh);
        if (!(m.lenderReported && m.borrowerReported)) {
            loans[id] = m;
            return;
        }
        uint64 q = l.quantityWh;
        uint64 lc = m.lenderWh < q ? m.lenderWh : q;
        uint64 bc = m.borrowerWh < q ? m.borrowerWh : q;
        uint256 diff = lc > bc ? lc - bc : bc - lc;
        if (diff * 10_000 > uint256(q) * _params.toleranceBps) {
            _disputeLoan(id, m);
        } else {
            _closeLoan(id, l, lc < bc ? lc : bc);
        }
    }

    /// @notice Lender or borrower escalates to the community (e.g. the other side does not report).
    function openLoanDispute(Loan calldata l) external {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower) revert NotParty(id, msg.sender);
        _disputeLoan(id, _openLoan(id));
    }

    /// @notice The community decides the returned quantity of a disputed loan before its deadline.
    function resolveLoan(Loan calldata l, uint64 returnedWh) external nonReentrant onlyRole(COMMUNITY_ROLE) {
        bytes32 id = loanId(l);
        LoanRecord storage r = loans[id];
        if (r.status != LoanStatus.Disputed) revert WrongStatus(id, uint8(r.status));
        if (block.timestamp > r.deadline) revert TooLate(id, block.timestamp, r.deadline);
        _closeLoan(id, l, returnedWh);
    }

    /// @notice After the deadline: an open loan's collateral is forfeited to the lender; an unresolved dispute
    ///         gives it back to the borrower. Callable by lender, borrower or the community.
    function expireLoan(Loan calldata l) external nonReentrant {
        bytes32 id = loanId(l);
        if (msg.sender != l.lender && msg.sender != l.borrower && !hasRole(COMMUNITY_ROLE, msg.sender)) {
            revert NotParty(id, msg.sender);
        }
        LoanRecord storage r = loans[id];
        LoanStatus st = r.status;
        if (st != LoanStatus.Open && st != LoanStatus.Disputed) revert WrongStatus(id, uint8(st));
        if (block.timestamp <= r.deadline) revert TooEarly(id, block.timestamp, uint256(r.deadline) + 1);
        r.status = LoanStatus.Closed;
        bool forfeited = st == LoanStatus.Open;
        _credit(_accounts[forfeited ? l.lender : l.borrower], l.collateral);
        emit LoanClosed(id, 0, forfeited ? 0 : l.collateral, forfeited ? l.collateral : 0);
    }

    function _openLoan(bytes32 id) private view returns (LoanRecord memory m) {
        m = loans[id];
        if (m.status != LoanStatus.Open) revert WrongStatus(id, uint8(m.status));
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
    }

    function _disputeLoan(bytes32 id, LoanRecord memory m) private {
        m.status = LoanStatus.Disputed;
        m.deadline = uint40(block.timestamp + _params.disputeWindow);
        loans[id] = m;
        emit LoanDisputed(id, msg.sender, m.deadline);
    }

    /// @dev Release collateral pro rata to the returned quantity (capped at the loan), the rest to the lender.
    function _closeLoan(bytes32 id, Loan calldata l, uint64 returnedWh) private {
        loans[id].status = LoanStatus.Closed;
        uint64 r = returnedWh < l.quantityWh ? returnedWh : l.quantityWh;
        uint256 toBorrower = uint256(l.collateral) * r / l.quantityWh;
        uint256 toLender = l.collateral - toBorrower;
        _credit(_accounts[l.borrower], toBorrower);
        _credit(_accounts[l.lender], toLender);
        emit LoanClosed(id, r, toBorrower, toLender);
    }
}
