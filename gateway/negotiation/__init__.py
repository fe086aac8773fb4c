"""The negotiation engine: Eq. 1 concession, the bilateral mechanism, the eco-park agent, the hourly market.

Pure Python + numpy, no I/O, deterministic under a seed. See README.md in this folder for the API.
"""

from gateway.negotiation.eip import Decision, EipContext, Negotiate, Provider, Wait, estimate_concession
from gateway.negotiation.eip_learn import Policy, default_policy_path
from gateway.negotiation.market import (
    BuyerState,
    MarketConfig,
    MarketOffer,
    SellerState,
    Tariff,
    Trade,
    WindowResult,
    get_offers,
    publish_offers,
    run_window,
)
from gateway.negotiation.negotiator import Negotiator, SessionResult, TraceEntry, run_session
from gateway.negotiation.offers import (
    Accept,
    Counter,
    Offer,
    OfferError,
    Reject,
    Response,
    response_from_dict,
)
from gateway.negotiation.outcomes import AdditiveUtility, Issue, LinearUtility, OutcomeSpace
from gateway.negotiation.strategy import (
    GridStrategy,
    Strategy,
    StrategyConfigError,
    TimeDependentStrategy,
    strategy_from_config,
)
from gridpact.core.concession import (
    AcceptanceRule,
    ConcessionParams,
    IssueOutcome,
    concession,
    negotiate_issue,
    negotiate_price,
)

__all__ = [
    "Accept",
    "AcceptanceRule",
    "AdditiveUtility",
    "BuyerState",
    "ConcessionParams",
    "Counter",
    "Decision",
    "EipContext",
    "GridStrategy",
    "Issue",
    "IssueOutcome",
    "LinearUtility",
    "MarketConfig",
    "MarketOffer",
    "Negotiate",
    "Negotiator",
    "Offer",
    "OfferError",
    "OutcomeSpace",
    "Policy",
    "Provider",
    "Reject",
    "Response",
    "SellerState",
    "SessionResult",
    "Strategy",
    "StrategyConfigError",
    "Tariff",
    "TimeDependentStrategy",
    "TraceEntry",
    "Trade",
    "Wait",
    "WindowResult",
    "concession",
    "default_policy_path",
    "estimate_concession",
    "get_offers",
    "negotiate_issue",
    "negotiate_price",
    "publish_offers",
    "response_from_dict",
    "run_session",
    "run_window",
    "strategy_from_config",
]
