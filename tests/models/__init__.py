"""Model tests (a package so that tests/models/test_flash.py and tests/nn/test_flash.py can share a basename)."""
