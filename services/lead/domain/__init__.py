"""The lead rules as plain Python on plain data: no grpc, no SQLAlchemy, no clock.

Time and ids are always passed in, so every rule is reproducible in a unit test.

- `model`: the dataclasses and enums (LeadInput, CleanLead, Lead, Dealer, Rating...).
- `config`: LeadConfig, every threshold and weight, `from_env()`.
- `adf`: `parse_adf(document, now=, field=)` -> LeadInput.
- `cleansing`: `cleanse(LeadInput, config)` -> CleanLead, or InvalidArgument per field.
- `dedup`: `decide(...)` duplicate / merge / create, `merge_into(...)`, `window_start()`.
- `rating`: `rate(RatingFacts, config)` -> Rating, `grade_for(time_frame, config)`.
- `routing`: `route(...)` -> RoutingDecision, `manual(...)`, `walk_in(...)`.
- `followup`: `transition(...)`, `follow_up_due(...)`, `is_overdue(...)`.
- `intake`: `intake(...)`, the whole SubmitLead decision; `new_lead`, `reassign`.
- `demo_dealers`: the network `make run` seeds into an empty database.
"""
