"""Test helpers shipped with espq (differential fuzzer)."""
