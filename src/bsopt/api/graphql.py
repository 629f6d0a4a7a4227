"""The GraphQL schema (the seed's API has GraphQL definitions): quotes with their implied
volatilities, and prices with Greeks.

Library: graphene 3.4. It is already in poetry.lock (MLflow 2.16 serves its own GraphQL API with
it), so the API image adds no new package for GraphQL, and it is maintained (3.4.3, 2024).
Strawberry would have added itself plus its dependencies for the same two queries. Served by
a plain POST /graphql handler (`run_query`: graphql-core's parse, validate and execute on
graphene's schema), without a Starlette integration package.

Limits. GraphQL lets one request ask for as much work as it likes: one 200 KB query of 5,000
aliased `quotes(limit: 1000)` fields took 7.4 s of CPU. Every query is bounded before it runs,
cheapest test first, and refused with a 400 naming the limit (docs/contracts.md lists them):
- its length (MAX_QUERY_CHARS), before anything is parsed: the 5,000-alias query ends here;
- its tokens (MAX_TOKENS), while parsing (graphql-core stops the lexer there);
- depth, aliases and selected fields (validation rules, with the specified ones);
- quote rows: the `limit`s of all `quotes` fields together at most MAX_ROWS (10,000, what
  one GET /quotes may read), so aliases cannot multiply the database work.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

import graphene
from fastapi.concurrency import run_in_threadpool
from graphql import (ASTValidationRule, FieldNode, FragmentDefinitionNode, FragmentSpreadNode,
                     GraphQLError, GraphQLSyntaxError, IntValueNode, OperationDefinitionNode, execute,
                     parse, specified_rules, validate)

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


MAX_QUERY_CHARS = 10_000
MAX_TOKENS = 2_000
MAX_DEPTH = 6
MAX_ALIASES = 10
MAX_FIELDS = 200
MAX_ROWS = 10_000  # quote rows one query may read, all `quotes` fields together


def _limit_rule(measure: str, limit: int, count):
    """A validation rule that counts something over the whole document and reports once."""

    class Rule(ASTValidationRule):
        def __init__(self, context):
            super().__init__(context)
            self.seen = 0

        def enter_document(self, node, *_):
            self.seen = count(node)
            if self.seen > limit:
                # counting stops one past the field limit, so "more than" is what is known
                self.report_error(GraphQLError(
                    f"the query has more than {limit} {measure}, the limit "
                    f"(accepted: at most {limit} {measure} per query; docs/contracts.md)"))

    Rule.__name__ = f"Max{measure.title().replace(' ', '')}Rule"
    return Rule


def _walk(node, fragments, depth=0, path=()):
    """(depth, field node) for every field the document selects, fragment spreads expanded
    where they stand (a spread of a fragment with 10 aliases, 5 times, selects 50 fields);
    a fragment inside itself is not followed (NoFragmentCyclesRule reports it)."""
    selection_set = getattr(node, "selection_set", None)
    if selection_set is None:
        return
    for sel in selection_set.selections:
        if isinstance(sel, FieldNode):
            yield depth + 1, sel
            yield from _walk(sel, fragments, depth + 1, path)
        elif isinstance(sel, FragmentSpreadNode):
            name = sel.name.value
            if name in fragments and name not in path:
                yield from _walk(fragments[name], fragments, depth, path + (name,))
        else:  # an inline fragment: same depth
            yield from _walk(sel, fragments, depth, path)


def _selected(doc) -> list:
    """The operations' selected fields, at most MAX_FIELDS + 1 of them: expanding fragments
    can grow exponentially, and one past the limit is all any rule needs to know."""
    fragments = {d.name.value: d for d in doc.definitions if isinstance(d, FragmentDefinitionNode)}
    ops = (d for d in doc.definitions if isinstance(d, OperationDefinitionNode))
    return list(islice((x for op in ops for x in _walk(op, fragments)), MAX_FIELDS + 1))


def _quote_rows(doc) -> int:
    """The most rows the `quotes` fields may read: each its literal `limit`, the default 500
    without one, and the resolver's maximum (10,000) for a variable."""
    rows = 0
    for _, field in _selected(doc):
        if field.name.value != "quotes":
            continue
        arg = next((a for a in field.arguments or () if a.name.value == "limit"), None)
        if arg is None:
            rows += 500
        elif isinstance(arg.value, IntValueNode):
            rows += max(0, int(arg.value.value))
        else:
            rows += MAX_ROWS
    return rows


LIMIT_RULES = (
    _limit_rule("quote rows", MAX_ROWS, _quote_rows),
    _limit_rule("levels of nesting", MAX_DEPTH, lambda doc: max((d for d, _ in _selected(doc)), default=0)),
    _limit_rule("aliases", MAX_ALIASES, lambda doc: sum(1 for _, f in _selected(doc) if f.alias is not None)),
    _limit_rule("selected fields", MAX_FIELDS, lambda doc: len(_selected(doc))),
)
RULES = (*specified_rules, *LIMIT_RULES)


def _errors(errors) -> list[dict]:
    return [{"message": str(getattr(e, "message", e)), "path": getattr(e, "path", None)} for e in errors]


def _refused(message: str) -> tuple[dict, int]:
    return {"data": None, "errors": [{"message": message, "path": None}]}, 400


async def run_query(query: str, variables: dict[str, Any], context: dict[str, Any]) -> tuple[dict, int]:
    """(answer, status): 200 with data (and any field errors), or 400 when the query does not
    parse, validate or stay within the limits. Execution (database reads) runs in a thread."""
    if len(query) > MAX_QUERY_CHARS:
        return _refused(f"the query is {len(query)} characters, over the limit of {MAX_QUERY_CHARS} "
                        "(accepted: a shorter query; at most "
                        f"{MAX_ALIASES} aliases, {MAX_FIELDS} fields, depth {MAX_DEPTH}; docs/contracts.md)")
    try:
        document = parse(query, max_tokens=MAX_TOKENS, no_location=True)
    except GraphQLSyntaxError as exc:
        return _refused(f"{exc.message} (accepted: a GraphQL query of at most {MAX_TOKENS} tokens)")
    invalid = validate(schema.graphql_schema, document, RULES)
    if invalid:
        return {"data": None, "errors": _errors(invalid)}, 400
    result = await run_in_threadpool(execute, schema.graphql_schema, document,
                                     context_value=context, variable_values=variables)
    out: dict[str, Any] = {"data": result.data}
    if result.errors:
        out["errors"] = _errors(result.errors)
    return out, 200 if result.data is not None else 400
