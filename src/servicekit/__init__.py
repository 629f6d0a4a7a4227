"""What every HTTP service we ship shares (FX inference, FinGPT, the bsopt API, neural pricing,
the quote board): one error shape, one request body limit, one metrics middleware, and the
OpenAPI models that describe them. Every image that runs one of those services ships this
package (images/*.toml, `app`).

`servicekit.problems` is plain Python (no FastAPI); `servicekit.web` is the FastAPI part.
"""
