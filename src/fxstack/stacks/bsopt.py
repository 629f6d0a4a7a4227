"""The bsopt stack: compose/bsopt.yml (project bsopt), its development override, and
compose/bsopt.env. Its secret keys and files are bsopt_secrets' (the contract with the Compose
file); its files go to the same secrets directory as the FX stack's, named `bsopt_*`."""

from __future__ import annotations

from . import bsopt_e2e, bsopt_secrets
from .model import NO_LOGIN, DataVolume, StackDef, Url, Variant, frozen_map

HEADER = """\
# compose/bsopt.env: written by `fxstack up bsopt` on first run with random secrets; never
# overwritten (missing keys are appended). Ports: BSOPT_API_PORT (8300), BSOPT_PRICING_PORT (8301).
"""
BSOPT = StackDef(
    name="bsopt",
    title="the bsopt option-pricing backend",
    project="bsopt",
    compose_files=("bsopt.yml",),
    env_file="bsopt.env",
    env_header=HEADER,
    secret_keys=tuple(bsopt_secrets.SECRET_KEYS),
    secret_files=frozen_map(bsopt_secrets.SECRET_FILES),
    variants=frozen_map({
        "dev": Variant("development mode: src/bsopt mounted read-only; a saved change reloads the API, "
                       "the quote board and neural pricing (uvicorn --reload) and restarts the worker and "
                       "the scraper (watchfiles)", files=("bsopt.dev.yml",)),
    }),
    urls=frozen_map({
        "api": Url("bsopt API (OpenAPI docs; POST /graphql)", "/docs", NO_LOGIN),
        "neural-pricing": Url("bsopt neural pricing", "/docs", NO_LOGIN),
    }),
    data=(
        # Every credential of bsopt's data is a password the services set on start: the Postgres
        # entrypoint brings the superuser and the `bsopt` role to the current secrets.
        DataVolume("pgdata", "bsopt's quotes, jobs and model versions",
                   healed=("BSOPT_POSTGRES_PASSWORD", "BSOPT_DB_PASSWORD")),
    ),
    e2e=bsopt_e2e.run,
    e2e_help="scraper -> Postgres -> worker IVs -> REST/GraphQL -> training -> neural pricing",
    bench="./fx bench-bsopt (bench/bsopt_bench.py)",
)
