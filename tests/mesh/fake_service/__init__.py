"""A stand-in service for launcher tests: health only, behaviour chosen by FAKE_SERVICE_MODE."""
