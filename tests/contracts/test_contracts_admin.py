"""Participants, parameters, internal balances, the token, the grid provider and meter-data anchors."""

from __future__ import annotations

from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak
from web3.logs import DISCARD

from contracts.build import load_artifact
from contracts.harness import Community, advance_time
from gridpact.core.eip712 import TERMS_FIELDS

ZERO = "0x" + "00" * 20
HOUR = 3600


def events(c: Community, receipt: Any, name: str, contract: Any = None) -> list[dict]:
    target = contract or c.market
    return [dict(e["args"]) for e in getattr(target.events, name)().process_receipt(receipt, errors=DISCARD)]


def test_contracts_register_remove_and_params(community: Community, reverts) -> None:
    c = community
    a, b, _ = c.households
    m = c.market
    newcomer = Account.create()
    reverts(
        "AccessControlUnauthorizedAccount",
        lambda: a.sender.transact(m.functions.register(newcomer.address, b"\x01" * 32, b"\x02" * 32)),
    )
    reverts("ZeroAddress", lambda: c.admin.transact(m.functions.register(ZERO, b"\x01" * 32, b"\x02" * 32)))
    reverts(
        "AlreadyRegistered",
        lambda: c.admin.transact(m.functions.register(a.address, b"\x01" * 32, b"\x02" * 32)),
    )
    rcpt = c.admin.transact(m.functions.register(newcomer.address, b"\x01" * 32, b"\x02" * 32))
    assert events(c, rcpt, "ParticipantRegistered")[0]["meterId"] == b"\x01" * 32
    assert m.functions.participantInfo(newcomer.address).call() == [b"\x01" * 32, b"\x02" * 32]
    assert m.functions.isParticipant(newcomer.address).call() is True
    reverts("AccessControlUnauthorizedAccount", lambda: a.sender.transact(m.functions.remove(b.address)))
    rcpt = c.admin.transact(m.functions.remove(b.address))
    assert events(c, rcpt, "ParticipantRemoved")[0]["gateway"] == b.address
    reverts("NotRegistered", lambda: c.admin.transact(m.functions.remove(b.address)))
    # a removed household keeps its money: it cannot deposit, but it can withdraw everything
    reverts("NotRegistered", lambda: b.sender.transact(m.functions.deposit(1)))
    free = c.free(b.address)
    before = c.token.functions.balanceOf(b.address).call()
    b.sender.transact(m.functions.withdraw(free))
    assert c.token.functions.balanceOf(b.address).call() == before + free
    # parameters
    assert m.functions.params().call() == [86_400, 259_200, 200, 1000]
    reverts("AccessControlUnauthorizedAccount", lambda: a.sender.transact(m.functions.setParams(1, 1, 1, 1)))
    for bad in ((0, 1, 1, 1), (1, 0, 1, 1), (1, 1, 10_001, 1), (1, 1, 1, 10_001), (366 * 86_400, 1, 1, 1)):
        reverts("InvalidParams", lambda bad=bad: c.admin.transact(m.functions.setParams(*bad)))
    rcpt = c.admin.transact(m.functions.setParams(600, 1200, 0, 10_000))
    assert events(c, rcpt, "ParamsUpdated")[0]["penaltyBps"] == 10_000
    assert m.functions.params().call() == [600, 1200, 0, 10_000]
    assert m.functions.value(1500, 2000).call() == 3000 and m.functions.value(1, 999).call() == 0


def test_contracts_deposit_withdraw_and_permit(community: Community, reverts) -> None:
    c = community
    a, _, _ = c.households
    m, tok = c.market, c.token
    reverts("ZeroAmount", lambda: a.sender.transact(m.functions.deposit(0)))
    reverts("ZeroAmount", lambda: a.sender.transact(m.functions.withdraw(0)))
    free = c.free(a.address)
    reverts("InsufficientBalance", lambda: a.sender.transact(m.functions.withdraw(free + 1)))
    reverts("ERC20InsufficientAllowance", lambda: a.sender.transact(m.functions.deposit(5)))
    c.admin.transact(tok.functions.mint(a.address, 10**18))
    deadline = c.now() + HOUR
    nonce = tok.functions.nonces(a.address).call()
    permit = {
        "types": {
            "EIP712Domain": [{"name": "name", "type": "string"}, {"name": "version", "type": "string"},
                             {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"}],
            "Permit": [{"name": "owner", "type": "address"}, {"name": "spender", "type": "address"},
                       {"name": "value", "type": "uint256"}, {"name": "nonce", "type": "uint256"},
                       {"name": "deadline", "type": "uint256"}],
        },
        "primaryType": "Permit",
        "domain": {"name": tok.functions.name().call(), "version": "1", "chainId": c.w3.eth.chain_id,
                   "verifyingContract": tok.address},
        "message": {"owner": a.address, "spender": m.address, "value": 10**18, "nonce": nonce, "deadline": deadline},
    }  # fmt: skip
    sig = Account.sign_message(encode_typed_data(full_message=permit), a.key)
    # the permit approves the market (the Market dropped depositWithPermit to stay under the size limit)
    a.sender.transact(
        tok.functions.permit(
            a.address,
            m.address,
            10**18,
            deadline,
            sig.v,
            sig.r.to_bytes(32, "big"),
            sig.s.to_bytes(32, "big"),
        )
    )
    rcpt = a.sender.transact(m.functions.deposit(10**18))
    assert events(c, rcpt, "Deposited")[0]["amount"] == 10**18
    assert c.free(a.address) == free + 10**18
    reverts("ERC20InsufficientAllowance", lambda: a.sender.transact(m.functions.deposit(10**18)))
    rcpt = a.sender.transact(m.functions.withdraw(10**18))
    assert events(c, rcpt, "Withdrawn")[0]["amount"] == 10**18
    assert c.free(a.address) == free


def test_contracts_token_roles_and_burn(community: Community, reverts) -> None:
    c = community
    a, b, _ = c.households
    tok = c.token
    assert tok.functions.MINTER_ROLE().call() == keccak(text="MINTER_ROLE")
    reverts("AccessControlUnauthorizedAccount", lambda: a.sender.transact(tok.functions.mint(a.address, 1)))
    supply = tok.functions.totalSupply().call()
    c.admin.transact(tok.functions.mint(a.address, 1000))
    a.sender.transact(tok.functions.burn(400))
    assert tok.functions.totalSupply().call() == supply + 600
    reverts("ERC20InsufficientAllowance", lambda: b.sender.transact(tok.functions.burnFrom(a.address, 1)))
    assert tok.functions.decimals().call() == 18


def test_contracts_anchor_readings(community: Community, reverts) -> None:
    c = community
    a, _, _ = c.households
    m = c.market
    hour = c.now() // HOUR * HOUR - 2 * HOUR  # a closed hour
    digest = keccak(text="readings of one hour")
    rcpt = a.sender.transact(m.functions.anchorReadings(hour, digest, 3600))
    ev = events(c, rcpt, "ReadingsAnchored")[0]
    assert (ev["gateway"], ev["hourStart"], ev["batchHash"], ev["count"]) == (a.address, hour, digest, 3600)
    assert ev["meterId"] == m.functions.participantInfo(a.address).call()[0]
    assert m.functions.anchors(a.address, hour).call()[0] == digest
    assert m.functions.anchors(a.address, hour).call()[1] == ev["anchoredAt"] > 0
    reverts("AlreadyAnchored", lambda: a.sender.transact(m.functions.anchorReadings(hour, digest, 3600)))
    reverts("EmptyAnchor", lambda: a.sender.transact(m.functions.anchorReadings(hour + HOUR, b"\0" * 32, 1)))
    reverts("EmptyAnchor", lambda: a.sender.transact(m.functions.anchorReadings(hour + HOUR, digest, 0)))
    c.admin.transact(m.functions.remove(a.address))
    reverts("NotRegistered", lambda: a.sender.transact(m.functions.anchorReadings(hour + HOUR, digest, 1)))


def test_contracts_grid_provider_trades(community: Community, reverts) -> None:
    c = community
    a, b, prov = c.households
    m = c.market
    start, end = c.now() + HOUR, c.now() + 2 * HOUR
    reverts("NotProvider", lambda: a.sender.transact(m.functions.tradeWithProvider(True, 1000, start, end)))
    reverts("NotProvider", lambda: c.admin.transact(m.functions.setProvider(Account.create().address, 1, 1)))
    reverts(
        "AccessControlUnauthorizedAccount",
        lambda: a.sender.transact(m.functions.setProvider(prov.address, 1, 1)),
    )
    sell_price, buy_price = 300_000_000_000_000_000, 0
    rcpt = c.admin.transact(m.functions.setProvider(prov.address, buy_price, sell_price))
    assert events(c, rcpt, "ProviderSet")[0]["sellPrice"] == sell_price
    assert m.functions.provider().call() == [prov.address, buy_price, sell_price]
    reverts(
        "TariffNotOffered", lambda: a.sender.transact(m.functions.tradeWithProvider(False, 1000, start, end))
    )
    reverts(
        "NotProvider", lambda: prov.sender.transact(m.functions.tradeWithProvider(True, 1000, start, end))
    )
    free_a = c.free(a.address)
    rcpt = a.sender.transact(m.functions.tradeWithProvider(True, 2000, start, end))
    traded = events(c, rcpt, "ProviderTraded")[0]
    terms = tuple(traded["terms"][name] for name, _ in TERMS_FIELDS)
    assert terms[0] == prov.address and terms[1] == a.address and terms[3] == sell_price
    assert m.functions.agreementId(terms).call() == traded["id"]
    assert c.free(a.address) == free_a - 2000 * sell_price // 1000
    assert m.functions.nonces(prov.address).call() == 1
    # settled like any agreement: the provider's gateway and the household report
    advance_time(c.w3, 2 * HOUR + 10)
    prov.sender.transact(m.functions.report(terms, 2000))
    a.sender.transact(m.functions.report(terms, 2000))
    assert c.free(prov.address) > 0
    # selling to the provider needs its deposit
    c.admin.transact(m.functions.setProvider(prov.address, 100, sell_price))
    start, end = c.now() + HOUR, c.now() + 2 * HOUR
    b.sender.transact(m.functions.tradeWithProvider(False, 1000, start, end))
    c.admin.transact(m.functions.remove(prov.address))
    assert m.functions.provider().call()[0] == ZERO


def test_contracts_remaining_revert_paths(community: Community, reverts) -> None:
    """Constructor checks, removed parties on submission, provider trades by outsiders, deadline overflow."""
    c = community
    a, b, x = c.households
    m = c.market
    artifact = {"abi": m.abi, "bytecode": load_artifact("Market")["bytecode"]}
    reverts("ZeroAddress", lambda: c.admin.deploy(artifact, ZERO, "heat", c.admin.address))
    reverts("ZeroAddress", lambda: c.admin.deploy(artifact, c.token.address, "heat", ZERO))
    huge = c.terms(a, b, delivery_end=2**40 - 10)  # deliveryEnd + reportWindow overflows uint40
    assert (
        reverts(
            "InvalidTerms",
            lambda: c.admin.transact(m.functions.submitAgreement(huge.as_tuple(), *c.sign(huge, a, b))),
        )[1]
        == 3
    )
    t = c.terms(a, b)
    sigs = c.sign(t, a, b)
    c.admin.transact(m.functions.remove(a.address))
    assert (
        reverts("NotRegistered", lambda: c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *sigs)))[
            0
        ]
        == a.address
    )
    c.admin.transact(m.functions.register(a.address, b"\x01" * 32, b"\x02" * 32))
    c.admin.transact(m.functions.remove(b.address))
    assert (
        reverts("NotRegistered", lambda: c.admin.transact(m.functions.submitAgreement(t.as_tuple(), *sigs)))[
            0
        ]
        == b.address
    )
    c.admin.transact(m.functions.setProvider(x.address, 5, 5))
    now = c.now()
    reverts(
        "NotRegistered",
        lambda: b.sender.transact(m.functions.tradeWithProvider(True, 10, now + HOUR, now + 2 * HOUR)),
    )
    assert reverts(
        "ProviderTradeOutOfBounds",
        lambda: a.sender.transact(m.functions.tradeWithProvider(True, 10, now - HOUR, now)),
    )[:3] == (10, now - HOUR, now)  # a window in the past


def test_contracts_provider_limits(community: Community, reverts) -> None:
    """Only the community bounds provider trades; nonsense bounds are refused; new bounds apply at once."""
    c = community
    a, _, provider = c.households
    m = c.market
    c.admin.transact(m.functions.setProvider(provider.address, 5, 5))
    set_limits = m.functions.setProviderLimits
    reverts("AccessControlUnauthorizedAccount", lambda: a.sender.transact(set_limits(500, HOUR, 2 * HOUR)))
    for bad in ((0, HOUR, 2 * HOUR), (500, 0, 2 * HOUR), (500, 2 * HOUR, HOUR), (500, HOUR, 31 * 86_400)):
        reverts("ProviderTradeOutOfBounds", lambda b=bad: c.admin.transact(set_limits(*b)))
    rcpt = c.admin.transact(set_limits(500, HOUR, 2 * HOUR))
    assert dict(events(c, rcpt, "ProviderLimitsSet")[0]) == {
        "maxWh": 500,
        "maxWindow": HOUR,
        "maxLead": 2 * HOUR,
    }
    now = c.now()
    trade = m.functions.tradeWithProvider
    reverts("ProviderTradeOutOfBounds", lambda: a.sender.transact(trade(True, 501, now + 60, now + HOUR)))
    reverts(
        "ProviderTradeOutOfBounds",
        lambda: a.sender.transact(trade(True, 500, now + 2 * HOUR, now + 3 * HOUR)),
    )
    a.sender.transact(trade(True, 500, now + 60, now + HOUR))
    a.sender.transact(trade(False, 500, now + 60, now + HOUR))  # the other direction is tracked apart
    reverts("ProviderTradeOverlaps", lambda: a.sender.transact(trade(True, 500, now + 120, now + HOUR)))
