"""The DMS adapter's rules: configuration, signatures, the STAR subset, the outbound RDR."""
