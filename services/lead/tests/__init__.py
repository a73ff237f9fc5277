"""Unit tests of the lead domain and servicer."""
