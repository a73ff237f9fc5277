"""The sales rules as plain Python on plain data: no grpc, no SQLAlchemy, no clock, no
environment. Time and ids are always passed in, so every rule is reproducible in a unit test.

- `model`: the records (Sales) and the rules that make one (`new_sales`).
- `errors`: the ErrorInfo reasons (SALES_NOT_FOUND ...) and the errors built in many places.
- `visibility`: who may see and create what (`owner_for`, `may_see`).
- `config`: the rules' knobs (SalesConfig), read from the environment once, by app.py.
"""
