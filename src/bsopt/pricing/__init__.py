"""Black-Scholes-Merton maths (bsm) and the neural-pricing service (main)."""
