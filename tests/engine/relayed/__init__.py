"""Functions that stand for camscope's own code in the warning tests (test_relay.py points
camscope.engine.relay.PACKAGE at this folder)."""
