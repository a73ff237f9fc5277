"""Lead service (线索中台): omni-channel intake, cleansing, dedup, rating, routing."""
