"""latentmap's tests: unit (tiny-random space), meaning (the trained digits space), browser (Playwright +
headless Chromium against a real server), security, crash. Shared helpers: helpers.py; fixtures: conftest.py."""
