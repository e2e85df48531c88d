"""Test corpus for de-identification: real test-data files and fabricated vendor files."""
