"""Model serving: request parsing, a compiled fast predictor and the ASGI app behind `serve`."""
