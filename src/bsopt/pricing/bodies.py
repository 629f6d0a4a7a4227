"""Request bodies of the pricing endpoints (the API's /price and /implied-volatility, neural
pricing's /price) as models, for the OpenAPI. The handlers parse bodies themselves
(bsopt.common.http: strict numbers, columnar batches, 422s that name the element) for speed;
these models describe exactly what that parsing accepts, bounds included (bsm.LIMITS).

What a JSON Schema cannot state is checked by the handlers and answered 422: lists of
different lengths in one batch, an `expiry` that is not after today, both `years` and
`expiry` (or neither), and a price no volatility reproduces (implied volatility).
"""
from __future__ import annotations

from datetime import date
from typing import Annotated, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from .bsm import SIGMA_MAX, T_MAX

# bounds of bsm.LIMITS, as JSON Schema keywords
Spot = Annotated[float, Field(gt=0, lt=1e12)]
Years = Annotated[float, Field(gt=0, le=T_MAX)]
Rate = Annotated[float, Field(gt=-1, lt=1)]
Vol = Annotated[float, Field(gt=0, le=SIGMA_MAX)]
Kind = Annotated[str, Field(pattern="^([cC][aA][lL][lL]|[pP][uU][tT])$", description='"call" or "put"')]


def _many(t):
    """One value, or a non-empty list priced element-wise."""
    return Union[t, Annotated[list[t], Field(min_length=1)]]


_GIVEN = {"not": {"type": "null"}}


class OptionFields(BaseModel):
    # `years` or `expiry` must be given (both at once is a 422 this schema does not state)
    model_config = ConfigDict(extra="allow", json_schema_extra={"anyOf": [
        {"required": ["years"], "properties": {"years": _GIVEN}},
        {"required": ["expiry"], "properties": {"expiry": _GIVEN}}]})

    spot: _many(Spot) = Field(description="price of the underlying")
    strike: _many(Spot)
    years: Optional[_many(Years)] = Field(None, description="years to expiry; or give `expiry`")
    expiry: Optional[_many(date)] = Field(None, description="expiry date (ISO, after today; ACT/365); or give `years`")
    rate: Optional[_many(Rate)] = Field(None, description="continuous risk-free rate, default 0")
    dividend_yield: Optional[_many(Rate)] = Field(None, description="continuous dividend yield, default 0")
    type: Optional[_many(Kind)] = Field(None, description='"call" (default) or "put"')


class PriceRequest(OptionFields):
    volatility: _many(Vol) = Field(description="annual volatility")
    greeks: Optional[bool] = Field(None, description="also answer the Greeks (default true)")


class IVRequest(OptionFields):
    price: _many(Annotated[float, Field(gt=0)]) = Field(description="the option's market price")




class NeuralPriceRequest(OptionFields):
    volatility: _many(Vol) = Field(description="annual volatility")
