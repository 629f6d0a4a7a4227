"""An API that breaks its own OpenAPI on purpose, for the contract tier's self-test: a server
error on some valid input, and text served where JSON is documented."""
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

app = FastAPI(title="broken on purpose")


class Square(BaseModel):
    x: int


@app.post("/square")
def square(body: Square) -> dict:
    if body.x > 1000:
        raise RuntimeError("overflow on purpose")
    return {"y": body.x * body.x}


@app.get("/text")
def text() -> dict:
    return PlainTextResponse("documented as JSON, served as text")
