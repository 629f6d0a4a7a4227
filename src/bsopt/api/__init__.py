"""The REST + GraphQL API (`uvicorn bsopt.api.main:app`)."""
