"""bsopt: the option-pricing platform's four backend services (api, neural pricing, scraper, worker).

Layout follows the seed (`src/api`, `src/pricing`, `src/ml`, `src/scrapers`, `src/tasks`) as one
package, so every entry point is a module path that exists:

    uvicorn bsopt.api.main:app            the REST + GraphQL API
    uvicorn bsopt.pricing.main:app        neural pricing, model code in bsopt.ml
    python -m bsopt.scrapers.engine       the Playwright scraper
    celery -A bsopt.tasks.celery_app worker   one Celery app for every task (bsopt.ml's included)
"""
