"""The adapters to the OEM's and dealers' systems (DESIGN.md §7): ERP, DMS, telematics."""
