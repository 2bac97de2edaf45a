"""Support for the browser tests (tests/test_browser.py): servers, a byte-counting proxy, Uppy."""
