"""The shared core: ideas several parts use, written once, importing nothing else of the project.

- `wire`: the node's reading payload (canonical JSON, HMAC) as the gateway verifies it;
- `energy`: counter deltas and wrap/reset handling of the meter's energy registers;
- `eip712`: typed-data hashing and signing of the market's terms;
- `concession`: the time-dependent concession of Eq. 1 (Kröhling et al.);
- `clock`: the clock protocol (real or virtual time) the gateway's loops run on;
- `tariff`: the grid provider's tariff (feed-in, retail, time of use) every price is bounded by;
- `settlement`: the Market contract's payout arithmetic (value, penalty, the escrow's split);
- `statement`: the meter node's signed hourly statement (encoding, digest, signer recovery);
- `demand`: the DemandResponse contract's baseline, reduction and payout arithmetic, and a claim's evidence.
"""
