"""A quote board page whose quotes are rendered by JavaScript: the scraper's target in the stack,
since nothing outside this machine is reachable. Its quotes come from a known volatility smile,
so the implied volatilities the worker computes can be checked against it."""
