// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

import {MarketLoans} from "./MarketLoans.sol";

/// @title Market
/// @notice One market per utility. Neighbours negotiate off chain, both sign the EIP-712 `Terms`, either (or any
///         member batching for them) submits; the buyer's payment is escrowed from its internal balance. After
///         delivery both gateways report metered quantities (on chain, or signed and carried by `settleBatch`);
///         the seller is paid for the smaller report capped at the agreed quantity, the buyer gets the rest back,
///         less-than-agreed delivery costs the seller a penalty; diverging reports go to the community; without
///         reports the buyer reclaims after the deadline. Every path ends with the escrow paid out.
/// @dev Gas design: an agreement lives in one storage slot keyed by (seller, nonce) holding a 192-bit tag of its
///      id, its state and deadline; the terms travel in calldata. A seller that reuses the nonce of a closed
///      agreement overwrites a non-zero slot (5,000 gas instead of 22,100). Reuse cannot replay old terms: terms
///      must expire before their delivery ends, and an agreement closes only after its delivery ended.
contract Market is MarketLoans {
    bytes32 private constant TERMS_TYPEHASH = keccak256(
        "Terms(address seller,address buyer,uint64 quantityWh,uint128 unitPrice,uint40 deliveryStart,uint40 deliveryEnd,uint64 nonce,uint40 expiry)"
    );
    bytes32 private constant REPORT_TYPEHASH = keccak256("DeliveryReport(bytes32 agreementId,uint64 deliveredWh)");

    /// @dev One slot per (seller, nonce).
    struct Slot {
        uint192 tag;
        Status status;
        uint40 deadline;
        bool sellerReported;
        bool buyerReported;
    }

    /// @dev On-chain reports only (the signed-report path never writes here).
    struct Reports {
        uint64 sellerWh;
        uint64 buyerWh;
    }

    mapping(address seller => mapping(uint64 nonce => Slot)) private _slots;
    mapping(bytes32 id => Reports) private _reports;

    /// @param token_ The UtilityToken escrowed here.
    /// @param utility_ What this market trades.
    /// @param community Receives DEFAULT_ADMIN_ROLE and COMMUNITY_ROLE.
    constructor(address token_, string memory utility_, address community) MarketLoans(token_, utility_, community) {}

    // ------------------------------------------------------------------ ids, digests and views

    /// @notice The agreement id: EIP-712 digest of `t` under this market's domain (binds chain and contract).
    function agreementId(Terms calldata t) public view returns (bytes32) {
        return _hashTypedDataV4(_termsHash(t));
    }

    /// @dev hashStruct(Terms) straight from calldata into scratch memory (no allocation inside batch loops).
    ///      A field with dirty high bits hashes differently, so it can match no signature and no stored tag.
    function _termsHash(Terms calldata t) private pure returns (bytes32 h) {
        bytes32 typeHash = TERMS_TYPEHASH;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            calldatacopy(add(p, 0x20), t, 0x100)
            h := keccak256(p, 0x120)
        }
    }

    /// @notice The digest a party signs to report `deliveredWh` for agreement `id`.
    function reportDigest(bytes32 id, uint64 deliveredWh) public view returns (bytes32) {
        bytes32 typeHash = REPORT_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            let p := mload(0x40)
            mstore(p, typeHash)
            mstore(add(p, 0x20), id)
            mstore(add(p, 0x40), deliveredWh)
            structHash := keccak256(p, 0x60)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @notice State of the agreement with terms `t` (None if its slot holds another agreement or nothing).
    function agreementOf(Terms calldata t)
        external
        view
        returns (Status status, uint40 deadline, bool sellerReported, bool buyerReported, uint64 sellerWh, uint64 buyerWh)
    {
        bytes32 id = agreementId(t);
        Slot memory s = _slots[t.seller][t.nonce];
        if (s.tag != _tag(id)) return (Status.None, 0, false, false, 0, 0);
        Reports memory r = _reports[id];
        return (s.status, s.deadline, s.sellerReported, s.buyerReported, r.sellerWh, r.buyerWh);
    }

    /// @notice What occupies a seller's nonce slot; `free` says whether new terms with this nonce can be submitted.
    function slotOf(address seller, uint64 nonce) external view returns (Status status, uint40 deadline, bool free) {
        Slot memory s = _slots[seller][nonce];
        return (s.status, s.deadline, _isFree(s));
    }

    // ------------------------------------------------------------------ submission

    /// @notice Submit one agreement signed by both parties; escrows the buyer's payment.
    /// @return id The agreement id.
    function submitAgreement(Terms calldata t, Sig calldata sellerSig, Sig calldata buyerSig)
        external
        nonReentrant
        onlyMember
        returns (bytes32 id)
    {
        id = agreementId(t);
        _checkSig(id, sellerSig, t.seller);
        _checkSig(id, buyerSig, t.buyer);
        _open(id, t, _params.reportWindow);
    }

    /// @notice Submit many agreements in one transaction (arrays sized by the caller); all or nothing.
    function submitAgreements(Terms[] calldata t, Sig[] calldata sellerSigs, Sig[] calldata buyerSigs)
        external
        nonReentrant
        onlyMember
    {
        uint256 n = t.length;
        if (sellerSigs.length != n || buyerSigs.length != n) {
            revert LengthMismatch(n, sellerSigs.length, buyerSigs.length);
        }
        uint32 window = _params.reportWindow;
        for (uint256 i; i < n; ++i) {
            Terms calldata ti = t[i];
            bytes32 id = agreementId(ti);
            _checkSig(id, sellerSigs[i], ti.seller);
            _checkSig(id, buyerSigs[i], ti.buyer);
            _open(id, ti, window);
        }
    }

    /// @notice Trade with the grid provider at its posted tariff (no provider signature: the tariff is its offer).
    /// @param householdBuys True: the caller buys at `sellPrice`; false: the caller sells at `buyPrice`.
    /// @return id The agreement id; the full terms are in the ProviderTraded event.
    function tradeWithProvider(bool householdBuys, uint64 quantityWh, uint40 deliveryStart, uint40 deliveryEnd)
        external
        nonReentrant
        returns (bytes32 id)
    {
        Provider memory p = _provider;
        if (p.account == address(0)) revert NotProvider(address(0));
        if (msg.sender == p.account) revert NotProvider(msg.sender);
        if (!_accounts[msg.sender].registered) revert NotRegistered(msg.sender);
        uint128 price = householdBuys ? p.sellPrice : p.buyPrice;
        if (price == 0) revert TariffNotOffered(householdBuys);
        Terms memory t = Terms({
            seller: householdBuys ? p.account : msg.sender,
            buyer: householdBuys ? msg.sender : p.account,
            quantityWh: quantityWh,
            unitPrice: price,
            deliveryStart: deliveryStart,
            deliveryEnd: deliveryEnd,
            nonce: uint64(_useNonce(p.account)),
            expiry: uint40(block.timestamp)
        });
        id = _hashTypedDataV4(keccak256(abi.encode(TERMS_TYPEHASH, t)));
        _openWith(id, t.seller, t.buyer, quantityWh, price, deliveryStart, deliveryEnd, t.nonce, t.expiry, _params.reportWindow);
        emit ProviderTraded(id, msg.sender, t);
    }

    /// @notice Withdraw signed terms before anyone submits them (seller or buyer). The seller's nonce slot stays
    ///         taken until the terms' expiry.
    function cancelTerms(Terms calldata t) external {
        bytes32 id = agreementId(t);
        if (msg.sender != t.seller && msg.sender != t.buyer) revert NotParty(id, msg.sender);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        if (m.tag == _tag(id) && m.status != Status.None) revert WrongStatus(id, uint8(m.status));
        if (!_isFree(m)) revert SlotBusy(t.seller, t.nonce, uint8(m.status));
        _slots[t.seller][t.nonce] = Slot(_tag(id), Status.Cancelled, t.expiry, false, false);
        emit TermsCancelled(id, msg.sender);
    }

    // ------------------------------------------------------------------ delivery and settlement

    /// @notice Report the metered quantity on chain (seller or buyer); the second report settles or disputes.
    function report(Terms calldata t, uint64 deliveredWh) external nonReentrant {
        bytes32 id = agreementId(t);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        _requireReportable(id, m, t);
        Reports storage r = _reports[id];
        if (msg.sender == t.seller) {
            if (m.sellerReported) revert AlreadyReported(id, msg.sender);
            (m.sellerReported, r.sellerWh) = (true, deliveredWh);
        } else if (msg.sender == t.buyer) {
            if (m.buyerReported) revert AlreadyReported(id, msg.sender);
            (m.buyerReported, r.buyerWh) = (true, deliveredWh);
        } else {
            revert NotParty(id, msg.sender);
        }
        emit DeliveryReported(id, msg.sender, deliveredWh);
        _slots[t.seller][t.nonce] = m;
        if (m.sellerReported && m.buyerReported) _settleOrDispute(id, s, t, r.sellerWh, r.buyerWh);
    }

    /// @notice Settle many agreements in one transaction with the parties' signed delivery reports (a party that
    ///         already reported on chain needs no signature). Agreements no longer Active are skipped.
    /// @return settled How many items were settled or moved to dispute.
    function settleBatch(SettleItem[] calldata items) external nonReentrant onlyMember returns (uint256 settled) {
        uint256 n = items.length;
        for (uint256 i; i < n; ++i) {
            SettleItem calldata it = items[i];
            Terms calldata t = it.terms;
            bytes32 id = agreementId(t);
            Slot storage s = _slots[t.seller][t.nonce];
            Slot memory m = s;
            if (m.tag != _tag(id) || m.status != Status.Active) continue;
            _requireReportable(id, m, t);
            uint64 sw = m.sellerReported ? _reports[id].sellerWh : _signedReport(id, it.sellerWh, it.sellerSig, t.seller);
            uint64 bw = m.buyerReported ? _reports[id].buyerWh : _signedReport(id, it.buyerWh, it.buyerSig, t.buyer);
            _settleOrDispute(id, s, t, sw, bw);
            ++settled;
        }
    }

    /// @notice Seller or buyer escalates to the community (e.g. the other side does not report).
    function openDispute(Terms calldata t) external {
        bytes32 id = agreementId(t);
        if (msg.sender != t.seller && msg.sender != t.buyer) revert NotParty(id, msg.sender);
        Slot storage s = _slots[t.seller][t.nonce];
        _requireReportable(id, s, t);
        Reports memory r = _reports[id];
        _dispute(id, s, r.sellerWh, r.buyerWh);
    }

    /// @notice The community decides the delivered quantity of a disputed agreement before its deadline.
    function resolveDispute(Terms calldata t, uint64 deliveredWh) external nonReentrant onlyRole(COMMUNITY_ROLE) {
        bytes32 id = agreementId(t);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        if (m.tag != _tag(id) || m.status != Status.Disputed) revert WrongStatus(id, _statusOf(m, id));
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
        uint64 delivered = deliveredWh < t.quantityWh ? deliveredWh : t.quantityWh;
        emit DisputeResolved(id, delivered);
        _pay(id, s, t, delivered);
    }

    /// @notice Buyer (or the community for it) takes the whole escrow back after a missed report deadline or an
    ///         unresolved dispute.
    function reclaim(Terms calldata t) external nonReentrant {
        _reclaim(t);
    }

    /// @notice `reclaim` for many agreements; all or nothing.
    function reclaimBatch(Terms[] calldata t) external nonReentrant {
        for (uint256 i; i < t.length; ++i) {
            _reclaim(t[i]);
        }
    }

    // ------------------------------------------------------------------ internals

    function _tag(bytes32 id) private pure returns (uint192) {
        return uint192(uint256(id));
    }

    function _statusOf(Slot memory m, bytes32 id) private pure returns (uint8) {
        return m.tag == _tag(id) ? uint8(m.status) : uint8(Status.None);
    }

    /// @dev A slot can take new terms when empty, closed, or cancelled terms have expired.
    function _isFree(Slot memory m) private view returns (bool) {
        Status st = m.status;
        return st == Status.None || st == Status.Settled || st == Status.Refunded
            || (st == Status.Cancelled && block.timestamp > m.deadline);
    }

    function _open(bytes32 id, Terms calldata t, uint32 reportWindow) private {
        _openWith(id, t.seller, t.buyer, t.quantityWh, t.unitPrice, t.deliveryStart, t.deliveryEnd, t.nonce, t.expiry, reportWindow);
    }

    /// @dev Checks and opens an agreement from its fields (calldata and memory terms share this, without copies).
    function _openWith(
        bytes32 id,
        address seller,
        address buyer,
        uint64 quantityWh,
        uint128 unitPrice,
        uint40 deliveryStart,
        uint40 deliveryEnd,
        uint64 nonce,
        uint40 expiry,
        uint32 reportWindow
    ) private {
        if (block.timestamp > expiry) revert TermsExpired(expiry, block.timestamp);
        if (seller == buyer) revert InvalidTerms(id, 1);
        if (quantityWh == 0) revert InvalidTerms(id, 2);
        uint256 deadline = uint256(deliveryEnd) + reportWindow;
        if (deliveryStart >= deliveryEnd || deadline > type(uint40).max) revert InvalidTerms(id, 3);
        if (expiry >= deliveryEnd) revert InvalidTerms(id, 4);
        Slot storage s = _slots[seller][nonce];
        Slot memory m = s;
        if (m.tag == _tag(id) && m.status != Status.None) revert WrongStatus(id, uint8(m.status));
        if (!_isFree(m)) revert SlotBusy(seller, nonce, uint8(m.status));
        if (!_accounts[seller].registered) revert NotRegistered(seller);
        Account storage acc = _accounts[buyer];
        if (!acc.registered) revert NotRegistered(buyer);
        _debit(acc, buyer, value(quantityWh, unitPrice));
        _slots[seller][nonce] = Slot(_tag(id), Status.Active, uint40(deadline), false, false);
        emit AgreementSubmitted(id, seller, buyer, quantityWh, unitPrice);
    }

    function _requireReportable(bytes32 id, Slot memory m, Terms calldata t) private view {
        if (m.tag != _tag(id) || m.status != Status.Active) revert WrongStatus(id, _statusOf(m, id));
        if (block.timestamp < t.deliveryEnd) revert TooEarly(id, block.timestamp, t.deliveryEnd);
        if (block.timestamp > m.deadline) revert TooLate(id, block.timestamp, m.deadline);
    }

    function _signedReport(bytes32 id, uint64 wh, Sig calldata sig, address party) private view returns (uint64) {
        if (sig.r == bytes32(0) && sig.vs == bytes32(0)) revert MissingReport(id, party);
        _checkSig(reportDigest(id, wh), sig, party);
        return wh;
    }

    /// @dev Reports are capped at the agreed quantity, then compared: within tolerance the smaller one is paid.
    function _settleOrDispute(bytes32 id, Slot storage s, Terms calldata t, uint64 sw, uint64 bw) private {
        uint64 q = t.quantityWh;
        uint64 sc = sw < q ? sw : q;
        uint64 bc = bw < q ? bw : q;
        uint256 diff = sc > bc ? sc - bc : bc - sc;
        if (diff * 10_000 > uint256(q) * _params.toleranceBps) {
            _dispute(id, s, sw, bw);
            return;
        }
        _pay(id, s, t, sc < bc ? sc : bc);
    }

    function _dispute(bytes32 id, Slot storage s, uint64 sw, uint64 bw) private {
        uint40 deadline = uint40(block.timestamp + _params.disputeWindow);
        s.status = Status.Disputed;
        s.deadline = deadline;
        emit DisputeOpened(id, msg.sender, deadline, sw, bw);
    }

    /// @dev Pay out the whole escrow: the seller gets value(delivered) less the penalty, the buyer the rest.
    function _pay(bytes32 id, Slot storage s, Terms calldata t, uint64 delivered) private {
        s.status = Status.Settled;
        if (s.sellerReported || s.buyerReported) delete _reports[id];
        uint256 escrow = value(t.quantityWh, t.unitPrice);
        uint256 paid = value(delivered, t.unitPrice);
        uint256 penalty = value(t.quantityWh - delivered, t.unitPrice) * _params.penaltyBps / 10_000;
        if (penalty > paid) penalty = paid;
        unchecked {
            _credit(_accounts[t.seller], paid - penalty);
            _credit(_accounts[t.buyer], escrow - paid + penalty);
            emit AgreementSettled(id, delivered, paid - penalty, escrow - paid + penalty);
        }
    }

    function _reclaim(Terms calldata t) private {
        bytes32 id = agreementId(t);
        if (msg.sender != t.buyer && !hasRole(COMMUNITY_ROLE, msg.sender)) revert NotParty(id, msg.sender);
        Slot storage s = _slots[t.seller][t.nonce];
        Slot memory m = s;
        if (m.tag != _tag(id) || (m.status != Status.Active && m.status != Status.Disputed)) {
            revert WrongStatus(id, _statusOf(m, id));
        }
        if (block.timestamp <= m.deadline) revert TooEarly(id, block.timestamp, uint256(m.deadline) + 1);
        s.status = Status.Refunded;
        if (m.sellerReported || m.buyerReported) delete _reports[id];
        uint256 escrow = value(t.quantityWh, t.unitPrice);
        _credit(_accounts[t.buyer], escrow);
        emit EscrowReclaimed(id, t.buyer, escrow);
    }
}
