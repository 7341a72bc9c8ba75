"""The verifier: renders gallery examples in a real headless Chromium, as a visitor sees them."""
