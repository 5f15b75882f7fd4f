"""The browser tests run only through ``make browser-test`` (``PAPERLIB_BROWSER=1``): they need
Debian's chromium and chromium-driver, selenium, and minutes; ``make test`` does not collect them."""

import os


def pytest_ignore_collect(collection_path, config):
    return os.environ.get("PAPERLIB_BROWSER", "") in ("", "0")
