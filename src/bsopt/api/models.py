"""The bsopt API's request and response bodies as models, for its OpenAPI (clients generate
from it; tests/contract holds the API to it). The pricing bodies are bsopt.pricing.bodies'
(neural pricing takes the same)."""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..pricing.bodies import IVRequest, PriceRequest  # noqa: F401  (the API's bodies, by name)
from ..tasks.celery_app import TASKS

Numbers = Union[float, list[float]]


class PriceResponse(BaseModel):
    price: Numbers
    delta: Optional[Numbers] = None
    gamma: Optional[Numbers] = None
    vega: Optional[Numbers] = None
    theta: Optional[Numbers] = None
    rho: Optional[Numbers] = None
    count: int = Field(description="options priced")


class IVResponse(BaseModel):
    implied_volatility: Numbers


class Quote(BaseModel):
    id: int
    source: str
    underlying: str
    option_type: str
    strike: float
    expiry: str
    bid: float
    ask: float
    underlying_price: float
    rate: float
    dividend_yield: float
    scraped_at: str
    iv: Optional[float] = Field(None, description="implied volatility of the mid price; null until computed")
    iv_error: Optional[str] = None
    iv_computed_at: Optional[str] = None


class Quotes(BaseModel):
    count: int
    quotes: list[Quote]


class GraphQLRequest(BaseModel):
    query: str = Field(min_length=1, description="a GraphQL query (limits: docs/contracts.md)")
    variables: Optional[dict[str, Any]] = None


class GraphQLError(BaseModel):
    message: str
    path: Optional[list[Union[str, int]]] = None


class GraphQLResponse(BaseModel):
    data: Optional[dict[str, Any]] = None
    errors: Optional[list[GraphQLError]] = None


class JobRequest(BaseModel):
    task: Literal[tuple(TASKS)] = Field(description="the task to run")  # type: ignore[valid-type]
    args: Optional[dict[str, Any]] = Field(None, description="the task's keyword arguments")


class JobAccepted(BaseModel):
    id: str
    task: str
    state: str
    url: str


class JobStatus(BaseModel):
    id: str
    state: str
    result: Any = None
    error: Optional[str] = None


class DeadLetters(BaseModel):
    dead_letters: list[dict[str, Any]]


class Scrape(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    state: str
    url: Optional[str] = None


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    unreachable: Optional[dict[str, str]] = None
