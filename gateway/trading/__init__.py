"""Trading: the community peer protocol, the agent hosting the negotiation engine, delivery and settlement."""
