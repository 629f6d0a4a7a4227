"""fxstack: build the FX ML pipeline's images from one lock, load them into Docker, run the stack."""
