"""The member service's rules as plain Python on plain data: no grpc, no SQLAlchemy.

Time and ids are always arguments, so every rule is deterministic under test.
"""
