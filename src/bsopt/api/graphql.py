"""The GraphQL schema (the seed's API has GraphQL definitions): quotes with their implied
volatilities, and prices with Greeks.

Library: graphene 3.4. It is already in poetry.lock (MLflow 2.16 serves its own GraphQL API with
it), so the API image adds no new package for GraphQL, and it is maintained (3.4.3, 2024).
Strawberry would have added itself plus its dependencies for the same two queries. Served by
a plain POST /graphql handler (graphene's `Schema.execute`), without a Starlette integration
package.
"""

from __future__ import annotations

import graphene

from ..common.errors import InputError
from ..pricing import bsm


class Quote(graphene.ObjectType):
    id = graphene.Int(required=True)
    source = graphene.String(required=True)
    underlying = graphene.String(required=True)
    option_type = graphene.String(required=True)
    strike = graphene.Float(required=True)
    expiry = graphene.String(required=True)
    bid = graphene.Float(required=True)
    ask = graphene.Float(required=True)
    underlying_price = graphene.Float(required=True)
    scraped_at = graphene.String(required=True)
    implied_vol = graphene.Float(description="implied volatility of the mid price; null until computed")
    iv_error = graphene.String()

    @staticmethod
    def from_row(row: dict) -> "Quote":
        return Quote(**{k: row[k] for k in (
            "id", "source", "underlying", "option_type", "strike", "expiry", "bid", "ask",
            "underlying_price", "scraped_at")}, implied_vol=row["iv"], iv_error=row["iv_error"])


class Pricing(graphene.ObjectType):
    price = graphene.Float(required=True)
    delta = graphene.Float(required=True)
    gamma = graphene.Float(required=True)
    vega = graphene.Float(required=True)
    theta = graphene.Float(required=True)
    rho = graphene.Float(required=True)


class OptionType(graphene.Enum):
    CALL = "call"
    PUT = "put"


class Query(graphene.ObjectType):
    quotes = graphene.List(graphene.NonNull(Quote), underlying=graphene.String(),
                           limit=graphene.Int(default_value=500))
    price = graphene.Field(Pricing, spot=graphene.Float(required=True), strike=graphene.Float(required=True),
                           years=graphene.Float(required=True), volatility=graphene.Float(required=True),
                           rate=graphene.Float(default_value=0.0), dividend_yield=graphene.Float(default_value=0.0),
                           type=OptionType(default_value="call"))

    def resolve_quotes(root, info, underlying=None, limit=500):
        if not 1 <= limit <= 10_000:
            raise ValueError("limit: out of range (accepted: an integer in [1, 10000])")
        return [Quote.from_row(r) for r in info.context["db"].quotes(underlying=underlying, limit=limit)]

    def resolve_price(root, info, spot, strike, years, volatility, rate=0.0, dividend_yield=0.0, type="call"):
        kind = getattr(type, "value", type)
        try:
            f = bsm.check(spot=spot, strike=strike, years=years, rate=rate, volatility=volatility,
                          dividend_yield=dividend_yield)
        except InputError as exc:
            raise ValueError(str(exc)) from None
        g = bsm.greeks(f["spot"], f["strike"], f["years"], f["rate"], f["volatility"], f["dividend_yield"],
                       kind == "call")
        return Pricing(**{k: float(v) for k, v in g.__dict__.items()})


schema = graphene.Schema(query=Query)
