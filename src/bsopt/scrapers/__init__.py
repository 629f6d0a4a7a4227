"""The quote scraper (`python -m bsopt.scrapers.engine`): Playwright driving Debian's Chromium."""
